//! The database schema as one ordered list of migrations, applied at open, each in its
//! own transaction, the version reached recorded in `PRAGMA user_version`.
//!
//! Migration 1 is the schema readgate had before it was versioned (tables created with
//! `CREATE TABLE IF NOT EXISTS` by the store, the HL7 tables, the ledger and the audit
//! trail): a database written then has `user_version` 0 and its tables already present;
//! migration 1 leaves them (and their rows) as they are and records version 1.
//!
//! To change the schema, append a migration to [`MIGRATIONS`], and append the same
//! migration, in PostgreSQL's dialect, to `schema_pg.rs` ([`super::schema_pg`];
//! `tests/schema_pg.rs` compares the two); never edit one that has been released. A database whose version is newer than this binary knows is refused
//! ([`SchemaError::TooNew`]) rather than used by code that does not know its tables.

use crate::db::{Backend, Conn, DbError, OptionalExtension};

/// The schema's migrations, in order: migration `i + 1` is `MIGRATIONS[i]`, a list of
/// SQL batches run in one transaction. Append the same migration to schema_pg.rs
/// ([`super::schema_pg::MIGRATIONS`], PostgreSQL's dialect).
pub const MIGRATIONS: &[&[&str]] = &[V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12, V13, V14];

/// Migration 2: refused HL7 messages are found without a scan, for the bounded
/// quarantine (`hl7.quarantine_max_mb`, `hl7.quarantine_days`).
const V2: &[&str] =
    &["CREATE INDEX IF NOT EXISTS hl7_refused ON hl7_messages(id) WHERE ack_code != 'AA'"];

