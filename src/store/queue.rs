//! The forwarding queue: instances due for a destination, delivery marks, back-off
//! after a failed attempt, and an operator's retry of a failed study.
//!
//! Forwarding is claimed study by study with a lease, so that with several nodes on one
//! database a study is forwarded by exactly one live node ([`Lease`]): a node takes the
//! leases of due studies that are free, lapsed or its own (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL: two nodes claiming at once skip each other's rows instead of waiting),
//! renews a lease with every instance it delivers, and gives it back when the study is
//! forwarded or backs off. A node that crashed holds its leases until they lapse; then
//! another takes them, with a new fencing token, and a delivery marked under the old
//! token is refused (the instance stays queued and is sent again: the destination keeps
//! one copy per SOP Instance UID).

use super::{Result, Store};
use crate::db::{params, OptionalExtension};
use crate::model::{EventKind, InstanceState};

/// One instance waiting to be sent to a destination.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct QueuedInstance {
    pub sop_uid: String,
    pub study_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax: String,
    pub path: String,
    /// The fencing token of its study's lease when it was claimed.
    pub lease_token: i64,
}

/// Who claims forwarding work, and for how long a claim holds without renewal.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    /// The claiming node (`[gateway] id`).
    pub node: &'a str,
    /// How long a lease lasts (ms) unless renewed (`database.lease_secs`).
    pub ms: i64,
}

/// What became of a delivery mark ([`Store::mark_forwarded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The instance is recorded delivered; its study still has instances to send.
    Recorded,
    /// The instance is recorded delivered, and with it the whole study is forwarded.
    StudyForwarded,
    /// The study's lease changed hands since the instance was claimed: nothing was
    /// recorded; the lease's holder sends the instance again.
    LeaseLost,
}

/// How many more studies one claim takes at most: the rest stays free for other nodes.
pub(super) const CLAIM_STUDIES: i64 = 16;

impl Store {
    /// Instances due for `destination` now, oldest first, of studies whose lease `lease`
    /// holds (taken now when free or lapsed, renewed when already held).
    pub fn queued_for(
        &self,
        destination: &str,
        lease: &Lease,
        now: i64,
        limit: usize,
    ) -> Result<Vec<QueuedInstance>> {
        let skip_locked = match self.conn().backend() {
            crate::db::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            // One writer at a time: the UPDATE holds the database's write lock.
            crate::db::Backend::Sqlite => "",
        };
        self.conn().execute(
            &format!(
                "UPDATE studies SET lease_token = lease_token + \
                 CASE WHEN lease_owner = ?1 AND lease_until >= ?2 THEN 0 ELSE 1 END, \
                 lease_owner = ?1, lease_until = ?3 \
                 WHERE study_uid IN (SELECT s.study_uid FROM studies s \
                 WHERE s.destination = ?4 AND s.state != 'failed' AND s.next_attempt_at <= ?2 \
                 AND (s.lease_owner IS NULL OR s.lease_owner = ?1 OR s.lease_until < ?2) \
                 AND EXISTS (SELECT 1 FROM instances i WHERE i.study_uid = s.study_uid \
                 AND i.state = 'queued') ORDER BY s.rowid LIMIT ?5{skip_locked})"
            ),
            params![lease.node, now, now + lease.ms, destination, CLAIM_STUDIES],
        )?;
        self.query_as(
            "SELECT i.sop_uid, i.study_uid, i.sop_class_uid, i.transfer_syntax, i.path, \
             s.lease_token FROM instances i JOIN studies s ON s.study_uid = i.study_uid \
             WHERE i.state = 'queued' AND s.destination = ?1 AND s.state != 'failed' \
             AND s.next_attempt_at <= ?2 AND s.lease_owner = ?4 AND s.lease_until >= ?2 \
             ORDER BY i.received_at LIMIT ?3",
            params![destination, now, limit as i64, lease.node],
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

    /// Marks an instance delivered, renewing its study's lease; completes the study (and
    /// gives its lease back) when nothing of it is left queued. Refused
    /// ([`Delivery::LeaseLost`], nothing changed) when the study's lease changed hands
    /// since `inst` was claimed.
    pub fn mark_forwarded(
        &self,
        inst: &QueuedInstance,
        status: u16,
        lease: &Lease,
        now: i64,
    ) -> Result<Delivery> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let held = tx.execute(
            "UPDATE studies SET lease_until = ?4 \
             WHERE study_uid = ?1 AND lease_owner = ?2 AND lease_token = ?3",
            params![inst.study_uid, lease.node, inst.lease_token, now + lease.ms],
        )?;
        if held == 0 {
            tracing::warn!(study_uid = %inst.study_uid, node = lease.node,
                "the study's forwarding lease went to another node: this delivery is not recorded here (the holder sends the instance again)");
            return Ok(Delivery::LeaseLost);
        }
        tx.execute(
            "UPDATE instances SET state = ?2, forwarded_at = ?3, last_status = ?4, last_error = NULL, \
             forwarded_to = (SELECT destination FROM studies WHERE study_uid = ?5) \
             WHERE sop_uid = ?1 AND state = 'queued'",
            params![inst.sop_uid, InstanceState::Forwarded, now, status as i64, inst.study_uid],
        )?;
        let done = tx.execute(
            "UPDATE studies SET state = 'forwarded', forwarded_at = ?2, updated_at = ?2, \
             attempts = 0, last_error = NULL, lease_owner = NULL, lease_until = 0 \
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
                super::INSERT_EVENT,
                params![
                    now,
                    inst.study_uid,
                    EventKind::Forwarded,
                    format!("{count} instance(s) to {}", dest.unwrap_or_default())
                ],
            )?;
        }
        tx.commit()?;
        Ok(if done == 1 {
            Delivery::StudyForwarded
        } else {
            Delivery::Recorded
        })
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
                    "UPDATE studies SET state = 'failed', attempts = ?2, last_error = ?3, updated_at = ?4, \
                     lease_owner = NULL, lease_until = 0 WHERE study_uid = ?1 AND state IN ('queued', 'receiving')",
                    params![uid, attempts, error, now],
                )?;
                tx.execute(
                    super::INSERT_EVENT,
                    params![
                        now,
                        uid,
                        EventKind::Failed,
                        format!("gave up after {attempts} attempts: {error}")
                    ],
                )?;
                failed.push(uid.clone());
            } else {
                // Backing off gives the lease back: the retry may be any node's.
                tx.execute(
                    "UPDATE studies SET attempts = ?2, next_attempt_at = ?3, last_error = ?4, updated_at = ?5, \
                     lease_owner = NULL, lease_until = 0 WHERE study_uid = ?1",
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
                "INSERT INTO events (at, study_uid, kind, detail) \
                 VALUES (?1, ?2, ?3, 'failed study re-queued')",
                params![now, study_uid, EventKind::Retry],
            )?;
        }
        tx.commit()?;
        Ok(n == 1)
    }
}
