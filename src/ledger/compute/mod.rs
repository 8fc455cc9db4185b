//! A month of the ledger: every study first received in the month (local time, see
//! `ledger.utc_offset`), its reads resolved against the roster and places, its report
//! chain and confirmation evidence, its claim eligibility with every reason, and the
//! monthly figures (part-time share, reads by category and place, held and released).

use super::events::{from_hl7_report, Origin, ReadAction, ReadEvent};
use super::places::{Location, PlaceClues};
use super::reasons as r;
use super::roster::Employment;
use super::roster::Reader;
use super::{Ledger, LedgerError};
use crate::model::{Disposition, EventKind};
use crate::store::{LedgerStudy, Store};
use crate::time::{format_ms, Month};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

mod analyse;
mod report;
mod summary;

use analyse::*;
pub use report::*;
use summary::*;

pub(super) fn action_rank(a: ReadAction) -> u8 {
    match a {
        ReadAction::Opened => 0,
        ReadAction::Preliminary => 1,
        ReadAction::Closed => 2,
        ReadAction::Final | ReadAction::Confirmed => 3,
        ReadAction::Addendum => 4,
    }
}

pub(super) struct Resolved<'a> {
    pub(super) ev: ReadEvent,
    pub(super) reader: Option<&'a Reader>,
    pub(super) location: Location,
    pub(super) responsible: Option<bool>,
    /// The roster entry's first id, or the raw id: one person with several ids is one key.
    pub(super) key: String,
}

/// Everything about one study before bursts are known.
pub(super) struct Analysis {
    pub(super) reasons: Vec<&'static str>,
    pub(super) first_reader: Option<ReaderOnStudy>,
    pub(super) signer: Option<ReaderOnStudy>,
    pub(super) signer_key: Option<String>,
    pub(super) final_at: Option<i64>,
    pub(super) confirmation: Option<Confirmation>,
    pub(super) chain: Vec<ChainEntry>,
    pub(super) readers: Vec<ReaderOnStudy>,
    pub(super) events: usize,
    pub(super) has_final: bool,
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
        totals.read_events_rest += 1;
        per_study[i].push(ReadEvent::from_rest(row));
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
            let counts = c.formal && c.author_category != ReaderCategory::FullTime;
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
        assert_eq!(level(20.0, 20.0, 30.0), ShareLevel::Ok);
        assert_eq!(level(20.1, 20.0, 30.0), ShareLevel::Warning);
        assert_eq!(level(30.1, 20.0, 30.0), ShareLevel::Critical);
    }
}