/// Migration 3: what the hospital's PACS answered about each patient (`priors/`): one
/// row per patient and PACS for the last lookup, and the studies it found with the
/// report documents (SR, encapsulated PDF/CDA) each holds; orders by arrival, for the
/// lookup's "orders of the last day".
const V3: &[&str] = &[r#"
CREATE TABLE pacs_lookups (
    patient_id  TEXT NOT NULL,
    pacs_id     TEXT NOT NULL,
    at          INTEGER NOT NULL,
    ok          INTEGER NOT NULL,
    error       TEXT,
    found       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (patient_id, pacs_id)
);
CREATE TABLE pacs_studies (
    pacs_id      TEXT NOT NULL,
    patient_id   TEXT NOT NULL,
    study_uid    TEXT NOT NULL,
    accession    TEXT,
    study_date   TEXT,
    study_time   TEXT,
    modalities   TEXT NOT NULL,
    description  TEXT,
    instances    INTEGER,
    documents    INTEGER NOT NULL,
    PRIMARY KEY (patient_id, pacs_id, study_uid)
);
CREATE INDEX orders_by_received ON orders(received_at);
"#];

/// Migration 4: priors readgate sent to each destination (`forward/priors.rs`): one row
/// per destination and prior study, so a prior goes to a facility once; PACS studies by
/// UID, to find which PACS holds a chosen prior.
const V4: &[&str] = &[r#"
CREATE TABLE prior_sends (
    destination   TEXT NOT NULL,
    prior_uid     TEXT NOT NULL,
    pacs_id       TEXT NOT NULL,
    for_study_uid TEXT NOT NULL,
    instances     INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,
    sent_at       INTEGER NOT NULL,
    PRIMARY KEY (destination, prior_uid)
);
CREATE INDEX prior_sends_by_study ON prior_sends(for_study_uid);
CREATE INDEX pacs_studies_by_uid ON pacs_studies(study_uid);
"#];

/// Migration 5: the Issuer of Patient ID the PACS gave with each study it found, so that
/// a study of another domain's patient with the same ID is not taken for a prior.
const V5: &[&str] = &["ALTER TABLE pacs_studies ADD COLUMN issuer TEXT"];

/// Migration 6: chosen priors the PACS could not deliver (`priors::cache`): one row per
/// prior study while its retrieval fails, read by the decision stage (PRIORS_UNAVAILABLE
/// names the prior) and deleted when a retrieval succeeds.
const V6: &[&str] = &[r#"
CREATE TABLE prior_fetch_failures (
    prior_uid  TEXT PRIMARY KEY,
    pacs_id    TEXT NOT NULL,
    at         INTEGER NOT NULL,
    error      TEXT NOT NULL
);
"#];

/// Migration 7: the body parts (0018,0015) of each PACS study's series, which priors
/// are chosen by (`policy.priors.same_body_part`).
const V7: &[&str] = &["ALTER TABLE pacs_studies ADD COLUMN body_parts TEXT"];

/// Migration 8: the last successful retrieval of each prior study (`priors::cache`), so
/// the study views can say which priors were fetched, not only where they were sent.
const V8: &[&str] = &[r#"
CREATE TABLE prior_retrievals (
    prior_uid  TEXT PRIMARY KEY,
    pacs_id    TEXT NOT NULL,
    at         INTEGER NOT NULL,
    instances  INTEGER NOT NULL,
    bytes      INTEGER NOT NULL
);
"#];

/// Migration 9: Modality Performed Procedure Steps (`receive/mpps.rs`): each step's
/// status and study, and the instances a step lists, so a study whose step is COMPLETED
/// with all its instances in is complete without the quiet wait.
const V9: &[&str] = &[r#"
CREATE TABLE mpps (
    mpps_uid    TEXT PRIMARY KEY,
    study_uid   TEXT,
    accession   TEXT,
    status      TEXT NOT NULL,
    calling_ae  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX mpps_by_study ON mpps(study_uid);
CREATE TABLE mpps_instances (
    mpps_uid         TEXT NOT NULL REFERENCES mpps(mpps_uid),
    sop_instance_uid TEXT NOT NULL,
    series_uid       TEXT,
    PRIMARY KEY (mpps_uid, sop_instance_uid)
);
"#];

/// Migration 10: the number of images an order says its study will have
/// (`hl7.expected_images_field`), so a study holding that many is complete without the
/// quiet wait; and what completed each decided study (`CompletionSignal`: the quiet
/// period, its MPPS step, or its order's count), for the study page and the API.
const V10: &[&str] = &[
    "ALTER TABLE orders ADD COLUMN expected_images INTEGER",
    "ALTER TABLE studies ADD COLUMN completed_by TEXT",
];
/// Migration 11: streaming (`[[routes]] forward = "streaming"`): each study's stream
/// (`streaming`, `stopped`, or none) and whether the study stage must decide its stream
/// (again): set at its first instance, by an instance with header context the gate has
/// not seen, and by new HL7 or PACS context; the destination each instance was delivered
/// to, so a hold can say what already left and where.
const V11: &[&str] = &[r#"
ALTER TABLE studies ADD COLUMN stream TEXT;
ALTER TABLE studies ADD COLUMN stream_check INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN forwarded_to TEXT;
CREATE INDEX studies_stream_check ON studies(stream_check) WHERE stream_check = 1;
"#];

/// Migration 12: several nodes on one database (`docs/deploy.md`). Each node's row
/// (`nodes`: its heartbeat, which run of it is alive, where it listens); a lease on each
/// study being forwarded (`lease_owner` until `lease_until`; `lease_token` is the fencing
/// token, counted up whenever the lease changes hands, and checked when an instance is
/// marked delivered); and named cluster-wide leases (`cluster_leases`: the node that runs
/// the timers).
const V12: &[&str] = &[r#"
CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    incarnation  TEXT NOT NULL,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    version      TEXT NOT NULL,
    listens      TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    stopped_at   INTEGER
);
CREATE TABLE cluster_leases (
    name   TEXT PRIMARY KEY,
    owner  TEXT NOT NULL,
    until  INTEGER NOT NULL,
    token  INTEGER NOT NULL
);
ALTER TABLE studies ADD COLUMN lease_owner TEXT;
ALTER TABLE studies ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE studies ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
CREATE INDEX studies_by_lease ON studies(lease_owner) WHERE lease_owner IS NOT NULL;
"#];

/// Migration 13: the web console's sessions (`store::sessions`), shared by every node on
/// the database and kept across restarts. A session is found by the SHA-256 (hex) of its
/// cookie's id, never by the id itself: whoever reads the table cannot take a session
/// over. `user_digest` is the SHA-256 of the user's `[[http.users]]` entry when the session
/// was opened (a node whose entry differs does not honour it); `node` the host that opened
/// it (for whoever reads the table).
const V13: &[&str] = &[r#"
CREATE TABLE console_sessions (
    id_sha256    TEXT PRIMARY KEY,
    user_name    TEXT NOT NULL,
    role         TEXT NOT NULL,
    user_digest  TEXT NOT NULL,
    csrf         TEXT NOT NULL,
    node         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);
CREATE INDEX console_sessions_by_last_seen ON console_sessions(last_seen_at);
CREATE INDEX console_sessions_by_user ON console_sessions(user_name);
"#];

/// Login attempts counted in the database, so that every node of a cluster throttles
/// together (`web/auth.rs`): `key` is `user:NAME` or `ip:ADDRESS`, `failures` the attempts
/// counted since the last success or lock, `locked_until` (ms) when a lock ends,
/// `updated_at` (ms) the last attempt (rows idle for a day are swept at logins).
const V14: &[&str] = &[r#"
CREATE TABLE login_failures (
    key          TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    locked_until INTEGER,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX login_failures_by_update ON login_failures(updated_at);
"#];

/// One line per migration, for `readgate migrate`: `DESCRIPTIONS[i]` says what migration
/// `i + 1` does (a unit test keeps it as long as [`MIGRATIONS`]).
pub const DESCRIPTIONS: [&str; MIGRATIONS.len()] = [
    "the schema before versioning: studies, instances, HL7, ledger, audit trail",
    "index of refused HL7 messages (bounded quarantine)",
    "PACS lookups and the studies the PACS found; orders by arrival",
    "priors sent to each destination; PACS studies by UID",
    "Issuer of Patient ID of each PACS study",
    "chosen priors the PACS could not deliver",
    "body parts of each PACS study",
    "last successful retrieval of each prior study",
    "Modality Performed Procedure Steps and their instances",
    "expected image count of orders; what completed each study",
    "streaming: each study's stream, and where each instance was delivered",
    "several nodes: node heartbeats, forwarding leases with fencing tokens, cluster leases",
    "web console sessions, shared by every node and kept across restarts",
    "login attempts, counted for every node together (throttling)",
];

/// The schema version this readgate writes and reads.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// The description of migration `version` (1-based), as in [`DESCRIPTIONS`].
pub fn description(version: i64) -> &'static str {
    usize::try_from(version - 1)
        .ok()
        .and_then(|i| DESCRIPTIONS.get(i))
        .copied()
        .unwrap_or("unknown migration")
}

/// Why the schema could not be brought to (or checked against) [`LATEST`].
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "database schema version {found} is newer than this readgate ({known}): upgrade readgate"
    )]
    TooNew { found: i64, known: i64 },
    /// A database of an older readgate, opened by `serve` without `--migrate`.
    #[error(
        "database schema version {found} is older than this readgate needs ({needed}): \
         run `readgate migrate` (take `readgate backup` first), or start with `readgate serve --migrate`"
    )]
    TooOld { found: i64, needed: i64 },
    #[error("database schema migration {version}: {source}")]
    Migration { version: i64, source: DbError },
    #[error("database schema version: {0}")]
    Sql(#[from] DbError),
}

/// The schema version recorded in the database (0: never versioned, or empty). SQLite
/// keeps it in `PRAGMA user_version`; PostgreSQL in the one row of `schema_version`.
pub fn version(conn: &Conn) -> Result<i64, SchemaError> {
    match conn.backend() {
        Backend::Sqlite => Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?),
        Backend::Postgres => {
            // No table yet: a database readgate never migrated (the table is made by
            // `migrate`, under the schema lock).
            let exists: bool = conn.query_row(
                "SELECT to_regclass('schema_version') IS NOT NULL",
                [],
                |r| r.get(0),
            )?;
            if !exists {
                return Ok(0);
            }
            Ok(conn
                .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
                .optional()?
                .unwrap_or(0))
        }
    }
}

/// On PostgreSQL, serialises what changes the catalog (the version table, the audit
/// guards) across every connection and node until the transaction ends: PostgreSQL
/// refuses concurrent `CREATE … IF NOT EXISTS` / `CREATE OR REPLACE` of one object
/// ("tuple concurrently updated").
pub fn pg_schema_lock(tx: &Conn) -> Result<(), SchemaError> {
    // Any fixed key: readgate's own ("RG" and a version-independent number).
    tx.execute_batch("SELECT pg_advisory_xact_lock(5271000013)")?;
    Ok(())
}

/// PostgreSQL's record of the schema version (created by the first migrate).
const PG_VERSION_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)";

/// The version of a SQLite database opened directly (the backup, which copies the file).
pub fn check_sqlite(conn: &rusqlite::Connection) -> Result<i64, SchemaError> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(DbError::from)?;
    too_new(found)
}

fn too_new(found: i64) -> Result<i64, SchemaError> {
    if found > LATEST {
        return Err(SchemaError::TooNew {
            found,
            known: LATEST,
        });
    }
    Ok(found)
}

/// Refuses a database written by a newer readgate (read-only opens, which do not migrate).
pub fn check(conn: &Conn) -> Result<i64, SchemaError> {
    too_new(version(conn)?)
}

/// Whether the database holds nothing yet (no table, version 0): a new database, which
/// any open may create at [`LATEST`], unlike a database of an older readgate.
pub fn is_empty(conn: &Conn) -> Result<bool, SchemaError> {
    let objects: i64 = match conn.backend() {
        Backend::Sqlite => {
            conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))?
        }
        Backend::Postgres => conn.query_row(
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name != 'schema_version'",
            [],
            |r| r.get(0),
        )?,
    };
    Ok(objects == 0 && version(conn)? == 0)
}

