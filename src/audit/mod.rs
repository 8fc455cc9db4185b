//! The audit trail (ATS-4): an append-only, hash-chained table of every significant event
//! — instances received, studies held / released / overridden / rejected / forwarded, read
//! events, confirmations, reports, configuration loads, operator logins, start and stop.
//!
//! It lives in readgate's SQLite database (table `audit_log`) but is written on its own
//! connection with `synchronous = FULL`: the index may lose its last commits in an OS crash
//! (the spool is the durable record there), audit evidence may not.
//!
//! Every entry carries its sequence number, the wall-clock time (UTC ms and RFC 3339), a
//! monotonic clock reading with the kernel boot id (so a step of the wall clock is visible),
//! the actor, the event kind, optional study UID / accession and a JSON detail, plus
//! `prev_hash` and `hash = SHA-256(prev_hash ‖ canonical fields)` (see [`chain`]). A row
//! `audit_head` remembers the last sequence number and hash written, so deleting the newest
//! entries or appending forged ones with sqlite3 is detected too. [`AuditLog::verify`]
//! walks the chain and names the first entry that was changed, deleted or inserted.
//!
//! Readers: [`AuditLog::search`], [`AuditLog::export_jsonl`], [`AuditLog::export_atna`]
//! (DICOM PS3.15 audit messages in RFC 5424 frames) and the live [`syslog`] sender.

pub mod atna;
pub mod chain;
mod lookups;
pub mod syslog;
pub use lookups::Alerted;
mod verify;

pub use atna::AtnaSource;
pub use verify::{ClockFinding, ClockIssue, Finding, Tamper, Verification};

