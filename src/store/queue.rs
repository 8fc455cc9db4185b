//! The forwarding queue: instances due for a destination, delivery marks, back-off
//! after a failed attempt, and an operator's retry of a failed study.

use super::{Result, Store};
use crate::db::{params, OptionalExtension};
use crate::model::InstanceState;

/// One instance waiting to be sent to a destination.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct QueuedInstance {
    pub sop_uid: String,
    pub study_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax: String,
    pub path: String,
}

impl Store {
    /// Instances due for `destination` now, oldest first.
    pub fn queued_for(
        &self,
        destination: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<QueuedInstance>> {
        self.query_as(
            "SELECT i.sop_uid, i.study_uid, i.sop_class_uid, i.transfer_syntax, i.path \
             FROM instances i JOIN studies s ON s.study_uid = i.study_uid \
             WHERE i.state = 'queued' AND s.destination = ?1 AND s.state != 'failed' \
             AND s.next_attempt_at <= ?2 \
             ORDER BY i.received_at LIMIT ?3",
            params![destination, now, limit as i64],
        )
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
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE instances SET state = ?2, forwarded_at = ?3, last_status = ?4, last_error = NULL, \
             forwarded_to = (SELECT destination FROM studies WHERE study_uid = ?5) \
             WHERE sop_uid = ?1 AND state = 'queued'",
            params![inst.sop_uid, InstanceState::Forwarded, now, status as i64, inst.study_uid],
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
        let tx = conn.transaction()?;
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
        let tx = conn.transaction()?;
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
}
