//! The database under the store and the audit trail, one small synchronous interface over
//! two backends: SQLite (embedded, one machine; the default) and PostgreSQL (`[database]
//! url`; several readgate nodes sharing one state).
//!
//! Callers write neutral SQL: SQLite's `?1` placeholders (rewritten for PostgreSQL by
//! [`sql::to_postgres`]), standard `ON CONFLICT … DO`, `RETURNING`, `CAST`, `COALESCE`.
//! The few statements that differ between the two (JSON paths, for one) are chosen by
//! [`Conn::backend`]. Values cross as [`Value`]: 64-bit integers, doubles, text, bytes
//! and null, which is all readgate stores.
//!
//! Every call blocks the calling thread, as rusqlite always did: on PostgreSQL the
//! statement runs on the driver's own runtime ([`postgres`]) and the caller waits for its
//! answer. The store keeps one synchronous surface, which async code calls off its
//! workers (`spawn_blocking`), whichever the backend.
//!
//! A foundation: nothing here imports anything of readgate's above it.

pub mod pgtls;
mod postgres;
mod row;
pub mod sql;
mod sqlite;
mod value;

pub use row::ColumnIndex;
pub use row::Row;
pub use value::{FromValue, IntoParams, Params, ToValue, Value, ValueRef};

use serde::de::DeserializeOwned;
use std::ops::Deref;

/// Which database a connection speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}", postgres::describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// `query_row` found no row (see [`OptionalExtension`]).
    #[error("the query returned no row")]
    NoRows,
    /// A column could not be read as the type asked for.
    #[error("column {column}: {why}")]
    Column { column: String, why: String },
    /// A parameter could not be bound, or the driver's runtime failed.
    #[error("{0}")]
    Driver(String),
}

/// The result of a database operation.
pub type Result<T> = std::result::Result<T, DbError>;

/// `query_row(…).optional()`: no row is `None` rather than an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(DbError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A statement's parameters: `params![a, b, c]` is `&[&a, &b, &c]` as [`Params`].
#[macro_export]
macro_rules! db_params {
    () => { &[] as &[&dyn $crate::db::ToValue] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::db::ToValue),+] as &[&dyn $crate::db::ToValue] };
}
pub use db_params as params;

/// `url` without its password, to show in logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// One connection to the database.
pub struct Conn {
    inner: Inner,
}

enum Inner {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::PgConn),
}

/// Where a store takes its connections: one SQLite connection, taken in turn, or a
/// pool of PostgreSQL connections (deadpool-postgres), one per operation in progress.
pub struct Pool(PoolInner);

enum PoolInner {
    Sqlite(std::sync::Mutex<Conn>),
    Postgres(postgres::PgPool),
}

/// A connection taken from a [`Pool`]; given back when dropped.
pub struct Pooled<'p>(PooledInner<'p>);

enum PooledInner<'p> {
    Sqlite(std::sync::MutexGuard<'p, Conn>),
    Postgres(Conn),
}

impl Pool {
    /// The pool of one SQLite connection.
    pub fn sqlite(conn: Conn) -> Pool {
        Pool(PoolInner::Sqlite(std::sync::Mutex::new(conn)))
    }

    /// A pool of at most `size` connections to the PostgreSQL database `url` names; one
    /// is made at once, so that a database that cannot be reached is reported here.
    pub fn postgres(url: &str, size: usize) -> Result<Pool> {
        Ok(Pool(PoolInner::Postgres(postgres::PgPool::connect(
            url, size,
        )?)))
    }

    /// A connection: SQLite's, once no other thread holds it; on PostgreSQL, one of the
    /// pool, taken at its first statement (waiting up to 30 s for one to come free).
    pub fn get(&self) -> Pooled<'_> {
        Pooled(match &self.0 {
            // A panic while holding the lock cannot leave a half-done transaction
            // behind (it is rolled back on drop), so a poisoned lock is still usable.
            PoolInner::Sqlite(conn) => {
                PooledInner::Sqlite(conn.lock().unwrap_or_else(|p| p.into_inner()))
            }
            PoolInner::Postgres(pool) => PooledInner::Postgres(Conn {
                inner: Inner::Postgres(postgres::PgConn::from_pool(pool)),
            }),
        })
    }
}