use crate::db::{params, Conn, DbError, OptionalExtension};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit trail in {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{path} has no audit trail (table audit_log): has readgate written to it?")]
    NoTrail { path: PathBuf },
    #[error("audit trail: {0}")]
    Sql(#[from] DbError),
    #[error("audit entry: `{field}`: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("audit export: {0}")]
    Io(#[from] std::io::Error),
    #[error("audit trail in {path}: {source}")]
    Schema {
        path: PathBuf,
        source: crate::store::SchemaError,
    },
}

pub type Result<T> = std::result::Result<T, AuditError>;

pub use crate::model::AuditKind;

/// The event kinds as constants, for call sites that read better with them.
pub mod kind {
    use crate::model::AuditKind;
    pub const INSTANCE_RECEIVED: AuditKind = AuditKind::InstanceReceived;
    pub const STUDY_FORWARDED: AuditKind = AuditKind::StudyForwarded;
    pub const PRIOR_SENT: AuditKind = AuditKind::PriorSent;
    pub const READ_EVENT: AuditKind = AuditKind::ReadEvent;
    pub const STUDY_HELD: AuditKind = AuditKind::StudyHeld;
    pub const STUDY_RELEASED: AuditKind = AuditKind::StudyReleased;
    pub const STUDY_OVERRIDDEN: AuditKind = AuditKind::StudyOverridden;
    pub const CONFIRMATION: AuditKind = AuditKind::Confirmation;
    pub const STUDY_REJECTED: AuditKind = AuditKind::StudyRejected;
    pub const REPORT_GENERATED: AuditKind = AuditKind::ReportGenerated;
    pub const QUERY: AuditKind = AuditKind::Query;
    pub const OPERATOR_LOGIN: AuditKind = AuditKind::OperatorLogin;
    pub const OPERATOR_LOGOUT: AuditKind = AuditKind::OperatorLogout;
    pub const SECURITY_ALERT: AuditKind = AuditKind::SecurityAlert;
    pub const APPLICATION_START: AuditKind = AuditKind::ApplicationStart;
    pub const APPLICATION_STOP: AuditKind = AuditKind::ApplicationStop;
    pub const CONFIG_LOADED: AuditKind = AuditKind::ConfigLoaded;
    pub const CONFIG_REJECTED: AuditKind = AuditKind::ConfigRejected;
    pub const STUDY_REEVALUATED: AuditKind = AuditKind::StudyReevaluated;
    pub const STUDY_RETRIED: AuditKind = AuditKind::StudyRetried;
    pub const BACKUP_TAKEN: AuditKind = AuditKind::BackupTaken;
    pub const RESTORED: AuditKind = AuditKind::Restored;
    pub const SCHEMA_MIGRATED: AuditKind = AuditKind::SchemaMigrated;
    pub const DATABASE_COPIED: AuditKind = AuditKind::DatabaseCopied;
    pub const STEP_CREATED: AuditKind = AuditKind::StepCreated;
    pub const STEP_UPDATED: AuditKind = AuditKind::StepUpdated;
}

/// What the pipeline hands to [`AuditLog::append`]; the log adds sequence, times and hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    pub kind: AuditKind,
    /// Who: a user name, `system`, an AE title, an HL7 sender, an integration token name.
    pub actor: String,
    pub study_uid: Option<String>,
    pub accession: Option<String>,
    /// Anything else worth keeping as evidence (reasons, destination, counts, addresses).
    pub detail: serde_json::Value,
}

impl NewEntry {
    pub fn new(kind: AuditKind, actor: &str) -> NewEntry {
        NewEntry {
            kind,
            actor: actor.to_string(),
            study_uid: None,
            accession: None,
            detail: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn study(mut self, study_uid: &str) -> NewEntry {
        self.study_uid = Some(study_uid.to_string());
        self
    }

    pub fn accession(mut self, accession: &str) -> NewEntry {
        self.accession = Some(accession.to_string());
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> NewEntry {
        self.detail = detail;
        self
    }

    /// `schema_migrated`: migration `version` was applied (`readgate migrate`,
    /// `readgate serve --migrate`).
    pub fn schema_migrated(actor: &str, version: i64) -> NewEntry {
        NewEntry::new(kind::SCHEMA_MIGRATED, actor).detail(serde_json::json!({
            "version": version,
            "description": crate::store::schema::description(version),
        }))
    }
}

/// Where an appended entry landed: its sequence number and hash (hex), which an operator
/// may note down as an external anchor (`readgate audit verify --anchor SEQ:HASH`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryRef {
    pub seq: i64,
    pub hash: String,
}

/// One stored entry, as search and export return it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub seq: i64,
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    pub at_ms: i64,
    pub boot_id: String,
    pub mono_ns: i64,
    pub actor: String,
    pub kind: String,
    pub study_uid: Option<String>,
    pub accession: Option<String>,
    /// The detail exactly as stored and hashed (compact JSON text).
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl Entry {
    /// The detail as JSON; a stored text that is not JSON (only possible after tampering)
    /// comes back as a JSON string.
    pub fn detail_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.detail)
            .unwrap_or_else(|_| serde_json::Value::String(self.detail.clone()))
    }
}

/// Filters for [`AuditLog::search`]; every field is optional, results come newest first.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub kind: Option<String>,
    pub actor: Option<String>,
    /// Study Instance UID or accession number.
    pub study: Option<String>,
    /// From this time on (Unix ms, inclusive).
    pub from_ms: Option<i64>,
    /// Up to this time (Unix ms, inclusive).
    pub to_ms: Option<i64>,
    /// Substring of the detail JSON or the actor.
    pub text: Option<String>,
    /// 0 means 100.
    pub limit: usize,
    pub offset: usize,
}

/// A time range for the exports (Unix ms, both inclusive; `None` = unbounded).
#[derive(Debug, Clone, Copy, Default)]
pub struct Range {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

const COLUMNS: &str =
    "seq, at_ms, at, boot_id, mono_ns, actor, kind, study_uid, accession, detail, prev_hash, hash";

/// The audit trail of one readgate database. Cheap to share behind an `Arc`; appends from
/// several threads or processes are serialised by SQLite's write lock.
pub struct AuditLog {
    conn: Mutex<Conn>,
    path: PathBuf,
}

impl AuditLog {
    /// Opens the audit trail in the configured database (`config.database()`): the SQLite
    /// file, or PostgreSQL.
    pub fn open_at(db: &crate::config::Database) -> Result<AuditLog> {
        match db {
            crate::config::Database::Sqlite(path) => AuditLog::open(path),
            crate::config::Database::Postgres { url, .. } => AuditLog::connect(url),
        }
    }

    /// As [`AuditLog::open_read_only`], in the configured database.
    pub fn open_read_only_at(db: &crate::config::Database) -> Result<AuditLog> {
        match db {
            crate::config::Database::Sqlite(path) => AuditLog::open_read_only(path),
            crate::config::Database::Postgres { url, .. } => AuditLog::connect_read_only(url),
        }
    }

