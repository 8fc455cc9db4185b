//! PostgreSQL through tokio-postgres, the maintained async driver, behind the same
//! blocking calls as SQLite.
//!
//! The driver's connections live on a runtime of their own (one thread, created on
//! first use). A call sends its statements there and waits on a channel for the answer,
//! so it blocks only its own thread and works from any thread, runtime worker or not
//! (the store is called from `spawn_blocking` threads, the CLI and tests). One thread
//! because a statement's task and the connection task it goes through then wake on the
//! same thread: measured, a second thread made each round trip slower (two more thread
//! wake-ups), and the work there is only encoding and decoding.
//!
//! Connections come from a pool ([`PgPool`], deadpool-postgres), plain or TLS as the
//! URL's `sslmode` asks ([`super::pgtls`]).
//!
//! Statements are prepared once per connection and kept. Parameters are bound with the
//! types the server inferred for them, so the neutral values (i64, f64, text, bytes)
//! go into BIGINT, INTEGER, DOUBLE PRECISION, TEXT, JSON or BYTEA as the column needs.

use super::row::Row;
use super::sql;
use super::value::{Params, Value};
use super::{DbError, Result};
use bytes::{BufMut, BytesMut};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};
use tokio_postgres::{NoTls, Statement};

/// The runtime the driver's connections run on.
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> =
        OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("readgate-pg")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the PostgreSQL driver's runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| DbError::Driver(e.clone()))
}

/// Runs `fut` on the driver's runtime and waits for its result.
fn run<T: Send + 'static>(fut: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| {
        DbError::Driver("the PostgreSQL driver's task ended without an answer".into())
    })?
}

/// The server's message, its SQLSTATE and where it points, not only "db error".
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                s.push_str(": ");
                s.push_str(detail);
            }
            s
        }
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// Statements kept prepared per connection, at most: SQL built at run time (searches
/// with their own limits) must not pile up statements on the server.
const MAX_PREPARED: usize = 256;

/// How long a statement waits for a free connection of the pool before it fails.
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A pool of connections to one PostgreSQL database (deadpool-postgres): connected on
/// demand up to its size, each recycled after a check that it is still open.
#[derive(Clone)]
pub(super) struct PgPool {
    pool: deadpool_postgres::Pool,
}

impl PgPool {
    /// A pool of at most `size` connections to `url`, plain or TLS as its `sslmode`
    /// asks ([`super::pgtls`]); one connection is made at once, so that a wrong URL, a
    /// refused password or a server that is down is reported here.
    pub(super) fn connect(url: &str, size: usize) -> Result<PgPool> {
        let target = super::pgtls::parse(url).map_err(DbError::Driver)?;
        let tls = super::pgtls::connector(&target.mode).map_err(DbError::Driver)?;
        let config: tokio_postgres::Config = target
            .driver_url
            .parse()
            .map_err(|e: tokio_postgres::Error| DbError::Driver(describe(&e)))?;
        let manager_config = deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        };
        let manager = match tls {
            None => deadpool_postgres::Manager::from_config(config, NoTls, manager_config),
            Some(tls) => deadpool_postgres::Manager::from_config(config, tls, manager_config),
        };
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(size.max(1))
            .wait_timeout(Some(POOL_WAIT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Driver(format!("cannot make the connection pool: {e}")))?;
        let pool = PgPool { pool };
        let first = pool.clone();
        run(async move { first.get().await.map(drop) })?;
        Ok(pool)
    }

    async fn get(&self) -> Result<Object> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => DbError::Postgres(e),
            deadpool_postgres::PoolError::Timeout(_) => DbError::Driver(format!(
                "no PostgreSQL connection of the pool ({} at most) came free within {} s",
                self.pool.status().max_size,
                POOL_WAIT.as_secs()
            )),
            e => DbError::Driver(format!("the PostgreSQL connection pool: {e}")),
        })
    }
}

/// A connection taken from the pool.
type Object = deadpool_postgres::Object;

