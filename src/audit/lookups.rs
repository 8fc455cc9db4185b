//! Evidence of looking: a search of the trail itself is recorded as `query`, and so is
//! each lookup of a patient's history in the hospital's PACS; a verification that finds
//! tampering as `security_alert` (once per finding, not on every look). All are written
//! before the answer is given or the question asked: a search whose entry cannot be
//! written does not happen.

use super::{kind, AuditError, AuditLog, EntryRef, NewEntry, Query, Verification};
use serde_json::{json, Map, Value};
use std::sync::Mutex;

impl AuditLog {
    /// Records that `actor` searched the trail with `query` (its non-empty filters).
    pub fn record_query(&self, actor: &str, query: &Query) -> Result<EntryRef, AuditError> {
        let mut filters = Map::new();
        let texts = [
            ("kind", &query.kind),
            ("actor", &query.actor),
            ("study", &query.study),
            ("text", &query.text),
        ];
        for (name, value) in texts {
            if let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) {
                filters.insert(name.into(), json!(v));
            }
        }
        for (name, value) in [("from_ms", query.from_ms), ("to_ms", query.to_ms)] {
            if let Some(v) = value {
                filters.insert(name.into(), json!(v));
            }
        }
        let entry = NewEntry::new(kind::QUERY, actor)
            .detail(json!({"searched": "audit trail", "filters": Value::Object(filters)}));
        self.append(&entry)
    }
}

impl AuditLog {
    /// Records that `actor` is about to ask a PACS for patient data: `what` names the
    /// PACS (`pacs`, `ae_title`) and the question (`operation` C-FIND or C-GET, the
    /// Patient ID and date bound, or the Study UID). Written before the question: one
    /// whose entry cannot be written is not asked.
    pub fn record_pacs_query(&self, actor: &str, what: Value) -> Result<EntryRef, AuditError> {
        let mut detail = Map::new();
        detail.insert("searched".into(), json!("pacs"));
        if let Value::Object(fields) = what {
            detail.extend(fields);
        }
        self.append(&NewEntry::new(kind::QUERY, actor).detail(Value::Object(detail)))
    }
}

/// The findings already alerted by this process, so that a tampered trail looked at
/// again and again yields one `security_alert` per finding.
#[derive(Debug, Default)]
pub struct Alerted(Mutex<Vec<(i64, String)>>);

impl Alerted {
    /// Records a `security_alert` by `actor` when `verification` found tampering not
    /// alerted before.
    pub fn alert(
        &self,
        log: &AuditLog,
        actor: &str,
        verification: &Verification,
    ) -> Result<(), AuditError> {
        let Some(f) = &verification.finding else {
            return Ok(());
        };
        let key = (f.seq, f.message.clone());
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(&key) {
            return Ok(());
        }
        log.append(&NewEntry::new(kind::SECURITY_ALERT, actor).detail(json!({
            "finding": "audit trail verification failed",
            "seq": f.seq,
            "message": f.message,
        })))?;
        seen.push(key);
        Ok(())
    }
}
