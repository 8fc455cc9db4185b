//! Where the hash-chained audit trail (`crate::audit`, built separately) plugs into the
//! ledger. The ledger calls [`emit`] at three points — a read event recorded, a
//! confirmation (a sign-off of another reader's preliminary report) seen, a report
//! generated — with an [`AuditRecord`] that carries the actor and the evidence. Until an
//! integrator installs a sink with [`install`], records go nowhere (the ledger's own
//! tables keep the facts either way).
//!
//! Integration is one call at start-up, e.g. in `serve::start_with` and in the CLI:
//!
//! ```ignore
//! readgate::ledger::hooks::install(std::sync::Arc::new(MyAuditSink { trail }));
//! // where MyAuditSink::append(rec) calls crate::audit::append(rec.kind, rec.actor, …)
//! ```

use serde::Serialize;
use std::sync::{Arc, OnceLock};

/// What happened, in the audit trail's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// A read event was recorded (REST).
    ReadEvent,
    /// A reader signed off another reader's preliminary report.
    Confirmation,
    /// `readgate report` produced a ledger report.
    ReportGenerated,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::ReadEvent => "read_event",
            AuditKind::Confirmation => "confirmation",
            AuditKind::ReportGenerated => "report_generated",
        }
    }
}

/// One record for the audit trail. Identifiers only: no patient names.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub kind: AuditKind,
    /// Who did it: `rest:<integration>/<reader id>`, `cli:<user>`.
    pub actor: String,
    /// When it happened (ms since the epoch), as the source says.
    pub at: i64,
    pub study_uid: Option<String>,
    /// The evidence (event id, action, resolution; confirmation figures; report digest).
    pub detail: serde_json::Value,
}

/// Receives audit records. Must not block for long: it is called on request paths.
pub trait AuditSink: Send + Sync {
    fn append(&self, record: &AuditRecord);
}

static SINK: OnceLock<Arc<dyn AuditSink>> = OnceLock::new();

/// Installs the audit sink (once per process; later calls are ignored and return false).
pub fn install(sink: Arc<dyn AuditSink>) -> bool {
    SINK.set(sink).is_ok()
}

/// Hands a record to the installed sink, if any.
pub fn emit(record: AuditRecord) {
    if let Some(sink) = SINK.get() {
        sink.append(&record);
    }
}

/// The record for a recorded read event.
pub fn read_event(
    integration: &str,
    reader_id: &str,
    at: i64,
    study_uid: &str,
    detail: serde_json::Value,
) -> AuditRecord {
    AuditRecord {
        kind: AuditKind::ReadEvent,
        actor: format!("rest:{integration}/{reader_id}"),
        at,
        study_uid: Some(study_uid.to_string()),
        detail,
    }
}

/// The record for a confirmation (sign-off of another reader's preliminary).
pub fn confirmation(
    confirmer: &str,
    author: &str,
    at: i64,
    study_uid: &str,
    source: &str,
) -> AuditRecord {
    AuditRecord {
        kind: AuditKind::Confirmation,
        actor: confirmer.to_string(),
        at,
        study_uid: Some(study_uid.to_string()),
        detail: serde_json::json!({ "author": author, "confirmer": confirmer, "source": source }),
    }
}

/// The record for a generated report: month, scope, format and a SHA-256 of the output,
/// so the file handed to an auditor can be matched to the trail.
pub fn report_generated(
    actor: &str,
    month: &str,
    facility: Option<&str>,
    format: &str,
    output: &[u8],
) -> AuditRecord {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(output);
    AuditRecord {
        kind: AuditKind::ReportGenerated,
        actor: actor.to_string(),
        at: crate::time::now_ms(),
        study_uid: None,
        detail: serde_json::json!({
            "month": month,
            "receiving_facility": facility,
            "format": format,
            "bytes": output.len(),
            "sha256": crate::web::hex(&digest),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Collect(Mutex<Vec<String>>);
    impl AuditSink for Collect {
        fn append(&self, r: &AuditRecord) {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(r.kind.as_str().to_string());
        }
    }

    #[test]
    fn records_reach_an_installed_sink() {
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        install(sink.clone());
        emit(report_generated("cli:test", "2026-06", None, "json", b"{}"));
        emit(confirmation("1001", "2001", 0, "1.2.3", "hl7"));
        let got = sink.0.lock().unwrap().clone();
        assert!(got.contains(&"report_generated".to_string()), "{got:?}");
        assert!(got.contains(&"confirmation".to_string()), "{got:?}");
    }
}
