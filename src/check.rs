//! `readgate check`: the gate's verdict on DICOM files (and optional HL7 messages) without
//! a running daemon, so PACS administrators can tune `[policy]` before going live.

use crate::config::Config;
use crate::decide::assemble::{self, OrderFacts, ResultFacts};
use crate::decide::context::{Prior, Source, StudyContext};
use crate::decide::reasons::Lang;
use crate::decide::{Decide, Decision, Gate};
use crate::dicom::dataset::{self, tags};
use crate::hl7::message::Parsed;
use crate::model::Disposition;
use crate::store::{MessageRef, StudySnapshot};
use anyhow::Context as _;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One study found in the input, and what the gate decides for it.
#[derive(Debug, Serialize)]
pub struct StudyVerdict {
    pub study_uid: String,
    pub accession: Option<String>,
    pub instances: usize,
    pub verdict: Disposition,
    pub destination: Option<String>,
    pub facility: Option<String>,
    pub reasons: Vec<crate::decide::HoldReason>,
    pub checks: Vec<crate::decide::policy::CheckResult>,
    #[serde(skip)]
    forwards: bool,
}

#[derive(Default)]
struct StudyFiles {
    accession: Option<String>,
    patient_id: Option<String>,
    study_date: Option<String>,
    modalities: BTreeSet<String>,
    headers: Vec<BTreeMap<String, String>>,
    instances: usize,
}

/// Evaluates `paths` (files or folders of DICOM files) with `hl7_files` as the HL7 context.
pub fn run(
    config: Config,
    paths: &[PathBuf],
    hl7_files: &[PathBuf],
    calling_ae: Option<&str>,
) -> anyhow::Result<Vec<StudyVerdict>> {
    let mut studies: BTreeMap<String, StudyFiles> = BTreeMap::new();
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files).with_context(|| format!("reading {}", p.display()))?;
    }
    if files.is_empty() {
        anyhow::bail!("no DICOM files found in {}", display_paths(paths));
    }
    for file in &files {
        match read_header(file) {
            Ok(header) => {
                let Some(uid) = header.get(tags::STUDY_INSTANCE_UID).map(str::to_string) else {
                    eprintln!(
                        "readgate check: {}: no Study Instance UID, skipped",
                        file.display()
                    );
                    continue;
                };
                let s = studies.entry(uid).or_default();
                s.instances += 1;
                s.accession = s
                    .accession
                    .take()
                    .or(header.get(tags::ACCESSION_NUMBER).map(str::to_string));
                s.patient_id = s
                    .patient_id
                    .take()
                    .or(header.get(tags::PATIENT_ID).map(str::to_string));
                s.study_date = s
                    .study_date
                    .take()
                    .or(header.get(tags::STUDY_DATE).map(str::to_string));
                if let Some(m) = header.get(tags::MODALITY) {
                    s.modalities.insert(m.to_string());
                }
                let ctx = header.context_text();
                if !s.headers.contains(&ctx) {
                    s.headers.push(ctx);
                }
            }
            Err(e) => eprintln!(
                "readgate check: {}: not a readable DICOM file ({e}), skipped",
                file.display()
            ),
        }
    }
    let (orders, results) = read_hl7(hl7_files, &config)?;
    let offset = config.policy.utc_offset_minutes;
    let gate = Gate::new(Arc::new(config));
    let mut out = Vec::new();
    for (uid, s) in &studies {
        let snapshot = StudySnapshot {
            study_uid: uid.clone(),
            accession: s.accession.clone(),
            modalities: s.modalities.iter().cloned().collect(),
            calling_aes: calling_ae.map(|a| vec![a.to_string()]).unwrap_or_default(),
            instance_count: s.instances as i64,
            last_received_at: 0,
        };
        let owned_orders: Vec<OrderFacts> = orders
            .iter()
            .filter(|(o, _)| {
                o.request.study_instance_uid.as_deref() == Some(uid.as_str())
                    || (o.request.accession_number.is_some()
                        && o.request.accession_number == s.accession)
            })
            .map(|(o, _)| o.clone())
            .collect();
        let owned_results: Vec<ResultFacts> = results
            .iter()
            .filter(|(_, patient)| patient.is_some() && *patient == s.patient_id)
            .map(|(r, _)| r.clone())
            .collect();
        let mut ctx: StudyContext =
            assemble::from_parts(&snapshot, &s.headers, &owned_orders, &owned_results, offset);
        // Priors: the patient's other studies in the input, with their final reports.
        for (other_uid, o) in &studies {
            if other_uid == uid || o.patient_id.is_none() || o.patient_id != s.patient_id {
                continue;
            }
            let reports = owned_results
                .iter()
                .filter(|r| {
                    matches!(r.result.status_code.as_str(), "F" | "C")
                        && (r.result.study_instance_uid.as_deref() == Some(other_uid.as_str())
                            || (r.result.accession_number.is_some()
                                && r.result.accession_number == o.accession))
                })
                .count() as u32;
            ctx.priors.push(Prior {
                study_uid: other_uid.clone(),
                accession: o.accession.clone(),
                study_time_ms: o
                    .study_date
                    .as_deref()
                    .and_then(|d| assemble::dicom_datetime_ms(d, None, offset)),
                reports,
                documents: 0,
                modalities: o.modalities.iter().cloned().collect(),
                source: Source::dicom("input files"),
                body_parts: o
                    .headers
                    .iter()
                    .filter_map(|h| h.get("0018,0015"))
                    .map(|p| p.trim().to_uppercase())
                    .filter(|p| !p.is_empty())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                unavailable: None,
            });
        }
        let decision: Decision = gate.decide(&ctx);
        let forwards = decision.forwards();
        out.push(StudyVerdict {
            study_uid: uid.clone(),
            accession: ctx.accession.clone(),
            instances: s.instances,
            verdict: decision.disposition(),
            destination: decision.route.as_ref().map(|r| r.destination.clone()),
            facility: decision.route.as_ref().map(|r| r.facility.clone()),
            reasons: decision.reasons.clone(),
            checks: decision.evaluation.map(|e| e.checks).unwrap_or_default(),
            forwards,
        });
    }
    Ok(out)
}