    /// The audit trail in the PostgreSQL database `url` names: migrated like the store,
    /// the append-only guards re-created if dropped. Every commit there is durable
    /// (`synchronous_commit` on, the server's default).
    pub fn connect(url: &str) -> Result<AuditLog> {
        let location = PathBuf::from(crate::db::redact_url(url));
        let mut conn = Conn::postgres(url)?;
        crate::store::schema::migrate(&mut conn).map_err(|source| AuditError::Schema {
            path: location.clone(),
            source,
        })?;
        {
            // Several processes or nodes may open the trail at once.
            let tx = conn.transaction()?;
            crate::store::schema::pg_schema_lock(&tx).map_err(|source| AuditError::Schema {
                path: location.clone(),
                source,
            })?;
            tx.execute_batch(crate::store::schema_pg::AUDIT_GUARDS)?;
            tx.commit()?;
        }
        Ok(AuditLog {
            conn: Mutex::new(conn),
            path: location,
        })
    }

    /// As [`AuditLog::open_read_only`], on PostgreSQL (nothing is written; the guards are
    /// not re-created, so `verify` can say they were dropped).
    pub fn connect_read_only(url: &str) -> Result<AuditLog> {
        let location = PathBuf::from(crate::db::redact_url(url));
        let conn = Conn::postgres(url)?;
        crate::store::schema::check(&conn).map_err(|source| AuditError::Schema {
            path: location.clone(),
            source,
        })?;
        let exists: bool = conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = 'audit_log')",
            [],
            |r| r.get(0),
        )?;
        if !(exists && trail_written(&conn)?) {
            return Err(AuditError::NoTrail { path: location });
        }
        Ok(AuditLog {
            conn: Mutex::new(conn),
            path: location,
        })
    }

    /// Opens (creating if needed) the audit trail in the database at `db_path` — the same
    /// file as the store, `config.database_path()`.
    pub fn open(db_path: &Path) -> Result<AuditLog> {
        let open_err = |source| AuditError::Open {
            path: db_path.to_path_buf(),
            source,
        };
        let conn = Connection::open(db_path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        // Evidence: a commit must be on disk before append returns.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        // The tables are the store's schema (`store::schema`); the append-only triggers
        // are re-created if someone dropped them.
        let mut conn = Conn::sqlite(conn);
        crate::store::schema::migrate(&mut conn).map_err(|source| AuditError::Schema {
            path: db_path.to_path_buf(),
            source,
        })?;
        conn.execute_batch(crate::store::schema::AUDIT_GUARDS)?;
        Ok(AuditLog {
            conn: Mutex::new(conn),
            path: db_path.to_path_buf(),
        })
    }

    /// Opens an existing trail without writing anything (for `verify`, `search`, `export`
    /// on a live system or on a copy handed to an auditor). Does not re-create the
    /// append-only triggers, so `verify` can report that they were dropped.
    pub fn open_read_only(db_path: &Path) -> Result<AuditLog> {
        let conn = Connection::open_with_flags(db_path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(
            |source| AuditError::Open {
                path: db_path.to_path_buf(),
                source,
            },
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(DbError::from)?;
        let conn = Conn::sqlite(conn);
        crate::store::schema::check(&conn).map_err(|source| AuditError::Schema {
            path: db_path.to_path_buf(),
            source,
        })?;
        // The tables exist in every migrated database; a trail readgate never wrote to
        // (no entry, no head) is no trail either.
        let exists: bool = conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_log')",
            [],
            |r| r.get(0),
        )?;
        if !(exists && trail_written(&conn)?) {
            return Err(AuditError::NoTrail {
                path: db_path.to_path_buf(),
            });
        }
        Ok(AuditLog {
            conn: Mutex::new(conn),
            path: db_path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Conn> {
        // rusqlite rolls an open transaction back on drop, so a lock poisoned by a panic
        // elsewhere guards a consistent connection.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `e`, logging (not returning) a failure: for the pipeline, where an audit
    /// problem must be loud but must not stop studies from moving.
    pub fn record(&self, e: NewEntry) -> Option<EntryRef> {
        match self.append(&e) {
            Ok(r) => Some(r),
            Err(err) => {
                tracing::error!(kind = %e.kind, error = %err, "could not append to the audit trail");
                None
            }
        }
    }

    /// Appends one entry (one transaction, one fsync).
    pub fn append(&self, e: &NewEntry) -> Result<EntryRef> {
        let mut refs = self.append_batch(std::slice::from_ref(e))?;
        refs.pop().ok_or(AuditError::Invalid {
            field: "entry",
            message: "nothing appended".into(),
        })
    }

    /// Appends several entries in one transaction (one fsync for all): for high-rate
    /// events such as instances received. All or none are recorded.
    pub fn append_batch(&self, es: &[NewEntry]) -> Result<Vec<EntryRef>> {
        if es.is_empty() {
            return Ok(Vec::new());
        }
        // Validate and serialise before taking the write lock.
        let prepared = prepare(es)?;
        let mut conn = self.conn();
        // Take the write lock before reading the head, so two writers (the daemon and an
        // operator's CLI command, or two nodes) can never both extend the same entry:
        // SQLite's BEGIN IMMEDIATE; on PostgreSQL a lock on the head that other appends
        // wait for (reads of the trail go on).
        let tx = conn.transaction()?;
        let out = append_prepared(&tx, &prepared)?;
        tx.commit()?;
        Ok(out)
    }

    /// Walks the whole chain and names the first entry that was changed, deleted or
    /// inserted; also reports steps of the wall clock. See [`Verification`].
    pub fn verify(&self) -> Result<Verification> {
        self.verify_with_anchor(None)
    }

    /// As [`verify`](Self::verify), also checking that entry `anchor.seq` still has the hash
    /// recorded outside the database (e.g. noted at the last audit, or the collector's copy).
    pub fn verify_with_anchor(&self, anchor: Option<&EntryRef>) -> Result<Verification> {
        let mut conn = self.conn();
        // One read transaction: a consistent snapshot while the daemon keeps appending.
        let tx = conn.read_transaction()?;
        let v = verify::run(&tx, anchor)?;
        tx.commit()?;
        Ok(v)
    }

    /// Entries matching `q`, newest first.
    pub fn search(&self, q: &Query) -> Result<Vec<Entry>> {
        let conn = self.conn();
        // SQLite's LIKE ignores ASCII case; PostgreSQL's ILIKE does the same there.
        let like = match conn.backend() {
            crate::db::Backend::Sqlite => "LIKE",
            crate::db::Backend::Postgres => "ILIKE",
        };
        let mut clauses: Vec<String> = Vec::new();
        let mut args: Vec<crate::db::Value> = Vec::new();
        // Each value is bound once and referred to by number (`?n`), also when a clause
        // uses it twice.
        fn bind(args: &mut Vec<crate::db::Value>, v: crate::db::Value) -> usize {
            args.push(v);
            args.len()
        }
        if let Some(k) = &q.kind {
            let n = bind(&mut args, k.clone().into());
            clauses.push(format!("kind = ?{n}"));
        }
        if let Some(a) = &q.actor {
            let n = bind(&mut args, a.clone().into());
            clauses.push(format!("actor = ?{n}"));
        }
        if let Some(s) = &q.study {
            let n = bind(&mut args, s.clone().into());
            clauses.push(format!("(study_uid = ?{n} OR accession = ?{n})"));
        }
        if let Some(f) = q.from_ms {
            let n = bind(&mut args, f.into());
            clauses.push(format!("at_ms >= ?{n}"));
        }
        if let Some(t) = q.to_ms {
            let n = bind(&mut args, t.into());
            clauses.push(format!("at_ms <= ?{n}"));
        }
        if let Some(t) = &q.text {
            let n = bind(&mut args, format!("%{}%", like_escape(t)).into());
            clauses.push(format!(
                "(detail {like} ?{n} ESCAPE '\\' OR actor {like} ?{n} ESCAPE '\\')"
            ));
        }
        let mut sql = format!("SELECT {COLUMNS} FROM audit_log");
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        let limit = if q.limit == 0 { 100 } else { q.limit };
        sql.push_str(&format!(
            " ORDER BY seq DESC LIMIT {} OFFSET {}",
            limit.min(i64::MAX as usize),
            q.offset.min(i64::MAX as usize)
        ));
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(args, row_to_entry)?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// Entries with `seq > after`, oldest first, at most `limit` (the syslog sender).
    pub fn entries_after(&self, after: i64, limit: usize) -> Result<Vec<Entry>> {
        let conn = self.conn();
        let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2");
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![after, limit as i64], row_to_entry)?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// Writes the entries in `range` as JSON lines, oldest first; returns how many. Each
    /// line has every stored field, the detail as JSON exactly as hashed, and the hashes.
    pub fn export_jsonl<W: Write>(&self, w: W, range: Range) -> Result<u64> {
        let mut w = std::io::BufWriter::new(w);
        let n = self.for_each_in(range, |e| {
            w.write_all(jsonl_line(e).as_bytes())?;
            w.write_all(b"\n")
        })?;
        w.flush()?;
        Ok(n)
    }

    /// Writes the entries in `range` as DICOM PS3.15 audit messages (IHE ATNA XML), each in
    /// an RFC 5424 syslog message with RFC 6587 octet-counting framing (`LEN SP MSG`, as
    /// sent over TCP and TLS, RFC 5425); returns how many.
    pub fn export_atna<W: Write>(&self, w: W, range: Range, source: &AtnaSource) -> Result<u64> {
        let mut w = std::io::BufWriter::new(w);
        let n = self.for_each_in(range, |e| {
            w.write_all(&atna::frame(&atna::syslog_message(e, source)))
        })?;
        w.flush()?;
        Ok(n)
    }

    fn for_each_in(
        &self,
        range: Range,
        mut f: impl FnMut(&Entry) -> std::io::Result<()>,
    ) -> Result<u64> {
        let conn = self.conn();
        let mut n = 0u64;
        let mut failure = None;
        conn.query_each(
            &format!(
                "SELECT {COLUMNS} FROM audit_log WHERE at_ms >= ?1 AND at_ms <= ?2 ORDER BY seq"
            ),
            params![
                range.from_ms.unwrap_or(i64::MIN),
                range.to_ms.unwrap_or(i64::MAX)
            ],
            |row| {
                if let Err(e) = f(&row_to_entry(row)?) {
                    failure = Some(e);
                    return Ok(false);
                }
                n += 1;
                Ok(true)
            },
        )?;
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(n),
        }
    }

    /// The last sequence number the syslog destination `target` was sent (0: none).
    pub fn cursor(&self, target: &str) -> Result<i64> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT seq FROM audit_cursor WHERE target = ?1",
                [target],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    pub fn set_cursor(&self, target: &str, seq: i64) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO audit_cursor (target, seq, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT(target) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
            params![target, seq, crate::time::now_ms()],
        )?;
        Ok(())
    }
}

/// The sequence number and hash the next entry follows. Normally the head row and the
/// last row agree; when they do not (someone deleted the newest entries, or appended
/// rows themselves) readgate continues after whichever is further, keeping the damage
/// visible to `verify` instead of papering over it, and never failing an append.
/// Whether readgate ever wrote to the trail (an entry, or a head).
fn trail_written(conn: &Conn) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM audit_log) OR EXISTS(SELECT 1 FROM audit_head)",
        [],
        |r| r.get(0),
    )?)
}

