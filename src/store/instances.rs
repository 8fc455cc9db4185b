//! Instances: indexing a received instance (which opens or re-opens its study), the
//! header context it carried, and a destination's refusal of one.

use super::{PendingSync, Result, Store, StoreError};
use crate::db::params;
use crate::model::{EventKind, InstanceState, StreamState, StudyState};
use std::sync::Arc;

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

/// What indexing an instance did (see `Store::index_instance`).
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

/// What indexing an instance did, and where it was queued at once (see
/// [`Store::index_received`]).
#[derive(Debug, PartialEq, Eq)]
pub struct IndexOutcome {
    pub indexed: Indexed,
    /// The destination of its streaming study, when the instance was queued for it at
    /// once (its forwarder is to be woken).
    pub streamed_to: Option<String>,
}

impl Store {
    /// Records a received instance and re-opens its study. Runs in one transaction.
    pub fn index_instance(&self, inst: &NewInstance, replace: bool) -> Result<Indexed> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let outcome = index_in(&tx, inst, replace)?;
        tx.commit()?;
        Ok(outcome.indexed)
    }

    /// As [`Store::index_instance`], for the receiver, and for a study that streams
    /// (`studies.stream = 'streaming'`) the instance is queued for its destination in
    /// the same transaction when the gate has seen its header context already (an
    /// instance of the same series, usually). An instance with header context the gate
    /// has not seen (another accession, another requested procedure) waits as
    /// `received`, and the study is marked for the study stage to decide its stream
    /// again (`stream_check`); so is a new study, at its first instance.
    ///
    /// Instances that arrive on several associations at once share one transaction
    /// (group commit, `group.rs`), each in a savepoint of its own so that one failing
    /// does not undo the others. A lone instance commits at once.
    ///
    /// For an instance whose file is durable already; see
    /// [`Store::index_received_after`] for one whose file is still being made so.
    pub fn index_received(&self, inst: NewInstance, replace: bool) -> Result<IndexOutcome> {
        self.index_received_after(inst, replace, PendingSync::done())
    }

    /// As [`Store::index_received`] while the instance's file is being made durable on
    /// another thread (`file`): the index entry is read and written meanwhile, and
    /// committed only once the file is durable. When it is not, nothing of the entry is
    /// kept and the answer is [`StoreError::NotDurable`].
    pub fn index_received_after(
        &self,
        inst: NewInstance,
        replace: bool,
        file: Arc<PendingSync>,
    ) -> Result<IndexOutcome> {
        self.received.submit(
            Received {
                inst,
                replace,
                file,
            },
            |batch| self.index_batch(batch),
            || Err(StoreError::GroupLeader),
        )
    }

    pub(super) fn index_batch(&self, batch: Vec<Received>) -> Vec<Result<IndexOutcome>> {
        let failed = |why: String| -> Vec<Result<IndexOutcome>> {
            batch
                .iter()
                .map(|_| Err(StoreError::Batch(why.clone())))
                .collect()
        };
        let mut conn = self.conn();
        let mut tx = match conn.transaction() {
            Ok(tx) => tx,
            Err(e) => return failed(e.to_string()),
        };
        // A lone instance needs no savepoint: if it fails, the whole transaction is its
        // own, and each savepoint costs PostgreSQL two round trips.
        if let [one] = batch.as_slice() {
            let outcome = index_in(&tx, &one.inst, one.replace);
            return match outcome {
                Ok(_) if !one.file.wait() => vec![Err(StoreError::NotDurable)],
                Ok(o) => match tx.commit() {
                    Ok(()) => vec![Ok(o)],
                    Err(e) => failed(e.to_string()),
                },
                Err(e) => vec![Err(e)],
            };
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        for one in &batch {
            let sp = match tx.savepoint() {
                Ok(sp) => sp,
                Err(e) => return failed(e.to_string()),
            };
            // Undone alone when it failed or its file did not become durable (dropped,
            // or by a release that failed: a statement deferred until then); kept for
            // the commit otherwise.
            let outcome = index_in(&sp, &one.inst, one.replace).and_then(|o| {
                if !one.file.wait() {
                    return Err(StoreError::NotDurable);
                }
                sp.release().map(|()| o).map_err(StoreError::from)
            });
            outcomes.push(outcome);
        }
        match tx.commit() {
            Ok(()) => outcomes,
            Err(e) => failed(e.to_string()),
        }
    }
}

/// One instance waiting in the group commit of [`Store::index_received_after`].
pub(super) struct Received {
    pub(super) inst: NewInstance,
    pub(super) replace: bool,
    /// The instance's file; the entry commits only once it is durable.
    pub(super) file: Arc<PendingSync>,
}

