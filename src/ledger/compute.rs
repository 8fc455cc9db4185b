//! A month of the ledger: every study first received in the month (local time, see
//! `ledger.utc_offset`), its reads resolved against the roster and places, its report
//! chain and confirmation evidence, its claim eligibility with every reason, and the
//! monthly figures (part-time share, reads by category and place, held and released).

use super::events::{from_hl7_report, Action, Origin, ReadEvent};
use super::places::{Location, PlaceClues};
use super::reasons as r;
use super::roster::Employment;
use super::roster::Reader;
use super::{Ledger, LedgerError};
use crate::model::Disposition;
use crate::store::{LedgerStudy, Store};
use crate::time::{format_ms, Month};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportScope {
    pub month: Month,
    /// Only studies whose responsible receiving facility is this one.
    pub facility: Option<String>,
    pub gateway_id: String,
    pub sending_facility: String,
}

pub const SCHEMA_ID: &str = "readgate.ledger.report/1";

#[derive(Debug, Clone, Serialize)]
pub struct LedgerReport {
    pub schema: &'static str,
    pub generated_at: String,
    pub gateway: String,
    pub sending_facility: String,
    pub month: String,
    pub utc_offset: String,
    pub receiving_facility_filter: Option<String>,
    pub policy: Policy,
    pub totals: Totals,
    pub reasons: Vec<ReasonCount>,
    pub part_time_share: Share,
    pub by_receiving_facility: Vec<Share>,
    pub reads_by_category_place: Vec<ReadCount>,
    pub formal_confirmations: Vec<FormalRow>,
    pub unknown_readers: Vec<UnknownReader>,
    pub unknown_places: Vec<UnknownPlace>,
    pub held: Vec<HeldRow>,
    pub forwarded_incomplete: Vec<HeldRow>,
    pub studies: Vec<StudyLedger>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    pub full_time_remote_eligible: bool,
    pub part_time_warning_percent: f64,
    pub part_time_critical_percent: f64,
    pub min_open_secs: u64,
    pub unchanged_similarity: f64,
    pub burst_count: u32,
    pub burst_window_secs: u64,
    pub roster_entries: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub studies: usize,
    pub forwarded: usize,
    pub with_reads: usize,
    pub with_final_report: usize,
    pub eligible: usize,
    pub not_eligible: usize,
    pub held_now: usize,
    pub ever_held: usize,
    pub released_override: usize,
    pub forwarded_incomplete: usize,
    pub rejected: usize,
    pub read_events_rest: usize,
    pub read_events_hl7: usize,
    pub confirmations: usize,
    pub formal_confirmations: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReasonCount {
    pub code: &'static str,
    pub clause: &'static str,
    pub studies: usize,
}

/// The part-time share of claimed reads (ATS-3-note2).
#[derive(Debug, Clone, Serialize)]
pub struct Share {
    /// The sending facility, or a receiving facility in `by_receiving_facility`.
    pub facility: String,
    /// Eligible studies (claimed reads).
    pub claimed: usize,
    pub first_read_full_time: usize,
    pub first_read_part_time: usize,
    pub first_read_trainee: usize,
    /// (part-time + trainee) / claimed × 100; 0 when nothing is claimed.
    pub share_percent: f64,
    pub warning_percent: f64,
    pub critical_percent: f64,
    /// `ok`, `warning` (share > warning) or `critical` (share > critical).
    pub level: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReadCount {
    /// `full_time`, `part_time`, `trainee` or `unknown`.
    pub category: &'static str,
    pub place: Location,
    /// Distinct (study, reader) pairs.
    pub reads: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct FormalRow {
    pub study_uid: String,
    pub accession: Option<String>,
    pub author: String,
    pub signer: String,
    pub similarity: Option<f64>,
    pub signer_open_secs: f64,
    pub prelim_to_final_secs: Option<f64>,
    pub burst: bool,
    pub why: Vec<&'static str>,
    /// Whether it makes the study not eligible (the first reader was not full-time).
    pub counts_against_claim: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnknownReader {
    pub reader_id: String,
    pub events: usize,
    pub studies: usize,
    pub sources: Vec<String>,
    pub example_studies: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnknownPlace {
    pub reader_id: String,
    pub events: usize,
    pub studies: usize,
    pub example_studies: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeldRow {
    pub study_uid: String,
    pub accession: Option<String>,
    pub state: crate::model::StudyState,
    pub verdict: Option<Disposition>,
    /// Hold / incomplete reason codes as the gate recorded them.
    pub reasons: Vec<String>,
    pub held_at: Option<String>,
    pub released_at: Option<String>,
    pub override_by: Option<String>,
    pub override_reason: Option<String>,
    pub rejected: bool,
}

/// A reader as they appear on one study.
#[derive(Debug, Clone, Serialize)]
pub struct ReaderOnStudy {
    pub reader_id: String,
    pub known: bool,
    pub name: Option<String>,
    /// `full_time`, `part_time`, `trainee` or `unknown`.
    pub category: &'static str,
    pub board_certified: Option<bool>,
    pub facility: Option<String>,
    /// Outside if any of their events on this study was outside, else inside if any was
    /// inside, else unknown.
    pub place: Location,
    pub responsible: Option<bool>,
    pub events: usize,
    /// Bit 1: REST events, bit 2: HL7 reports.
    #[serde(skip)]
    origins: u8,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainEntry {
    /// `preliminary`, `final`, `confirmed`, `addendum`.
    pub action: &'static str,
    pub reader_id: String,
    pub at: String,
    /// `hl7` (with MSH-10) or `rest`.
    pub source: String,
    pub place: Location,
    /// Similarity of this version's text to the previous HL7 version's.
    pub similarity_to_previous: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Confirmation {
    pub author: String,
    pub confirmer: String,
    pub author_category: &'static str,
    pub preliminary_at: String,
    pub final_at: String,
    pub prelim_to_final_secs: Option<f64>,
    /// Preliminary vs final text (None: one of them is not known).
    pub similarity: Option<f64>,
    pub text_changed: Option<bool>,
    /// How long the confirmer had the study open before signing.
    pub signer_open_secs: f64,
    /// `read_events` (opened/closed), `hl7_period` (NDL start/end), or `none`.
    pub open_basis: &'static str,
    pub burst: bool,
    pub formal: bool,
    pub formal_why: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StudyLedger {
    pub study_uid: String,
    pub accession: Option<String>,
    pub state: crate::model::StudyState,
    pub verdict: Option<Disposition>,
    pub receiving_facility: Option<String>,
    pub modalities: String,
    pub first_received_at: String,
    pub forwarded_at: Option<String>,
    pub eligible: bool,
    pub reasons: Vec<&'static str>,
    pub first_reader: Option<ReaderOnStudy>,
    pub signer: Option<ReaderOnStudy>,
    pub confirmation: Option<Confirmation>,
    pub chain: Vec<ChainEntry>,
    pub readers: Vec<ReaderOnStudy>,
    pub read_events: usize,
}

fn category(e: Option<Employment>) -> &'static str {
    e.map(Employment::as_str).unwrap_or("unknown")
}

fn action_rank(a: Action) -> u8 {
    match a {
        Action::Opened => 0,
        Action::Preliminary => 1,
        Action::Closed => 2,
        Action::Final | Action::Confirmed => 3,
        Action::Addendum => 4,
    }
}

struct Resolved<'a> {
    ev: ReadEvent,
    reader: Option<&'a Reader>,
    location: Location,
    responsible: Option<bool>,
    /// The roster entry's first id, or the raw id: one person with several ids is one key.
    key: String,
}

/// Everything about one study before bursts are known.
struct Analysis {
    reasons: Vec<&'static str>,
    first_reader: Option<ReaderOnStudy>,
    signer: Option<ReaderOnStudy>,
    signer_key: Option<String>,
    final_at: Option<i64>,
    confirmation: Option<Confirmation>,
    chain: Vec<ChainEntry>,
    readers: Vec<ReaderOnStudy>,
    events: usize,
    has_final: bool,
}

/// Builds the month's ledger.
pub fn build(
    store: &Store,
    ledger: &Ledger,
    scope: &ReportScope,
) -> Result<LedgerReport, LedgerError> {
    let off = ledger.offset;
    let (start, end) = scope.month.range(off);
    let timing = std::env::var_os("READGATE_LEDGER_TIMING").is_some();
    let t0 = std::time::Instant::now();
    let lap = |what: &str| {
        if timing {
            eprintln!("ledger: {what} at {:.3} s", t0.elapsed().as_secs_f64());
        }
    };
    store.prepare_bulk_read()?;
    let mut studies = store.ledger_studies(start, end)?;
    if let Some(f) = &scope.facility {
        if f != &scope.sending_facility {
            studies.retain(|s| s.facility.as_deref() == Some(f.as_str()));
        }
    }
    let index: HashMap<i64, usize> = studies
        .iter()
        .enumerate()
        .map(|(i, s)| (s.rowid, i))
        .collect();
    lap("studies loaded");
    // Reports (on the HL7 connection) and read events (on the main one) load in parallel.
    let (rest_rows, hl7_events) = std::thread::scope(|sc| {
        let hl7 = sc.spawn(|| -> Result<Vec<(usize, Vec<ReadEvent>)>, LedgerError> {
            let mut out = Vec::new();
            for rep in store.ledger_reports(start, end)? {
                if let Some(&i) = index.get(&rep.study) {
                    out.push((i, from_hl7_report(&rep, off)));
                }
            }
            Ok(out)
        });
        let rest = store.ledger_read_events(start, end);
        let hl7 = hl7
            .join()
            .unwrap_or_else(|_| Err(LedgerError::Invalid("report loader panicked".into())));
        (rest, hl7)
    });
    lap("read events and reports loaded");
    let mut per_study: Vec<Vec<ReadEvent>> = vec![Vec::new(); studies.len()];
    let mut totals = Totals::default();
    for row in rest_rows? {
        let Some(&i) = index.get(&row.study) else {
            continue;
        };
        if let Some(ev) = ReadEvent::from_rest(row) {
            totals.read_events_rest += 1;
            per_study[i].push(ev);
        }
    }
    for (i, evs) in hl7_events? {
        totals.read_events_hl7 += evs.len();
        per_study[i].extend(evs);
    }
    lap("events grouped");
    // Studies are independent until bursts: analyse them on every core.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let chunk = studies.len().div_ceil(threads).max(1);
    let mut inputs: Vec<Vec<Vec<ReadEvent>>> = Vec::new();
    let mut rest = per_study;
    while rest.len() > chunk {
        let tail = rest.split_off(chunk);
        inputs.push(rest);
        rest = tail;
    }
    inputs.push(rest);
    let analyses: Vec<Analysis> = std::thread::scope(|sc| {
        let handles: Vec<_> = inputs
            .into_iter()
            .enumerate()
            .map(|(c, events)| {
                let studies = &studies[(c * chunk).min(studies.len())..];
                sc.spawn(move || {
                    studies
                        .iter()
                        .zip(events)
                        .map(|(study, evs)| analyse(ledger, study, evs))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(studies.len());
        for h in handles {
            all.extend(
                h.join()
                    .map_err(|_| LedgerError::Invalid("ledger analysis panicked".into()))?,
            );
        }
        Ok::<_, LedgerError>(all)
    })?;
    let mut finals: Vec<(String, i64, usize)> = Vec::new();
    for (i, a) in analyses.iter().enumerate() {
        if let (Some(k), Some(t)) = (&a.signer_key, a.final_at) {
            finals.push((k.clone(), t, i));
        }
    }
    lap("studies analysed");
    let bursts = bursts(
        &mut finals,
        ledger.config.burst_count as usize,
        ledger.config.burst_window_secs as i64 * 1000,
    );

    let mut rows = Vec::with_capacity(studies.len());
    for (i, (study, mut a)) in studies.iter().zip(analyses).enumerate() {
        if let Some(c) = a.confirmation.as_mut() {
            if bursts.contains(&i) {
                c.burst = true;
                c.formal = true;
                c.formal_why.push("burst");
            }
            let counts = c.formal && c.author_category != "full_time";
            if counts && !a.reasons.contains(&r::FORMAL_CONFIRMATION) {
                a.reasons.push(r::FORMAL_CONFIRMATION);
            }
        }
        a.reasons.sort_by_key(|code| {
            r::catalogue()
                .iter()
                .position(|c| c.code == *code)
                .unwrap_or(usize::MAX)
        });
        a.reasons.dedup();
        let _ = a.has_final;
        rows.push(StudyLedger {
            study_uid: study.study_uid.clone(),
            accession: study.accession.clone(),
            state: study.state,
            verdict: study.verdict,
            receiving_facility: study.facility.clone(),
            modalities: study.modalities.clone(),
            first_received_at: format_ms(study.first_received_at, off),
            forwarded_at: study.forwarded_at.map(|t| format_ms(t, off)),
            eligible: a.reasons.is_empty(),
            reasons: a.reasons,
            first_reader: a.first_reader,
            signer: a.signer,
            confirmation: a.confirmation,
            chain: a.chain,
            readers: a.readers,
            read_events: a.events,
        });
    }
    lap("rows built");
    let timeline = store.ledger_timeline(start, end)?;
    let report = summarise(ledger, scope, &studies, rows, timeline, totals);
    lap("summarised");
    Ok(report)
}

/// Studies whose sign-off lies in a burst: ≥ `count` sign-offs by one signer within
/// `window` ms.
fn bursts(finals: &mut [(String, i64, usize)], count: usize, window: i64) -> HashSet<usize> {
    finals.sort();
    let mut out = HashSet::new();
    let mut lo = 0;
    for hi in 0..finals.len() {
        while finals[lo].0 != finals[hi].0 || finals[hi].1 - finals[lo].1 > window {
            lo += 1;
        }
        if hi + 1 - lo >= count {
            for f in &finals[lo..=hi] {
                out.insert(f.2);
            }
        }
    }
    out
}

fn analyse(ledger: &Ledger, study: &LedgerStudy, mut events: Vec<ReadEvent>) -> Analysis {
    events.sort_by_key(|e| (e.at, action_rank(e.action)));
    let responsible = study.facility.as_deref();
    let mut resolved: Vec<Resolved> = events
        .into_iter()
        .map(|ev| {
            let clues = PlaceClues {
                client_ip: ev.client_ip.as_deref(),
                workstation: ev.workstation.as_deref(),
                point_of_care: ev.point_of_care.as_deref(),
                hl7_facility: ev.hl7_facility.as_deref(),
            };
            let reader = ledger.reader(&ev.reader_id, ev.at);
            let home = reader.map(|r| r.facility.as_str()).or(responsible);
            let location = ledger.places.resolve(&clues, home).location;
            let key = reader
                .and_then(|r| r.ids.first().cloned())
                .unwrap_or_else(|| ev.reader_id.clone());
            Resolved {
                responsible: match (reader, responsible) {
                    (Some(r), Some(f)) => Some(r.facility == f),
                    _ => None,
                },
                ev,
                reader,
                location,
                key,
            }
        })
        .collect();
    // A first reader named on the final report (OBR-33) is the same read as their own
    // preliminary report, when that came too.
    let mut prelim_keys_with_text: HashSet<String> = HashSet::new();
    for x in &resolved {
        if x.ev.action == Action::Preliminary && x.ev.text.is_some() {
            prelim_keys_with_text.insert(x.key.clone());
        }
    }
    resolved.retain(|x| {
        !(x.ev.action == Action::Preliminary
            && x.ev.text.is_none()
            && matches!(x.ev.origin, Origin::Hl7 { .. })
            && prelim_keys_with_text.contains(&x.key))
    });

    // Readers on this study.
    let mut order: Vec<String> = Vec::new();
    let mut by_reader: HashMap<String, ReaderOnStudy> = HashMap::new();
    for x in &resolved {
        let entry = by_reader.entry(x.key.clone()).or_insert_with(|| {
            order.push(x.key.clone());
            ReaderOnStudy {
                reader_id: x.ev.reader_id.clone(),
                known: x.reader.is_some(),
                name: x.reader.map(|r| r.name.clone()),
                category: category(x.reader.map(|r| r.employment)),
                board_certified: x.reader.map(|r| r.board_certified),
                facility: x.reader.map(|r| r.facility.clone()),
                place: Location::Unknown,
                responsible: x.responsible,
                events: 0,
                origins: 0,
            }
        });
        entry.events += 1;
        entry.origins |= match x.ev.origin {
            Origin::Rest { .. } => 1,
            Origin::Hl7 { .. } => 2,
        };
        entry.place = match (entry.place, x.location) {
            (Location::Outside, _) | (_, Location::Outside) => Location::Outside,
            (Location::Inside, _) | (_, Location::Inside) => Location::Inside,
            _ => Location::Unknown,
        };
    }
    let readers: Vec<ReaderOnStudy> = order
        .iter()
        .filter_map(|k| by_reader.get(k).cloned())
        .collect();

    let mut reasons: Vec<&'static str> = Vec::new();
    let forwarded =
        study.state == crate::model::StudyState::Forwarded || study.forwarded_at.is_some();
    if !forwarded {
        reasons.push(r::NOT_FORWARDED);
    }
    match study.verdict {
        Some(Disposition::ForwardedIncomplete) => reasons.push(r::FORWARDED_INCOMPLETE),
        Some(Disposition::ReleasedOverride) => reasons.push(r::RELEASED_OVERRIDE),
        _ => {}
    }

    for x in &resolved {
        if x.reader.is_none() {
            reasons.push(r::UNKNOWN_READER);
            continue;
        }
        if x.responsible == Some(false) {
            reasons.push(r::NOT_RESPONSIBLE_FACILITY);
        }
        if x.location == Location::Outside {
            match x.reader.map(|r| r.employment) {
                Some(Employment::PartTime) => reasons.push(r::PART_TIME_READ_OUTSIDE),
                Some(Employment::Trainee) => reasons.push(r::TRAINEE_READ_OUTSIDE),
                Some(Employment::FullTime) if !ledger.config.full_time_remote_eligible => {
                    reasons.push(r::FULL_TIME_READ_OUTSIDE)
                }
                _ => {}
            }
        }
    }

    // The sign-off and the first read.
    let final_idx = resolved.iter().position(|x| x.ev.action.is_sign_off());
    let first_idx = resolved
        .iter()
        .position(|x| x.ev.action == Action::Preliminary)
        .or(final_idx);
    let has_final = final_idx.is_some();
    if !has_final {
        reasons.push(r::NO_FINAL_REPORT);
    }
    let signer_key = final_idx.map(|i| resolved[i].key.clone());
    let final_at = final_idx.map(|i| resolved[i].ev.at);
    let signer = signer_key.as_ref().and_then(|k| by_reader.get(k).cloned());
    let first_key = first_idx.map(|i| resolved[i].key.clone());
    let first_reader = first_key.as_ref().and_then(|k| by_reader.get(k).cloned());
    if let Some(s) = &signer {
        if s.known {
            if s.category != "full_time" {
                reasons.push(r::SIGNER_NOT_FULL_TIME);
            }
            if s.board_certified != Some(true) {
                reasons.push(r::SIGNER_NOT_BOARD_CERTIFIED);
            }
        }
    }
    for who in [&first_reader, &signer].into_iter().flatten() {
        if who.known && who.place == Location::Unknown {
            reasons.push(r::UNKNOWN_PLACE);
        }
    }

    // The report chain.
    let mut chain = Vec::new();
    let mut last_text: Option<&str> = None;
    for x in &resolved {
        if matches!(x.ev.action, Action::Opened | Action::Closed) {
            continue;
        }
        let similarity_to_previous = match (&x.ev.text, last_text) {
            (Some(t), Some(prev)) => Some(similar(prev, t)),
            _ => None,
        };
        if let Some(t) = &x.ev.text {
            last_text = Some(t);
        }
        chain.push(ChainEntry {
            action: x.ev.action.as_str(),
            reader_id: x.ev.reader_id.clone(),
            at: format_ms(x.ev.at, ledger.offset),
            source: match &x.ev.origin {
                Origin::Hl7 {
                    control_id, status, ..
                } => format!("hl7 {status} {control_id}"),
                Origin::Rest { source, .. } => source.clone(),
            },
            place: x.location,
            similarity_to_previous,
        });
    }

    // Confirmation evidence: author ≠ signer.
    let confirmation = match (first_idx, final_idx) {
        (Some(fi), Some(si)) if resolved[fi].key != resolved[si].key => {
            Some(confirmation(ledger, &resolved, fi, si, &by_reader))
        }
        _ => None,
    };
    if let Some(c) = &confirmation {
        if c.formal && c.author_category != "full_time" {
            reasons.push(r::FORMAL_CONFIRMATION);
        }
    }
    Analysis {
        reasons,
        first_reader,
        signer,
        signer_key,
        final_at,
        confirmation,
        chain,
        readers,
        events: resolved.len(),
        has_final,
    }
}

thread_local! {
    /// The last pair compared: the chain and the confirmation usually compare the same
    /// preliminary and final texts.
    static LAST_SIMILARITY: std::cell::RefCell<Option<(String, String, f64)>> =
        const { std::cell::RefCell::new(None) };
}

/// Similarity of two report texts, rounded to 3 decimals (memoised for the last pair).
fn similar(a: &str, b: &str) -> f64 {
    LAST_SIMILARITY.with(|cell| {
        if let Some((x, y, v)) = cell.borrow().as_ref() {
            if x == a && y == b {
                return *v;
            }
        }
        let v = round3(super::similarity::similarity(a, b));
        *cell.borrow_mut() = Some((a.to_string(), b.to_string(), v));
        v
    })
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn confirmation(
    ledger: &Ledger,
    resolved: &[Resolved<'_>],
    fi: usize,
    si: usize,
    by_reader: &HashMap<String, ReaderOnStudy>,
) -> Confirmation {
    let cfg = &ledger.config;
    let (author, signer) = (&resolved[fi], &resolved[si]);
    let final_at = signer.ev.at;
    // Texts: the first HL7 final version, and the last HL7 preliminary before it.
    let final_text = resolved
        .iter()
        .find(|x| x.ev.action == Action::Final && x.ev.text.is_some())
        .and_then(|x| x.ev.text.clone().map(|t| (t, x.ev.at)));
    let prelim_text = final_text.as_ref().and_then(|(_, fat)| {
        resolved
            .iter()
            .filter(|x| x.ev.action == Action::Preliminary && x.ev.text.is_some())
            .rfind(|x| x.ev.at <= *fat)
            .or_else(|| {
                resolved
                    .iter()
                    .find(|x| x.ev.action == Action::Preliminary && x.ev.text.is_some())
            })
            .and_then(|x| x.ev.text.clone())
    });
    let similarity = match (&prelim_text, &final_text) {
        (Some(p), Some((f, _))) => Some(similar(p, f)),
        _ => None,
    };
    // The confirmer's own time with the study open before signing.
    let mut open_ms: i64 = 0;
    let mut open_since: Option<i64> = None;
    let mut saw_rest_access = false;
    for x in resolved.iter().filter(|x| x.key == signer.key) {
        if x.ev.at > final_at {
            break;
        }
        match x.ev.action {
            Action::Opened => {
                saw_rest_access = true;
                if open_since.is_none() {
                    open_since = Some(x.ev.at);
                }
            }
            Action::Closed | Action::Final | Action::Confirmed => {
                if let Some(s) = open_since.take() {
                    open_ms += x.ev.at.min(final_at) - s;
                }
            }
            _ => {}
        }
    }
    if let Some(s) = open_since {
        open_ms += final_at - s;
    }
    let mut open_basis = if saw_rest_access {
        "read_events"
    } else {
        "none"
    };
    if !saw_rest_access {
        if let Some((s, e)) = signer.ev.period {
            open_ms = e.min(final_at) - s;
            open_basis = "hl7_period";
        }
    }
    let open_secs = open_ms.max(0) as f64 / 1000.0;
    let mut formal_why = Vec::new();
    let unchanged = similarity.map(|s| s >= cfg.unchanged_similarity);
    let short = open_secs < cfg.min_open_secs as f64;
    if unchanged != Some(false) && short {
        formal_why.push(if unchanged.is_some() {
            "text_unchanged"
        } else {
            "text_change_unknown"
        });
        formal_why.push(if open_ms <= 0 {
            "no_image_access"
        } else {
            "image_access_too_short"
        });
    }
    let author_category = by_reader
        .get(&author.key)
        .map(|r| r.category)
        .unwrap_or("unknown");
    Confirmation {
        author: author.ev.reader_id.clone(),
        confirmer: signer.ev.reader_id.clone(),
        author_category,
        preliminary_at: format_ms(author.ev.at, ledger.offset),
        final_at: format_ms(final_at, ledger.offset),
        prelim_to_final_secs: Some((final_at - author.ev.at) as f64 / 1000.0),
        similarity,
        text_changed: unchanged.map(|u| !u),
        signer_open_secs: open_secs,
        open_basis,
        burst: false,
        formal: !formal_why.is_empty(),
        formal_why,
    }
}

fn level(share: f64, warn: f64, crit: f64) -> &'static str {
    if share > crit {
        "critical"
    } else if share > warn {
        "warning"
    } else {
        "ok"
    }
}

fn share(facility: &str, rows: &[&StudyLedger], warn: f64, crit: f64) -> Share {
    let mut s = Share {
        facility: facility.to_string(),
        claimed: 0,
        first_read_full_time: 0,
        first_read_part_time: 0,
        first_read_trainee: 0,
        share_percent: 0.0,
        warning_percent: warn,
        critical_percent: crit,
        level: "ok",
    };
    for row in rows.iter().filter(|r| r.eligible) {
        s.claimed += 1;
        match row.first_reader.as_ref().map(|r| r.category) {
            Some("part_time") => s.first_read_part_time += 1,
            Some("trainee") => s.first_read_trainee += 1,
            _ => s.first_read_full_time += 1,
        }
    }
    if s.claimed > 0 {
        s.share_percent = round3(
            (s.first_read_part_time + s.first_read_trainee) as f64 * 100.0 / s.claimed as f64,
        );
    }
    s.level = level(s.share_percent, warn, crit);
    s
}

fn stored_reason_codes(json: Option<&str>) -> Vec<String> {
    json.and_then(|j| serde_json::from_str::<Vec<serde_json::Value>>(j).ok())
        .map(|v| {
            v.iter()
                .filter_map(|r| r["code"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn summarise(
    ledger: &Ledger,
    scope: &ReportScope,
    studies: &[LedgerStudy],
    rows: Vec<StudyLedger>,
    timeline: Vec<crate::store::LedgerTimelineEvent>,
    mut totals: Totals,
) -> LedgerReport {
    let cfg = &ledger.config;
    let off = ledger.offset;
    let (warn, crit) = (
        cfg.part_time_warning_percent,
        cfg.part_time_critical_percent,
    );
    totals.studies = rows.len();
    let mut reason_counts: BTreeMap<usize, usize> = BTreeMap::new();
    let mut reads: BTreeMap<(&'static str, Location), usize> = BTreeMap::new();
    // reader id → (events, studies, example studies, sources)
    type Unknown = (usize, HashSet<String>, Vec<String>, HashSet<String>);
    let mut unknown_readers: BTreeMap<String, Unknown> = BTreeMap::new();
    let mut unknown_places: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    let mut formal = Vec::new();
    for row in &rows {
        if row.state == crate::model::StudyState::Forwarded || row.forwarded_at.is_some() {
            totals.forwarded += 1;
        }
        if row.read_events > 0 {
            totals.with_reads += 1;
        }
        if row.signer.is_some() {
            totals.with_final_report += 1;
        }
        if row.eligible {
            totals.eligible += 1;
        } else {
            totals.not_eligible += 1;
        }
        for code in &row.reasons {
            if let Some(i) = r::catalogue().iter().position(|c| c.code == *code) {
                *reason_counts.entry(i).or_default() += 1;
            }
        }
        for reader in &row.readers {
            *reads.entry((reader.category, reader.place)).or_default() += 1;
            if !reader.known {
                let e = unknown_readers.entry(reader.reader_id.clone()).or_default();
                e.0 += reader.events;
                e.1.insert(row.study_uid.clone());
                if e.2.len() < 5 {
                    e.2.push(row.study_uid.clone());
                }
                if reader.origins & 1 != 0 {
                    e.3.insert("rest".into());
                }
                if reader.origins & 2 != 0 {
                    e.3.insert("hl7".into());
                }
            } else if reader.place == Location::Unknown {
                let e = unknown_places.entry(reader.reader_id.clone()).or_default();
                e.0 += reader.events;
                if e.1.len() < 5 {
                    e.1.push(row.study_uid.clone());
                }
            }
        }
        if let Some(c) = &row.confirmation {
            totals.confirmations += 1;
            if c.formal {
                totals.formal_confirmations += 1;
                formal.push(FormalRow {
                    study_uid: row.study_uid.clone(),
                    accession: row.accession.clone(),
                    author: c.author.clone(),
                    signer: c.confirmer.clone(),
                    similarity: c.similarity,
                    signer_open_secs: c.signer_open_secs,
                    prelim_to_final_secs: c.prelim_to_final_secs,
                    burst: c.burst,
                    why: c.formal_why.clone(),
                    counts_against_claim: row.reasons.contains(&r::FORMAL_CONFIRMATION),
                });
            }
        }
    }
    let unknown_place_counts: HashMap<String, usize> = rows
        .iter()
        .flat_map(|row| {
            row.readers
                .iter()
                .filter(|r| r.known && r.place == Location::Unknown)
                .map(|r| r.reader_id.clone())
        })
        .fold(HashMap::new(), |mut m, id| {
            *m.entry(id).or_default() += 1;
            m
        });

    // Held, released, rejected, incomplete.
    let mut held_at: HashMap<&str, i64> = HashMap::new();
    let mut released_at: HashMap<&str, i64> = HashMap::new();
    for e in &timeline {
        match e.kind.as_str() {
            "held" => {
                held_at.entry(e.study_uid.as_str()).or_insert(e.at);
            }
            "released-override" => {
                released_at.insert(e.study_uid.as_str(), e.at);
            }
            _ => {}
        }
    }
    let mut held = Vec::new();
    let mut incomplete = Vec::new();
    for s in studies {
        let was_held = held_at.contains_key(s.study_uid.as_str())
            || s.state == crate::model::StudyState::Held
            || matches!(
                s.verdict,
                Some(Disposition::Held | Disposition::ReleasedOverride)
            );
        let rejected = s.state == crate::model::StudyState::Rejected;
        if s.state == crate::model::StudyState::Held {
            totals.held_now += 1;
        }
        if rejected {
            totals.rejected += 1;
        }
        let row = || HeldRow {
            study_uid: s.study_uid.clone(),
            accession: s.accession.clone(),
            state: s.state,
            verdict: s.verdict,
            reasons: stored_reason_codes(s.reasons.as_deref()),
            held_at: held_at
                .get(s.study_uid.as_str())
                .map(|t| format_ms(*t, off)),
            released_at: released_at
                .get(s.study_uid.as_str())
                .map(|t| format_ms(*t, off)),
            override_by: s.override_by.clone(),
            override_reason: s.override_reason.clone(),
            rejected,
        };
        if was_held || rejected {
            totals.ever_held += 1;
            if s.verdict == Some(Disposition::ReleasedOverride) {
                totals.released_override += 1;
            }
            held.push(row());
        }
        if s.verdict == Some(Disposition::ForwardedIncomplete) {
            totals.forwarded_incomplete += 1;
            incomplete.push(row());
        }
    }

    let all: Vec<&StudyLedger> = rows.iter().collect();
    let mut facilities: BTreeMap<String, Vec<&StudyLedger>> = BTreeMap::new();
    for row in &rows {
        if let Some(f) = &row.receiving_facility {
            facilities.entry(f.clone()).or_default().push(row);
        }
    }
    LedgerReport {
        schema: SCHEMA_ID,
        generated_at: format_ms(crate::time::now_ms(), off),
        gateway: scope.gateway_id.clone(),
        sending_facility: scope.sending_facility.clone(),
        month: scope.month.to_string(),
        utc_offset: crate::time::format_offset(off),
        receiving_facility_filter: scope
            .facility
            .clone()
            .filter(|f| f != &scope.sending_facility),
        policy: Policy {
            full_time_remote_eligible: cfg.full_time_remote_eligible,
            part_time_warning_percent: warn,
            part_time_critical_percent: crit,
            min_open_secs: cfg.min_open_secs,
            unchanged_similarity: cfg.unchanged_similarity,
            burst_count: cfg.burst_count,
            burst_window_secs: cfg.burst_window_secs,
            roster_entries: ledger.roster.len(),
        },
        totals,
        reasons: reason_counts
            .into_iter()
            .map(|(i, n)| ReasonCount {
                code: r::catalogue()[i].code,
                clause: r::catalogue()[i].clause,
                studies: n,
            })
            .collect(),
        part_time_share: share(&scope.sending_facility, &all, warn, crit),
        by_receiving_facility: facilities
            .iter()
            .map(|(f, rows)| share(f, rows, warn, crit))
            .collect(),
        reads_by_category_place: reads
            .into_iter()
            .map(|((category, place), n)| ReadCount {
                category,
                place,
                reads: n,
            })
            .collect(),
        formal_confirmations: formal,
        unknown_readers: unknown_readers
            .into_iter()
            .map(|(id, (events, studies, examples, sources))| {
                let mut sources: Vec<String> = sources.into_iter().collect();
                sources.sort();
                UnknownReader {
                    reader_id: id,
                    events,
                    studies: studies.len(),
                    sources,
                    example_studies: examples,
                }
            })
            .collect(),
        unknown_places: unknown_places
            .into_iter()
            .map(|(id, (events, examples))| UnknownPlace {
                studies: unknown_place_counts.get(&id).copied().unwrap_or(0),
                reader_id: id,
                events,
                example_studies: examples,
            })
            .collect(),
        held,
        forwarded_incomplete: incomplete,
        studies: rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_need_count_sign_offs_by_one_signer_within_the_window() {
        let s = 1000;
        // signer A: 5 within 60 s (studies 0-4), then one alone (5); signer B: 4 (6-9)
        let mut finals: Vec<(String, i64, usize)> = (0..5)
            .map(|i| ("A".to_string(), i * 12 * s, i as usize))
            .chain(std::iter::once(("A".to_string(), 3600 * s, 5)))
            .chain((0..4).map(|i| ("B".to_string(), i * s, 6 + i as usize)))
            .collect();
        let b = bursts(&mut finals, 5, 60 * s);
        let mut got: Vec<usize> = b.into_iter().collect();
        got.sort();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        assert!(bursts(&mut finals, 6, 60 * s).is_empty());
    }

    #[test]
    fn share_levels_are_strictly_above_the_thresholds() {
        assert_eq!(level(20.0, 20.0, 30.0), "ok");
        assert_eq!(level(20.1, 20.0, 30.0), "warning");
        assert_eq!(level(30.1, 20.0, 30.0), "critical");
    }
}
