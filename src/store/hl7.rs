//! HL7 messages in the store: every message as received (raw bytes) with what was
//! extracted from it, the orders and reports it carried, and patient merges. On SQLite
//! written on a separate connection with `synchronous = FULL` (on PostgreSQL every commit
//! is flushed): unlike DICOM instances, an HL7 message has no other durable copy, so its
//! commit must reach the disk before the AA.

use super::{Result, Store};
use crate::db::{params, Conn, ToValue};
use crate::hl7::message::{Order, OrderRequest, Parsed, Report, ReportResult};
use crate::model::EventKind;
use rusqlite::Connection;
use serde::Serialize;

/// One received HL7 message with the outcome of processing it.
pub struct IncomingMessage {
    pub received_at: i64,
    pub peer: String,
    /// MSH-3 and MSH-4: with MSH-10 they identify a message for duplicate detection.
    pub sender: String,
    pub control_id: String,
    pub message_type: String,
    pub charset: Option<String>,
    pub raw: Vec<u8>,
    pub parsed: Option<Parsed>,
    pub ack_code: String,
    pub ack_text: String,
    pub ack: Vec<u8>,
}

/// What recording a message led to.
pub struct Recorded {
    /// The ACK to send: the stored one when the message is a repeat.
    pub ack: Vec<u8>,
    pub duplicate: bool,
    pub keys: ContextKeys,
}

/// Which studies a message may tell something about.
#[derive(Debug, Default, Clone)]
pub struct ContextKeys {
    pub study_uids: Vec<String>,
    pub accessions: Vec<String>,
    pub patient_ids: Vec<String>,
}

impl ContextKeys {
    /// Whether the message named no study, accession or patient at all.
    pub fn is_empty(&self) -> bool {
        self.study_uids.is_empty() && self.accessions.is_empty() && self.patient_ids.is_empty()
    }

    /// Adds `other`'s keys to these (those already here are not repeated).
    pub fn merge(&mut self, other: &ContextKeys) {
        for (mine, theirs) in [
            (&mut self.study_uids, &other.study_uids),
            (&mut self.accessions, &other.accessions),
            (&mut self.patient_ids, &other.patient_ids),
        ] {
            for key in theirs {
                if !mine.contains(key) {
                    mine.push(key.clone());
                }
            }
        }
    }
}

/// Where an order/report fact came from, as shown by `readgate orders`.
#[derive(Debug, Clone, Serialize)]
pub struct MessageRef {
    pub id: i64,
    pub control_id: String,
    pub message_type: String,
    pub sender: String,
    pub received_at: i64,
}

/// An order (ORM/OMI) as stored, with the message it came from.
#[derive(Debug, Clone, Serialize)]
pub struct StoredOrder {
    pub message: MessageRef,
    pub order_control: String,
    pub request: serde_json::Value,
    pub patient: serde_json::Value,
    pub allergies: serde_json::Value,
}

/// One version of a report (ORU) as stored, with the message it came from.
#[derive(Debug, Clone, Serialize)]
pub struct StoredReport {
    pub message: MessageRef,
    pub status: String,
    pub signer_id: Option<String>,
    pub report_time: Option<String>,
    pub text: String,
    pub result: serde_json::Value,
}

impl StoredReport {
    /// Final or corrected (OBR-25 F or C): what the reader needs; preliminary reports
    /// do not count.
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "F" | "C")
    }
}