impl Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        match &self.0 {
            PooledInner::Sqlite(c) => c,
            PooledInner::Postgres(c) => c,
        }
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        match &mut self.0 {
            PooledInner::Sqlite(c) => c,
            PooledInner::Postgres(c) => c,
        }
    }
}

impl Conn {
    /// A connection over an open SQLite database (its pragmas already set).
    pub fn sqlite(conn: rusqlite::Connection) -> Conn {
        Conn {
            inner: Inner::Sqlite(conn),
        }
    }

    /// Connects to the PostgreSQL server `url` names (`postgresql://user@host:port/db`),
    /// over TLS when its `sslmode` asks for it ([`pgtls`]).
    pub fn postgres(url: &str) -> Result<Conn> {
        Ok(Conn {
            inner: Inner::Postgres(postgres::PgConn::connect(url)?),
        })
    }

    /// The backend this connection speaks to.
    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Sqlite(_) => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    /// The SQLite connection, for what only SQLite has (pragmas, the backup API).
    pub fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.inner {
            Inner::Sqlite(c) => Some(c),
            Inner::Postgres(_) => None,
        }
    }

    /// Runs one statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: impl IntoParams) -> Result<usize> {
        let params = params.bind();
        match &self.inner {
            Inner::Sqlite(c) => sqlite::execute(c, sql, &params),
            Inner::Postgres(c) => c.execute(sql, &params),
        }
    }

    /// Runs one statement whose row count nobody needs. Inside a transaction on
    /// PostgreSQL it is sent together with the next statement that needs an answer (or
    /// the commit), saving a round trip; its error, if any, is reported by that
    /// statement and fails the transaction. Elsewhere it runs at once.
    pub fn defer(&self, sql: &str, params: impl IntoParams) -> Result<()> {
        let params = params.bind();
        match &self.inner {
            Inner::Sqlite(c) => sqlite::execute(c, sql, &params).map(drop),
            Inner::Postgres(c) => c.defer(sql, &params),
        }
    }

    /// Runs statements separated by `;`, without parameters (schema changes).
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Inner::Postgres(c) => c.execute_batch(sql),
        }
    }

    /// Every row `sql` selects.
    pub fn query(&self, sql: &str, params: impl IntoParams) -> Result<Vec<Row>> {
        let params = params.bind();
        match &self.inner {
            Inner::Sqlite(c) => sqlite::query(c, sql, &params, usize::MAX),
            Inner::Postgres(c) => c.query(sql, &params),
        }
    }

    /// Every row `sql` selects, once for each set of parameters (in order). On
    /// PostgreSQL they all go to the server at once, with whatever was deferred: one
    /// round trip for the lot.
    pub fn query_many(&self, sql: &str, sets: &[Vec<ValueRef<'_>>]) -> Result<Vec<Vec<Row>>> {
        if sets.is_empty() {
            // Nothing to ask: no round trip (what is deferred waits for the next one).
            return Ok(Vec::new());
        }
        match &self.inner {
            Inner::Sqlite(c) => sets
                .iter()
                .map(|params| sqlite::query(c, sql, params, usize::MAX))
                .collect(),
            Inner::Postgres(c) => {
                let sets: Vec<&Params> = sets.iter().map(|p| p.as_slice()).collect();
                c.query_many(sql, &sets)
            }
        }
    }

    /// The first row `sql` selects, mapped by `f`; [`DbError::NoRows`] when there is none.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl IntoParams,
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<T> {
        let params = params.bind();
        let rows = match &self.inner {
            Inner::Sqlite(c) => sqlite::query(c, sql, &params, 1)?,
            Inner::Postgres(c) => c.query(sql, &params)?,
        };
        f(rows.first().ok_or(DbError::NoRows)?)
    }

    /// Every row `sql` selects, mapped by `f`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: impl IntoParams,
        f: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.query(sql, params)?.iter().map(f).collect()
    }

    /// Calls `f` on each row `sql` selects, one at a time, without holding the whole
    /// result in memory (scans of the audit trail); `f` returns `false` to stop. On
    /// PostgreSQL this reads through a cursor, 1,000 rows at a time, and must run inside
    /// a transaction.
    pub fn query_each(
        &self,
        sql: &str,
        params: impl IntoParams,
        mut f: impl FnMut(&Row) -> Result<bool>,
    ) -> Result<()> {
        let params = params.bind();
        match &self.inner {
            Inner::Sqlite(c) => sqlite::query_each(c, sql, &params, &mut f),
            Inner::Postgres(c) => {
                let declare = format!("DECLARE readgate_each NO SCROLL CURSOR FOR {sql}");
                c.execute(&declare, &params)?;
                let mut result = Ok(());
                'pages: loop {
                    let page = match c.query("FETCH 1000 FROM readgate_each", &[]) {
                        Ok(page) => page,
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    };
                    if page.is_empty() {
                        break;
                    }
                    for row in &page {
                        match f(row) {
                            Ok(true) => {}
                            Ok(false) => break 'pages,
                            Err(e) => {
                                result = Err(e);
                                break 'pages;
                            }
                        }
                    }
                }
                c.execute_batch("CLOSE readgate_each")?;
                result
            }
        }
    }

    /// Every row `sql` selects as `T`, column by column name ([`Row::to`]).
    pub fn query_as<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: impl IntoParams,
    ) -> Result<Vec<T>> {
        self.query(sql, params)?.iter().map(Row::to).collect()
    }

    /// `sql`, to run with [`Statement`]'s methods (the shape rusqlite's callers know;
    /// every statement is prepared once per connection and kept, whichever the call).
    pub fn prepare_cached<'s>(&'s self, sql: &'s str) -> Result<Statement<'s>> {
        Ok(Statement { conn: self, sql })
    }

    /// As [`Conn::prepare_cached`].
    pub fn prepare<'s>(&'s self, sql: &'s str) -> Result<Statement<'s>> {
        self.prepare_cached(sql)
    }

    /// Starts a transaction that writes: on SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so it never fails half-way for want of the lock.
    pub fn transaction(&mut self) -> Result<Tx<'_>> {
        let begin = match self.backend() {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        self.begin(begin)
    }

    /// On PostgreSQL the `BEGIN` goes out with the transaction's first statement.
    fn begin(&mut self, begin: &str) -> Result<Tx<'_>> {
        match &self.inner {
            Inner::Sqlite(c) => c.execute_batch(begin)?,
            Inner::Postgres(c) => c.begin(begin),
        }
        Ok(Tx {
            conn: self,
            done: false,
            savepoints: 0,
        })
    }

    /// Starts a transaction that reads one consistent snapshot (several statements see
    /// the same data).
    pub fn read_transaction(&mut self) -> Result<Tx<'_>> {
        let begin = match self.backend() {
            Backend::Sqlite => "BEGIN DEFERRED",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        };
        self.begin(begin)
    }
}

