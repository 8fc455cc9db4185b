//! The SQLite store: the index of spooled instances, the studies they form, the decision
//! taken for each study and the forwarding queue.
//!
//! WAL mode with `synchronous = NORMAL`: a commit survives a crash of readgate (it is in
//! the WAL, in the OS cache) but not necessarily of the OS. That is enough because the
//! spool, fsync'd before every acknowledgement, is the record of what was received: at
//! start-up any spooled file the index lost is indexed again (`receive::recover`). What an
//! OS crash can cost is a decision or a delivery mark, i.e. a re-decision or a re-send.
//!
//! The schema is versioned (`PRAGMA user_version`) and brought up to date at open by
//! [`schema::migrate`] ([`Store::open`]); `readgate serve` opens with
//! [`Store::open_current`], which refuses an older schema unless told to migrate. The methods of [`Store`] are spread over one file per concern:
//! `instances`, `studies`, `queue`, `hl7`, `ledger`, `sessions` (the web console's) and
//! the `read` models for the CLI, the API and the console. Together they are the whole surface another backend would
//! implement.

mod cluster;
mod group;
mod hl7;
mod instances;
mod ledger;
mod mpps;
mod pending;
mod priors;
mod queue;
mod read;
pub mod schema;
pub mod schema_pg;
mod sessions;
mod studies;
#[cfg(test)]
mod tests;

pub use cluster::{JoinRefused, NodeBeat, NodeRow};
pub use hl7::{
    ContextKeys, IncomingMessage, MessageRef, Recorded, RecordedBatch, StoredOrder, StoredReport,
};
use instances::Received;
pub use instances::{IndexOutcome, Indexed, NewInstance};
pub use ledger::{
    LedgerReport, LedgerStudy, LedgerTimelineEvent, NewReadEvent, ReadEventRow, ReadTarget,
    RosterEntry,
};
pub use mpps::{Step, StepRefused, StepUpdate};
pub use pending::{PendingSync, SyncGuard};
pub use priors::{FetchFailure, FoundStudy, PacsLookup, PendingOrder, PriorRetrieval, SentPrior};
pub use queue::{Delivery, Lease, QueuedInstance};
pub use read::{DestinationStats, Event, HeldStudy, InstanceRow, StudyKeys, StudyRow};
pub use schema::SchemaError;
pub use sessions::{LoginKey, NewSession, StoredSession, TOUCH_AFTER_MS as SESSION_TOUCH_AFTER_MS};
pub use studies::{DecisionRecord, OtherStudy, RecordedDecision, StudySnapshot};

use crate::config::Database;
use crate::db::{Conn, DbError, IntoParams, Pool, Pooled};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database: {0}")]
    Sql(#[from] DbError),
    #[error("unknown study {0}")]
    UnknownStudy(String),
    #[error("database {path}: {source}")]
    Schema { path: PathBuf, source: SchemaError },
    #[error("database {}: {source}", location.display())]
    Connect { location: PathBuf, source: DbError },
    /// The shared transaction of a group commit failed (every instance in it is refused).
    #[error("database: {0}")]
    Batch(String),
    /// The thread committing a group of instances failed before answering.
    #[error("database: the group commit ended without an answer")]
    GroupLeader,
    /// The instance's file did not become durable: its index entry was not committed.
    #[error("the instance's file was not made durable; not indexed")]
    NotDurable,
}

/// A study's timeline entry: at, study UID, kind (`model::EventKind`), detail.
const INSERT_EVENT: &str =
    "INSERT INTO events (at, study_uid, kind, detail) VALUES (?1, ?2, ?3, ?4)";

/// The store's result type.
pub type Result<T> = std::result::Result<T, StoreError>;

/// readgate's database. On SQLite: one connection for the index (`synchronous =
/// NORMAL`), one for HL7 messages (`synchronous = FULL`), each used by one operation at
/// a time. On PostgreSQL: a pool of connections (`database.pool_size`), one per
/// operation in progress. Shared behind an `Arc`; every method blocks, so async code
/// calls it off the runtime.
pub struct Store {
    conn: Pool,
    /// SQLite: HL7 messages are committed with `synchronous = FULL` (see `hl7.rs`).
    /// PostgreSQL: none (they use the pool).
    hl7: Option<Pool>,
    path: PathBuf,
    /// How many times a connection was taken: one per store operation (see
    /// [`Store::operations`]).
    operations: std::sync::atomic::AtomicU64,
    /// Received instances waiting to share a commit (`index_received`).
    received: group::Group<Received, Result<IndexOutcome>>,
}