pub(super) fn open_connection(path: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn entity(e: &Option<crate::hl7::message::EntityId>) -> Option<String> {
    e.as_ref().map(|e| e.id.clone()).filter(|s| !s.is_empty())
}

/// What recording a batch led to.
pub struct RecordedBatch {
    /// One per message, in the batch's order.
    pub messages: Vec<Recorded>,
    /// Whether a study was held or still receiving right after the commit, so that the
    /// batch's context may concern it ([`Store::reconsider`]). Looked up only when a
    /// message (a repeat too) named a study, accession or patient; `false` otherwise.
    pub studies_open: bool,
}

/// Whether any study is held or still receiving.
const ANY_OPEN: &str = "SELECT EXISTS(SELECT 1 FROM studies WHERE state IN ('held', 'receiving'))";

impl Store {
    /// Records a batch of messages in one transaction (one fsync for all of them: the
    /// listener groups messages arriving together on different connections). On
    /// PostgreSQL that is two round trips whatever the batch's size: the message rows,
    /// then what they carried with the commit and the look for open studies.
    pub fn record_hl7_batch(&self, batch: &[IncomingMessage]) -> Result<RecordedBatch> {
        let mut conn = self.hl7_conn();
        let tx = conn.transaction()?;
        let messages = record_all(&tx, batch)?;
        // Repeats too (see `keys_of`).
        let context = messages.iter().any(|r| !r.keys.is_empty());
        if !context {
            tx.commit()?;
            return Ok(RecordedBatch {
                messages,
                studies_open: false,
            });
        }
        let studies_open = match tx
            .commit_then_query(ANY_OPEN, [])?
            .and_then(|rows| rows.first().map(|r| r.get::<_, bool>(0)).transpose())
        {
            Ok(open) => open.unwrap_or(true),
            Err(e) => {
                // Committed all the same: look as if a study were open.
                tracing::warn!(error = %e, "database: looking for open studies failed");
                true
            }
        };
        Ok(RecordedBatch {
            messages,
            studies_open,
        })
    }

    /// Refused HL7 messages (answered AE or AR, nothing recorded from them) are a bounded
    /// quarantine: those received before `before` go, then the oldest until their raw
    /// bytes fit `max_bytes`. Returns how many were deleted.
    pub fn prune_refused_hl7(&self, max_bytes: u64, before: i64) -> Result<usize> {
        const UNREFERENCED: &str = "ack_code != 'AA' \
             AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.message_id = hl7_messages.id) \
             AND NOT EXISTS (SELECT 1 FROM reports r WHERE r.message_id = hl7_messages.id) \
             AND NOT EXISTS (SELECT 1 FROM patient_merges p WHERE p.message_id = hl7_messages.id)";
        let mut conn = self.hl7_conn();
        let tx = conn.transaction()?;
        let mut deleted = tx.execute(
            &format!("DELETE FROM hl7_messages WHERE received_at < ?1 AND {UNREFERENCED}"),
            [before],
        )?;
        let mut total: i64 = tx.query_row(
            "SELECT COALESCE(SUM(length(raw)), 0) FROM hl7_messages WHERE ack_code != 'AA'",
            [],
            |r| r.get(0),
        )?;
        let max = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        if total > max {
            let mut cutoff = None;
            {
                let mut stmt = tx.prepare(
                    "SELECT id, length(raw) FROM hl7_messages WHERE ack_code != 'AA' ORDER BY id",
                )?;
                for row in stmt.query([])? {
                    if total <= max {
                        break;
                    }
                    let (id, len): (i64, i64) = (row.get(0)?, row.get(1)?);
                    total -= len;
                    cutoff = Some(id);
                }
            }
            if let Some(id) = cutoff {
                deleted += tx.execute(
                    &format!("DELETE FROM hl7_messages WHERE id <= ?1 AND {UNREFERENCED}"),
                    [id],
                )?;
            }
        }
        tx.commit()?;
        Ok(deleted)
    }

    /// Held studies the keys point at go back to the decision stage (they are "receiving"
    /// again, already stable): new context may release them. Studies the keys point at
    /// that are still being received have their stream decided again (`stream_check`):
    /// the context may start a stream (a STAT order) or stop one (a cancelled order).
    /// Returns the UIDs of both.
    pub fn reconsider_held(&self, keys: &ContextKeys, why: &str, now: i64) -> Result<Vec<String>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Most messages concern no held or receiving study: answer that from the state
        // index first.
        let any_open: bool = self.conn().query_row(ANY_OPEN, [], |r| r.get(0))?;
        if !any_open {
            return Ok(Vec::new());
        }
        self.reconsider(keys, why, now)
    }

    /// As [`Store::reconsider_held`], without first looking whether any study is held
    /// or receiving (the caller knows: [`RecordedBatch::studies_open`]).
    pub fn reconsider(&self, keys: &ContextKeys, why: &str, now: i64) -> Result<Vec<String>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Each look is one statement per key, all of them in one round trip on
        // PostgreSQL: three round trips for the lot, whatever the number of keys.
        let sets: Vec<_> = keys
            .study_uids
            .iter()
            .chain(&keys.accessions)
            .chain(&keys.patient_ids)
            .map(|key| vec![key.to_value()])
            .collect();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut uids: Vec<String> = Vec::new();
        let held = tx.query_many(
            "SELECT study_uid FROM studies WHERE state = 'held' AND \
             (study_uid = ?1 OR accession = ?1 OR patient_id = ?1)",
            &sets,
        )?;
        for row in held.iter().flatten() {
            let uid: String = row.get(0)?;
            if !uids.contains(&uid) {
                uids.push(uid);
            }
        }
        for uid in &uids {
            tx.defer(
                "UPDATE studies SET state = 'receiving', updated_at = ?2 WHERE study_uid = ?1 AND state = 'held'",
                params![uid, now],
            )?;
            tx.defer(
                super::INSERT_EVENT,
                params![now, uid, EventKind::Context, why],
            )?;
        }
        let receiving = tx.query_many(
            "UPDATE studies SET stream_check = 1 WHERE state = 'receiving' \
             AND (stream IS NULL OR stream = 'streaming') \
             AND (study_uid = ?1 OR accession = ?1 OR patient_id = ?1) RETURNING study_uid, stream",
            &sets,
        )?;
        let mut streaming = Vec::new();
        for row in receiving.iter().flatten() {
            let (uid, stream): (String, Option<String>) = (row.get(0)?, row.get(1)?);
            if stream.is_some() && !streaming.contains(&uid) {
                streaming.push(uid.clone());
            }
            if !uids.contains(&uid) {
                uids.push(uid);
            }
        }
        // A streaming study's timeline says what made the gate look again.
        for uid in &streaming {
            tx.defer(
                super::INSERT_EVENT,
                params![now, uid, EventKind::Context, why],
            )?;
        }
        tx.commit()?;
        Ok(uids)
    }

    /// As [`Store::linked_patient_ids`], following only merges whose two IDs have the
    /// same assigning authority (or neither has one): the IDs worth asking the hospital's
    /// PACS for. An ID another system issued (ADT^A40 merging `X-55^^^OLD_SYSTEM` into
    /// `1234567^^^TOKYO_GEN`) could name a different patient in the PACS's domain.
    pub fn same_domain_patient_ids(&self, patient_id: &str) -> Result<Vec<String>> {
        self.merged_ids(
            patient_id,
            "SELECT surviving_id FROM patient_merges WHERE prior_id = ?1 \
               AND surviving_authority IS NOT DISTINCT FROM prior_authority \
             UNION SELECT prior_id FROM patient_merges WHERE surviving_id = ?1 \
               AND surviving_authority IS NOT DISTINCT FROM prior_authority",
        )
    }

    /// Patient ids linked to `patient_id` through merges (both directions), itself included.
    pub fn linked_patient_ids(&self, patient_id: &str) -> Result<Vec<String>> {
        self.merged_ids(
            patient_id,
            "SELECT surviving_id FROM patient_merges WHERE prior_id = ?1 \
             UNION SELECT prior_id FROM patient_merges WHERE surviving_id = ?1",
        )
    }

    /// `patient_id` and every id reached from it by `neighbours` (a query of one id's
    /// merge partners), breadth first, at most 64.
    fn merged_ids(&self, patient_id: &str, neighbours: &str) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut ids = vec![patient_id.to_string()];
        let mut i = 0;
        while i < ids.len() && ids.len() < 64 {
            let id = ids[i].clone();
            let mut stmt = conn.prepare_cached(neighbours)?;
            for other in stmt.query_map([&id], |r| r.get::<_, String>(0))? {
                let other = other?;
                if !ids.contains(&other) {
                    ids.push(other);
                }
            }
            i += 1;
        }
        Ok(ids)
    }

    /// Orders for a study: by study instance UID, else by accession number.
    pub fn orders_for(
        &self,
        study_uid: Option<&str>,
        accession: Option<&str>,
    ) -> Result<Vec<StoredOrder>> {
        self.query_all(
            "SELECT m.id, m.control_id, m.message_type, m.sender, m.received_at, \
             o.order_control, o.request, o.patient, o.allergies \
             FROM orders o JOIN hl7_messages m ON m.id = o.message_id \
             WHERE (CAST(?1 AS TEXT) IS NOT NULL AND o.study_uid = ?1) \
             OR (CAST(?2 AS TEXT) IS NOT NULL AND o.accession = ?2) \
             ORDER BY o.id",
            params![study_uid, accession],
            |r| {
                Ok(StoredOrder {
                    message: MessageRef::from_row(r)?,
                    order_control: r.get(5)?,
                    request: json_column(r, 6)?,
                    patient: json_column(r, 7)?,
                    allergies: json_column(r, 8)?,
                })
            },
        )
    }

    /// Reports (every version) for a study, by study UID or accession, or for a patient.
    pub fn reports_for(
        &self,
        study_uid: Option<&str>,
        accession: Option<&str>,
        patient_ids: &[String],
    ) -> Result<Vec<StoredReport>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT m.id, m.control_id, m.message_type, m.sender, m.received_at, \
             r.status, r.signer_id, r.report_time, r.text, r.result, r.patient_id \
             FROM reports r JOIN hl7_messages m ON m.id = r.message_id \
             WHERE (CAST(?1 AS TEXT) IS NOT NULL AND r.study_uid = ?1) \
             OR (CAST(?2 AS TEXT) IS NOT NULL AND r.accession = ?2) \
             OR (CAST(?3 AS TEXT) IS NOT NULL AND r.patient_id = ?3) ORDER BY r.id",
        )?;
        let mut out: Vec<StoredReport> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut keys: Vec<Option<&str>> = patient_ids.iter().map(|p| Some(p.as_str())).collect();
        if keys.is_empty() {
            keys.push(None);
        }
        for patient in keys {
            let rows = stmt.query_map(params![study_uid, accession, patient], |r| {
                Ok(StoredReport {
                    message: MessageRef::from_row(r)?,
                    status: r.get(5)?,
                    signer_id: r.get(6)?,
                    report_time: r.get(7)?,
                    text: r.get(8)?,
                    result: json_column(r, 9)?,
                })
            })?;
            for row in rows {
                let row = row?;
                let key = (row.message.id, row.text.clone(), row.status.clone());
                if seen.insert(key) {
                    out.push(row);
                }
            }
        }
        out.sort_by_key(|r| r.message.id);
        Ok(out)
    }

    /// How many HL7 messages have been received (for operators and metrics).
    pub fn count_hl7_messages(&self) -> Result<i64> {
        Ok(self
            .conn()
            .query_row("SELECT COUNT(*) FROM hl7_messages", [], |r| r.get(0))?)
    }
}