/// For `readgate serve` without `--migrate`: an empty database is created at [`LATEST`];
/// one at an older version is refused ([`SchemaError::TooOld`]), as is a newer one.
pub fn require_latest(conn: &mut Conn) -> Result<i64, SchemaError> {
    let found = check(conn)?;
    if found == LATEST {
        return Ok(LATEST);
    }
    if is_empty(conn)? {
        return migrate(conn);
    }
    Err(SchemaError::TooOld {
        found,
        needed: LATEST,
    })
}

/// Brings the database to [`LATEST`], one transaction per migration. Safe to run from
/// several connections or processes at once: each step re-reads the version under the
/// write lock. Returns the version reached.
pub fn migrate(conn: &mut Conn) -> Result<i64, SchemaError> {
    migrate_reporting(conn, &mut |_| {})
}

/// As [`migrate_reporting`], reporting only what is applied to a database that held
/// something: a new, empty one is created at [`LATEST`] without a call (`readgate
/// migrate` and `serve --migrate` record each migration of an existing database).
pub fn migrate_existing(conn: &mut Conn, applied: &mut dyn FnMut(i64)) -> Result<i64, SchemaError> {
    let empty = is_empty(conn)?;
    migrate_reporting(conn, &mut |version| {
        if !empty {
            applied(version)
        }
    })
}

