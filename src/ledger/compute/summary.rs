//! The month's figures: totals, part-time share per facility (ATS-3-note2), reads by
//! category and place, held and released studies.

use super::*;

pub(super) fn level(share: f64, warn: f64, crit: f64) -> ShareLevel {
    if share > crit {
        ShareLevel::Critical
    } else if share > warn {
        ShareLevel::Warning
    } else {
        ShareLevel::Ok
    }
}

pub(super) fn share(facility: &str, rows: &[&StudyLedger], warn: f64, crit: f64) -> Share {
    let mut s = Share {
        facility: facility.to_string(),
        claimed: 0,
        first_read_full_time: 0,
        first_read_part_time: 0,
        first_read_trainee: 0,
        share_percent: 0.0,
        warning_percent: warn,
        critical_percent: crit,
        level: ShareLevel::Ok,
    };
    for row in rows.iter().filter(|r| r.eligible) {
        s.claimed += 1;
        match row.first_reader.as_ref().map(|r| r.category) {
            Some(ReaderCategory::PartTime) => s.first_read_part_time += 1,
            Some(ReaderCategory::Trainee) => s.first_read_trainee += 1,
            // Full-time. An unknown first reader makes a study not eligible; were one
            // counted here, it would count as full-time, as it always has.
            Some(ReaderCategory::FullTime | ReaderCategory::Unknown) | None => {
                s.first_read_full_time += 1
            }
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

pub(super) fn stored_reason_codes(json: Option<&str>) -> Vec<String> {
    json.and_then(|j| serde_json::from_str::<Vec<serde_json::Value>>(j).ok())
        .map(|v| {
            v.iter()
                .filter_map(|r| r["code"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn summarise(
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
    let mut reads: BTreeMap<(ReaderCategory, Location), usize> = BTreeMap::new();
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
        match e.kind {
            EventKind::Held => {
                held_at.entry(e.study_uid.as_str()).or_insert(e.at);
            }
            EventKind::ReleasedOverride => {
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