/// Records `batch` in the caller's transaction: each message's row unless it repeats
/// one already applied, in one round trip on PostgreSQL whatever the batch's size; what
/// the new ones carried is deferred to the commit.
pub(super) fn record_all(tx: &Conn, batch: &[IncomingMessage]) -> Result<Vec<Recorded>> {
    // A repeat is the same sender, MSH-10 and content after MSH (senders that resend may
    // renew MSH-7), of a message that was applied (AA). A refused message had no effect,
    // and different content under a reused MSH-10 is not a retransmission: both are
    // processed anew. The statements run in order in one transaction, so a repeat of a
    // message earlier in the same batch (sent again on another connection before the
    // first was answered) finds that message's row.
    const UNLESS_REPEAT: &str = "INSERT INTO hl7_messages (received_at, peer, sender, control_id, \
         message_type, charset, raw, parsed, ack_code, ack_text, ack, body_hash) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12 \
         WHERE ?4 = '' OR NOT EXISTS (SELECT 1 FROM hl7_messages WHERE sender = ?3 \
         AND control_id = ?4 AND ack_code = 'AA' AND body_hash = ?12) RETURNING id";
    // Another node (or another transaction) may be recording the same message at this
    // moment, sent again on another connection before it was answered: its row is not
    // visible until it commits. On PostgreSQL each (sender, MSH-10) of the batch is
    // locked until the commit (a transaction-level advisory lock on 32 bits of its
    // SHA-256), in ascending order so that two batches never wait on each other in a
    // cycle; a copy waits for the first to commit and then finds its row. (SQLite's
    // writers take turns anyway.) The two-key form keeps these locks apart from any
    // other advisory lock; two messages whose keys share the 32 bits only take turns.
    if tx.backend() == crate::db::Backend::Postgres {
        let mut locks: Vec<i64> = batch
            .iter()
            .filter(|m| !m.control_id.is_empty())
            .map(|m| message_lock(&m.sender, &m.control_id))
            .collect();
        locks.sort_unstable();
        locks.dedup();
        for lock in locks {
            tx.defer("SELECT pg_advisory_xact_lock(1380403255, ?1)", [lock])?;
        }
    }
    let hashes: Vec<String> = batch.iter().map(|m| body_hash(&m.raw)).collect();
    let parsed: Vec<Option<String>> = batch.iter().map(|m| m.parsed.as_ref().map(json)).collect();
    let sets: Vec<_> = batch
        .iter()
        .zip(&parsed)
        .zip(&hashes)
        .map(|((m, parsed), hash)| {
            vec![
                m.received_at.to_value(),
                m.peer.to_value(),
                m.sender.to_value(),
                m.control_id.to_value(),
                m.message_type.to_value(),
                m.charset.to_value(),
                m.raw.to_value(),
                parsed.to_value(),
                m.ack_code.to_value(),
                m.ack_text.to_value(),
                m.ack.to_value(),
                hash.to_value(),
            ]
        })
        .collect();
    let ids = tx.query_many(UNLESS_REPEAT, &sets)?;
    // A repeat is answered with the ACK the first copy got (looked up only when there
    // are repeats: one more round trip).
    let repeats: Vec<usize> = (ids.iter().enumerate())
        .filter(|(_, rows)| rows.is_empty())
        .map(|(i, _)| i)
        .collect();
    let sets: Vec<_> = repeats
        .iter()
        .map(|&i| {
            vec![
                batch[i].sender.to_value(),
                batch[i].control_id.to_value(),
                hashes[i].to_value(),
            ]
        })
        .collect();
    let first = tx.query_many(
        "SELECT ack FROM hl7_messages WHERE sender = ?1 AND control_id = ?2 \
         AND ack_code = 'AA' AND body_hash = ?3 ORDER BY id LIMIT 1",
        &sets,
    )?;
    // In the batch's order, as the repeats were listed.
    let mut first_acks = first.into_iter();
    let mut out = Vec::with_capacity(batch.len());
    for (m, rows) in batch.iter().zip(&ids) {
        out.push(match rows.first() {
            Some(row) => record_content(tx, row.get(0)?, m)?,
            None => Recorded {
                duplicate: true,
                ack: (first_acks.next().unwrap_or_default().first())
                    .ok_or(crate::db::DbError::NoRows)?
                    .get(0)?,
                keys: keys_of(m),
            },
        });
    }
    Ok(out)
}

