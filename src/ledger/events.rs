//! Read events: what a reading system tells readgate (REST) and what the HL7 reports
//! coming back say (OBR-25 status, OBR-32 signer, OBR-33 assistant, OBR-22 time).

use crate::hl7::message::{Interpreter, ReportStatus};
pub use crate::model::ReadAction;
use crate::store::{LedgerReport, ReadEventRow};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Where an event came from.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// A REST read event (`read_events.id`, `rest:<integration>`).
    Rest { id: i64, source: String },
    /// An HL7 report version (`reports.id`, MSH-10 and sender of its message).
    Hl7 {
        report_id: i64,
        control_id: String,
        sender: String,
        status: String,
    },
}

/// One read event, from either source.
#[derive(Debug, Clone)]
pub struct ReadEvent {
    pub reader_id: String,
    pub action: ReadAction,
    pub at: i64,
    pub workstation: Option<String>,
    pub client_ip: Option<String>,
    pub point_of_care: Option<String>,
    pub hl7_facility: Option<String>,
    /// HL7 only: the report text of this version.
    pub text: Option<Arc<str>>,
    /// HL7 only: the interpretation period (NDL.2–3) of this reader, ms.
    pub period: Option<(i64, i64)>,
    pub origin: Origin,
}

impl ReadEvent {
    pub fn from_rest(row: ReadEventRow) -> ReadEvent {
        ReadEvent {
            action: row.action,
            reader_id: row.reader_id,
            at: row.at,
            workstation: row.workstation,
            client_ip: row.client_ip,
            point_of_care: None,
            hl7_facility: None,
            text: None,
            period: None,
            origin: Origin::Rest {
                id: row.id,
                source: row.source,
            },
        }
    }
}

#[derive(Deserialize, Default)]
struct Interpreters {
    principal_interpreter: Option<Interpreter>,
    #[serde(default)]
    assistant_interpreters: Vec<Interpreter>,
}

/// The read events one HL7 report version stands for:
/// - P: `preliminary` by the OBR-33 assistant (or OBR-32 when there is no OBR-33);
/// - F: `final` by OBR-32, plus `preliminary` by each OBR-33 assistant (the first
///   reader named on the final report; deduplicated against an earlier P);
/// - C: `addendum` by OBR-32;
/// - other statuses (X cancelled, …): none.
///
/// Time: OBR-22, else the time readgate received the message. Place: the interpreter's
/// NDL point of care (NDL.4) and facility (NDL.7) if sent, else unknown.
pub fn from_hl7_report(r: &LedgerReport, default_offset: i64) -> Vec<ReadEvent> {
    let parsed: Interpreters = serde_json::from_str(&r.result).unwrap_or_default();
    let at = r
        .report_time
        .as_deref()
        .and_then(|t| crate::time::parse_hl7_dtm(t, default_offset).ok())
        .unwrap_or(r.received_at);
    let text: Arc<str> = Arc::from(r.text.as_str());
    let origin = Origin::Hl7 {
        report_id: r.id,
        control_id: r.control_id.clone(),
        sender: r.sender.clone(),
        status: r.status.clone(),
    };
    let ts = |t: &Option<crate::hl7::message::Timestamp>| {
        t.as_ref()
            .and_then(|t| crate::time::parse_hl7_dtm(&t.raw, default_offset).ok())
    };
    let event = |id: Option<String>, interp: Option<&Interpreter>, action, at, text| {
        let period = interp.and_then(|i| match (ts(&i.start), ts(&i.end)) {
            (Some(s), Some(e)) if e >= s => Some((s, e)),
            _ => None,
        });
        ReadEvent {
            reader_id: id.unwrap_or_default(),
            action,
            at,
            workstation: None,
            client_ip: None,
            point_of_care: interp.and_then(|i| i.point_of_care.clone()),
            hl7_facility: interp.and_then(|i| i.facility.clone()),
            text,
            period,
            origin: origin.clone(),
        }
    };
    let signer_id = r
        .signer_id
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            parsed
                .principal_interpreter
                .as_ref()
                .and_then(|p| p.id.clone())
        });
    let assistants: Vec<(String, Option<&Interpreter>)> = {
        let from_json: Vec<(String, Option<&Interpreter>)> = parsed
            .assistant_interpreters
            .iter()
            .filter_map(|i| i.id.clone().map(|id| (id, Some(i))))
            .collect();
        if from_json.is_empty() {
            r.assistant_ids
                .split_whitespace()
                .map(|id| (id.to_string(), None))
                .collect()
        } else {
            from_json
        }
    };
    let principal = parsed.principal_interpreter.as_ref();
    let mut out = Vec::new();
    // The stored OBR-25 code, read as the parser reads it.
    match ReportStatus::from_code(r.status.trim()) {
        ReportStatus::Preliminary => {
            if assistants.is_empty() {
                out.push(event(
                    signer_id,
                    principal,
                    ReadAction::Preliminary,
                    at,
                    Some(text),
                ));
            } else {
                for (id, interp) in assistants {
                    out.push(event(
                        Some(id),
                        interp,
                        ReadAction::Preliminary,
                        at,
                        Some(text.clone()),
                    ));
                }
            }
        }
        ReportStatus::Final => {
            for (id, interp) in assistants {
                // The first read happened before the sign-off: the end of its NDL period
                // if sent, else (conservatively) the sign-off time.
                let when = interp
                    .and_then(|i| ts(&i.end).or_else(|| ts(&i.start)))
                    .filter(|t| *t <= at)
                    .unwrap_or(at);
                out.push(event(Some(id), interp, ReadAction::Preliminary, when, None));
            }
            out.push(event(
                signer_id,
                principal,
                ReadAction::Final,
                at,
                Some(text),
            ));
        }
        ReportStatus::Corrected => out.push(event(
            signer_id,
            principal,
            ReadAction::Addendum,
            at,
            Some(text),
        )),
        ReportStatus::Other(_) => {}
    }
    out
}
