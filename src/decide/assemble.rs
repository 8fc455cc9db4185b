//! Gathers a study's [`StudyContext`] from what readgate has heard about it: the clinical
//! context in its image headers, the HL7 orders that name it, lab values and reports for
//! its patient, and the patient's earlier studies. Each fact keeps its source, so a hold
//! says where a value came from and where to fix it.

use super::context::{CodedFact, Fact, LabFact, PacsAnswer, Prior, Priority, Source, StudyContext};
use crate::hl7::message::{CodedElement, Observation, OrderControl, OrderRequest, ReportResult};
use crate::store::{MessageRef, Store, StudySnapshot};
use std::collections::BTreeMap;

/// An order request as stored, with the message it came from.
#[derive(Debug, Clone)]
pub struct OrderFacts {
    pub message: MessageRef,
    pub request: OrderRequest,
}

/// A report result as stored, with the message it came from.
#[derive(Debug, Clone)]
pub struct ResultFacts {
    pub message: MessageRef,
    pub result: ReportResult,
}

/// Everything known about a study, from the store. `utc_offset_minutes` is the hospital's
/// local time (HL7 and DICOM times without an offset are local times); `pacs_ids` are the
/// `[[pacs]]` whose answers about the patient's history count.
pub fn from_store(
    store: &Store,
    snapshot: &StudySnapshot,
    utc_offset_minutes: i32,
    pacs_ids: &[String],
) -> crate::store::Result<StudyContext> {
    let patient = store
        .find_study(&snapshot.study_uid)?
        .and_then(|s| s.patient_id);
    for_patient(store, snapshot, patient, utc_offset_minutes, pacs_ids)
}

/// The context of an order whose images have not arrived, as its study will have it:
/// its modality (OBR-24 / IPC-5), its patient's history; for fetching priors ahead.
pub fn for_order(
    store: &Store,
    order: &crate::store::PendingOrder,
    utc_offset_minutes: i32,
    pacs_ids: &[String],
) -> crate::store::Result<StudyContext> {
    let request: Option<OrderRequest> = serde_json::from_str(&order.request).ok();
    let snapshot = StudySnapshot {
        // An order without a Study Instance UID still needs a key no prior has.
        study_uid: order
            .study_uid
            .clone()
            .unwrap_or_else(|| format!("order:{}", order.id)),
        accession: order.accession.clone(),
        modalities: request
            .and_then(|r| r.modality)
            .map(|m| vec![m.trim().to_string()])
            .unwrap_or_default(),
        calling_aes: Vec::new(),
        instance_count: 0,
        last_received_at: 0,
    };
    for_patient(
        store,
        &snapshot,
        Some(order.patient_id.clone()),
        utc_offset_minutes,
        pacs_ids,
    )
}