/// Which studies a message may tell something about: the studies and accessions of its
/// orders and reports, a report's patient (a new report on an earlier study can complete
/// a held study's priors), and both patients of a merge. A repeat has the same keys as
/// its first copy: resent after readgate stopped between the first's commit and its
/// reconsideration, it still brings the held studies it concerns back.
fn keys_of(m: &IncomingMessage) -> ContextKeys {
    let mut keys = ContextKeys::default();
    match &m.parsed {
        Some(Parsed::Order(order)) => {
            for request in &order.requests {
                keys.study_uids.extend(request.study_instance_uid.clone());
                keys.accessions.extend(request.accession_number.clone());
            }
        }
        Some(Parsed::Report(report)) => {
            let patient = report.patient.identifiers.first();
            for result in &report.results {
                keys.study_uids.extend(result.study_instance_uid.clone());
                keys.accessions.extend(result.accession_number.clone());
                keys.patient_ids.extend(patient.map(|p| p.id.clone()));
            }
        }
        Some(Parsed::Merge(merge)) => {
            for pm in &merge.merges {
                let Some(surviving) = pm.surviving.identifiers.first() else {
                    continue;
                };
                for prior in &pm.prior_identifiers {
                    keys.patient_ids.push(prior.id.clone());
                }
                keys.patient_ids.push(surviving.id.clone());
            }
        }
        _ => {}
    }
    keys
}

