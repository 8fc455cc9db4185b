//! The SQLite store: the index of spooled instances, the studies they form, the decision
//! taken for each study and the forwarding queue.
//!
//! WAL mode with `synchronous = NORMAL`: a commit survives a crash of readgate (it is in
//! the WAL, in the OS cache) but not necessarily of the OS. That is enough because the
//! spool, fsync'd before every acknowledgement, is the record of what was received: at
//! start-up any spooled file the index lost is indexed again (`receive::recover`). What an
//! OS crash can cost is a decision or a delivery mark, i.e. a re-decision or a re-send.

mod hl7;
mod ledger;

pub use hl7::{ContextKeys, IncomingMessage, MessageRef, Recorded, StoredOrder, StoredReport};
pub use ledger::{
    LedgerReport, LedgerStudy, LedgerTimelineEvent, NewReadEvent, ReadEventRow, ReadTarget,
};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("unknown study {0}")]
    UnknownStudy(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Study states, as listed by `readgate studies` and stored in `studies.state`.
pub mod state {
    pub const RECEIVING: &str = "receiving";
    pub const HELD: &str = "held";
    pub const QUEUED: &str = "queued";
    pub const FORWARDED: &str = "forwarded";
    pub const FAILED: &str = "failed";
    /// An operator decided the study must not be sent (with a written reason).
    pub const REJECTED: &str = "rejected";
    pub const ALL: [&str; 6] = [RECEIVING, HELD, QUEUED, FORWARDED, FAILED, REJECTED];
}

/// Instance states: received (waiting for its study's decision), queued, forwarded.
mod instance_state {
    pub const RECEIVED: &str = "received";
    pub const FORWARDED: &str = "forwarded";
}

const SCHEMA: &str = r#"
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

pub struct Store {
    conn: Mutex<Connection>,
    /// HL7 messages are committed with `synchronous = FULL` (see `hl7.rs`).
    hl7: Mutex<Connection>,
    path: PathBuf,
}

/// An instance that has just been written, fsync'd and moved into the spool.
#[derive(Debug, Clone)]
pub struct NewInstance {
    pub sop_uid: String,
    pub study_uid: String,
    pub series_uid: Option<String>,
    pub sop_class_uid: String,
    pub transfer_syntax: String,
    pub modality: Option<String>,
    pub accession: Option<String>,
    pub patient_id: Option<String>,
    /// Relative to the spool directory.
    pub path: String,
    pub size: u64,
    pub calling_ae: String,
    pub received_at: i64,
    /// The clinical context in the header, decoded: JSON object keyed by tag.
    pub context: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Indexed {
    New,
    /// A known SOP Instance UID replaced; the old file (relative path) can be deleted.
    Replaced {
        old_path: String,
    },
    /// A known SOP Instance UID kept as it was (keep-first policy); the new file is unused.
    KeptFirst,
}

/// What the decision stage sees of a study.
#[derive(Debug, Clone, Serialize)]
pub struct StudySnapshot {
    pub study_uid: String,
    pub accession: Option<String>,
    pub modalities: Vec<String>,
    pub calling_aes: Vec<String>,
    pub instance_count: i64,
    pub last_received_at: i64,
}

/// A decision to record (see `Store::record_decision`).
#[derive(Debug, Clone, Default)]
pub struct DecisionRecord {
    pub forward: bool,
    pub destination: Option<String>,
    pub facility: Option<String>,
    /// PASS, FORWARDED_INCOMPLETE or HELD.
    pub verdict: String,
    pub reasons_json: Option<String>,
    pub evaluation_json: Option<String>,
    pub context_json: Option<String>,
    /// For the study's timeline.
    pub detail: String,
}

/// What was decided for a study, as forwarding and tagging need it.
#[derive(Debug, Clone, Default)]
pub struct RecordedDecision {
    pub verdict: Option<String>,
    pub reasons_json: Option<String>,
    pub evaluation_json: Option<String>,
    pub context_json: Option<String>,
    pub evaluated_at: Option<i64>,
    pub facility: Option<String>,
    pub event_id: Option<i64>,
    /// The audit trail entry of the decision (tags cite it).
    pub audit_seq: Option<i64>,
    pub accession: Option<String>,
    pub destination: Option<String>,
}

/// One instance waiting to be sent to a destination.
#[derive(Debug, Clone)]
pub struct QueuedInstance {
    pub sop_uid: String,
    pub study_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax: String,
    pub path: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StudyRow {
    pub study_uid: String,
    pub state: String,
    pub accession: Option<String>,
    pub modalities: String,
    pub calling_aes: String,
    pub instance_count: i64,
    pub bytes: i64,
    pub instances_forwarded: i64,
    pub first_received_at: i64,
    pub last_received_at: i64,
    pub destination: Option<String>,
    pub facility: Option<String>,
    pub reasons: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub forwarded_at: Option<i64>,
    pub last_error: Option<String>,
    pub updated_at: i64,
}

/// Another study of the same patient (a prior, or a later one).
#[derive(Debug, Clone)]
pub struct OtherStudy {
    pub study_uid: String,
    pub accession: Option<String>,
    pub first_received_at: i64,
    /// DICOM Study Date / Time (DA, TM) from its images.
    pub study_date: Option<String>,
    pub study_time: Option<String>,
}

/// How a study is found from HL7: its UID, accession and patient.
#[derive(Debug, Clone, Serialize)]
pub struct StudyKeys {
    pub study_uid: String,
    pub accession: Option<String>,
    pub patient_id: Option<String>,
    pub state: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceRow {
    pub sop_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax: String,
    pub state: String,
    pub path: String,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at: i64,
    pub study_uid: Option<String>,
    pub kind: String,
    pub detail: String,
}

/// Milliseconds since the Unix epoch: all times in the store use this. Lives in
/// [`crate::time`]; re-exported here while callers move.
pub use crate::time::now_ms;

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
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
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        conn.execute_batch(hl7::SCHEMA).map_err(open_err)?;
        conn.execute_batch(ledger::SCHEMA).map_err(open_err)?;
        let hl7 = hl7::open_connection(path).map_err(open_err)?;
        Ok(Store {
            conn: Mutex::new(conn),
            hl7: Mutex::new(hl7),
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing database for reading only (the CLI listing commands).
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let hl7 = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        Ok(Store {
            conn: Mutex::new(conn),
            hl7: Mutex::new(hl7),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-done transaction behind
        // (rusqlite rolls back on drop), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hl7_conn(&self) -> MutexGuard<'_, Connection> {
        self.hl7.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a received instance and re-opens its study. Runs in one transaction.
    pub fn index_instance(&self, inst: &NewInstance, replace: bool) -> Result<Indexed> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let existing: Option<(String, String, i64)> = tx
            .query_row(
                "SELECT path, study_uid, size FROM instances WHERE sop_uid = ?1",
                [&inst.sop_uid],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let outcome = match &existing {
            Some(_) if !replace => {
                tx.commit()?;
                return Ok(Indexed::KeptFirst);
            }
            Some((old_path, old_study, old_size)) => {
                tx.execute(
                    "UPDATE studies SET instance_count = instance_count - 1, bytes = bytes - ?2 \
                     WHERE study_uid = ?1",
                    params![old_study, old_size],
                )?;
                tx.execute("DELETE FROM instances WHERE sop_uid = ?1", [&inst.sop_uid])?;
                Indexed::Replaced {
                    old_path: old_path.clone(),
                }
            }
            None => Indexed::New,
        };
        tx.execute(
            "INSERT INTO instances (sop_uid, study_uid, series_uid, sop_class_uid, transfer_syntax, \
             modality, path, size, calling_ae, received_at, state, context) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                inst.sop_uid,
                inst.study_uid,
                inst.series_uid,
                inst.sop_class_uid,
                inst.transfer_syntax,
                inst.modality,
                inst.path,
                inst.size as i64,
                inst.calling_ae,
                inst.received_at,
                instance_state::RECEIVED,
                inst.context
            ],
        )?;
        let study: Option<(String, String)> = tx
            .query_row(
                "SELECT modalities, calling_aes FROM studies WHERE study_uid = ?1",
                [&inst.study_uid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match study {
            None => {
                tx.execute(
                    "INSERT INTO studies (study_uid, state, accession, patient_id, modalities, \
                     calling_aes, instance_count, bytes, first_received_at, last_received_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?8, ?8)",
                    params![
                        inst.study_uid,
                        state::RECEIVING,
                        inst.accession,
                        inst.patient_id,
                        inst.modality.clone().unwrap_or_default(),
                        inst.calling_ae,
                        inst.size as i64,
                        inst.received_at
                    ],
                )?;
                tx.execute(
                    "INSERT INTO events (at, study_uid, kind, detail) VALUES (?1, ?2, 'received', ?3)",
                    params![
                        inst.received_at,
                        inst.study_uid,
                        format!("first instance from {}", inst.calling_ae)
                    ],
                )?;
            }
            Some((modalities, calling_aes)) => {
                let modalities = add_to_set(&modalities, inst.modality.as_deref().unwrap_or(""));
                let calling_aes = add_to_set(&calling_aes, &inst.calling_ae);
                // A new instance re-opens a study whatever its state: it must be decided
                // and forwarded too, never dropped. A failed study gets a fresh start.
                let reopened = tx.execute(
                    "UPDATE studies SET state = ?2, instance_count = instance_count + 1, \
                     bytes = bytes + ?3, last_received_at = ?4, updated_at = ?4, \
                     modalities = ?5, calling_aes = ?6, \
                     accession = COALESCE(accession, ?7), patient_id = COALESCE(patient_id, ?8), \
                     attempts = CASE WHEN state = 'failed' THEN 0 ELSE attempts END, \
                     next_attempt_at = CASE WHEN state = 'failed' THEN 0 ELSE next_attempt_at END \
                     WHERE study_uid = ?1 AND state != ?2",
                    params![
                        inst.study_uid,
                        state::RECEIVING,
                        inst.size as i64,
                        inst.received_at,
                        modalities,
                        calling_aes,
                        inst.accession,
                        inst.patient_id
                    ],
                )?;
                if reopened == 1 {
                    tx.execute(
                        "INSERT INTO events (at, study_uid, kind, detail) VALUES (?1, ?2, 'reopened', 'new instance after completion')",
                        params![inst.received_at, inst.study_uid],
                    )?;
                } else {
                    tx.execute(
                        "UPDATE studies SET instance_count = instance_count + 1, bytes = bytes + ?2, \
                         last_received_at = ?3, updated_at = ?3, modalities = ?4, calling_aes = ?5, \
                         accession = COALESCE(accession, ?6), patient_id = COALESCE(patient_id, ?7) \
                         WHERE study_uid = ?1",
                        params![
                            inst.study_uid,
                            inst.size as i64,
                            inst.received_at,
                            modalities,
                            calling_aes,
                            inst.accession,
                            inst.patient_id
                        ],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(outcome)
    }

    /// Studies whose last instance arrived at or before `cutoff` and are still receiving.
    pub fn studies_stable_since(&self, cutoff: i64) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT study_uid FROM studies WHERE state = 'receiving' AND last_received_at <= ?1 \
             ORDER BY last_received_at",
        )?;
        let rows = stmt.query_map([cutoff], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    /// The earliest `last_received_at` of a receiving study, to sleep until it is stable.
    pub fn oldest_receiving(&self) -> Result<Option<i64>> {
        let conn = self.conn();
        Ok(conn.query_row(
            "SELECT MIN(last_received_at) FROM studies WHERE state = 'receiving'",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn snapshot(&self, study_uid: &str) -> Result<StudySnapshot> {
        let conn = self.conn();
        conn.query_row(
            "SELECT study_uid, accession, modalities, calling_aes, instance_count, last_received_at \
             FROM studies WHERE study_uid = ?1",
            [study_uid],
            |r| {
                let modalities: String = r.get(2)?;
                let aes: String = r.get(3)?;
                Ok(StudySnapshot {
                    study_uid: r.get(0)?,
                    accession: r.get(1)?,
                    modalities: split_set(&modalities),
                    calling_aes: split_set(&aes),
                    instance_count: r.get(4)?,
                    last_received_at: r.get(5)?,
                })
            },
        )
        .optional()?
        .ok_or_else(|| StoreError::UnknownStudy(study_uid.to_string()))
    }

    /// Records the decision taken on `snapshot`: queued for a destination (its undecided
    /// instances with it) or held. Returns the decision's event id, or None (and changes
    /// nothing) when an instance arrived after `snapshot` was taken: the study is then
    /// still receiving and will be decided again once stable.
    pub fn record_decision(
        &self,
        snapshot: &StudySnapshot,
        d: &DecisionRecord,
        now: i64,
    ) -> Result<Option<i64>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let state = if d.forward {
            state::QUEUED
        } else {
            state::HELD
        };
        let changed = tx.execute(
            "UPDATE studies SET state = ?2, destination = ?3, facility = ?4, reasons = ?5, verdict = ?6, \
             evaluation = ?7, context = ?8, evaluated_at = ?9, completed_at = ?9, updated_at = ?9 \
             WHERE study_uid = ?1 AND state = 'receiving' AND last_received_at = ?10 AND instance_count = ?11",
            params![
                snapshot.study_uid,
                state,
                d.destination,
                d.facility,
                d.reasons_json,
                d.verdict,
                d.evaluation_json,
                d.context_json,
                now,
                snapshot.last_received_at,
                snapshot.instance_count
            ],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        if d.forward {
            tx.execute(
                "UPDATE instances SET state = 'queued' WHERE study_uid = ?1 AND state = 'received'",
                [&snapshot.study_uid],
            )?;
        }
        tx.execute(
            "INSERT INTO events (at, study_uid, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            params![now, snapshot.study_uid, state, d.detail],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Some(id))
    }

    /// An operator releases a held study anyway, with a written justification.
    pub fn release_override(
        &self,
        study_uid: &str,
        by: &str,
        justification: &str,
        now: i64,
    ) -> Result<Option<i64>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE studies SET state = 'queued', verdict = 'RELEASED_OVERRIDE', override_by = ?2, \
             override_reason = ?3, updated_at = ?4, attempts = 0, next_attempt_at = 0 \
             WHERE study_uid = ?1 AND state = 'held' AND destination IS NOT NULL",
            params![study_uid, by, justification, now],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        tx.execute(
            "UPDATE instances SET state = 'queued' WHERE study_uid = ?1 AND state = 'received'",
            [study_uid],
        )?;
        tx.execute(
            "INSERT INTO events (at, study_uid, kind, detail) VALUES (?1, ?2, 'released-override', ?3)",
            params![now, study_uid, format!("by {by}: {justification}")],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Some(id))
    }

    /// An operator rejects a held (or failed) study: it will not be sent. Returns the
    /// spool paths of its instances, for deletion, or None when the study is not held.
    pub fn reject_study(
        &self,
        study_uid: &str,
        by: &str,
        reason: &str,
        now: i64,
    ) -> Result<Option<Vec<String>>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE studies SET state = 'rejected', override_by = ?2, override_reason = ?3, updated_at = ?4 \
             WHERE study_uid = ?1 AND state IN ('held', 'failed')",
            params![study_uid, by, reason, now],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        let paths = {
            let mut stmt = tx.prepare(
                "SELECT path FROM instances WHERE study_uid = ?1 AND state != 'forwarded'",
            )?;
            let rows = stmt.query_map([study_uid], |r| r.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        tx.execute(
            "UPDATE instances SET state = 'rejected' WHERE study_uid = ?1 AND state != 'forwarded'",
            [study_uid],
        )?;
        tx.execute(
            "INSERT INTO events (at, study_uid, kind, detail) VALUES (?1, ?2, 'rejected', ?3)",
            params![now, study_uid, format!("by {by}: {reason}")],
        )?;
        tx.commit()?;
        Ok(Some(paths))
    }

    /// Links the study's current decision to its audit trail entry (tags cite it).
    pub fn set_audit_seq(&self, study_uid: &str, seq: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE studies SET audit_seq = ?2 WHERE study_uid = ?1",
            params![study_uid, seq],
        )?;
        Ok(())
    }

    /// The decision as recorded for forwarding and tagging.
    pub fn decision_of(&self, study_uid: &str) -> Result<Option<RecordedDecision>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT verdict, reasons, evaluation, context, evaluated_at, facility, \
                 (SELECT MAX(id) FROM events WHERE study_uid = ?1 AND kind IN ('queued', 'released-override')), \
                 audit_seq, accession, destination FROM studies WHERE study_uid = ?1",
                [study_uid],
                |r| {
                    Ok(RecordedDecision {
                        verdict: r.get(0)?,
                        reasons_json: r.get(1)?,
                        evaluation_json: r.get(2)?,
                        context_json: r.get(3)?,
                        evaluated_at: r.get(4)?,
                        facility: r.get(5)?,
                        event_id: r.get(6)?,
                        audit_seq: r.get(7)?,
                        accession: r.get(8)?,
                        destination: r.get(9)?,
                    })
                },
            )
            .optional()?)
    }

    /// Instances due for `destination` now, oldest first.
    pub fn queued_for(
        &self,
        destination: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<QueuedInstance>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT i.sop_uid, i.study_uid, i.sop_class_uid, i.transfer_syntax, i.path \
             FROM instances i JOIN studies s ON s.study_uid = i.study_uid \
             WHERE i.state = 'queued' AND s.destination = ?1 AND s.state != 'failed' \
             AND s.next_attempt_at <= ?2 \
             ORDER BY i.received_at LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![destination, now, limit as i64], |r| {
            Ok(QueuedInstance {
                sop_uid: r.get(0)?,
                study_uid: r.get(1)?,
                sop_class_uid: r.get(2)?,
                transfer_syntax: r.get(3)?,
                path: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// When the next retry for `destination` is due (None: nothing queued).
    pub fn next_attempt_for(&self, destination: &str) -> Result<Option<i64>> {
        let conn = self.conn();
        Ok(conn.query_row(
            "SELECT MIN(s.next_attempt_at) FROM studies s WHERE s.destination = ?1 \
             AND s.state != 'failed' AND EXISTS (SELECT 1 FROM instances i \
             WHERE i.study_uid = s.study_uid AND i.state = 'queued')",
            [destination],
            |r| r.get(0),
        )?)
    }

    /// Marks an instance delivered; completes its study when nothing of it is left queued.
    /// Returns whether the study just became forwarded.
    pub fn mark_forwarded(&self, inst: &QueuedInstance, status: u16, now: i64) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE instances SET state = ?2, forwarded_at = ?3, last_status = ?4, last_error = NULL \
             WHERE sop_uid = ?1 AND state = 'queued'",
            params![inst.sop_uid, instance_state::FORWARDED, now, status as i64],
        )?;
        let done = tx.execute(
            "UPDATE studies SET state = 'forwarded', forwarded_at = ?2, updated_at = ?2, \
             attempts = 0, last_error = NULL \
             WHERE study_uid = ?1 AND state = 'queued' AND NOT EXISTS \
             (SELECT 1 FROM instances WHERE study_uid = ?1 AND state IN ('queued', 'received'))",
            params![inst.study_uid, now],
        )?;
        if done == 1 {
            let (dest, count): (Option<String>, i64) = tx.query_row(
                "SELECT destination, instance_count FROM studies WHERE study_uid = ?1",
                [&inst.study_uid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            tx.execute(
                "INSERT INTO events (at, study_uid, kind, detail) VALUES (?1, ?2, 'forwarded', ?3)",
                params![
                    now,
                    inst.study_uid,
                    format!("{count} instance(s) to {}", dest.unwrap_or_default())
                ],
            )?;
        }
        tx.commit()?;
        Ok(done == 1)
    }

    /// Records a destination's refusal of one instance (its status and error comment).
    pub fn record_instance_failure(
        &self,
        sop_uid: &str,
        status: Option<u16>,
        error: &str,
    ) -> Result<()> {
        self.conn().execute(
            "UPDATE instances SET last_status = ?2, last_error = ?3 WHERE sop_uid = ?1",
            params![sop_uid, status.map(|s| s as i64), error],
        )?;
        Ok(())
    }

    /// A failed attempt for these studies: back off, or mark failed after `max_attempts`.
    /// Returns the studies that are now failed.
    pub fn record_attempt_failure(
        &self,
        study_uids: &[String],
        error: &str,
        now: i64,
        backoff: &dyn Fn(u32) -> i64,
        max_attempts: u32,
    ) -> Result<Vec<String>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut failed = Vec::new();
        for uid in study_uids {
            let attempts: Option<i64> = tx
                .query_row(
                    "SELECT attempts FROM studies WHERE study_uid = ?1",
                    [uid],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(attempts) = attempts else { continue };
            let attempts = attempts as u32 + 1;
            if attempts >= max_attempts {
                tx.execute(
                    "UPDATE studies SET state = 'failed', attempts = ?2, last_error = ?3, updated_at = ?4 \
                     WHERE study_uid = ?1 AND state IN ('queued', 'receiving')",
                    params![uid, attempts, error, now],
                )?;
                tx.execute(
                    "INSERT INTO events (at, study_uid, kind, detail) VALUES (?1, ?2, 'failed', ?3)",
                    params![now, uid, format!("gave up after {attempts} attempts: {error}")],
                )?;
                failed.push(uid.clone());
            } else {
                tx.execute(
                    "UPDATE studies SET attempts = ?2, next_attempt_at = ?3, last_error = ?4, updated_at = ?5 \
                     WHERE study_uid = ?1",
                    params![uid, attempts, now + backoff(attempts), error, now],
                )?;
            }
        }
        tx.commit()?;
        Ok(failed)
    }

    /// Puts a failed study back in the queue (operator retry).
    pub fn retry_study(&self, study_uid: &str, now: i64) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE studies SET state = 'queued', attempts = 0, next_attempt_at = 0, updated_at = ?2 \
             WHERE study_uid = ?1 AND state = 'failed'",
            params![study_uid, now],
        )?;
        if n == 1 {
            tx.execute(
                "INSERT INTO events (at, study_uid, kind, detail) VALUES (?1, ?2, 'retry', 'failed study re-queued')",
                params![now, study_uid],
            )?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// One study's row, as [`Store::list_studies`] gives it.
    pub fn study_row(&self, study_uid: &str) -> Result<Option<StudyRow>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached(&format!("{STUDY_ROW_SELECT} WHERE s.study_uid = ?1"))?;
        Ok(stmt.query_row([study_uid], study_row).optional()?)
    }

    pub fn list_studies(&self, state: Option<&str>, limit: usize) -> Result<Vec<StudyRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{STUDY_ROW_SELECT} WHERE (?1 IS NULL OR s.state = ?1) ORDER BY s.last_received_at DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(
            params![state, limit.min(i64::MAX as usize) as i64],
            study_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Per destination: studies queued, instances waiting, last forwarding (cheap SQL,
    /// for the queue view and metrics).
    pub fn destination_stats(&self) -> Result<Vec<DestinationStats>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT s.destination, SUM(s.state = 'queued'), \
             (SELECT COUNT(*) FROM instances i JOIN studies t ON t.study_uid = i.study_uid \
              WHERE t.destination = s.destination AND t.state = 'queued' AND i.state = 'queued'), \
             MAX(s.forwarded_at) FROM studies s WHERE s.destination IS NOT NULL GROUP BY s.destination",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The clinical context found in the study's image headers (one map per distinct
    /// header content; usually one per study or per series).
    pub fn dicom_contexts(
        &self,
        study_uid: &str,
    ) -> Result<Vec<std::collections::BTreeMap<String, String>>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT DISTINCT context FROM instances WHERE study_uid = ?1 LIMIT 64",
        )?;
        let rows = stmt.query_map([study_uid], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            if let Ok(map) = serde_json::from_str(&row?) {
                out.push(map);
            }
        }
        Ok(out)
    }

    /// The patient's other studies known to readgate.
    pub fn other_studies_of(
        &self,
        patient_ids: &[String],
        except: &str,
    ) -> Result<Vec<OtherStudy>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT s.study_uid, s.accession, s.first_received_at, \
             (SELECT context FROM instances i WHERE i.study_uid = s.study_uid LIMIT 1) \
             FROM studies s WHERE s.patient_id = ?1 AND s.study_uid != ?2",
        )?;
        let mut out = Vec::new();
        for id in patient_ids {
            let rows = stmt.query_map(params![id, except], |r| {
                let context: Option<String> = r.get(3)?;
                let header: std::collections::BTreeMap<String, String> = context
                    .and_then(|c| serde_json::from_str(&c).ok())
                    .unwrap_or_default();
                Ok(OtherStudy {
                    study_uid: r.get(0)?,
                    accession: r.get(1)?,
                    first_received_at: r.get(2)?,
                    study_date: header.get("0008,0020").cloned(),
                    study_time: header.get("0008,0030").cloned(),
                })
            })?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }

    /// A study by Study Instance UID or accession number.
    pub fn find_study(&self, key: &str) -> Result<Option<StudyKeys>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT study_uid, accession, patient_id, state FROM studies \
                 WHERE study_uid = ?1 OR accession = ?1 ORDER BY last_received_at DESC LIMIT 1",
                [key],
                |r| {
                    Ok(StudyKeys {
                        study_uid: r.get(0)?,
                        accession: r.get(1)?,
                        patient_id: r.get(2)?,
                        state: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn instances_of(&self, study_uid: &str) -> Result<Vec<InstanceRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT sop_uid, sop_class_uid, transfer_syntax, state, path, last_status, last_error \
             FROM instances WHERE study_uid = ?1 ORDER BY received_at",
        )?;
        let rows = stmt.query_map([study_uid], |r| {
            Ok(InstanceRow {
                sop_uid: r.get(0)?,
                sop_class_uid: r.get(1)?,
                transfer_syntax: r.get(2)?,
                state: r.get(3)?,
                path: r.get(4)?,
                last_status: r.get(5)?,
                last_error: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub fn events_of(&self, study_uid: &str) -> Result<Vec<Event>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT at, study_uid, kind, detail FROM events WHERE study_uid = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([study_uid], |r| {
            Ok(Event {
                at: r.get(0)?,
                study_uid: r.get(1)?,
                kind: r.get(2)?,
                detail: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Every spool path the index refers to (for removing orphans at start-up).
    pub fn all_paths(&self) -> Result<std::collections::HashSet<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT path FROM instances")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn count_by_state(&self) -> Result<Vec<(String, i64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT state, COUNT(*) FROM studies GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

/// (destination, studies queued, instances waiting, last forwarded at).
pub type DestinationStats = (String, i64, i64, Option<i64>);

const STUDY_ROW_SELECT: &str = "SELECT s.study_uid, s.state, s.accession, s.modalities, s.calling_aes, s.instance_count, \
     s.bytes, (SELECT COUNT(*) FROM instances i WHERE i.study_uid = s.study_uid AND i.state = 'forwarded'), \
     s.first_received_at, s.last_received_at, s.destination, s.facility, s.reasons, s.attempts, \
     s.next_attempt_at, s.forwarded_at, s.last_error, s.updated_at \
     FROM studies s";

fn study_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StudyRow> {
    Ok(StudyRow {
        study_uid: r.get(0)?,
        state: r.get(1)?,
        accession: r.get(2)?,
        modalities: r.get(3)?,
        calling_aes: r.get(4)?,
        instance_count: r.get(5)?,
        bytes: r.get(6)?,
        instances_forwarded: r.get(7)?,
        first_received_at: r.get(8)?,
        last_received_at: r.get(9)?,
        destination: r.get(10)?,
        facility: r.get(11)?,
        reasons: r.get(12)?,
        attempts: r.get(13)?,
        next_attempt_at: r.get(14)?,
        forwarded_at: r.get(15)?,
        last_error: r.get(16)?,
        updated_at: r.get(17)?,
    })
}

fn split_set(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn add_to_set(set: &str, item: &str) -> String {
    let item = item.trim();
    if item.is_empty() || set.split_whitespace().any(|m| m == item) {
        return set.to_string();
    }
    if set.is_empty() {
        item.to_string()
    } else {
        format!("{set} {item}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(store: &Store, snap: &StudySnapshot, now: i64) -> bool {
        let d = DecisionRecord {
            forward: true,
            destination: Some("rc1".into()),
            facility: Some("RC1".into()),
            verdict: "PASS".into(),
            ..Default::default()
        };
        store.record_decision(snap, &d, now).unwrap().is_some()
    }

    fn instance(sop: &str, study: &str, at: i64) -> NewInstance {
        NewInstance {
            sop_uid: sop.into(),
            study_uid: study.into(),
            series_uid: Some("1.9".into()),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            modality: Some("CT".into()),
            accession: Some("A1".into()),
            patient_id: Some("P1".into()),
            path: format!("objects/{sop}.dcm"),
            size: 100,
            calling_ae: "CT01".into(),
            received_at: at,
            context: "{}".into(),
        }
    }

    #[test]
    fn study_lifecycle_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        assert_eq!(
            store.index_instance(&instance("1", "S", 10), true).unwrap(),
            Indexed::New
        );
        store.index_instance(&instance("2", "S", 20), true).unwrap();
        assert_eq!(
            store.studies_stable_since(15).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            store.studies_stable_since(20).unwrap(),
            vec!["S".to_string()]
        );
        let snap = store.snapshot("S").unwrap();
        assert_eq!(snap.instance_count, 2);
        assert!(queue(&store, &snap, 30));
        // a second decision on the same snapshot is refused: the study is no longer receiving
        assert!(!queue(&store, &snap, 30));
        let q = store.queued_for("rc1", 30, 10).unwrap();
        assert_eq!(q.len(), 2);
        assert!(!store.mark_forwarded(&q[0], 0, 40).unwrap());
        // a late instance re-opens the study while one is still queued
        store.index_instance(&instance("3", "S", 45), true).unwrap();
        assert!(!store.mark_forwarded(&q[1], 0, 50).unwrap());
        let rows = store.list_studies(Some(state::RECEIVING), 10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].instances_forwarded, 2);
        let snap = store.snapshot("S").unwrap();
        assert!(queue(&store, &snap, 60));
        let q = store.queued_for("rc1", 60, 10).unwrap();
        assert_eq!(q.len(), 1);
        assert!(store.mark_forwarded(&q[0], 0, 70).unwrap());
        assert_eq!(
            store
                .list_studies(Some(state::FORWARDED), 10)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn stale_snapshot_is_not_decided() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        store.index_instance(&instance("1", "S", 10), true).unwrap();
        let snap = store.snapshot("S").unwrap();
        store.index_instance(&instance("2", "S", 11), true).unwrap();
        assert!(!queue(&store, &snap, 12));
        assert!(store
            .record_decision(&snap, &DecisionRecord::default(), 12)
            .unwrap()
            .is_none());
    }

    #[test]
    fn duplicates_follow_policy() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        store.index_instance(&instance("1", "S", 10), true).unwrap();
        assert_eq!(
            store
                .index_instance(&instance("1", "S", 11), false)
                .unwrap(),
            Indexed::KeptFirst
        );
        let mut again = instance("1", "S", 12);
        again.path = "objects/new.dcm".into();
        assert_eq!(
            store.index_instance(&again, true).unwrap(),
            Indexed::Replaced {
                old_path: "objects/1.dcm".into()
            }
        );
        let rows = store.list_studies(None, 10).unwrap();
        assert_eq!(rows[0].instance_count, 1);
        assert_eq!(rows[0].bytes, 100);
    }

    #[test]
    fn retries_back_off_then_fail() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        store.index_instance(&instance("1", "S", 10), true).unwrap();
        let snap = store.snapshot("S").unwrap();
        queue(&store, &snap, 20);
        let backoff = |n: u32| 1000 * n as i64;
        let failed = store
            .record_attempt_failure(&["S".into()], "refused", 30, &backoff, 2)
            .unwrap();
        assert!(failed.is_empty());
        assert!(store.queued_for("rc1", 30, 10).unwrap().is_empty());
        assert_eq!(store.next_attempt_for("rc1").unwrap(), Some(1030));
        let failed = store
            .record_attempt_failure(&["S".into()], "refused", 2000, &backoff, 2)
            .unwrap();
        assert_eq!(failed, vec!["S".to_string()]);
        assert!(store.queued_for("rc1", 99_999, 10).unwrap().is_empty());
        assert!(store.retry_study("S", 3000).unwrap());
        assert_eq!(store.queued_for("rc1", 3000, 10).unwrap().len(), 1);
    }
}