/// Milliseconds since the Unix epoch: all times in the store use this (the one clock,
/// [`crate::time`]).
pub use crate::time::now_ms;

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates its schema (tests,
    /// the demo, the CLI).
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_migrating(path, &mut |_| {})
    }

    /// As [`Store::open`], calling `applied(version)` after each migration it committed
    /// to a database that held something (`readgate migrate`, `readgate serve --migrate`):
    /// a new, empty database is created at [`schema::LATEST`] without a call.
    pub fn open_migrating(path: &Path, applied: &mut dyn FnMut(i64)) -> Result<Store> {
        Store::open_with(path, |conn| schema::migrate_existing(conn, applied))
    }

    /// Opens (creating if needed) the database at `path` without migrating it
    /// (`readgate serve`): a database of an older readgate is refused
    /// ([`SchemaError::TooOld`]); a new, empty one is created at [`schema::LATEST`].
    pub fn open_current(path: &Path) -> Result<Store> {
        Store::open_with(path, schema::require_latest)
    }

    /// Opens the database at `path` read-write; `schema` brings (or checks) its schema.
    fn open_with(
        path: &Path,
        schema: impl FnOnce(&mut Conn) -> std::result::Result<i64, SchemaError>,
    ) -> Result<Store> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_err)?;
        // Room for every statement prepared with `prepare_cached` (the default is 16).
        conn.set_prepared_statement_cache_capacity(64);
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        let mut conn = Conn::sqlite(conn);
        schema(&mut conn).map_err(|source| StoreError::Schema {
            path: path.to_path_buf(),
            source,
        })?;
        let hl7 = hl7::open_connection(path).map_err(open_err)?;
        Ok(Store::over(
            Pool::sqlite(conn),
            Some(Pool::sqlite(Conn::sqlite(hl7))),
            path.to_path_buf(),
        ))
    }

    /// Opens the configured database (`config.database()`) and migrates it.
    pub fn open_at(db: &Database) -> Result<Store> {
        match db {
            Database::Sqlite(path) => Store::open(path),
            Database::Postgres { url, pool_size } => Store::connect(url, *pool_size),
        }
    }

    /// As [`Store::open_migrating`], in the configured database.
    pub fn open_migrating_at(db: &Database, applied: &mut dyn FnMut(i64)) -> Result<Store> {
        match db {
            Database::Sqlite(path) => Store::open_migrating(path, applied),
            Database::Postgres { url, pool_size } => {
                Store::connect_migrating(url, *pool_size, applied)
            }
        }
    }

    /// As [`Store::open_current`], in the configured database.
    pub fn open_current_at(db: &Database) -> Result<Store> {
        match db {
            Database::Sqlite(path) => Store::open_current(path),
            Database::Postgres { url, pool_size } => Store::connect_current(url, *pool_size),
        }
    }

    /// As [`Store::open_read_only`], in the configured database (on PostgreSQL: a
    /// connection that checks the schema and does not migrate).
    pub fn open_read_only_at(db: &Database) -> Result<Store> {
        match db {
            Database::Sqlite(path) => Store::open_read_only(path),
            Database::Postgres { url, pool_size } => {
                Store::connect_with(url, *pool_size, |conn| schema::check(conn))
            }
        }
    }

    /// Connects to the PostgreSQL database `url` names (`[database] url`) with a pool of
    /// at most `pool_size` connections and migrates its schema (tests, the demo, the CLI).
    pub fn connect(url: &str, pool_size: usize) -> Result<Store> {
        Store::connect_with(url, pool_size, schema::migrate)
    }

    /// As [`Store::open_migrating`], on PostgreSQL.
    pub fn connect_migrating(
        url: &str,
        pool_size: usize,
        applied: &mut dyn FnMut(i64),
    ) -> Result<Store> {
        Store::connect_with(url, pool_size, |conn| {
            schema::migrate_existing(conn, applied)
        })
    }

    /// As [`Store::open_current`], on PostgreSQL.
    pub fn connect_current(url: &str, pool_size: usize) -> Result<Store> {
        Store::connect_with(url, pool_size, schema::require_latest)
    }

    fn connect_with(
        url: &str,
        pool_size: usize,
        schema: impl FnOnce(&mut Conn) -> std::result::Result<i64, SchemaError>,
    ) -> Result<Store> {
        let location = PathBuf::from(crate::db::redact_url(url));
        let pool = Pool::postgres(url, pool_size).map_err(|source| StoreError::Connect {
            location: location.clone(),
            source,
        })?;
        schema(&mut pool.get()).map_err(|source| StoreError::Schema {
            path: location.clone(),
            source,
        })?;
        // HL7 messages take their connections from the same pool: every commit on
        // PostgreSQL is durable (synchronous_commit stays on).
        Ok(Store::over(pool, None, location))
    }

    /// The store over its connections: the index's, and on SQLite the HL7 messages'.
    fn over(conn: Pool, hl7: Option<Pool>, path: PathBuf) -> Store {
        Store {
            conn,
            hl7,
            path,
            operations: Default::default(),
            received: group::Group::new(),
        }
    }

    /// Opens an existing database for reading only (the CLI listing commands): no
    /// migration, but a schema newer than this binary is refused.
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(DbError::from)?;
        let conn = Conn::sqlite(conn);
        schema::check(&conn).map_err(|source| StoreError::Schema {
            path: path.to_path_buf(),
            source,
        })?;
        let hl7 = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(DbError::from)?;
        Ok(Store::over(
            Pool::sqlite(conn),
            Some(Pool::sqlite(Conn::sqlite(hl7))),
            path.to_path_buf(),
        ))
    }

    /// The schema version of the database (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64> {
        schema::version(&self.conn()).map_err(|source| StoreError::Schema {
            path: self.path.clone(),
            source,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Store operations performed so far (connections taken), so a test can bound what a
    /// page or a request costs.
    pub fn operations(&self) -> u64 {
        self.operations.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A connection for one store operation: SQLite's one, in turn; on PostgreSQL one
    /// of the pool's.
    fn conn(&self) -> Pooled<'_> {
        self.operations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.conn.get()
    }

    /// Every row `sql` selects, mapped by `map` (one store operation).
    fn query_all<T>(
        &self,
        sql: &str,
        params: impl IntoParams,
        map: impl FnMut(&crate::db::Row) -> crate::db::Result<T>,
    ) -> Result<Vec<T>> {
        Ok(self.conn().query_map(sql, params, map)?)
    }

    /// Rows of `sql` as `T`: each column goes to the field of its name (the SQL's aliases
    /// name them), so a row type and its query cannot drift apart by position.
    fn query_as<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        params: impl IntoParams,
    ) -> Result<Vec<T>> {
        Ok(self.conn().query_as(sql, params)?)
    }

    fn hl7_conn(&self) -> Pooled<'_> {
        self.operations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.hl7.as_ref().unwrap_or(&self.conn).get()
    }
}