/// Records what message `message_id` carried (its orders, reports or merges); the
/// statements are deferred to the commit.
fn record_content(tx: &Conn, message_id: i64, m: &IncomingMessage) -> Result<Recorded> {
    match &m.parsed {
        Some(Parsed::Order(order)) => {
            for request in &order.requests {
                insert_order(tx, message_id, m.received_at, order, request)?;
            }
        }
        Some(Parsed::Report(report)) => {
            for result in &report.results {
                insert_report(tx, message_id, m.received_at, report, result)?;
            }
        }
        Some(Parsed::Merge(merge)) => {
            for pm in &merge.merges {
                let Some(surviving) = pm.surviving.identifiers.first() else {
                    continue;
                };
                for prior in &pm.prior_identifiers {
                    tx.defer(
                        "INSERT INTO patient_merges (message_id, received_at, surviving_id, \
                         surviving_authority, prior_id, prior_authority) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![
                            message_id,
                            m.received_at,
                            surviving.id,
                            surviving.assigning_authority,
                            prior.id,
                            prior.assigning_authority
                        ],
                    )?;
                }
            }
        }
        _ => {}
    }
    Ok(Recorded {
        ack: m.ack.clone(),
        duplicate: false,
        keys: keys_of(m),
    })
}

/// FNV-1a over everything after the MSH segment (trailing separators ignored).
/// The advisory lock of a (sender, MSH-10): 32 bits of its SHA-256, as PostgreSQL's
/// `integer` key.
fn message_lock(sender: &str, control_id: &str) -> i64 {
    let hex = crate::digest::sha256_hex(format!("{sender}\u{1f}{control_id}"));
    let bits = u32::from_str_radix(&hex[..8], 16).unwrap_or(0);
    i64::from(bits as i32)
}