/// A transaction: commit it, or it is rolled back when dropped.
pub struct Tx<'c> {
    conn: &'c mut Conn,
    done: bool,
    savepoints: u32,
}

impl Tx<'_> {
    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        match &self.conn.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch("COMMIT")?),
            Inner::Postgres(c) => c.commit(),
        }
    }

    /// Commits, then runs `sql` (a read) outside the transaction; it sees what the
    /// commit wrote. On PostgreSQL both go to the server in one round trip. The outer
    /// result is the commit's; the inner one the read's, which may fail after the
    /// commit succeeded (what was committed stays committed).
    pub fn commit_then_query(
        mut self,
        sql: &str,
        params: impl IntoParams,
    ) -> Result<Result<Vec<Row>>> {
        self.done = true;
        let params = params.bind();
        match &self.conn.inner {
            Inner::Sqlite(c) => {
                c.execute_batch("COMMIT")?;
                Ok(sqlite::query(c, sql, &params, usize::MAX))
            }
            Inner::Postgres(c) => c.commit_then_query(sql, &params),
        }
    }

    /// A savepoint inside the transaction: what is done under it is undone alone (when
    /// it is dropped without [`Savepoint::release`]).
    pub fn savepoint(&mut self) -> Result<Savepoint<'_>> {
        self.savepoints += 1;
        let name = format!("sp{}", self.savepoints);
        match &self.conn.inner {
            Inner::Sqlite(c) => c.execute_batch(&format!("SAVEPOINT {name}"))?,
            Inner::Postgres(c) => c.savepoint(&name),
        }
        Ok(Savepoint {
            conn: self.conn,
            name,
            done: false,
        })
    }
}