fn for_patient(
    store: &Store,
    snapshot: &StudySnapshot,
    patient: Option<String>,
    utc_offset_minutes: i32,
    pacs_ids: &[String],
) -> crate::store::Result<StudyContext> {
    let headers = store.dicom_contexts(&snapshot.study_uid)?;
    let orders: Vec<OrderFacts> = store
        .orders_for(Some(&snapshot.study_uid), snapshot.accession.as_deref())?
        .into_iter()
        .filter_map(|o| {
            serde_json::from_value(o.request)
                .ok()
                .map(|request| OrderFacts {
                    message: o.message,
                    request,
                })
        })
        .collect();
    let patient_ids = match &patient {
        Some(p) => store.linked_patient_ids(p)?,
        None => Vec::new(),
    };
    let results: Vec<ResultFacts> = if patient_ids.is_empty() {
        Vec::new()
    } else {
        store
            .reports_for(None, None, &patient_ids)?
            .into_iter()
            .filter_map(|r| {
                serde_json::from_value(r.result)
                    .ok()
                    .map(|result| ResultFacts {
                        message: r.message,
                        result,
                    })
            })
            .collect()
    };
    let final_reports = |uid: &str, accession: Option<&str>| -> crate::store::Result<u32> {
        Ok(store
            .reports_for(Some(uid), accession, &[])?
            .iter()
            .filter(|r| r.is_final())
            .count() as u32)
    };
    let mut priors = Vec::new();
    for other in store.other_studies_of(&patient_ids, &snapshot.study_uid)? {
        let reports = final_reports(&other.study_uid, other.accession.as_deref())?;
        // When the prior was done, not when readgate happened to receive it.
        let done = other
            .study_date
            .as_deref()
            .and_then(|d| dicom_datetime_ms(d, other.study_time.as_deref(), utc_offset_minutes));
        priors.push(Prior {
            study_uid: other.study_uid,
            accession: other.accession,
            study_time_ms: done,
            reports,
            documents: 0,
            modalities: other.modalities,
            source: Source::dicom("(0008,0020) of images received by readgate"),
            body_parts: Vec::new(),
            unavailable: None,
        });
    }
    let mut pacs = Vec::new();
    // The PACS is asked for the patient's ID and those of the same domain merged with it
    // (as `priors::lookup` does), not for another system's IDs.
    let pacs_patients = match &patient {
        Some(p) if !pacs_ids.is_empty() => store.same_domain_patient_ids(p)?,
        _ => Vec::new(),
    };
    if !pacs_patients.is_empty() {
        let patient_ids = &pacs_patients;
        let lookups = store.pacs_lookups(patient_ids)?;
        for id in pacs_ids {
            // With merged patients every id must have been asked; the oldest answer, or
            // any failure, stands for the PACS.
            let of_pacs: Vec<_> = lookups.iter().filter(|l| &l.pacs_id == id).collect();
            let failed = of_pacs.iter().find(|l| l.error.is_some());
            pacs.push(if of_pacs.len() < patient_ids.len() {
                PacsAnswer::NotYet { pacs: id.clone() }
            } else if let Some(l) = failed {
                PacsAnswer::Failed {
                    pacs: id.clone(),
                    at: l.at,
                    error: l.error.clone().unwrap_or_default(),
                }
            } else {
                PacsAnswer::Answered {
                    pacs: id.clone(),
                    at: of_pacs.iter().map(|l| l.at).min().unwrap_or(0),
                    found: of_pacs.iter().map(|l| l.found).sum(),
                }
            });
        }
        // The study's Issuer of Patient ID: a PACS study whose issuer is another one
        // belongs to another domain's patient who happens to have the same ID.
        let issuer = headers
            .iter()
            .find_map(|h| h.get("0010,0021"))
            .map(|i| i.trim().to_string())
            .filter(|i| !i.is_empty());
        let found_studies = store.pacs_studies(patient_ids)?;
        let uids: Vec<String> = found_studies
            .iter()
            .map(|f| f.study.study_uid.clone())
            .collect();
        let failures = store.prior_fetch_failures(&uids)?;
        for found in found_studies {
            if !pacs_ids.contains(&found.pacs_id) || found.study.study_uid == snapshot.study_uid {
                continue;
            }
            if let (Some(ours), Some(theirs)) = (&issuer, &found.study.issuer) {
                if ours != theirs.trim() {
                    continue;
                }
            }
            let s = found.study;
            let done = s
                .date
                .as_deref()
                .and_then(|d| dicom_datetime_ms(d, s.time.as_deref(), utc_offset_minutes));
            priors.push(Prior {
                reports: final_reports(&s.study_uid, s.accession.as_deref())?,
                documents: found.documents,
                accession: s.accession,
                study_time_ms: done,
                modalities: s.modalities,
                unavailable: failures
                    .iter()
                    .find(|f| f.prior_uid == s.study_uid)
                    .map(|f| format!("{}: {}", f.pacs_id, f.error)),
                study_uid: s.study_uid,
                body_parts: s.body_parts,
                source: Source::Cfind { ae: found.pacs_id },
            });
        }
    }
    let mut ctx = from_parts(snapshot, &headers, &orders, &results, utc_offset_minutes);
    ctx.priors = priors;
    ctx.pacs = pacs;
    Ok(ctx)
}

/// The context from its parts (also used by `readgate check` on files).
pub fn from_parts(
    snapshot: &StudySnapshot,
    headers: &[BTreeMap<String, String>],
    orders: &[OrderFacts],
    results: &[ResultFacts],
    utc_offset_minutes: i32,
) -> StudyContext {
    let mut ctx = StudyContext {
        study_uid: snapshot.study_uid.clone(),
        accession: snapshot.accession.clone(),
        modalities: snapshot.modalities.clone(),
        calling_aes: snapshot.calling_aes.clone(),
        ..Default::default()
    };
    for h in headers {
        add_dicom(&mut ctx, h);
    }
    // A cancelled order no longer describes the study; the latest non-cancel order
    // control for it wins.
    let cancelled = orders
        .last()
        .map(|o| o.request.control == OrderControl::Cancel)
        .unwrap_or(false);
    if !cancelled {
        for o in orders
            .iter()
            .filter(|o| o.request.control != OrderControl::Cancel)
        {
            add_order(&mut ctx, o, utc_offset_minutes);
        }
    }
    for r in results {
        for obs in &r.result.observations {
            if obs.value_type.as_deref() == Some("NM") {
                add_lab(&mut ctx, obs, source(&r.message, "OBX"), utc_offset_minutes);
            }
        }
    }
    ctx
}

