//! One study's reads: the report chain, who signed, and whether a confirmation of
//! another reader's preliminary was substantive (ATS-3-note1).

use super::*;

/// Studies whose sign-off lies in a burst: ≥ `count` sign-offs by one signer within
/// `window` ms.
pub(super) fn bursts(
    finals: &mut [(String, i64, usize)],
    count: usize,
    window: i64,
) -> HashSet<usize> {
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

pub(super) fn analyse(
    ledger: &Ledger,
    study: &LedgerStudy,
    mut events: Vec<ReadEvent>,
) -> Analysis {
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
        if x.ev.action == ReadAction::Preliminary && x.ev.text.is_some() {
            prelim_keys_with_text.insert(x.key.clone());
        }
    }
    resolved.retain(|x| {
        !(x.ev.action == ReadAction::Preliminary
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
                category: x.reader.map(|r| r.employment).into(),
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
        .position(|x| x.ev.action == ReadAction::Preliminary)
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
            if s.category != ReaderCategory::FullTime {
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
        if matches!(x.ev.action, ReadAction::Opened | ReadAction::Closed) {
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
        if c.formal && c.author_category != ReaderCategory::FullTime {
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
pub(super) fn similar(a: &str, b: &str) -> f64 {
    LAST_SIMILARITY.with(|cell| {
        if let Some((x, y, v)) = cell.borrow().as_ref() {
            if x == a && y == b {
                return *v;
            }
        }
        let v = round3(crate::ledger::similarity::similarity(a, b));
        *cell.borrow_mut() = Some((a.to_string(), b.to_string(), v));
        v
    })
}

pub(super) fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

pub(super) fn confirmation(
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
        .find(|x| x.ev.action == ReadAction::Final && x.ev.text.is_some())
        .and_then(|x| x.ev.text.clone().map(|t| (t, x.ev.at)));
    let prelim_text = final_text.as_ref().and_then(|(_, fat)| {
        resolved
            .iter()
            .filter(|x| x.ev.action == ReadAction::Preliminary && x.ev.text.is_some())
            .rfind(|x| x.ev.at <= *fat)
            .or_else(|| {
                resolved
                    .iter()
                    .find(|x| x.ev.action == ReadAction::Preliminary && x.ev.text.is_some())
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
            ReadAction::Opened => {
                saw_rest_access = true;
                if open_since.is_none() {
                    open_since = Some(x.ev.at);
                }
            }
            ReadAction::Closed | ReadAction::Final | ReadAction::Confirmed => {
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
        .unwrap_or(ReaderCategory::Unknown);
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