impl Deref for Tx<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done {
            match &self.conn.inner {
                Inner::Sqlite(c) => {
                    if let Err(e) = c.execute_batch("ROLLBACK") {
                        tracing::warn!(error = %e, "database: rolling back a transaction failed");
                    }
                }
                Inner::Postgres(c) => c.rollback(),
            }
        }
    }
}

/// A savepoint: [`Savepoint::release`] keeps its work, dropping it undoes it.
pub struct Savepoint<'t> {
    conn: &'t Conn,
    name: String,
    done: bool,
}

impl Savepoint<'_> {
    /// Keeps what was done under the savepoint (it commits with its transaction). On
    /// PostgreSQL this is when statements deferred under it reach the server: if one
    /// fails, what was done under the savepoint is undone and its error returned.
    pub fn release(mut self) -> Result<()> {
        let kept = match &self.conn.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch(&format!("RELEASE SAVEPOINT {}", self.name))?),
            Inner::Postgres(c) => c.release(&self.name),
        };
        // Undone by the drop when it failed.
        self.done = kept.is_ok();
        kept
    }
}

impl Deref for Savepoint<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        if !self.done {
            let undo = match &self.conn.inner {
                Inner::Sqlite(c) => c
                    .execute_batch(&format!(
                        "ROLLBACK TO SAVEPOINT {0}; RELEASE SAVEPOINT {0}",
                        self.name
                    ))
                    .map_err(DbError::from),
                Inner::Postgres(c) => c.rollback_to(&self.name),
            };
            if let Err(e) = undo {
                tracing::warn!(error = %e, "database: undoing a savepoint failed");
            }
        }
    }
}

/// A statement of a connection (see [`Conn::prepare_cached`]).
pub struct Statement<'s> {
    conn: &'s Conn,
    sql: &'s str,
}

impl Statement<'_> {
    pub fn execute(&mut self, params: impl IntoParams) -> Result<usize> {
        self.conn.execute(self.sql, params)
    }

    pub fn query_row<T>(
        &mut self,
        params: impl IntoParams,
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<T> {
        self.conn.query_row(self.sql, params, f)
    }

    /// Every row, mapped by `f`, each as its own result (as rusqlite's `query_map`).
    pub fn query_map<T>(
        &mut self,
        params: impl IntoParams,
        mut f: impl FnMut(&Row) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let rows = self.conn.query(self.sql, params)?;
        Ok(rows.iter().map(&mut f).collect::<Vec<_>>().into_iter())
    }

    /// Every row of the statement.
    pub fn query(&mut self, params: impl IntoParams) -> Result<Vec<Row>> {
        self.conn.query(self.sql, params)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod url_tests {
    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            super::redact_url("postgresql://gw:s3cret@db.example:5432/readgate?sslmode=require"),
            "postgresql://gw@db.example:5432/readgate?sslmode=require"
        );
        assert_eq!(
            super::redact_url("postgresql://gw@db/readgate"),
            "postgresql://gw@db/readgate"
        );
        assert_eq!(
            super::redact_url("postgresql:///readgate"),
            "postgresql:///readgate"
        );
    }
}