/// What [`index_in`] reads before it writes, in one statement (one round trip on
/// PostgreSQL): the instance already indexed under this SOP Instance UID, its study's
/// row, and whether another instance of the study carries the same header context
/// (for a streaming study: one queued or delivered).
struct Before {
    existing: Option<(String, String, i64)>,
    study: Option<StudyBefore>,
    seen: bool,
}

/// The columns of the study's row [`index_in`] needs.
struct StudyBefore {
    modalities: String,
    calling_aes: String,
    state: StudyState,
    stream: Option<StreamState>,
    destination: Option<String>,
}

/// On PostgreSQL the study's row is locked (`FOR UPDATE`) until the commit: a
/// transaction that changes the study — its stream started at another connection or
/// node, which queues the instances it can see — either waits for this one to commit
/// and then sees its instance, or commits first and this one reads what it wrote.
/// (SQLite's writers take turns: `BEGIN IMMEDIATE`.)
fn read_before(tx: &crate::db::Conn, inst: &NewInstance) -> Result<Before> {
    // The two dialects differ only in how the study's row is joined.
    macro_rules! read_before_sql {
        ($study:literal) => {
            concat!(
                "SELECT i.path, i.study_uid, i.size, s.study_uid, s.modalities, s.calling_aes, \
                 s.state, s.stream, s.destination, \
                 EXISTS (SELECT 1 FROM instances o WHERE o.study_uid = ?2 AND o.context = ?3 \
                 AND o.sop_uid != ?1 AND (COALESCE(s.stream, '') != 'streaming' \
                 OR o.state IN ('queued', 'forwarded'))) \
                 FROM (SELECT 1 AS one) AS one \
                 LEFT JOIN instances i ON i.sop_uid = ?1 ",
                $study
            )
        };
    }
    Ok(tx
        .prepare_cached(match tx.backend() {
            crate::db::Backend::Sqlite => {
                read_before_sql!("LEFT JOIN studies s ON s.study_uid = ?2")
            }
            crate::db::Backend::Postgres => read_before_sql!(
                "LEFT JOIN LATERAL (SELECT study_uid, modalities, calling_aes, state, stream, \
                 destination FROM studies WHERE study_uid = ?2 FOR UPDATE) s ON true"
            ),
        })?
        .query_row(params![inst.sop_uid, inst.study_uid, inst.context], |r| {
            let existing = match r.get::<_, Option<String>>(0)? {
                Some(path) => Some((path, r.get(1)?, r.get(2)?)),
                None => None,
            };
            let study = match r.get::<_, Option<String>>(3)? {
                Some(_) => Some(StudyBefore {
                    modalities: r.get(4)?,
                    calling_aes: r.get(5)?,
                    state: r.get(6)?,
                    stream: r.get(7)?,
                    destination: r.get(8)?,
                }),
                None => None,
            };
            Ok(Before {
                existing,
                study,
                seen: r.get(9)?,
            })
        })?)
}