fn body_hash(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(raw.len());
    let body = raw[start..]
        .iter()
        .rev()
        .skip_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in &raw[start..start + body] {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn insert_order(
    tx: &Conn,
    message_id: i64,
    at: i64,
    order: &Order,
    request: &OrderRequest,
) -> Result<()> {
    let patient = order.patient.identifiers.first();
    tx.defer(
        "INSERT INTO orders (message_id, received_at, order_control, accession, study_uid, placer, \
         filler, patient_id, patient_authority, request, patient, allergies, expected_images) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            message_id,
            at,
            request.control_code,
            request.accession_number,
            request.study_instance_uid,
            entity(&request.placer_order_number),
            entity(&request.filler_order_number),
            patient.map(|p| p.id.clone()),
            patient.and_then(|p| p.assigning_authority.clone()),
            json(request),
            json(&order.patient),
            json(&order.allergies),
            request.expected_images
        ],
    )?;
    Ok(())
}

fn insert_report(
    tx: &Conn,
    message_id: i64,
    at: i64,
    report: &Report,
    result: &ReportResult,
) -> Result<()> {
    let patient = report.patient.identifiers.first();
    let assistants: Vec<String> = result
        .assistant_interpreters
        .iter()
        .filter_map(|a| a.id.clone())
        .collect();
    tx.defer(
        "INSERT INTO reports (message_id, received_at, accession, study_uid, placer, filler, status, \
         signer_id, assistant_ids, report_time, text, result, patient_id, patient_authority) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            message_id,
            at,
            result.accession_number,
            result.study_instance_uid,
            entity(&result.placer_order_number),
            entity(&result.filler_order_number),
            result.status_code,
            result.principal_interpreter.as_ref().and_then(|p| p.id.clone()),
            assistants.join(" "),
            result.results_time.as_ref().map(|t| t.raw.clone()),
            result.text,
            json(result),
            patient.map(|p| p.id.clone()),
            patient.and_then(|p| p.assigning_authority.clone())
        ],
    )?;
    Ok(())
}

impl MessageRef {
    /// The message columns `m.id, m.control_id, m.message_type, m.sender, m.received_at`
    /// at the start of a row.
    fn from_row(r: &crate::db::Row) -> crate::db::Result<MessageRef> {
        Ok(MessageRef {
            id: r.get(0)?,
            control_id: r.get(1)?,
            message_type: r.get(2)?,
            sender: r.get(3)?,
            received_at: r.get(4)?,
        })
    }
}

/// A JSON text column (`Null` when it does not parse: stored by readgate, so it does).
fn json_column(r: &crate::db::Row, i: usize) -> crate::db::Result<serde_json::Value> {
    let text: String = r.get(i)?;
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}