/// The migrations in the dialect of `backend`.
fn migrations(backend: Backend) -> &'static [&'static [&'static str]] {
    match backend {
        Backend::Sqlite => MIGRATIONS,
        Backend::Postgres => super::schema_pg::MIGRATIONS,
    }
}

/// As [`migrate`], calling `applied(version)` after each migration this call committed
/// (not those another connection applied meanwhile).
pub fn migrate_reporting(
    conn: &mut Conn,
    applied: &mut dyn FnMut(i64),
) -> Result<i64, SchemaError> {
    if check(conn)? == LATEST {
        return Ok(LATEST);
    }
    let backend = conn.backend();
    if backend == Backend::Postgres {
        // Nodes starting together: one creates the version table, the others wait.
        let tx = conn.transaction()?;
        pg_schema_lock(&tx)?;
        tx.execute_batch(PG_VERSION_TABLE)?;
        tx.commit()?;
    }
    for (i, batches) in migrations(backend).iter().enumerate() {
        let target = i as i64 + 1;
        let tx = conn.transaction()?;
        if backend == Backend::Postgres {
            // One migrator at a time across every node: the others wait here, then
            // find the step done.
            tx.execute_batch("LOCK TABLE schema_version IN EXCLUSIVE MODE")?;
        }
        let current = check(&tx)?;
        if current >= target {
            continue;
        }
        let step = |source| SchemaError::Migration {
            version: target,
            source,
        };
        for sql in *batches {
            tx.execute_batch(sql).map_err(step)?;
        }
        match backend {
            Backend::Sqlite => tx.execute_batch(&format!("PRAGMA user_version = {target}")),
            Backend::Postgres => tx
                .execute("DELETE FROM schema_version", [])
                .and_then(|_| {
                    tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [target])
                })
                .map(|_| ()),
        }
        .map_err(step)?;
        tx.commit().map_err(step)?;
        applied(target);
    }
    Ok(LATEST)
}

/// The audit trail's append-only triggers. Part of migration 1; also re-created (if
/// dropped) whenever the audit trail is opened for writing, as before versioning.
pub const AUDIT_GUARDS: &str = r#"
-- Append-only for readgate's own code and for careless hands. Whoever drops these
-- triggers can still edit rows; the hash chain is what makes that visible.
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
"#;

/// Migration 1: the schema as it was before versioning (readgate up to b54f886).
const V1: &[&str] = &[V1_STORE, V1_HL7, V1_LEDGER, V1_AUDIT, AUDIT_GUARDS];

