//! The audit entries the ledger's events leave (ATS-4): a recorded read event, a
//! confirmation of another reader's preliminary report, a generated report. Callers hand
//! them to the [`AuditLog`](crate::audit::AuditLog) they were given — there is no
//! process-wide sink. Identifiers only: no patient names.

use crate::audit::NewEntry;
use crate::model::AuditKind;

/// The entry for a recorded read event (REST).
pub fn read_event(
    integration: &str,
    reader_id: &str,
    study_uid: &str,
    detail: serde_json::Value,
) -> NewEntry {
    NewEntry::new(
        AuditKind::ReadEvent,
        &format!("rest:{integration}/{reader_id}"),
    )
    .study(study_uid)
    .detail(detail)
}

/// The entry for a confirmation (sign-off of another reader's preliminary).
pub fn confirmation(confirmer: &str, author: &str, study_uid: &str, source: &str) -> NewEntry {
    NewEntry::new(AuditKind::Confirmation, confirmer)
        .study(study_uid)
        .detail(serde_json::json!({ "author": author, "confirmer": confirmer, "source": source }))
}

/// The entry for a generated report: month, scope, format and a SHA-256 of the output, so
/// the file handed to an auditor can be matched to the trail.
pub fn report_generated(
    actor: &str,
    month: &str,
    facility: Option<&str>,
    format: &str,
    output: &[u8],
) -> NewEntry {
    NewEntry::new(AuditKind::ReportGenerated, actor).detail(serde_json::json!({
        "month": month,
        "receiving_facility": facility,
        "format": format,
        "bytes": output.len(),
        "sha256": crate::digest::sha256_hex(output),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_carry_actor_study_and_digest() {
        let e = read_event(
            "pacs-a",
            "R001",
            "1.2.3",
            serde_json::json!({"event_id": 7}),
        );
        assert_eq!(e.kind, AuditKind::ReadEvent);
        assert_eq!(e.actor, "rest:pacs-a/R001");
        assert_eq!(e.study_uid.as_deref(), Some("1.2.3"));
        let c = confirmation("R002", "R001", "1.2.3", "hl7");
        assert_eq!(
            (c.kind, c.actor.as_str()),
            (AuditKind::Confirmation, "R002")
        );
        let r = report_generated("cli:root", "2026-11", None, "csv", b"abc");
        assert_eq!(
            r.detail["sha256"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(r.detail["bytes"], 3);
    }
}
