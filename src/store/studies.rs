//! Studies: when one is stable, what the decision stage sees of it, recording the
//! decision, an operator's release or rejection, and the patient's other studies.

use super::instances::split_set;
use super::{Result, Store, StoreError};
use crate::db::{params, Backend, OptionalExtension};
use crate::model::{CompletionSignal, Disposition, EventKind, StudyState};
use serde::Serialize;

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
    /// Pass, ForwardedIncomplete or Held.
    pub verdict: Disposition,
    pub reasons_json: Option<String>,
    pub evaluation_json: Option<String>,
    pub context_json: Option<String>,
    /// For the study's timeline.
    pub detail: String,
}

/// What was decided for a study, as forwarding and tagging need it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct RecordedDecision {
    pub verdict: Option<Disposition>,
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

/// Another study of the same patient (a prior, or a later one).
#[derive(Debug, Clone)]
pub struct OtherStudy {
    pub study_uid: String,
    pub accession: Option<String>,
    pub first_received_at: i64,
    /// DICOM Study Date / Time (DA, TM) from its images.
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub modalities: Vec<String>,
}

/// SQL: study `s`'s modality reported a step COMPLETED, no step of it is still IN
/// PROGRESS, and every instance its completed steps list is in.
macro_rules! step_completed {
    () => {
        "(EXISTS (SELECT 1 FROM mpps m WHERE m.study_uid = s.study_uid \
           AND m.status = 'COMPLETED') \
         AND NOT EXISTS (SELECT 1 FROM mpps m WHERE m.study_uid = s.study_uid \
           AND m.status = 'IN PROGRESS') \
         AND NOT EXISTS (SELECT 1 FROM mpps m JOIN mpps_instances r \
           ON r.mpps_uid = m.mpps_uid WHERE m.study_uid = s.study_uid \
           AND m.status = 'COMPLETED' AND NOT EXISTS (SELECT 1 FROM instances i \
             WHERE i.sop_uid = r.sop_instance_uid)))"
    };
}

/// SQL: study `s` holds exactly the number of instances its order expects: the latest
/// order matched to it (by study UID or accession, as the decision stage matches them)
/// that states a count. More instances than that means the count was wrong: the quiet
/// wait decides then.
macro_rules! expected_images_in {
    () => {
        "s.instance_count = (SELECT o.expected_images FROM orders o \
           WHERE o.expected_images IS NOT NULL AND (o.study_uid = s.study_uid \
             OR (s.accession IS NOT NULL AND o.accession = s.accession)) \
           ORDER BY o.id DESC LIMIT 1)"
    };
}

