//! The audit entries HL7 reports leave (findings A1, A2): every report version is a read
//! of its study by its interpreter (as a REST read event is), and a final report signed
//! by someone other than the author of the study's preliminary is a confirmation.

use crate::audit::AuditLog;
use crate::hl7::message::{Parsed, ReportResult, ReportStatus};
use crate::ledger::evidence;
use crate::model::AuditKind;
use crate::store::{IncomingMessage, Store};

/// Records the entries for the report messages of a stored batch (repeats excluded).
/// Returns how many entries could not be written.
pub fn record_reports(
    store: &Store,
    audit: &AuditLog,
    messages: &[IncomingMessage],
    repeated: &[bool],
) -> usize {
    let mut failed = 0;
    for (m, _) in messages.iter().zip(repeated).filter(|(_, r)| !**r) {
        let Some(Parsed::Report(report)) = &m.parsed else {
            continue;
        };
        for result in &report.results {
            for entry in entries_for(store, m, result) {
                if audit.record(entry).is_none() {
                    failed += 1;
                }
            }
        }
    }
    failed
}

fn entries_for(
    store: &Store,
    m: &IncomingMessage,
    result: &ReportResult,
) -> Vec<crate::audit::NewEntry> {
    let signer = result
        .principal_interpreter
        .as_ref()
        .and_then(|i| i.id.clone());
    let reader = signer
        .clone()
        .or_else(|| {
            result
                .assistant_interpreters
                .iter()
                .find_map(|i| i.id.clone())
        })
        .unwrap_or_default();
    let study = result.study_instance_uid.clone().unwrap_or_default();
    let mut read =
        crate::audit::NewEntry::new(AuditKind::ReadEvent, &format!("hl7:{}/{reader}", m.sender))
            .detail(serde_json::json!({
                "source": "hl7",
                "message_control_id": m.control_id,
                "status": result.status_code,
            }));
    if !study.is_empty() {
        read = read.study(&study);
    }
    if let Some(acc) = result.accession_number.as_deref().filter(|a| !a.is_empty()) {
        read = read.accession(acc);
    }
    let mut out = vec![read];
    let (ReportStatus::Final | ReportStatus::Corrected) = result.status else {
        return out;
    };
    let Some(signer) = signer else {
        return out;
    };
    // Who wrote the preliminary: the final's own assistant interpreters (OBR-33), else
    // the interpreters of the study's earlier preliminaries, by study UID or accession.
    let ids = |r: &ReportResult| {
        r.principal_interpreter
            .iter()
            .chain(&r.assistant_interpreters)
            .filter_map(|i| i.id.clone())
            .collect::<Vec<_>>()
    };
    let earlier = store
        .reports_for(
            Some(study.as_str()).filter(|s| !s.is_empty()),
            result.accession_number.as_deref(),
            &[],
        )
        .unwrap_or_default();
    let author = result
        .assistant_interpreters
        .iter()
        .filter_map(|i| i.id.clone())
        .chain(
            earlier
                .iter()
                .filter(|r| ReportStatus::from_code(&r.status) == ReportStatus::Preliminary)
                .filter_map(|r| serde_json::from_value::<ReportResult>(r.result.clone()).ok())
                .flat_map(|r| ids(&r)),
        )
        .find(|a| *a != signer);
    if let Some(author) = author {
        let key = if study.is_empty() {
            result.accession_number.clone().unwrap_or_default()
        } else {
            study
        };
        out.push(evidence::confirmation(&signer, &author, &key, "hl7"));
    }
    out
}
