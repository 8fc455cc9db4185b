//! HL7 messages in the store: every message as received (raw bytes) with what was
//! extracted from it, the orders and reports it carried, and patient merges. On SQLite
//! written on a separate connection with `synchronous = FULL` (on PostgreSQL every commit
//! is flushed): unlike DICOM instances, an HL7 message has no other durable copy, so its
//! commit must reach the disk before the AA.

use super::{Result, Store};
use crate::db::{params, Conn, ToValue};
use crate::hl7::message::{Order, OrderRequest, Parsed, Report, ReportResult};
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

impl Store {
    /// Records a batch of messages in one transaction (one fsync for all of them: the
    /// listener groups messages arriving together on different connections).
    pub fn record_hl7_batch(&self, batch: &[IncomingMessage]) -> Result<Vec<Recorded>> {
        let mut conn = self.hl7_conn();
        let tx = conn.transaction()?;
        let out = record_all(&tx, batch)?;
        tx.commit()?;
        Ok(out)
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
        let mut conn = self.conn();
        // Most messages concern no held or receiving study: answer that from the state
        // index first.
        let any_held: bool = conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM studies WHERE state IN ('held', 'receiving'))",
            [],
            |r| r.get(0),
        )?;
        if !any_held {
            return Ok(Vec::new());
        }
        let tx = conn.transaction()?;
        let mut uids = Vec::new();
        {
            let mut stmt = tx.prepare_cached(
                "SELECT study_uid FROM studies WHERE state = 'held' AND \
                 (study_uid = ?1 OR accession = ?1 OR patient_id = ?1)",
            )?;
            for key in keys
                .study_uids
                .iter()
                .chain(&keys.accessions)
                .chain(&keys.patient_ids)
            {
                for uid in stmt.query_map([key], |r| r.get::<_, String>(0))? {
                    let uid = uid?;
                    if !uids.contains(&uid) {
                        uids.push(uid);
                    }
                }
            }
        }
        for uid in &uids {
            tx.defer(
                "UPDATE studies SET state = 'receiving', updated_at = ?2 WHERE study_uid = ?1 AND state = 'held'",
                params![uid, now],
            )?;
            tx.defer(
                "INSERT INTO events (at, study_uid, kind, detail) VALUES (?1, ?2, 'context', ?3)",
                params![now, uid, why],
            )?;
        }
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE studies SET stream_check = 1 WHERE state = 'receiving' \
                 AND (stream IS NULL OR stream = 'streaming') \
                 AND (study_uid = ?1 OR accession = ?1 OR patient_id = ?1) RETURNING study_uid, stream",
            )?;
            let mut streaming = Vec::new();
            for key in keys
                .study_uids
                .iter()
                .chain(&keys.accessions)
                .chain(&keys.patient_ids)
            {
                let rows = stmt.query_map([key], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })?;
                for row in rows {
                    let (uid, stream) = row?;
                    if stream.is_some() && !streaming.contains(&uid) {
                        streaming.push(uid.clone());
                    }
                    if !uids.contains(&uid) {
                        uids.push(uid);
                    }
                }
            }
            // A streaming study's timeline says what made the gate look again.
            for uid in &streaming {
                tx.defer(
                    "INSERT INTO events (at, study_uid, kind, detail) VALUES (?1, ?2, 'context', ?3)",
                    params![now, uid, why],
                )?;
            }
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