fn add_fact(list: &mut Vec<Fact>, value: &str, source: Source) {
    let value = value.trim();
    if !value.is_empty() && !list.iter().any(|f| f.value == value && f.source == source) {
        list.push(Fact::new(value, source));
    }
}

fn add_dicom(ctx: &mut StudyContext, h: &BTreeMap<String, String>) {
    let fact = |list: &mut Vec<Fact>, key: &str| {
        if let Some(v) = h.get(key) {
            add_fact(
                list,
                v,
                Source::dicom(&format!("({})", key.replace('/', ")/("))),
            );
        }
    };
    fact(&mut ctx.exam_purpose, "0040,1002");
    fact(&mut ctx.exam_purpose, "0040,0275/0040,1002");
    fact(&mut ctx.exam_purpose, "0040,100A/0008,0104");
    fact(&mut ctx.exam_purpose, "0032,1030");
    fact(&mut ctx.clinical_information, "0010,21B0");
    fact(&mut ctx.clinical_information, "0008,1080");
    fact(&mut ctx.contrast_agent, "0018,0010");
    fact(&mut ctx.ordering_physician, "0032,1032");
    fact(&mut ctx.ordering_physician, "0008,0090");
    fact(&mut ctx.callback_phone, "0040,2010");
    fact(&mut ctx.callback_phone, "0008,0094");
    if let Some(code) = h.get("0032,1064/0008,0100") {
        let c = CodedFact {
            code: code.clone(),
            system: h.get("0032,1064/0008,0102").cloned(),
            text: h.get("0032,1064/0008,0104").cloned(),
            source: Source::dicom("(0032,1064)"),
        };
        if !ctx.procedure_codes.contains(&c) {
            ctx.procedure_codes.push(c);
        }
    }
    if let Some(part) = h.get("0018,0015").map(|p| p.trim().to_uppercase()) {
        if !part.is_empty() && !ctx.body_parts.contains(&part) {
            ctx.body_parts.push(part);
        }
    }
    if ctx.study_date.is_none() {
        ctx.study_date = h.get("0008,0020").cloned();
        ctx.study_time = h.get("0008,0030").cloned();
    }
}

fn source(message: &MessageRef, field: &str) -> Source {
    Source::hl7(&message.control_id, &message.message_type, field)
}

fn coded_text(c: &CodedElement) -> Option<String> {
    c.text
        .clone()
        .or_else(|| c.code.clone())
        .filter(|s| !s.trim().is_empty())
}

fn add_order(ctx: &mut StudyContext, o: &OrderFacts, utc_offset_minutes: i32) {
    let r = &o.request;
    let m = &o.message;
    for purpose in &r.exam_purpose {
        if let Some(t) = coded_text(purpose) {
            add_fact(&mut ctx.exam_purpose, &t, source(m, "OBR-31"));
        }
    }
    if let Some(info) = &r.clinical_information {
        add_fact(&mut ctx.clinical_information, info, source(m, "OBR-13"));
    }
    for note in &r.notes {
        add_fact(&mut ctx.clinical_information, note, source(m, "NTE-3"));
    }
    for d in &r.diagnoses {
        let text = d
            .description
            .clone()
            .or_else(|| d.code.as_ref().and_then(coded_text));
        if let Some(t) = text {
            add_fact(&mut ctx.diagnoses, &t, source(m, "DG1-3"));
        }
    }
    for p in &r.ordering_provider {
        // DICOM PN form (Family^Given), so the value can be copied into the image as is.
        let name = match (&p.name.family, &p.name.given) {
            (Some(f), Some(g)) => format!("{f}^{g}"),
            (Some(f), None) => f.clone(),
            (None, Some(g)) => format!("^{g}"),
            (None, None) => String::new(),
        };
        let value = if name.trim().is_empty() {
            p.id.clone().unwrap_or_default()
        } else {
            name
        };
        add_fact(&mut ctx.ordering_physician, &value, source(m, "ORC-12"));
    }
    for phone in &r.callback_phones {
        add_fact(&mut ctx.callback_phone, phone, source(m, "ORC-14"));
    }
    for (c, field) in [
        (&r.requested_procedure, "OBR-4"),
        (&r.procedure_code, "OBR-44"),
    ] {
        if let Some(c) = c {
            if let Some(code) = c.code.clone() {
                let fact = CodedFact {
                    code,
                    system: c.coding_system.clone(),
                    text: c.text.clone(),
                    source: source(m, field),
                };
                if !ctx.procedure_codes.contains(&fact) {
                    ctx.procedure_codes.push(fact);
                }
            }
        }
    }
    if let Some(p) = r.priority.as_ref().and_then(priority_from_hl7) {
        // The most urgent priority any order gives wins.
        ctx.priority = Some(match (ctx.priority, p) {
            (Some(Priority::Stat), _) | (_, Priority::Stat) => Priority::Stat,
            (Some(Priority::Asap), _) | (_, Priority::Asap) => Priority::Asap,
            _ => Priority::Routine,
        });
    }
    if ctx.accession.is_none() {
        ctx.accession = r.accession_number.clone();
    }
    for obs in &r.observations {
        add_lab(ctx, obs, source(m, "OBX"), utc_offset_minutes);
    }
}