fn next_link(conn: &Conn) -> Result<(i64, [u8; 32])> {
    let head: Option<(i64, String)> = conn
        .query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let last: Option<(i64, String)> = conn
        .query_row(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let pick = match (head, last) {
        (Some(h), Some(l)) => Some(if h.0 > l.0 { h } else { l }),
        (h, l) => h.or(l),
    };
    Ok(match pick {
        // A hash that is not hex (tampered) still has to be linked to: hash its text.
        Some((seq, hash)) => (
            seq,
            chain::from_hex(&hash).unwrap_or_else(|| {
                use sha2::Digest;
                sha2::Sha256::digest(hash.as_bytes()).into()
            }),
        ),
        None => (0, chain::GENESIS),
    })
}

/// Appends `es` to the trail of the database `tx` is a transaction of (a write
/// transaction the caller commits): for `readgate db copy`, whose entry commits with
/// the copy or not at all.
pub fn append_in(tx: &Conn, es: &[NewEntry]) -> Result<Vec<EntryRef>> {
    append_prepared(tx, &prepare(es)?)
}

/// Verifies the trail as [`AuditLog::verify`] does, inside the caller's transaction
/// (`readgate db copy` verifies what it copied before it commits).
pub fn verify_in(tx: &Conn) -> Result<Verification> {
    verify::run(tx, None)
}

/// Each entry validated, with its detail serialised.
fn prepare(es: &[NewEntry]) -> Result<Vec<(&NewEntry, String)>> {
    let mut prepared = Vec::with_capacity(es.len());
    for e in es {
        validate(e)?;
        let detail = serde_json::to_string(&e.detail).map_err(|err| AuditError::Invalid {
            field: "detail",
            message: err.to_string(),
        })?;
        prepared.push((e, detail));
    }
    Ok(prepared)
}

/// Links `prepared` after the trail's newest entry and moves the head, in `tx` (a write
/// transaction).
fn append_prepared(tx: &Conn, prepared: &[(&NewEntry, String)]) -> Result<Vec<EntryRef>> {
    if tx.backend() == crate::db::Backend::Postgres {
        tx.execute_batch("LOCK TABLE audit_head IN EXCLUSIVE MODE")?;
    }
    let (mut seq, mut prev) = next_link(tx)?;
    let mut out = Vec::with_capacity(prepared.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO audit_log (seq, at_ms, at, boot_id, mono_ns, actor, kind, \
             study_uid, accession, detail, prev_hash, hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        for (e, detail) in prepared {
            seq += 1;
            // Stamped under the write lock: sequence order is time order.
            let stamp = chain::Stamp::now();
            let fields = chain::Fields {
                seq,
                at_ms: stamp.at_ms,
                at: &stamp.at,
                boot_id: stamp.boot_id,
                mono_ns: stamp.mono_ns,
                actor: &e.actor,
                kind: e.kind.as_str(),
                study_uid: e.study_uid.as_deref(),
                accession: e.accession.as_deref(),
                detail,
            };
            let hash = chain::entry_hash(&prev, &fields);
            let hash_hex = chain::to_hex(&hash);
            insert.execute(params![
                seq,
                stamp.at_ms,
                stamp.at,
                stamp.boot_id,
                stamp.mono_ns,
                e.actor,
                e.kind,
                e.study_uid,
                e.accession,
                detail,
                chain::to_hex(&prev),
                hash_hex,
            ])?;
            prev = hash;
            out.push(EntryRef {
                seq,
                hash: hash_hex,
            });
        }
    }
    tx.execute(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?1, ?2) \
         ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        params![seq, chain::to_hex(&prev)],
    )?;
    Ok(out)
}

fn validate(e: &NewEntry) -> Result<()> {
    if e.actor.trim().is_empty() || e.actor.len() > 1024 {
        return Err(AuditError::Invalid {
            field: "actor",
            message: "say who: a user, `system`, an AE title, an HL7 sender (1-1024 bytes)".into(),
        });
    }
    for (field, v) in [("study_uid", &e.study_uid), ("accession", &e.accession)] {
        if v.as_ref().is_some_and(|s| s.len() > 1024) {
            return Err(AuditError::Invalid {
                field,
                message: "longer than 1024 bytes".into(),
            });
        }
    }
    Ok(())
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn row_to_entry(r: &crate::db::Row) -> crate::db::Result<Entry> {
    Ok(Entry {
        seq: r.get(0)?,
        at_ms: r.get(1)?,
        at: r.get(2)?,
        boot_id: r.get(3)?,
        mono_ns: r.get(4)?,
        actor: r.get(5)?,
        kind: r.get(6)?,
        study_uid: r.get(7)?,
        accession: r.get(8)?,
        detail: r.get(9)?,
        prev_hash: r.get(10)?,
        hash: r.get(11)?,
    })
}

/// One JSON line. The detail is written as the stored text itself (not re-serialised), so
/// the bytes that were hashed are the bytes exported.
fn jsonl_line(e: &Entry) -> String {
    let s = |v: &str| serde_json::Value::String(v.to_string()).to_string();
    let o = |v: &Option<String>| v.as_deref().map(s).unwrap_or_else(|| "null".into());
    let detail = if serde_json::from_str::<serde::de::IgnoredAny>(&e.detail).is_ok() {
        e.detail.clone()
    } else {
        s(&e.detail)
    };
    format!(
        "{{\"seq\":{},\"at\":{},\"at_ms\":{},\"boot_id\":{},\"mono_ns\":{},\"actor\":{},\"kind\":{},\
         \"study_uid\":{},\"accession\":{},\"detail\":{},\"prev_hash\":{},\"hash\":{}}}",
        e.seq,
        s(&e.at),
        e.at_ms,
        s(&e.boot_id),
        e.mono_ns,
        s(&e.actor),
        s(&e.kind),
        o(&e.study_uid),
        o(&e.accession),
        detail,
        s(&e.prev_hash),
        s(&e.hash)
    )
}

#[cfg(test)]
mod tests;