/// One step of a pipeline: a statement and its parameters.
enum Step {
    /// Text run by the simple query protocol: transaction control.
    Text(String),
    /// A statement whose answer is the number of rows it changed.
    Execute(String, Vec<Param>),
    /// A statement whose answer is its rows.
    Query(String, Vec<Param>),
}

/// What a step answered.
enum Answer {
    Done,
    Count(u64),
    Rows(Vec<Row>),
}

impl Answer {
    /// The rows a query answered (none for any other step).
    fn rows(self) -> Vec<Row> {
        match self {
            Answer::Rows(rows) => rows,
            _ => Vec::new(),
        }
    }
}

impl Step {
    async fn send(&self, client: &Object, statement: Option<&Prepared>) -> Result<Answer> {
        fn args(args: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
            args.iter().map(|a| a as _).collect()
        }
        match (self, statement) {
            (Step::Text(sql), _) => {
                client.batch_execute(sql).await?;
                Ok(Answer::Done)
            }
            (Step::Execute(_, params), Some(p)) => Ok(Answer::Count(
                client.execute(&p.statement, &args(params)).await?,
            )),
            (Step::Query(_, params), Some(p)) => {
                let rows = client.query(&p.statement, &args(params)).await?;
                Ok(Answer::Rows(
                    rows.iter()
                        .map(|r| read_row(r, &p.columns))
                        .collect::<Result<_>>()?,
                ))
            }
            (_, None) => Err(DbError::Driver("a statement was not prepared".into())),
        }
    }

    fn sql(&self) -> Option<&str> {
        match self {
            Step::Text(_) => None,
            Step::Execute(sql, _) | Step::Query(sql, _) => Some(sql),
        }
    }
}

/// A prepared statement and its column names.
#[derive(Clone)]
struct Prepared {
    statement: Statement,
    columns: Arc<[String]>,
}

/// Prepares `sql` on `client` (once per connection: kept in its statement cache).
async fn prepare(client: &Object, sql: &str) -> Result<Prepared> {
    if client.statement_cache.size() >= MAX_PREPARED {
        client.statement_cache.clear();
    }
    let statement = client.prepare_cached(&sql::to_postgres(sql)).await?;
    let columns = statement
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    Ok(Prepared { statement, columns })
}