fn add_lab(ctx: &mut StudyContext, obs: &Observation, source: Source, utc_offset_minutes: i32) {
    let Some(value) = obs.value.clone().filter(|v| !v.trim().is_empty()) else {
        return;
    };
    let lab = LabFact {
        code: obs.code.code.clone(),
        system: obs.code.coding_system.clone(),
        name: obs.code.text.clone(),
        value,
        units: obs.units.clone(),
        observed_at: obs
            .observation_time
            .as_ref()
            .and_then(|t| t.iso.as_deref())
            .and_then(|iso| iso_to_ms_local(iso, utc_offset_minutes)),
        source,
    };
    if !ctx.labs.contains(&lab) {
        ctx.labs.push(lab);
    }
}

/// DICOM DA (+ optional TM) in the hospital's local time → ms since the epoch (see
/// [`crate::time::parse_dicom_da_tm_loose`]).
pub fn dicom_datetime_ms(da: &str, tm: Option<&str>, utc_offset_minutes: i32) -> Option<i64> {
    crate::time::parse_dicom_da_tm_loose(da, tm, i64::from(utc_offset_minutes) * 60).ok()
}

/// Like [`iso_to_ms`], but a time without an offset is local time at `utc_offset_minutes`
/// (HL7 v2: a DTM without an offset is the sender's local time).
pub fn iso_to_ms_local(s: &str, utc_offset_minutes: i32) -> Option<i64> {
    crate::time::parse_iso_loose_ms(s, i64::from(utc_offset_minutes) * 60).ok()
}

/// `YYYY-MM-DD[THH:MM[:SS[.f]]][Z|±HH:MM]` → ms since the epoch (no offset: UTC).
pub fn iso_to_ms(s: &str) -> Option<i64> {
    crate::time::parse_iso_loose_ms(s, 0).ok()
}

/// The policy's priority of an HL7 order priority (unknown codes: by their text, else none).
pub(crate) fn priority_from_hl7(p: &crate::hl7::message::Priority) -> Option<Priority> {
    use crate::hl7::message::Priority as H;
    match p {
        H::Stat => Some(Priority::Stat),
        H::Asap => Some(Priority::Asap),
        H::Routine => Some(Priority::Routine),
        H::Other(code) => Priority::from_code(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso_to_ms("1970-01-01"), Some(0));
        assert_eq!(iso_to_ms("1970-01-02T00:00:00Z"), Some(86_400_000));
        assert_eq!(
            iso_to_ms("2024-05-30T10:15:00+09:00"),
            Some(1_717_031_700_000)
        );
        assert_eq!(iso_to_ms("garbage"), None);
        // HL7 times without an offset are the sender's local time
        assert_eq!(
            iso_to_ms_local("2024-05-30T10:15:00", 540),
            Some(1_717_031_700_000)
        );
        assert_eq!(
            iso_to_ms_local("2024-05-30T10:15:00+09:00", 0),
            Some(1_717_031_700_000)
        );
        assert_eq!(
            dicom_datetime_ms("20240530", Some("101500"), 540),
            Some(1_717_031_700_000)
        );
    }

    #[test]
    fn facts_keep_their_sources() {
        let snapshot = StudySnapshot {
            study_uid: "1.2".into(),
            accession: Some("A1".into()),
            modalities: vec!["CT".into()],
            calling_aes: vec!["CT01".into()],
            instance_count: 1,
            last_received_at: 0,
        };
        let mut h = BTreeMap::new();
        h.insert(
            "0040,0275/0040,1002".to_string(),
            "肺塞栓の除外".to_string(),
        );
        h.insert("0018,0010".to_string(), "Iopamidol".to_string());
        let ctx = from_parts(&snapshot, &[h], &[], &[], 540);
        assert_eq!(ctx.exam_purpose[0].value, "肺塞栓の除外");
        assert_eq!(
            ctx.exam_purpose[0].source,
            Source::dicom("(0040,0275)/(0040,1002)")
        );
        assert_eq!(ctx.contrast_agent.len(), 1);
    }
}