/// Whether every study would be forwarded (exit 0) or any held (exit 2).
pub fn all_forward(verdicts: &[StudyVerdict]) -> bool {
    verdicts.iter().all(|v| v.forwards)
}

pub fn print(verdicts: &[StudyVerdict], lang: Lang) {
    for v in verdicts {
        let (head, route) = match lang {
            Lang::Ja => (
                match v.verdict {
                    Disposition::Pass | Disposition::ReleasedOverride => "送信します",
                    Disposition::ForwardedIncomplete => {
                        "緊急のため不足のまま送信します（要追加情報）"
                    }
                    Disposition::Held => "保留します",
                },
                v.facility
                    .as_deref()
                    .map(|f| format!("（読影施設 {f}）"))
                    .unwrap_or_default(),
            ),
            Lang::En => (
                match v.verdict {
                    Disposition::Pass | Disposition::ReleasedOverride => "would be forwarded",
                    Disposition::ForwardedIncomplete => {
                        "would be forwarded now, flagged incomplete (STAT)"
                    }
                    Disposition::Held => "would be HELD",
                },
                v.facility
                    .as_deref()
                    .map(|f| format!(" (to {f})"))
                    .unwrap_or_default(),
            ),
        };
        println!(
            "{} [{}] {} instance(s): {} — {head}{route}",
            v.study_uid,
            v.accession.as_deref().unwrap_or("-"),
            v.instances,
            v.verdict
        );
        for r in &v.reasons {
            let message = lang.pick(&r.message_ja, &r.message_en);
            println!("  - {} ({}): {message}", r.code, r.clause);
        }
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.path());
        for e in entries {
            collect(&e.path(), out)?;
        }
    } else if path.is_file() {
        out.push(path.to_path_buf());
    } else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file or folder",
        ));
    }
    Ok(())
}

fn read_header(path: &Path) -> anyhow::Result<dataset::Header> {
    dataset::walk_file(path).map_err(anyhow::Error::msg)
}

type Orders = Vec<(OrderFacts, Option<String>)>;
type Results = Vec<(ResultFacts, Option<String>)>;

/// HL7 files: one message per file, several separated by MLLP framing, or one per MSH.
fn read_hl7(files: &[PathBuf], config: &Config) -> anyhow::Result<(Orders, Results)> {
    let hl7_config = crate::hl7::Config {
        default_charset: config
            .hl7
            .as_ref()
            .map(|h| h.default_charset)
            .unwrap_or(crate::hl7::Charset::Ascii),
        accept_unsupported_types: true,
        application: Some("READGATE".into()),
        facility: None,
        limits: config.hl7.as_ref().map(|h| h.limits).unwrap_or_default(),
        expected_images: config
            .hl7
            .as_ref()
            .and_then(|h| h.expected_images_field.clone()),
    };
    let (mut orders, mut results) = (Vec::new(), Vec::new());
    for (n, path) in files.iter().enumerate() {
        let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        for (i, message) in split_messages(&raw).into_iter().enumerate() {
            let outcome = crate::hl7::process(message, &hl7_config, "CHECK", "");
            let parsed = match outcome.result {
                Ok(p) => p,
                Err(e) => {
                    eprintln!(
                        "readgate check: {} (message {}): {e} — ignored",
                        path.display(),
                        i + 1
                    );
                    continue;
                }
            };
            let header = parsed.header().clone();
            let message_ref = MessageRef {
                id: (n * 1000 + i) as i64,
                control_id: header.control_id.clone(),
                message_type: format!(
                    "{}^{}",
                    header.message_type.code, header.message_type.trigger
                ),
                sender: path.display().to_string(),
                received_at: 0,
            };
            match parsed {
                Parsed::Order(order) => {
                    let patient = order.patient.identifiers.first().map(|p| p.id.clone());
                    for request in order.requests {
                        orders.push((
                            OrderFacts {
                                message: message_ref.clone(),
                                request,
                            },
                            patient.clone(),
                        ));
                    }
                }
                Parsed::Report(report) => {
                    let patient = report.patient.identifiers.first().map(|p| p.id.clone());
                    for result in report.results {
                        results.push((
                            ResultFacts {
                                message: message_ref.clone(),
                                result,
                            },
                            patient.clone(),
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    Ok((orders, results))
}

fn split_messages(raw: &[u8]) -> Vec<&[u8]> {
    if raw.contains(&0x0B) {
        return raw
            .split(|&b| b == 0x0B)
            .map(|f| f.split(|&b| b == 0x1C).next().unwrap_or(f))
            .filter(|f| f.len() > 3)
            .collect();
    }
    // Plain files: a new message starts at every "MSH|" at the start of a line.
    let mut starts = vec![];
    for i in 0..raw.len() {
        if raw[i..].starts_with(b"MSH") && (i == 0 || raw[i - 1] == b'\r' || raw[i - 1] == b'\n') {
            starts.push(i);
        }
    }
    if starts.is_empty() {
        return vec![raw];
    }
    starts.push(raw.len());
    starts.windows(2).map(|w| &raw[w[0]..w[1]]).collect()
}
