//! Prior studies and their reports (JRS-7.3.2).

use super::*;

/// The priors the reader should compare with (newest first): each prior study once,
/// done within `lookback_days` before `reference_ms` (undated ones included, last), of a
/// comparable modality when `same_modality` is set. What the check asks reports for, and
/// what is sent with the study.
pub(crate) fn comparable_priors(
    ctx: &StudyContext,
    cfg: &crate::config::policy::PriorsConfig,
    reference_ms: i64,
) -> Vec<Prior> {
    let oldest_ok =
        reference_ms.saturating_sub(i64::from(cfg.lookback_days).saturating_mul(DAY_MS));
    // The same prior may be known twice (received here and answered by C-FIND): one
    // entry per study UID, keeping the larger report count and the known time.
    let mut priors: Vec<Prior> = Vec::new();
    for p in &ctx.priors {
        if p.study_uid.trim() == ctx.study_uid.trim() {
            continue;
        }
        match priors.iter_mut().find(|q| q.study_uid == p.study_uid) {
            Some(q) => {
                q.reports = q.reports.max(p.reports);
                q.documents = q.documents.max(p.documents);
                for m in &p.modalities {
                    if !q.modalities.contains(m) {
                        q.modalities.push(m.clone());
                    }
                }
                for b in &p.body_parts {
                    if !q.body_parts.contains(b) {
                        q.body_parts.push(b.clone());
                    }
                }
                q.study_time_ms = q.study_time_ms.or(p.study_time_ms);
                q.accession = q.accession.clone().or_else(|| p.accession.clone());
            }
            None => priors.push(p.clone()),
        }
    }
    // A prior after this study is not a prior; one with no date cannot be shown to be
    // outside the look-back, so it stays in (sorted as the oldest).
    priors.retain(|p| match p.study_time_ms {
        Some(t) => t <= reference_ms && t >= oldest_ok,
        None => true,
    });
    if cfg.same_modality {
        priors.retain(|p| comparable(ctx, p, cfg));
    }
    if cfg.same_body_part {
        priors.retain(|p| same_body_part(ctx, p, cfg));
    }
    priors.sort_by_key(|p| std::cmp::Reverse(p.study_time_ms));
    priors
}