/// Instances, studies and their timeline (`store::{instances, studies, queue}`).
const V1_STORE: &str = r#"
CREATE TABLE IF NOT EXISTS studies (
    study_uid         TEXT PRIMARY KEY,
    state             TEXT NOT NULL,
    accession         TEXT,
    patient_id        TEXT,
    modalities        TEXT NOT NULL DEFAULT '',
    calling_aes       TEXT NOT NULL DEFAULT '',
    instance_count    INTEGER NOT NULL DEFAULT 0,
    bytes             INTEGER NOT NULL DEFAULT 0,
    first_received_at INTEGER NOT NULL,
    last_received_at  INTEGER NOT NULL,
    completed_at      INTEGER,
    destination       TEXT,
    facility          TEXT,
    reasons           TEXT,
    verdict           TEXT,
    evaluation        TEXT,
    context           TEXT,
    evaluated_at      INTEGER,
    override_by       TEXT,
    override_reason   TEXT,
    audit_seq         INTEGER,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER NOT NULL DEFAULT 0,
    forwarded_at      INTEGER,
    last_error        TEXT,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS studies_by_state ON studies(state, last_received_at);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid         TEXT PRIMARY KEY,
    study_uid       TEXT NOT NULL,
    series_uid      TEXT,
    sop_class_uid   TEXT NOT NULL,
    transfer_syntax TEXT NOT NULL,
    modality        TEXT,
    path            TEXT NOT NULL,
    size            INTEGER NOT NULL,
    calling_ae      TEXT NOT NULL,
    received_at     INTEGER NOT NULL,
    state           TEXT NOT NULL,
    forwarded_at    INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    context         TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS instances_by_study ON instances(study_uid);
CREATE INDEX IF NOT EXISTS instances_queued ON instances(state, received_at) WHERE state = 'queued';
CREATE TABLE IF NOT EXISTS events (
    id        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    study_uid TEXT,
    kind      TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_by_study ON events(study_uid, id);
"#;

/// HL7 messages and what they carried (`store::hl7`).
const V1_HL7: &str = r#"
CREATE TABLE IF NOT EXISTS hl7_messages (
    id           INTEGER PRIMARY KEY,
    received_at  INTEGER NOT NULL,
    peer         TEXT NOT NULL,
    sender       TEXT NOT NULL,
    control_id   TEXT NOT NULL,
    message_type TEXT NOT NULL,
    charset      TEXT,
    raw          BLOB NOT NULL,
    parsed       TEXT,
    ack_code     TEXT NOT NULL,
    ack_text     TEXT NOT NULL,
    ack          BLOB NOT NULL,
    body_hash    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS hl7_by_sender_control ON hl7_messages(sender, control_id);
CREATE TABLE IF NOT EXISTS orders (
    id                INTEGER PRIMARY KEY,
    message_id        INTEGER NOT NULL REFERENCES hl7_messages(id),
    received_at       INTEGER NOT NULL,
    order_control     TEXT NOT NULL,
    accession         TEXT,
    study_uid         TEXT,
    placer            TEXT,
    filler            TEXT,
    patient_id        TEXT,
    patient_authority TEXT,
    request           TEXT NOT NULL,
    patient           TEXT NOT NULL,
    allergies         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_accession ON orders(accession);
CREATE INDEX IF NOT EXISTS orders_by_study ON orders(study_uid);
CREATE INDEX IF NOT EXISTS orders_by_patient ON orders(patient_id);
CREATE TABLE IF NOT EXISTS reports (
    id                INTEGER PRIMARY KEY,
    message_id        INTEGER NOT NULL REFERENCES hl7_messages(id),
    received_at       INTEGER NOT NULL,
    accession         TEXT,
    study_uid         TEXT,
    placer            TEXT,
    filler            TEXT,
    status            TEXT NOT NULL,
    signer_id         TEXT,
    assistant_ids     TEXT NOT NULL DEFAULT '',
    report_time       TEXT,
    text              TEXT NOT NULL,
    result            TEXT NOT NULL,
    patient_id        TEXT,
    patient_authority TEXT
);
CREATE INDEX IF NOT EXISTS reports_by_accession ON reports(accession);
CREATE INDEX IF NOT EXISTS reports_by_study ON reports(study_uid);
CREATE INDEX IF NOT EXISTS reports_by_patient ON reports(patient_id);
CREATE TABLE IF NOT EXISTS patient_merges (
    id                  INTEGER PRIMARY KEY,
    message_id          INTEGER NOT NULL REFERENCES hl7_messages(id),
    received_at         INTEGER NOT NULL,
    surviving_id        TEXT NOT NULL,
    surviving_authority TEXT,
    prior_id            TEXT NOT NULL,
    prior_authority     TEXT
);
CREATE INDEX IF NOT EXISTS merges_by_prior ON patient_merges(prior_id);
CREATE INDEX IF NOT EXISTS merges_by_surviving ON patient_merges(surviving_id);
"#;

/// The reading ledger's tables (`store::ledger`); the index serves its monthly scans.
const V1_LEDGER: &str = r#"
CREATE TABLE IF NOT EXISTS read_events (
    id          INTEGER PRIMARY KEY,
    study_uid   TEXT NOT NULL,
    accession   TEXT,
    reader_id   TEXT NOT NULL,
    action      TEXT NOT NULL,
    at          INTEGER NOT NULL,
    workstation TEXT,
    client_ip   TEXT,
    source      TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    resolved    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS read_events_by_study ON read_events(study_uid, at);
CREATE TABLE IF NOT EXISTS roster (
    id              INTEGER PRIMARY KEY,
    ids             TEXT NOT NULL,
    name            TEXT NOT NULL,
    facility        TEXT NOT NULL,
    employment      TEXT NOT NULL,
    board_certified INTEGER NOT NULL,
    valid_from      TEXT,
    valid_to        TEXT,
    source          TEXT NOT NULL,
    imported_at     INTEGER NOT NULL,
    retired_at      INTEGER
);
CREATE INDEX IF NOT EXISTS studies_by_first_received ON studies(first_received_at);
"#;

/// The audit trail (`audit`), written on its own connection.
const V1_AUDIT: &str = r#"
CREATE TABLE IF NOT EXISTS audit_log (
    seq       INTEGER PRIMARY KEY,
    at_ms     INTEGER NOT NULL,
    at        TEXT NOT NULL,
    boot_id   TEXT NOT NULL,
    mono_ns   INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    kind      TEXT NOT NULL,
    study_uid TEXT,
    accession TEXT,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit_log(at_ms);
CREATE INDEX IF NOT EXISTS audit_by_study ON audit_log(study_uid) WHERE study_uid IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_by_accession ON audit_log(accession) WHERE accession IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_by_kind ON audit_log(kind);
-- The newest sequence number and hash readgate wrote: the chain alone cannot tell that
-- its newest entries were deleted, or that entries were appended by someone else.
CREATE TABLE IF NOT EXISTS audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
-- Last sequence number each live syslog destination has been sent (at-least-once).
CREATE TABLE IF NOT EXISTS audit_cursor (
    target     TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_has_a_one_line_description() {
        assert_eq!(DESCRIPTIONS.len(), MIGRATIONS.len());
        for (i, d) in DESCRIPTIONS.iter().enumerate() {
            assert!(
                !d.trim().is_empty(),
                "migration {} has no description",
                i + 1
            );
            assert!(!d.contains('\n'), "migration {}: one line", i + 1);
        }
        assert_eq!(description(1), DESCRIPTIONS[0]);
        assert_eq!(description(LATEST), DESCRIPTIONS[MIGRATIONS.len() - 1]);
        assert_eq!(description(LATEST + 1), "unknown migration");
    }

    #[test]
    fn an_empty_database_is_created_without_migrate_but_an_older_one_is_refused() {
        let mut fresh = Conn::sqlite(rusqlite::Connection::open_in_memory().unwrap());
        assert_eq!(require_latest(&mut fresh).unwrap(), LATEST);
        assert_eq!(version(&fresh).unwrap(), LATEST);

        let mut older = Conn::sqlite(rusqlite::Connection::open_in_memory().unwrap());
        older.execute_batch("CREATE TABLE t (x)").unwrap();
        let err = require_latest(&mut older).unwrap_err();
        assert!(
            matches!(err, SchemaError::TooOld { found: 0, needed } if needed == LATEST),
            "{err:?}"
        );
        assert!(err.to_string().contains("run `readgate migrate`"), "{err}");
        assert_eq!(version(&older).unwrap(), 0, "left as it was");

        let mut reported = Vec::new();
        assert_eq!(
            migrate_reporting(&mut older, &mut |v| reported.push(v)).unwrap(),
            LATEST
        );
        assert_eq!(reported, (1..=LATEST).collect::<Vec<_>>());
        reported.clear();
        migrate_reporting(&mut older, &mut |v| reported.push(v)).unwrap();
        assert!(reported.is_empty(), "nothing left to apply");
    }
}