/// Indexes one instance within the caller's transaction (see [`Store::index_received`]).
pub(super) fn index_in(
    tx: &crate::db::Conn,
    inst: &NewInstance,
    replace: bool,
) -> Result<IndexOutcome> {
    // The statements every instance runs are prepared once per connection. The study's
    // row is read before the instance's old copy is removed: nothing below changes the
    // columns read.
    let Before {
        existing,
        study,
        seen,
    } = read_before(tx, inst)?;
    let outcome = match &existing {
        Some(_) if !replace => {
            return Ok(IndexOutcome {
                indexed: Indexed::KeptFirst,
                streamed_to: None,
            });
        }
        Some((old_path, old_study, old_size)) => {
            tx.defer(
                "UPDATE studies SET instance_count = instance_count - 1, bytes = bytes - ?2 \
                 WHERE study_uid = ?1",
                params![old_study, old_size],
            )?;
            tx.defer("DELETE FROM instances WHERE sop_uid = ?1", [&inst.sop_uid])?;
            // Re-sent under another study (finding M7): a study left without instances
            // is gone, not held forever or counted as a prior. A forwarded or rejected
            // one stays, as history.
            if *old_study != inst.study_uid {
                let emptied = tx.execute(
                    "DELETE FROM studies WHERE study_uid = ?1 AND instance_count <= 0 \
                     AND state NOT IN ('forwarded', 'rejected')",
                    [old_study],
                )?;
                if emptied == 1 {
                    tx.defer(
                        super::INSERT_EVENT,
                        params![
                            inst.received_at,
                            old_study,
                            EventKind::Emptied,
                            format!(
                                "its last instance was re-sent under study {}",
                                inst.study_uid
                            )
                        ],
                    )?;
                }
            }
            Indexed::Replaced {
                old_path: old_path.clone(),
            }
        }
        None => Indexed::New,
    };
    // The writes below need no answer: on PostgreSQL they go to the server together,
    // with the commit (`defer`).
    tx.defer(
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
            InstanceState::Received,
            inst.context
        ],
    )?;
    let mut streamed_to = None;
    let (study, seen) = match study {
        Some(study) => (Some(study), seen),
        None => {
            // Another node may create the study at the same moment (its first instances
            // sent to two nodes): PostgreSQL makes this insert wait for that node's
            // commit and then do nothing, and the instance joins the study it made.
            let created = tx.execute(
                "INSERT INTO studies (study_uid, state, accession, patient_id, modalities, \
                 calling_aes, instance_count, bytes, first_received_at, last_received_at, updated_at, \
                 stream_check) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?8, ?8, 1) \
                 ON CONFLICT (study_uid) DO NOTHING",
                params![
                    inst.study_uid,
                    StudyState::Receiving,
                    inst.accession,
                    inst.patient_id,
                    inst.modality.clone().unwrap_or_default(),
                    inst.calling_ae,
                    inst.size as i64,
                    inst.received_at
                ],
            )?;
            if created == 1 {
                tx.defer(
                    super::INSERT_EVENT,
                    params![
                        inst.received_at,
                        inst.study_uid,
                        EventKind::Received,
                        format!("first instance from {}", inst.calling_ae)
                    ],
                )?;
                (None, seen)
            } else {
                let again = read_before(tx, inst)?;
                match again.study {
                    Some(study) => (Some(study), again.seen),
                    // Made and removed again between the two statements: the instance
                    // is refused (a transient failure; the modality sends it again).
                    None => return Err(StoreError::UnknownStudy(inst.study_uid.clone())),
                }
            }
        }
    };
    match study {
        None => {}
        Some(StudyBefore {
            modalities,
            calling_aes,
            state,
            stream,
            destination,
        }) => {
            let modalities = add_to_set(&modalities, inst.modality.as_deref().unwrap_or(""));
            let calling_aes = add_to_set(&calling_aes, &inst.calling_ae);
            // A new instance re-opens a study whatever its state: it must be decided
            // and forwarded too, never dropped. A failed study gets a fresh start.
            tx.defer(
                "UPDATE studies SET state = ?2, instance_count = instance_count + 1, \
                 bytes = bytes + ?3, last_received_at = ?4, updated_at = ?4, completed_by = NULL, \
                 modalities = ?5, calling_aes = ?6, \
                 accession = COALESCE(accession, ?7), patient_id = COALESCE(patient_id, ?8), \
                 attempts = CASE WHEN state = 'failed' THEN 0 ELSE attempts END, \
                 next_attempt_at = CASE WHEN state = 'failed' THEN 0 ELSE next_attempt_at END \
                 WHERE study_uid = ?1",
                params![
                    inst.study_uid,
                    StudyState::Receiving,
                    inst.size as i64,
                    inst.received_at,
                    modalities,
                    calling_aes,
                    inst.accession,
                    inst.patient_id
                ],
            )?;
            if state != StudyState::Receiving {
                tx.defer(
                    "INSERT INTO events (at, study_uid, kind, detail) \
                     VALUES (?1, ?2, ?3, 'new instance after completion')",
                    params![inst.received_at, inst.study_uid, EventKind::Reopened],
                )?;
            }
            // Streaming: queued at once when the gate has seen its header context
            // (in an instance queued or delivered under the stream's decision).
            // Otherwise any header context the study has not carried yet is new
            // context for the stream decision.
            let streaming = stream == Some(StreamState::Streaming);
            if stream != Some(StreamState::Stopped) {
                let open = !matches!(state, StudyState::Held | StudyState::Rejected);
                match &destination {
                    Some(dest) if streaming && seen && open => {
                        tx.defer(
                            "UPDATE instances SET state = 'queued' WHERE sop_uid = ?1",
                            [&inst.sop_uid],
                        )?;
                        streamed_to = Some(dest.clone());
                    }
                    _ if !seen || (streaming && !open) => {
                        tx.defer(
                            "UPDATE studies SET stream_check = 1 WHERE study_uid = ?1",
                            [&inst.study_uid],
                        )?;
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(IndexOutcome {
        indexed: outcome,
        streamed_to,
    })
}

impl Store {
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

    /// Every spool path the index refers to (for removing orphans at start-up).
    pub fn all_paths(&self) -> Result<std::collections::HashSet<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT path FROM instances")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<crate::db::Result<_>>()?)
    }
}

pub(super) fn split_set(s: &str) -> Vec<String> {
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
