//! What readgate knows about one study from HL7: its orders, lab values, contact and
//! reports, each with the message it came from (`readgate orders`).

use crate::store::{MessageRef, Store, StoredOrder, StoredReport};
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;

#[derive(Debug, Serialize)]
pub struct StudyView {
    pub key: String,
    pub study_uid: Option<String>,
    pub accession: Option<String>,
    pub state: Option<String>,
    pub orders: Vec<StoredOrder>,
    pub labs: Vec<Lab>,
    pub reports: Vec<StoredReport>,
    /// Reports on the patient's other studies (priors), following patient merges.
    pub prior_reports: Vec<StoredReport>,
}

#[derive(Debug, Serialize)]
pub struct Lab {
    pub code: Option<String>,
    pub name: Option<String>,
    pub system: Option<String>,
    pub value: Option<String>,
    pub units: Option<String>,
    pub observed_at: Option<String>,
    pub message: MessageRef,
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string).filter(|s| !s.is_empty())
}

fn labs_from(observations: &Value, message: &MessageRef, numeric_only: bool) -> Vec<Lab> {
    observations
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|o| !numeric_only || o["value_type"].as_str() == Some("NM"))
        .map(|o| Lab {
            code: text(&o["code"]["code"]),
            name: text(&o["code"]["text"]),
            system: text(&o["code"]["coding_system"]),
            value: text(&o["value"]),
            units: text(&o["units"]),
            observed_at: text(&o["observation_time"]["iso"])
                .or_else(|| text(&o["observation_time"]["raw"])),
            message: message.clone(),
        })
        .collect()
}

impl StudyView {
    /// `key` is an accession number or a Study Instance UID; works before images arrive.
    pub fn load(store: &Store, key: &str) -> crate::store::Result<StudyView> {
        let study = store.find_study(key)?;
        let (study_uid, accession, patient_id, state) = match study {
            Some(s) => (
                Some(s.study_uid),
                s.accession,
                s.patient_id,
                Some(s.state.to_string()),
            ),
            None => (None, None, None, None),
        };
        // Without a study yet, the key may be either: try it as both.
        let uid_key = study_uid.clone().unwrap_or_else(|| key.to_string());
        let acc_key = accession.clone().or_else(|| Some(key.to_string()));
        let orders = store.orders_for(Some(&uid_key), acc_key.as_deref())?;
        let reports = store.reports_for(Some(&uid_key), acc_key.as_deref(), &[])?;
        let patient = patient_id.or_else(|| {
            orders
                .iter()
                .find_map(|o| text(&o.patient["identifiers"][0]["id"]))
        });
        let prior_reports = match patient {
            Some(p) => {
                let ids = store.linked_patient_ids(&p)?;
                let own: std::collections::HashSet<i64> =
                    reports.iter().map(|r| r.message.id).collect();
                store
                    .reports_for(None, None, &ids)?
                    .into_iter()
                    .filter(|r| !own.contains(&r.message.id))
                    .collect()
            }
            None => Vec::new(),
        };
        let mut labs = Vec::new();
        for o in &orders {
            labs.extend(labs_from(&o.request["observations"], &o.message, false));
        }
        for r in &reports {
            labs.extend(labs_from(&r.result["observations"], &r.message, true));
        }
        Ok(StudyView {
            key: key.to_string(),
            study_uid,
            accession,
            state,
            orders,
            labs,
            reports,
            prior_reports,
        })
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        match &self.study_uid {
            Some(uid) => {
                let _ = writeln!(
                    out,
                    "Study {uid} (accession {}, {})",
                    self.accession.as_deref().unwrap_or("-"),
                    self.state.as_deref().unwrap_or("-")
                );
            }
            None => {
                let _ = writeln!(out, "No images received yet for {}", self.key);
            }
        }
        if self.orders.is_empty() {
            let _ = writeln!(out, "No order received for it.");
        }
        for o in &self.orders {
            let r = &o.request;
            let _ = writeln!(out, "\nOrder {} — {}", o.order_control, from(&o.message));
            line(&mut out, "accession", text(&r["accession_number"]));
            line(&mut out, "study UID", text(&r["study_instance_uid"]));
            line(&mut out, "procedure", coded(&r["requested_procedure"]));
            line(
                &mut out,
                "exam purpose (OBR-31)",
                joined(&r["exam_purpose"], coded),
            );
            line(
                &mut out,
                "clinical information (OBR-13)",
                text(&r["clinical_information"]),
            );
            line(&mut out, "notes (NTE)", joined(&r["notes"], text));
            line(
                &mut out,
                "diagnoses (DG1)",
                joined(&r["diagnoses"], |d| {
                    coded(&d["code"]).or_else(|| text(&d["description"]))
                }),
            );
            line(
                &mut out,
                "ordering provider",
                joined(&r["ordering_provider"], provider),
            );
            line(&mut out, "callback", joined(&r["callback_phones"], text));
            line(&mut out, "priority", text(&r["priority_code"]));
            line(
                &mut out,
                "allergies (AL1)",
                joined(&o.allergies, |a| coded(&a["allergen"])),
            );
        }
        if !self.labs.is_empty() {
            let _ = writeln!(out, "\nLab values");
            for l in &self.labs {
                let _ = writeln!(
                    out,
                    "  {} ({} {}) = {} {} at {} — {}",
                    l.name.as_deref().unwrap_or("?"),
                    l.code.as_deref().unwrap_or("?"),
                    l.system.as_deref().unwrap_or(""),
                    l.value.as_deref().unwrap_or("?"),
                    l.units.as_deref().unwrap_or(""),
                    l.observed_at.as_deref().unwrap_or("?"),
                    l.message.control_id
                );
            }
        }
        for (title, reports) in [
            ("Reports", &self.reports),
            ("Prior reports (same patient)", &self.prior_reports),
        ] {
            if reports.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n{title}");
            for r in reports {
                let first = r.text.lines().next().unwrap_or("");
                let _ = writeln!(
                    out,
                    "  {} signed by {} at {} — {}\n    {}",
                    r.status,
                    r.signer_id.as_deref().unwrap_or("?"),
                    r.report_time.as_deref().unwrap_or("?"),
                    from(&r.message),
                    first
                );
            }
        }
        out
    }
}

fn from(m: &MessageRef) -> String {
    format!(
        "message {} ({}, from {})",
        m.control_id, m.message_type, m.sender
    )
}

fn line(out: &mut String, label: &str, value: Option<String>) {
    let _ = writeln!(out, "  {label}: {}", value.unwrap_or_else(|| "—".into()));
}

fn coded(v: &Value) -> Option<String> {
    let code = text(&v["code"]);
    let t = text(&v["text"]);
    match (code, t) {
        (Some(c), Some(t)) => Some(format!(
            "{t} [{c}{}]",
            text(&v["coding_system"])
                .map(|s| format!(" {s}"))
                .unwrap_or_default()
        )),
        (Some(c), None) => Some(c),
        (None, Some(t)) => Some(t),
        (None, None) => None,
    }
}

fn provider(v: &Value) -> Option<String> {
    let name = [text(&v["name"]["family"]), text(&v["name"]["given"])]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let id = text(&v["id"]);
    match (name.is_empty(), id) {
        (false, Some(id)) => Some(format!("{name} ({id})")),
        (false, None) => Some(name),
        (true, id) => id,
    }
}

fn joined(v: &Value, f: impl Fn(&Value) -> Option<String>) -> Option<String> {
    let parts: Vec<String> = v
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(f)
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("; "))
    }
}