/// Sends every step on `client` at once and waits for their answers, in order.
///
/// tokio-postgres sends a request when its future is first polled and matches the
/// answers to the requests in order, so futures polled together are a pipeline: one
/// write, one wait, however many statements. A step after one that failed inside a
/// transaction fails too ("current transaction is aborted"); the first error is the
/// one that counts.
async fn pipeline(client: &Object, steps: &[Step]) -> Vec<Result<Answer>> {
    let mut statements = Vec::with_capacity(steps.len());
    for step in steps {
        statements.push(match step.sql() {
            Some(sql) => match prepare(client, sql).await {
                Ok(p) => Some(p),
                Err(e) => return vec![Err(e)],
            },
            None => None,
        });
    }
    let mut sends: Vec<_> = steps
        .iter()
        .zip(&statements)
        .map(|(step, statement)| Box::pin(step.send(client, statement.as_ref())))
        .collect();
    let mut answers: Vec<Option<Result<Answer>>> = sends.iter().map(|_| None).collect();
    // Polled in order every time, so the requests leave in the steps' order.
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (send, answer) in sends.iter_mut().zip(answers.iter_mut()) {
            if answer.is_none() {
                match send.as_mut().poll(cx) {
                    std::task::Poll::Ready(a) => *answer = Some(a),
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(DbError::Driver("a statement got no answer".into()))))
        .collect()
}

/// One connection to a PostgreSQL server, taken from a pool when first used.
///
/// Inside a transaction, statements whose answer nobody waits for (`BEGIN`, a
/// `SAVEPOINT`, [`PgConn::defer`]red ones) are held back and sent together with the
/// next statement that needs an answer, or the `COMMIT`: a transaction that reads once
/// and writes three times costs two round trips instead of six. Their errors are
/// reported by that statement.
///
/// When the server closed the connection (a restart, a failover, a network cut), the
/// next statement outside a transaction takes a fresh one from the pool; one inside a
/// transaction whose `BEGIN` went out fails, as the transaction did.
pub(super) struct PgConn {
    pool: PgPool,
    client: Mutex<Option<Arc<Object>>>,
    /// Steps held back until the next statement that needs an answer.
    pending: Mutex<Vec<Step>>,
    /// A transaction is open (its `BEGIN` may still be pending).
    in_transaction: AtomicBool,
    /// The open transaction's `BEGIN` has reached the server.
    begun: AtomicBool,
    /// A statement of the open transaction failed and no savepoint undid it: its
    /// `COMMIT` would be a silent `ROLLBACK`, so it is refused instead.
    aborted: AtomicBool,
}

impl PgConn {
    /// A connection of its own: a pool of one (the audit trail, `db copy`, tests).
    pub(super) fn connect(url: &str) -> Result<PgConn> {
        Ok(PgConn::from_pool(&PgPool::connect(url, 1)?))
    }

    /// A connection of `pool`, taken from it at the first statement and given back when
    /// this is dropped.
    pub(super) fn from_pool(pool: &PgPool) -> PgConn {
        PgConn {
            pool: pool.clone(),
            client: Mutex::new(None),
            pending: Mutex::new(Vec::new()),
            in_transaction: AtomicBool::new(false),
            begun: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
        }
    }

    fn flag(flag: &AtomicBool) -> bool {
        flag.load(Ordering::Relaxed)
    }

    /// Sends what is pending and then `last`; every step's answer, in order.
    fn send(&self, last: Step) -> Result<Vec<Result<Answer>>> {
        self.send_all(vec![last])
    }

    /// Sends what is pending and then `steps`; every step's answer, in order. Any error
    /// inside a transaction marks it aborted (see [`PgConn::commit`]).
    fn send_all(&self, last: Vec<Step>) -> Result<Vec<Result<Answer>>> {
        let sent = self.send_steps(last);
        let failed = match &sent {
            Ok(answers) => answers.iter().any(|a| a.is_err()),
            Err(_) => true,
        };
        if failed && Self::flag(&self.in_transaction) {
            self.aborted.store(true, Ordering::Relaxed);
        }
        sent
    }

    fn send_steps(&self, last: Vec<Step>) -> Result<Vec<Result<Answer>>> {
        let mut steps =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        steps.extend(last);
        let held = self.client.lock().unwrap_or_else(|p| p.into_inner()).take();
        let open = held.filter(|c| !c.is_closed());
        if open.is_none() && Self::flag(&self.begun) {
            return Err(DbError::Driver(
                "the PostgreSQL connection closed inside a transaction".into(),
            ));
        }
        let pool = self.pool.clone();
        let (client, answers) = run(async move {
            let client = match open {
                Some(c) => c,
                None => Arc::new(pool.get().await?),
            };
            let answers = pipeline(&client, &steps).await;
            Ok((client, answers))
        })?;
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = Some(client);
        if Self::flag(&self.in_transaction) {
            self.begun.store(true, Ordering::Relaxed);
        }
        Ok(answers)
    }

    /// Sends what is pending and then `steps`: the answers of `steps`, or the first
    /// error of all.
    fn answers(&self, steps: Vec<Step>) -> Result<Vec<Answer>> {
        let wanted = steps.len();
        let answers = self
            .send_all(steps)?
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let skip = answers.len().saturating_sub(wanted);
        Ok(answers.into_iter().skip(skip).collect())
    }

    /// Sends what is pending and then `last`: `last`'s answer, or the first error.
    fn answer(&self, last: Step) -> Result<Answer> {
        Ok(self.answers(vec![last])?.pop().unwrap_or(Answer::Done))
    }

    fn owned(sql: &str, params: &Params) -> (String, Vec<Param>) {
        (sql.to_string(), owned(params))
    }

    pub(super) fn execute(&self, sql: &str, params: &Params) -> Result<usize> {
        let (sql, args) = Self::owned(sql, params);
        match self.answer(Step::Execute(sql, args))? {
            Answer::Count(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => Ok(0),
        }
    }

    pub(super) fn execute_batch(&self, sql: &str) -> Result<()> {
        self.answer(Step::Text(sql.to_string())).map(drop)
    }

    pub(super) fn query(&self, sql: &str, params: &Params) -> Result<Vec<Row>> {
        let (sql, args) = Self::owned(sql, params);
        Ok(self.answer(Step::Query(sql, args))?.rows())
    }

    /// `sql` once for each set of parameters, all in one round trip: the rows of each.
    pub(super) fn query_many(&self, sql: &str, sets: &[&Params]) -> Result<Vec<Vec<Row>>> {
        let steps = sets
            .iter()
            .map(|params| Step::Query(sql.to_string(), owned(params)))
            .collect();
        Ok(self.answers(steps)?.into_iter().map(Answer::rows).collect())
    }

    /// Inside a transaction: `sql` is sent with the next statement that needs an answer
    /// (its error, if any, is that statement's). Outside one: run now.
    pub(super) fn defer(&self, sql: &str, params: &Params) -> Result<()> {
        if !Self::flag(&self.in_transaction) {
            return self.execute(sql, params).map(drop);
        }
        let (sql, args) = Self::owned(sql, params);
        self.push(Step::Execute(sql, args));
        Ok(())
    }

    fn push(&self, step: Step) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(step);
    }

    /// Opens a transaction with `begin` (`BEGIN …`), sent with its first statement.
    pub(super) fn begin(&self, begin: &str) {
        self.in_transaction.store(true, Ordering::Relaxed);
        self.begun.store(false, Ordering::Relaxed);
        self.aborted.store(false, Ordering::Relaxed);
        self.push(Step::Text(begin.to_string()));
    }

    /// A transaction one of whose statements failed is rolled back, and its commit
    /// refused: PostgreSQL would answer its `COMMIT` with a silent `ROLLBACK`.
    fn refuse_aborted(&self) -> Result<()> {
        if !Self::flag(&self.aborted) {
            return Ok(());
        }
        self.rollback();
        Err(DbError::Driver(
            "a statement of the transaction failed: it was rolled back, not committed".into(),
        ))
    }

    /// Commits the open transaction, with whatever is still pending.
    pub(super) fn commit(&self) -> Result<()> {
        self.refuse_aborted()?;
        let done = self.answer(Step::Text("COMMIT".into())).map(drop);
        self.end();
        done
    }

    /// Commits the open transaction and then runs `sql`, outside it, in the same round
    /// trip: the commit's result, and within it the read's.
    pub(super) fn commit_then_query(&self, sql: &str, params: &Params) -> Result<Result<Vec<Row>>> {
        self.refuse_aborted()?;
        let (sql, args) = Self::owned(sql, params);
        let sent = self.send_all(vec![Step::Text("COMMIT".into()), Step::Query(sql, args)]);
        self.end();
        let mut answers = sent?;
        let read = answers.pop().unwrap_or(Ok(Answer::Done));
        // Deferred statements answered before the COMMIT: the first error fails it.
        answers.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(read.map(Answer::rows))
    }

    /// Rolls the open transaction back. Nothing is sent when its `BEGIN` never was.
    pub(super) fn rollback(&self) {
        if !Self::flag(&self.begun) {
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            self.end();
            return;
        }
        // Pending steps go first (they would fail, or be undone): only the ROLLBACK's
        // own answer counts.
        let undone = self
            .send(Step::Text("ROLLBACK".into()))
            .and_then(|mut answers| answers.pop().unwrap_or(Ok(Answer::Done)));
        if let Err(e) = undone {
            tracing::warn!(error = %e, "database: rolling back a transaction failed");
            // A connection whose transaction may still be open never goes back to the
            // pool.
            if let Some(client) = self.client.lock().unwrap_or_else(|p| p.into_inner()).take() {
                if let Ok(client) = Arc::try_unwrap(client) {
                    drop(Object::take(client));
                }
            }
        }
        self.end();
    }

    fn end(&self) {
        self.in_transaction.store(false, Ordering::Relaxed);
        self.begun.store(false, Ordering::Relaxed);
        self.aborted.store(false, Ordering::Relaxed);
    }

    /// Opens a savepoint (sent with the next statement).
    pub(super) fn savepoint(&self, name: &str) {
        self.push(Step::Text(format!("SAVEPOINT {name}")));
    }

    /// Keeps what was done under the savepoint. Sent now, with what is pending, so that
    /// an error of the savepoint's statements is reported while it can still be undone.
    pub(super) fn release(&self, name: &str) -> Result<()> {
        self.execute_batch(&format!("RELEASE SAVEPOINT {name}"))
    }

    /// Undoes what was done under the savepoint; the transaction can go on.
    pub(super) fn rollback_to(&self, name: &str) -> Result<()> {
        let undo = format!("ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}");
        let undone = self
            .send(Step::Text(undo))
            .and_then(|mut answers| answers.pop().unwrap_or(Ok(Answer::Done)));
        match undone {
            Ok(_) => {
                self.aborted.store(false, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.aborted.store(true, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        if Self::flag(&self.in_transaction) {
            self.rollback();
        }
    }
}

fn owned(params: &Params) -> Vec<Param> {
    params.iter().map(|p| Param(p.into_owned())).collect()
}

/// A neutral value bound to a parameter of whatever type the server inferred for it.
#[derive(Debug)]
struct Param(Value);

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Param {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        match (&self.0, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Integer(i), &Type::INT8) => i.to_sql(ty, out),
            (Value::Integer(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (Value::Integer(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
            (Value::Integer(i), &Type::TEXT | &Type::VARCHAR) => i.to_string().to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT8) => f.to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT4) => (*f as f32).to_sql(ty, out),
            (Value::Text(s), &Type::JSON) => {
                out.put_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            (Value::Text(s), &Type::JSONB) => {
                // jsonb's binary form: a version byte, then the text.
                out.put_u8(1);
                out.put_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            (Value::Text(s), _) if <&str as ToSql>::accepts(ty) => s.as_str().to_sql(ty, out),
            (Value::Blob(b), &Type::BYTEA) => b.as_slice().to_sql(ty, out),
            (v, ty) => Err(format!(
                "cannot bind a {} value to a parameter of type {ty}",
                v.kind()
            )
            .into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A JSON or JSONB column's text.
struct JsonText(String);

impl<'a> FromSql<'a> for JsonText {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<JsonText, BoxError> {
        let raw = if *ty == Type::JSONB {
            raw.get(1..).ok_or("empty jsonb value")?
        } else {
            raw
        };
        Ok(JsonText(std::str::from_utf8(raw)?.to_string()))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON || *ty == Type::JSONB
    }
}

fn read_row(r: &tokio_postgres::Row, columns: &Arc<[String]>) -> Result<Row> {
    let mut values = Vec::with_capacity(columns.len());
    for (i, c) in r.columns().iter().enumerate() {
        let ty = c.type_();
        let v = match *ty {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Value::Integer),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Integer(v.into())),
            Type::INT2 => r
                .try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Integer(v.into())),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)?
                .map(|v| Value::Integer(v.into())),
            Type::FLOAT8 => r.try_get::<_, Option<f64>>(i)?.map(Value::Real),
            Type::FLOAT4 => r
                .try_get::<_, Option<f32>>(i)?
                .map(|v| Value::Real(v.into())),
            Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob),
            Type::JSON | Type::JSONB => r
                .try_get::<_, Option<JsonText>>(i)?
                .map(|j| Value::Text(j.0)),
            _ if <String as FromSql>::accepts(ty) => {
                r.try_get::<_, Option<String>>(i)?.map(Value::Text)
            }
            _ => {
                return Err(DbError::Column {
                    column: c.name().to_string(),
                    why: format!(
                        "PostgreSQL type {ty} is not one readgate reads (CAST it to BIGINT, \
                         DOUBLE PRECISION or TEXT in the query)"
                    ),
                })
            }
        };
        values.push(v.unwrap_or(Value::Null));
    }
    Ok(Row {
        columns: columns.clone(),
        values,
    })
}