pub(super) fn check_priors(
    ctx: &StudyContext,
    policy: &PolicyConfig,
    reference_ms: i64,
) -> (CheckResult, Option<HoldReason>) {
    let cfg = &policy.priors;
    let priors = comparable_priors(ctx, cfg, reference_ms);
    let required: &[Prior] = match cfg.require {
        PriorRequirement::All => &priors,
        PriorRequirement::MostRecent => {
            let n = usize::try_from(cfg.most_recent_count).unwrap_or(usize::MAX);
            &priors[..priors.len().min(n)]
        }
    };
    let clause = reasons::JRS_7_3_2.to_string();
    let scope = match cfg.require {
        PriorRequirement::All => format!("all priors within {} days", cfg.lookback_days),
        PriorRequirement::MostRecent => format!(
            "the {} most recent prior(s) within {} days",
            cfg.most_recent_count, cfg.lookback_days
        ),
    };
    let name = |p: &Prior| {
        format!(
            "{} ({})",
            p.accession.as_deref().unwrap_or(&p.study_uid),
            p.study_time_ms
                .map(|t| format_date(t, policy.utc_offset_minutes))
                .unwrap_or_else(|| "date unknown".into())
        )
    };
    let missing: Vec<&Prior> = required
        .iter()
        .filter(|p| p.reports == 0 && p.documents == 0)
        .collect();
    if missing.is_empty() {
        let mut sources: Vec<Source> = Vec::new();
        for p in required {
            if !sources.contains(&p.source) {
                sources.push(p.source.clone());
            }
        }
        let detail = if required.is_empty() {
            format!("no prior studies within {} days", cfg.lookback_days)
        } else {
            format!(
                "{scope}: reports on file for {}",
                required.iter().map(name).collect::<Vec<_>>().join(", ")
            )
        };
        return (
            CheckResult {
                check: check_id::PRIOR_REPORTS.into(),
                clause,
                passed: true,
                detail,
                sources,
            },
            None,
        );
    }
    let refs: Vec<PriorRef> = missing.iter().map(|p| prior_ref(p, policy)).collect();
    let mut sources: Vec<Source> = Vec::new();
    for p in &missing {
        if !sources.contains(&p.source) {
            sources.push(p.source.clone());
        }
    }
    (
        CheckResult {
            check: check_id::PRIOR_REPORTS.into(),
            clause,
            passed: false,
            detail: format!(
                "{scope}: no final report for {}",
                missing
                    .iter()
                    .map(|p| name(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            sources,
        },
        Some(reasons::prior_report_missing(&refs, cfg.lookback_days)),
    )
}

/// A prior as a hold reason names it: modality, accession, local date.
fn prior_ref(p: &Prior, policy: &PolicyConfig) -> PriorRef {
    PriorRef {
        modality: imaging(&p.modalities).next().map(str::to_string),
        accession: p.accession.clone(),
        study_uid: p.study_uid.clone(),
        date: p
            .study_time_ms
            .map(|t| format_date(t, policy.utc_offset_minutes)),
    }
}

/// Modalities that hold no images of their own to compare with (reports, presentation
/// states, key object selections, documents).
const NOT_IMAGING: [&str; 4] = ["SR", "PR", "KO", "DOC"];

fn imaging(modalities: &[String]) -> impl Iterator<Item = &str> {
    modalities
        .iter()
        .map(|m| m.trim())
        .filter(|m| !m.is_empty() && !NOT_IMAGING.iter().any(|n| m.eq_ignore_ascii_case(n)))
}

/// Whether a prior can be compared with the study: a shared imaging modality, or one
/// `related_modalities` relates; unknown modalities on either side always count.
fn comparable(
    ctx: &StudyContext,
    prior: &Prior,
    cfg: &crate::config::policy::PriorsConfig,
) -> bool {
    let current: Vec<&str> = imaging(&ctx.modalities).collect();
    let earlier: Vec<&str> = imaging(&prior.modalities).collect();
    related(&current, &earlier, &cfg.related_modalities)
}

/// Whether a prior examined the study's body part (or one `related_body_parts` relates);
/// unknown body parts on either side always count.
fn same_body_part(
    ctx: &StudyContext,
    prior: &Prior,
    cfg: &crate::config::policy::PriorsConfig,
) -> bool {
    fn known(parts: &[String]) -> Vec<&str> {
        parts
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .collect()
    }
    related(
        &known(&ctx.body_parts),
        &known(&prior.body_parts),
        &cfg.related_body_parts,
    )
}

/// Whether a study's values (`current`) and a prior's (`earlier`) share one, ignoring
/// case, or `relations` relates one of the study's to one of the prior's (one
/// direction); with no value known on either side they count as related.
fn related(
    current: &[&str],
    earlier: &[&str],
    relations: &std::collections::BTreeMap<String, Vec<String>>,
) -> bool {
    if current.is_empty() || earlier.is_empty() {
        return true;
    }
    current.iter().any(|c| {
        let related = relations
            .iter()
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(c))
            .flat_map(|(_, v)| v.iter());
        earlier.iter().any(|e| {
            e.eq_ignore_ascii_case(c) || related.clone().any(|r| r.trim().eq_ignore_ascii_case(e))
        })
    })
}

/// Every `[[pacs]]` must have answered for the patient: otherwise the priors above are
/// only those readgate happened to know, and the reader may lack what the PACS holds.
/// And a comparable prior the PACS holds but could not deliver the last time readgate
/// retrieved it (to send with the study) keeps the study back, named, until it can.
pub(super) fn check_pacs(
    ctx: &StudyContext,
    policy: &PolicyConfig,
    reference_ms: i64,
) -> (CheckResult, Option<HoldReason>) {
    use super::super::context::PacsAnswer;
    let mut unanswered = Vec::new();
    let mut answered = Vec::new();
    for p in comparable_priors(ctx, &policy.priors, reference_ms) {
        let (Some(error), Source::Cfind { ae }) = (&p.unavailable, &p.source) else {
            continue;
        };
        unanswered.push(reasons::UnansweredPacs {
            pacs: ae.clone(),
            error: Some(error.clone()),
            prior: Some(prior_ref(&p, policy)),
        });
    }
    for a in &ctx.pacs {
        match a {
            PacsAnswer::Answered { pacs, found, .. } => {
                answered.push(format!("{pacs} answered ({found} studies)"))
            }
            PacsAnswer::Failed { pacs, error, .. } => unanswered.push(reasons::UnansweredPacs {
                pacs: pacs.clone(),
                error: Some(error.clone()),
                prior: None,
            }),
            PacsAnswer::NotYet { pacs } => unanswered.push(reasons::UnansweredPacs {
                pacs: pacs.clone(),
                error: None,
                prior: None,
            }),
        }
    }
    let sources = ctx
        .pacs
        .iter()
        .map(|a| match a {
            PacsAnswer::Answered { pacs, .. }
            | PacsAnswer::Failed { pacs, .. }
            | PacsAnswer::NotYet { pacs } => Source::Cfind { ae: pacs.clone() },
        })
        .collect();
    let passed = unanswered.is_empty();
    let detail = if passed {
        answered.join(", ")
    } else {
        unanswered
            .iter()
            .map(|u| match (&u.prior, &u.error) {
                (Some(p), Some(e)) => format!("prior {} not retrieved: {e}", p.study_uid),
                (_, Some(e)) => format!("{} failed: {e}", u.pacs),
                (_, None) => format!("{} not answered yet", u.pacs),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let reason = (!passed).then(|| reasons::priors_unavailable(&unanswered));
    (
        CheckResult {
            check: check_id::PRIOR_REPORTS_PACS.into(),
            clause: reasons::JRS_7_3_2.to_string(),
            passed,
            detail,
            sources,
        },
        reason,
    )
}