/// Records `batch` in the caller's transaction in three steps, each one round trip on
/// PostgreSQL whatever the batch's size: which messages repeat one already applied,
/// the new messages' rows, then (deferred to the commit) what they carried.
fn record_all(tx: &Conn, batch: &[IncomingMessage]) -> Result<Vec<Recorded>> {
    // A repeat is the same sender, MSH-10 and content after MSH (senders that resend may
    // renew MSH-7), of a message that was applied (AA). A refused message had no effect,
    // and different content under a reused MSH-10 is not a retransmission: both are
    // processed anew.
    let hashes: Vec<String> = batch.iter().map(|m| body_hash(&m.raw)).collect();
    let checked: Vec<usize> = (0..batch.len())
        .filter(|&i| !batch[i].control_id.is_empty())
        .collect();
    let sets: Vec<_> = checked
        .iter()
        .map(|&i| {
            vec![
                batch[i].sender.to_value(),
                batch[i].control_id.to_value(),
                hashes[i].to_value(),
            ]
        })
        .collect();
    let found = tx.query_many(
        "SELECT ack FROM hl7_messages WHERE sender = ?1 AND control_id = ?2 AND ack_code = 'AA' \
         AND body_hash = ?3 ORDER BY id LIMIT 1",
        &sets,
    )?;
    let mut repeats: Vec<Option<Vec<u8>>> = vec![None; batch.len()];
    for (&i, rows) in checked.iter().zip(&found) {
        if let Some(row) = rows.first() {
            repeats[i] = Some(row.get(0)?);
        }
    }
    // A repeat of a message earlier in the same batch (sent again on another connection
    // before the first was answered) gets that message's ACK once it was applied.
    for i in 0..batch.len() {
        let m = &batch[i];
        if repeats[i].is_some() || m.control_id.is_empty() {
            continue;
        }
        let earlier = (0..i).find(|&j| {
            repeats[j].is_none()
                && batch[j].ack_code == crate::hl7::AckCode::Accept.as_str()
                && batch[j].sender == m.sender
                && batch[j].control_id == m.control_id
                && hashes[j] == hashes[i]
        });
        if let Some(j) = earlier {
            repeats[i] = Some(batch[j].ack.clone());
        }
    }
    let new: Vec<usize> = (0..batch.len()).filter(|&i| repeats[i].is_none()).collect();
    let parsed: Vec<Option<String>> = new
        .iter()
        .map(|&i| batch[i].parsed.as_ref().map(json))
        .collect();
    let sets: Vec<_> = new
        .iter()
        .zip(&parsed)
        .map(|(&i, parsed)| {
            let m = &batch[i];
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
                hashes[i].to_value(),
            ]
        })
        .collect();
    let ids = tx.query_many(
        "INSERT INTO hl7_messages (received_at, peer, sender, control_id, message_type, charset, raw, \
         parsed, ack_code, ack_text, ack, body_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING id",
        &sets,
    )?;
    let mut out: Vec<Recorded> = repeats
        .into_iter()
        .map(|ack| Recorded {
            duplicate: ack.is_some(),
            ack: ack.unwrap_or_default(),
            keys: ContextKeys::default(),
        })
        .collect();
    for (&i, rows) in new.iter().zip(&ids) {
        let id: i64 = rows.first().ok_or(crate::db::DbError::NoRows)?.get(0)?;
        out[i] = record_content(tx, id, &batch[i])?;
    }
    Ok(out)
}

/// Records what message `message_id` carried (its orders, reports or merges); the
/// statements are deferred to the commit.
fn record_content(tx: &Conn, message_id: i64, m: &IncomingMessage) -> Result<Recorded> {
    let mut keys = ContextKeys::default();
    match &m.parsed {
        Some(Parsed::Order(order)) => {
            for request in &order.requests {
                insert_order(tx, message_id, m.received_at, order, request, &mut keys)?;
            }
        }
        Some(Parsed::Report(report)) => {
            for result in &report.results {
                insert_report(tx, message_id, m.received_at, report, result, &mut keys)?;
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
                    keys.patient_ids.push(prior.id.clone());
                }
                keys.patient_ids.push(surviving.id.clone());
            }
        }
        _ => {}
    }
    Ok(Recorded {
        ack: m.ack.clone(),
        duplicate: false,
        keys,
    })
}

/// FNV-1a over everything after the MSH segment (trailing separators ignored).
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
    keys: &mut ContextKeys,
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
    keys.study_uids.extend(request.study_instance_uid.clone());
    keys.accessions.extend(request.accession_number.clone());
    Ok(())
}

fn insert_report(
    tx: &Conn,
    message_id: i64,
    at: i64,
    report: &Report,
    result: &ReportResult,
    keys: &mut ContextKeys,
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
    keys.study_uids.extend(result.study_instance_uid.clone());
    keys.accessions.extend(result.accession_number.clone());
    // A new report on an earlier study can complete a held study's priors.
    keys.patient_ids.extend(patient.map(|p| p.id.clone()));
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