impl Store {
    /// Studies still receiving that are complete now: their last instance arrived at or
    /// before `cutoff`, or the modality reported their step COMPLETED (MPPS) and every
    /// instance it lists is in (and no step of theirs is still IN PROGRESS), or they hold
    /// exactly as many instances as their order said to expect.
    pub fn studies_stable_since(&self, cutoff: i64) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(concat!(
            "SELECT s.study_uid FROM studies s WHERE s.state = 'receiving' \
             AND (s.last_received_at <= ?1 OR ",
            step_completed!(),
            " OR ",
            expected_images_in!(),
            ") ORDER BY s.last_received_at"
        ))?;
        let rows = stmt.query_map([cutoff], |r| r.get(0))?;
        Ok(rows.collect::<crate::db::Result<Vec<String>>>()?)
    }

    /// How many images the study's order says to expect (the latest matched order that
    /// states a count), as the completion check reads it.
    pub fn expected_images_of(&self, study_uid: &str) -> Result<Option<i64>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT o.expected_images FROM studies s JOIN orders o \
             ON o.study_uid = s.study_uid OR (s.accession IS NOT NULL AND o.accession = s.accession) \
             WHERE s.study_uid = ?1 AND o.expected_images IS NOT NULL ORDER BY o.id DESC LIMIT 1",
        )?;
        Ok(stmt.query_row([study_uid], |r| r.get(0)).optional()?)
    }

    /// Every held study goes back to the decision stage (as [`Store::reconsider_held`]
    /// does for the studies new context concerns): a reloaded configuration may route or
    /// pass them now. Returns how many.
    pub fn reconsider_all_held(&self, why: &str, now: i64) -> Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO events (at, study_uid, kind, detail) \
             SELECT ?1, study_uid, ?3, ?2 FROM studies WHERE state = 'held'",
            crate::db::params![now, why, EventKind::Context],
        )?;
        let n = tx.execute(
            "UPDATE studies SET state = 'receiving', updated_at = ?1 WHERE state = 'held'",
            [now],
        )?;
        // A reloaded configuration may change how the studies being received stream.
        tx.execute(
            "UPDATE studies SET stream_check = 1 WHERE state = 'receiving' \
             AND (stream IS NULL OR stream = 'streaming')",
            [],
        )?;
        tx.commit()?;
        Ok(n)
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

    /// What the decision stage sees of a study now.
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
        let tx = conn.transaction()?;
        let (state, kind) = if d.forward {
            (StudyState::Queued, EventKind::Queued)
        } else {
            (StudyState::Held, EventKind::Held)
        };
        let changed = tx.execute(
            concat!(
                "UPDATE studies AS s SET state = ?2, destination = ?3, facility = ?4, reasons = ?5, \
                 verdict = ?6, evaluation = ?7, context = ?8, evaluated_at = ?9, completed_at = ?9, \
                 updated_at = ?9, completed_by = CASE WHEN ",
                step_completed!(),
                " THEN ?12 WHEN ",
                expected_images_in!(),
                " THEN ?13 ELSE ?14 END \
                 WHERE study_uid = ?1 AND state = 'receiving' AND last_received_at = ?10 \
                 AND instance_count = ?11"
            ),
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
                snapshot.instance_count,
                CompletionSignal::PerformedStep,
                CompletionSignal::ExpectedImages,
                CompletionSignal::QuietPeriod
            ],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        let uid = &snapshot.study_uid;
        tx.execute(
            "UPDATE studies SET stream_check = 0 WHERE study_uid = ?1",
            [uid],
        )?;
        if d.forward {
            tx.execute(
                "UPDATE instances SET state = 'queued' WHERE study_uid = ?1 AND state = 'received'",
                [uid],
            )?;
        } else {
            // A streamed study held: nothing more of it leaves (its stream stops; the
            // caller holds the forwarders' in-flight lock, so what left is exact).
            tx.execute(
                "UPDATE instances SET state = 'received' WHERE study_uid = ?1 AND state = 'queued' \
                 AND (SELECT stream FROM studies WHERE study_uid = ?1) IS NOT NULL",
                [uid],
            )?;
            tx.execute(
                "UPDATE studies SET stream = 'stopped' WHERE study_uid = ?1 AND stream = 'streaming'",
                [uid],
            )?;
        }
        let id: i64 = tx.query_row(
            "INSERT INTO events (at, study_uid, kind, detail) VALUES (?1, ?2, ?3, ?4) RETURNING id",
            params![now, uid, kind, d.detail],
            |r| r.get(0),
        )?;
        if d.forward {
            // A streamed study may have left already, every instance of it: it is
            // forwarded now, when its last instance was delivered.
            let done = tx.execute(
                "UPDATE studies SET state = 'forwarded', attempts = 0, last_error = NULL, \
                 forwarded_at = (SELECT MAX(forwarded_at) FROM instances WHERE study_uid = ?1) \
                 WHERE study_uid = ?1 AND state = 'queued' \
                 AND EXISTS (SELECT 1 FROM instances WHERE study_uid = ?1 AND state = 'forwarded') \
                 AND NOT EXISTS (SELECT 1 FROM instances WHERE study_uid = ?1 AND state IN ('queued', 'received'))",
                [uid],
            )?;
            if done == 1 {
                tx.execute(
                    "INSERT INTO events (at, study_uid, kind, detail) \
                     SELECT ?1, ?2, ?3, instance_count || ' instance(s) to ' || COALESCE(destination, '') \
                     FROM studies WHERE study_uid = ?2",
                    params![now, uid, EventKind::Forwarded],
                )?;
            }
        }
        tx.commit()?;
        Ok(Some(id))
    }

    /// Receiving studies whose stream the study stage must decide (again), oldest first.
    pub fn stream_checks(&self) -> Result<Vec<String>> {
        self.query_all(
            "SELECT study_uid FROM studies WHERE stream_check = 1 AND state = 'receiving' \
             ORDER BY first_received_at LIMIT 256",
            [],
            |r| r.get(0),
        )
    }

    /// Takes a receiving study's pending stream decision (false: none pending).
    pub fn take_stream_check(&self, study_uid: &str) -> Result<bool> {
        Ok(self.conn().execute(
            "UPDATE studies SET stream_check = 0 WHERE study_uid = ?1 AND stream_check = 1 \
             AND state = 'receiving'",
            [study_uid],
        )? == 1)
    }

    /// Forgets every pending stream decision (no route streams).
    pub fn clear_stream_checks(&self) -> Result<usize> {
        Ok(self.conn().execute(
            "UPDATE studies SET stream_check = 0 WHERE stream_check = 1",
            [],
        )?)
    }

    /// The distinct header contexts of a study's instances, as stored (what the gate
    /// reads of its images; see [`Store::dicom_contexts`]).
    pub fn header_contexts(&self, study_uid: &str) -> Result<Vec<String>> {
        self.query_all(
            "SELECT DISTINCT context FROM instances WHERE study_uid = ?1 LIMIT 64",
            [study_uid],
            |r| r.get(0),
        )
    }

    /// Where a study's delivered instances went: (destination, instances), by
    /// destination.
    pub fn sent_summary(&self, study_uid: &str) -> Result<Vec<(String, i64)>> {
        self.query_all(
            "SELECT COALESCE(i.forwarded_to, s.destination, '-'), COUNT(*) FROM instances i \
             JOIN studies s ON s.study_uid = i.study_uid \
             WHERE i.study_uid = ?1 AND i.state = 'forwarded' GROUP BY 1 ORDER BY 1",
            [study_uid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// A receiving study streams under decision `d` (which forwards): its stream starts,
    /// or goes on under the new decision. Its instances whose header context is one of
    /// `contexts` (what the gate read) are queued for `d.destination`; the others wait
    /// for the next stream decision. `event` (kind, detail) goes to the timeline.
    /// Returns how many instances were queued, or None when the study is no longer
    /// receiving or its stream was stopped.
    pub fn stream(
        &self,
        study_uid: &str,
        d: &DecisionRecord,
        contexts: &[String],
        event: Option<(EventKind, &str)>,
        now: i64,
    ) -> Result<Option<usize>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let changed = tx.execute(
            "UPDATE studies SET stream = 'streaming', destination = ?2, facility = ?3, \
             reasons = ?4, verdict = ?5, evaluation = ?6, context = ?7, evaluated_at = ?8, updated_at = ?8 \
             WHERE study_uid = ?1 AND state = 'receiving' AND (stream IS NULL OR stream = 'streaming')",
            params![
                study_uid,
                d.destination,
                d.facility,
                d.reasons_json,
                d.verdict,
                d.evaluation_json,
                d.context_json,
                now
            ],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        let contexts = serde_json::to_string(contexts).unwrap_or_else(|_| "[]".into());
        let queued = tx.execute(
            match tx.backend() {
                Backend::Sqlite => {
                    "UPDATE instances SET state = 'queued' WHERE study_uid = ?1 AND state = 'received' \
                     AND context IN (SELECT value FROM json_each(?2))"
                }
                Backend::Postgres => {
                    "UPDATE instances SET state = 'queued' WHERE study_uid = ?1 AND state = 'received' \
                     AND context IN (SELECT jsonb_array_elements_text(CAST(?2 AS jsonb)))"
                }
            },
            params![study_uid, contexts],
        )?;
        if let Some((kind, detail)) = event {
            tx.execute(super::INSERT_EVENT, params![now, study_uid, kind, detail])?;
        }
        tx.commit()?;
        Ok(Some(queued))
    }

    /// Stops a receiving study's stream: what is queued of it goes back to waiting for
    /// the study's decision at completion. With `hold`, the study is held under that
    /// decision now (it is decided again when complete, or when context arrives). The
    /// caller holds the forwarders' in-flight lock, so what was delivered is exact.
    /// Returns false when the study was not streaming.
    pub fn stop_stream(
        &self,
        study_uid: &str,
        hold: Option<&DecisionRecord>,
        detail: &str,
        now: i64,
    ) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let changed = match hold {
            Some(d) => tx.execute(
                "UPDATE studies SET stream = 'stopped', state = 'held', destination = ?2, \
                 facility = ?3, reasons = ?4, verdict = ?5, evaluation = ?6, context = ?7, \
                 evaluated_at = ?8, updated_at = ?8 \
                 WHERE study_uid = ?1 AND state = 'receiving' AND stream = 'streaming'",
                params![
                    study_uid,
                    d.destination,
                    d.facility,
                    d.reasons_json,
                    d.verdict,
                    d.evaluation_json,
                    d.context_json,
                    now
                ],
            )?,
            None => tx.execute(
                "UPDATE studies SET stream = 'stopped', updated_at = ?2 \
                 WHERE study_uid = ?1 AND state = 'receiving' AND stream = 'streaming'",
                params![study_uid, now],
            )?,
        };
        if changed == 0 {
            return Ok(false);
        }
        tx.execute(
            "UPDATE instances SET state = 'received' WHERE study_uid = ?1 AND state = 'queued'",
            [study_uid],
        )?;
        let kind = if hold.is_some() {
            EventKind::Held
        } else {
            EventKind::StreamStopped
        };
        tx.execute(super::INSERT_EVENT, params![now, study_uid, kind, detail])?;
        tx.commit()?;
        Ok(true)
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
        let tx = conn.transaction()?;
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
        let id: i64 = tx.query_row(
            "INSERT INTO events (at, study_uid, kind, detail) VALUES (?1, ?2, ?3, ?4) RETURNING id",
            params![
                now,
                study_uid,
                EventKind::ReleasedOverride,
                format!("by {by}: {justification}")
            ],
            |r| r.get(0),
        )?;
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
        let tx = conn.transaction()?;
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
            rows.collect::<crate::db::Result<Vec<_>>>()?
        };
        tx.execute(
            "UPDATE instances SET state = 'rejected' WHERE study_uid = ?1 AND state != 'forwarded'",
            [study_uid],
        )?;
        tx.execute(
            super::INSERT_EVENT,
            params![
                now,
                study_uid,
                EventKind::Rejected,
                format!("by {by}: {reason}")
            ],
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
        let sql = "SELECT verdict, reasons AS reasons_json, evaluation AS evaluation_json, \
                   context AS context_json, evaluated_at, facility, \
                   (SELECT MAX(id) FROM events WHERE study_uid = ?1 \
                    AND kind IN ('queued', 'released-override', 'streaming')) AS event_id, \
                   audit_seq, accession, destination FROM studies WHERE study_uid = ?1";
        Ok(self.query_as(sql, [study_uid])?.into_iter().next())
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
             (SELECT context FROM instances i WHERE i.study_uid = s.study_uid LIMIT 1), s.modalities \
             FROM studies s WHERE s.patient_id = ?1 AND s.study_uid != ?2 AND s.instance_count > 0",
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
                    modalities: r
                        .get::<_, String>(4)?
                        .split_whitespace()
                        .map(String::from)
                        .collect(),
                })
            })?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }
}
