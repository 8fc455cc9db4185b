//! The policy engine: which facts a study must carry before a remote radiologist reads
//! it (JRS guideline §7 ③, clauses JRS-7.3.1–7.3.3) and whether it has a responsible
//! receiving facility (ATS-4).
//!
//! Pure: [`evaluate`] reads a [`StudyContext`] and a [`PolicyConfig`] and returns an
//! [`Evaluation`]; no clock, no store, no I/O, so the same inputs always give the same
//! verdict and a held study can be re-evaluated and explained later. The time is passed
//! in (`now_ms`) for the same reason.
//!
//! Configuration is the `[policy]` section of readgate.toml. Every key has a default, so
//! a missing section means the JRS default policy: all checks, contrast studies need an
//! eGFR or creatinine value from the last 90 days, the most recent prior within a year
//! needs a final report, STAT studies are forwarded flagged rather than held.

use super::context::{Fact, LabFact, Prior, Priority, Source, StudyContext};
use super::reasons::{self, LabAsk, PriorRef, TextProblem};
use super::HoldReason;
pub use crate::config::policy::*;
pub use crate::model::Verdict;
use crate::time;
use serde::Serialize;

const DAY_MS: i64 = 86_400_000;

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

/// The outcome of one check, kept with the study so a verdict can be explained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// `exam_purpose`, `clinical_information`, `labs.<rule name>`, `prior_reports`,
    /// `ordering_contact.physician`, `ordering_contact.callback`, `route`.
    pub check: String,
    pub clause: String,
    pub passed: bool,
    /// What was seen, in English, for the timeline.
    pub detail: String,
    /// Passed: the sources of the facts that satisfied it. Failed: the sources of the
    /// values that were rejected (placeholders, too short, too old), so the fix goes
    /// where the bad value came from; empty when nothing was sent at all.
    pub sources: Vec<Source>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub verdict: Verdict,
    /// Every failed check's reason, in check order (also for `ForwardIncomplete`).
    pub reasons: Vec<HoldReason>,
    /// Every check that ran.
    pub checks: Vec<CheckResult>,
    pub policy_id: String,
    pub policy_version: String,
    /// Which `[[policy.rules]]` entry chose the checks: `rules[1] er-ct`, or `default`.
    pub rule: String,
}

/// Evaluates one study against the policy. `now_ms` (ms since the Unix epoch) is the
/// reference time when the study has no usable date.
pub fn evaluate(ctx: &StudyContext, policy: &PolicyConfig, now_ms: i64) -> Evaluation {
    let priority = ctx.priority.unwrap_or(Priority::Routine);
    let (rule_name, checks) = select_rule(ctx, policy, priority);
    let reference_ms = study_reference_ms(ctx, policy.utc_offset_minutes).unwrap_or(now_ms);

    let mut results = Vec::new();
    let mut reasons = Vec::new();
    let mut push = |outcome: (CheckResult, Option<HoldReason>)| {
        results.push(outcome.0);
        if let Some(r) = outcome.1 {
            reasons.push(r);
        }
    };
    if checks.contains(&Check::ExamPurpose) {
        push(check_text(
            TextCheck::ExamPurpose,
            &[&ctx.exam_purpose],
            policy,
        ));
    }
    if checks.contains(&Check::ClinicalInformation) {
        push(check_text(
            TextCheck::ClinicalInformation,
            &[&ctx.clinical_information, &ctx.diagnoses],
            policy,
        ));
    }
    if checks.contains(&Check::Labs) {
        let contrast = contrast_evidence(ctx, policy);
        for rule in &policy.lab_rules {
            push(check_lab_rule(
                ctx,
                policy,
                rule,
                contrast.as_ref(),
                reference_ms,
            ));
        }
    }
    if checks.contains(&Check::PriorReports) {
        push(check_priors(ctx, policy, reference_ms));
    }
    if checks.contains(&Check::OrderingContact) {
        push(check_physician(ctx, policy));
        push(check_callback(ctx, policy));
    }
    // Always: with no responsible receiving facility there is nowhere to send it.
    let routed = ctx.destination.is_some();
    push(check_route(ctx));

    let verdict = if reasons.is_empty() {
        Verdict::Pass
    } else if routed && priority == Priority::Stat && policy.stat == StatHandling::ForwardFlagged {
        Verdict::ForwardIncomplete
    } else {
        Verdict::Hold
    };
    Evaluation {
        verdict,
        reasons,
        checks: results,
        policy_id: policy.id.clone(),
        policy_version: policy.version.clone(),
        rule: rule_name,
    }
}

fn select_rule<'p>(
    ctx: &StudyContext,
    policy: &'p PolicyConfig,
    priority: Priority,
) -> (String, &'p [Check]) {
    for (i, rule) in policy.rules.iter().enumerate() {
        let dest_ok = rule.destinations.is_empty()
            || ctx
                .destination
                .as_deref()
                .is_some_and(|d| rule.destinations.iter().any(|r| r.trim() == d));
        let modality_ok = rule.modalities.is_empty() || any_modality(ctx, &rule.modalities);
        let ae_ok = rule.calling_ae.is_empty()
            || rule
                .calling_ae
                .iter()
                .any(|a| ctx.calling_aes.iter().any(|s| s.trim() == a.trim()));
        let priority_ok = rule.priorities.is_empty() || rule.priorities.contains(&priority);
        if dest_ok && modality_ok && ae_ok && priority_ok {
            let name = match &rule.name {
                Some(n) => format!("rules[{i}] {n}"),
                None => format!("rules[{i}]"),
            };
            return (name, &rule.checks);
        }
    }
    ("default".into(), &Check::ALL)
}

fn any_modality(ctx: &StudyContext, wanted: &[String]) -> bool {
    wanted.iter().any(|m| {
        ctx.modalities
            .iter()
            .any(|s| s.trim().eq_ignore_ascii_case(m.trim()))
    })
}

// --- text ------------------------------------------------------------------

/// How one text value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextQuality {
    /// Nothing but blanks: as if not sent.
    Blank,
    /// A placeholder or punctuation only.
    Placeholder,
    TooShort,
    Usable,
}

/// Blanks (including U+3000) and punctuation, ASCII, CJK and full-width.
fn is_filler(c: char) -> bool {
    c.is_whitespace()
        || c.is_ascii_punctuation()
        || matches!(c,
            '\u{2010}'..='\u{2027}'   // dashes, quotes, bullets, ellipsis
            // 、。〃「」【】〜... but not 々 〆 〇 or the kana repeat marks, which are text
            | '\u{3001}'..='\u{3004}' | '\u{3008}'..='\u{3020}' | '\u{3030}' | '\u{303D}'
            | '\u{30FB}' | '\u{30FC}' // ・ ー (ー alone is written as a dash)
            | '\u{FF01}'..='\u{FF0F}' | '\u{FF1A}'..='\u{FF20}'
            | '\u{FF3B}'..='\u{FF40}' | '\u{FF5B}'..='\u{FF65}'
            | '\u{00B7}' | '\u{2212}' | '\u{FFE3}')
}

/// Full-width ASCII (U+FF01–FF5E) to ASCII, then lowercase: what a comparison should
/// ignore in Japanese-entered text ("Ｎ／Ａ" = "n/a").
fn fold(c: char) -> impl Iterator<Item = char> {
    let c = match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    };
    c.to_lowercase()
}

fn folded_eq(a: &str, b: &str) -> bool {
    a.chars().flat_map(fold).eq(b.chars().flat_map(fold))
}

/// The text without leading/trailing blanks and punctuation ("精査。" → "精査").
fn core(s: &str) -> &str {
    s.trim_matches(is_filler)
}

fn quality(value: &str, policy: &PolicyConfig, min_chars: usize) -> TextQuality {
    if value.trim().is_empty() {
        return TextQuality::Blank;
    }
    let core = core(value);
    if core.is_empty() {
        return TextQuality::Placeholder;
    }
    // Placeholders are compared whole and by their core, so both "n/a" and "-" work.
    if policy
        .placeholders
        .iter()
        .any(|p| folded_eq(core, core_or_self(p)) || folded_eq(value.trim(), p.trim()))
    {
        return TextQuality::Placeholder;
    }
    if core.chars().count() < min_chars {
        return TextQuality::TooShort;
    }
    TextQuality::Usable
}

fn core_or_self(p: &str) -> &str {
    let c = core(p);
    if c.is_empty() {
        p.trim()
    } else {
        c
    }
}

#[derive(Clone, Copy)]
enum TextCheck {
    ExamPurpose,
    ClinicalInformation,
}

fn check_text(
    kind: TextCheck,
    groups: &[&Vec<Fact>],
    policy: &PolicyConfig,
) -> (CheckResult, Option<HoldReason>) {
    let (name, clause) = match kind {
        TextCheck::ExamPurpose => ("exam_purpose", reasons::JRS_7_3_1),
        TextCheck::ClinicalInformation => ("clinical_information", reasons::JRS_7_3_1),
    };
    let mut usable: Vec<&Fact> = Vec::new();
    let mut placeholders: Vec<&Fact> = Vec::new();
    let mut short: Vec<&Fact> = Vec::new();
    for fact in groups.iter().flat_map(|g| g.iter()) {
        match quality(&fact.value, policy, policy.min_text_chars) {
            TextQuality::Usable => usable.push(fact),
            TextQuality::Placeholder => placeholders.push(fact),
            TextQuality::TooShort => short.push(fact),
            TextQuality::Blank => {}
        }
    }
    if !usable.is_empty() {
        return (
            CheckResult {
                check: name.into(),
                clause: clause.into(),
                passed: true,
                detail: format!("satisfied by {}", describe_facts(&usable)),
                sources: sources_of(&usable),
            },
            None,
        );
    }
    // Placeholders first: "精査" says "I wrote nothing", the clearer thing to fix.
    let (problem, rejected) = if !placeholders.is_empty() {
        (
            TextProblem::Placeholder(distinct_values(&placeholders)),
            placeholders,
        )
    } else if !short.is_empty() {
        (
            TextProblem::TooShort {
                values: distinct_values(&short),
                min: policy.min_text_chars,
            },
            short,
        )
    } else {
        (TextProblem::Absent, Vec::new())
    };
    let detail = match &problem {
        TextProblem::Absent => "no value sent".to_string(),
        TextProblem::Placeholder(_) => {
            format!("only placeholders: {}", describe_facts(&rejected))
        }
        TextProblem::TooShort { min, .. } => {
            format!(
                "shorter than {min} characters: {}",
                describe_facts(&rejected)
            )
        }
    };
    let reason = match kind {
        TextCheck::ExamPurpose => reasons::exam_purpose_missing(&problem),
        TextCheck::ClinicalInformation => reasons::clinical_info_missing(&problem),
    };
    (
        CheckResult {
            check: name.into(),
            clause: clause.into(),
            passed: false,
            detail,
            sources: sources_of(&rejected),
        },
        Some(reason),
    )
}

fn distinct_values(facts: &[&Fact]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in facts {
        let v = f.value.trim().to_string();
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn describe_facts(facts: &[&Fact]) -> String {
    facts
        .iter()
        .map(|f| format!("{:?} from {}", f.value.trim(), f.source))
        .collect::<Vec<_>>()
        .join("; ")
}

fn sources_of(facts: &[&Fact]) -> Vec<Source> {
    let mut out: Vec<Source> = Vec::new();
    for f in facts {
        if !out.contains(&f.source) {
            out.push(f.source.clone());
        }
    }
    out
}

// --- ordering contact ------------------------------------------------------

fn check_physician(ctx: &StudyContext, policy: &PolicyConfig) -> (CheckResult, Option<HoldReason>) {
    // Names: one kanji can be a whole family name (林), so no minimum length; PN
    // separators ^ and = are punctuation and so "^^" reads as blank.
    check_contact(
        "ordering_contact.physician",
        &ctx.ordering_physician,
        policy,
        |_| true,
        reasons::ordering_physician_missing,
    )
}

fn check_callback(ctx: &StudyContext, policy: &PolicyConfig) -> (CheckResult, Option<HoldReason>) {
    // A number to call (or an address to write to) must contain a digit or an @;
    // "病棟" alone reaches nobody.
    check_contact(
        "ordering_contact.callback",
        &ctx.callback_phone,
        policy,
        |v| {
            v.chars()
                .any(|c| c.is_ascii_digit() || ('０'..='９').contains(&c) || c == '@')
        },
        reasons::callback_contact_missing,
    )
}

fn check_contact(
    name: &str,
    facts: &[Fact],
    policy: &PolicyConfig,
    reachable: impl Fn(&str) -> bool,
    reason: impl Fn(&[String]) -> HoldReason,
) -> (CheckResult, Option<HoldReason>) {
    let mut usable = Vec::new();
    let mut rejected = Vec::new();
    for f in facts {
        match quality(&f.value, policy, 1) {
            TextQuality::Usable if reachable(&f.value) => usable.push(f),
            TextQuality::Blank => {}
            _ => rejected.push(f),
        }
    }
    let clause = reasons::JRS_7_3_3.to_string();
    if !usable.is_empty() {
        return (
            CheckResult {
                check: name.into(),
                clause,
                passed: true,
                detail: format!("satisfied by {}", describe_facts(&usable)),
                sources: sources_of(&usable),
            },
            None,
        );
    }
    let detail = if rejected.is_empty() {
        "no value sent".to_string()
    } else {
        format!("not usable: {}", describe_facts(&rejected))
    };
    (
        CheckResult {
            check: name.into(),
            clause,
            passed: false,
            detail,
            sources: sources_of(&rejected),
        },
        Some(reason(&distinct_values(&rejected))),
    )
}

// --- labs ------------------------------------------------------------------

/// Why the study counts as a contrast study, for the detail text; `None`: it does not.
fn contrast_evidence(ctx: &StudyContext, policy: &PolicyConfig) -> Option<String> {
    // (0018,0010) is Type 2: modalities send it empty, or "NONE"/"なし", when no agent
    // was given; only a real agent name means contrast.
    if let Some(agent) = ctx
        .contrast_agent
        .iter()
        .find(|f| quality(&f.value, policy, 1) == TextQuality::Usable)
    {
        return Some(format!(
            "contrast agent {:?} from {}",
            agent.value.trim(),
            agent.source
        ));
    }
    ctx.procedure_codes
        .iter()
        .find(|p| code_matches(&p.code, &policy.contrast_procedure_codes))
        .map(|p| {
            format!(
                "contrast procedure code {} from {}",
                p.code.trim(),
                p.source
            )
        })
}

fn code_matches(code: &str, patterns: &[String]) -> bool {
    let code = code.trim();
    patterns.iter().any(|p| {
        let p = p.trim();
        match p.strip_suffix('*') {
            Some(prefix) => code
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix)),
            None => code.eq_ignore_ascii_case(p),
        }
    })
}

fn lab_matches(lab: &LabFact, req: &LabRequirement) -> bool {
    let by_code = match (&req.code, &lab.code) {
        (Some(want), Some(have)) => {
            same_code(have, want)
                && match (&req.system, &lab.system) {
                    (Some(ws), Some(hs)) if !hs.trim().is_empty() => same_system(hs, ws),
                    _ => true,
                }
        }
        _ => false,
    };
    by_code
        || lab
            .name
            .as_deref()
            .is_some_and(|name| req.names.iter().any(|n| folded_eq(name.trim(), n.trim())))
}

/// Lab catalogues write JLAC10 codes with hyphens (`3C015-0000-023-271-01`), messages
/// without; neither hyphens nor blanks are part of the code.
fn same_code(a: &str, b: &str) -> bool {
    fn key(s: &str) -> impl Iterator<Item = char> + '_ {
        s.chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
    }
    key(a).eq(key(b))
}

/// The names one coding system goes by in OBX-3.3: JAHIS and SS-MIX2 messages say
/// `JC10` for JLAC10 (`JC11` for JLAC11), other senders spell it out.
const SYSTEM_ALIASES: [&[&str]; 2] = [
    &["JLAC10", "JC10", "JLAC-10"],
    &["JLAC11", "JC11", "JLAC-11"],
];

fn same_system(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    a.eq_ignore_ascii_case(b)
        || SYSTEM_ALIASES.iter().any(|group| {
            group.iter().any(|g| g.eq_ignore_ascii_case(a))
                && group.iter().any(|g| g.eq_ignore_ascii_case(b))
        })
}

fn req_label_en(req: &LabRequirement) -> String {
    req.label_en
        .clone()
        .or_else(|| req.names.first().cloned())
        .or_else(|| req.code.clone())
        .unwrap_or_default()
}

fn req_label_ja(req: &LabRequirement) -> String {
    req.label_ja.clone().unwrap_or_else(|| req_label_en(req))
}

fn check_lab_rule(
    ctx: &StudyContext,
    policy: &PolicyConfig,
    rule: &LabRule,
    contrast: Option<&String>,
    reference_ms: i64,
) -> (CheckResult, Option<HoldReason>) {
    let check = format!("labs.{}", rule.name);
    let clause = reasons::JRS_7_3_1.to_string();
    let not_applicable = |why: &str| {
        (
            CheckResult {
                check: check.clone(),
                clause: clause.clone(),
                passed: true,
                detail: format!("does not apply: {why}"),
                sources: Vec::new(),
            },
            None,
        )
    };
    if rule.contrast && contrast.is_none() {
        return not_applicable("not a contrast study");
    }
    if !rule.modalities.is_empty() && !any_modality(ctx, &rule.modalities) {
        return not_applicable("modality not listed");
    }
    if !rule.procedure_codes.is_empty()
        && !ctx
            .procedure_codes
            .iter()
            .any(|p| code_matches(&p.code, &rule.procedure_codes))
    {
        return not_applicable("procedure code not listed");
    }

    let max_age_ms = i64::from(rule.max_age_days).saturating_mul(DAY_MS);
    let oldest_ok = reference_ms.saturating_sub(max_age_ms);
    let mut recent: Vec<&LabFact> = Vec::new();
    let mut stale: Vec<&LabFact> = Vec::new();
    for lab in &ctx.labs {
        if !rule.require_any_of.iter().any(|r| lab_matches(lab, r))
            || quality(&lab.value, policy, 1) != TextQuality::Usable
        {
            continue;
        }
        match lab.observed_at {
            Some(t) if t >= oldest_ok => recent.push(lab),
            _ => stale.push(lab),
        }
    }
    let why = match contrast {
        Some(evidence) if rule.contrast => format!(" ({evidence})"),
        _ => String::new(),
    };
    let describe = |labs: &[&LabFact]| {
        labs.iter()
            .map(|l| {
                format!(
                    "{} = {}{} at {} from {}",
                    l.name.as_deref().or(l.code.as_deref()).unwrap_or("?"),
                    l.value.trim(),
                    l.units
                        .as_deref()
                        .map(|u| format!(" {u}"))
                        .unwrap_or_default(),
                    l.observed_at
                        .map(|t| format_date(t, policy.utc_offset_minutes))
                        .unwrap_or_else(|| "unknown time".into()),
                    l.source
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let lab_sources = |labs: &[&LabFact]| {
        let mut out: Vec<Source> = Vec::new();
        for l in labs {
            if !out.contains(&l.source) {
                out.push(l.source.clone());
            }
        }
        out
    };
    if !recent.is_empty() {
        return (
            CheckResult {
                check,
                clause,
                passed: true,
                detail: format!(
                    "within {} days{why}: {}",
                    rule.max_age_days,
                    describe(&recent)
                ),
                sources: lab_sources(&recent),
            },
            None,
        );
    }
    let ask = LabAsk {
        rule: &rule.name,
        contrast: rule.contrast,
        labels_en: rule
            .require_any_of
            .iter()
            .map(req_label_en)
            .collect::<Vec<_>>()
            .join(" or "),
        labels_ja: rule
            .require_any_of
            .iter()
            .map(req_label_ja)
            .collect::<Vec<_>>()
            .join("または"),
        codes: rule
            .require_any_of
            .iter()
            .filter_map(|r| r.code.clone())
            .collect(),
        max_age_days: rule.max_age_days,
    };
    if stale.is_empty() {
        return (
            CheckResult {
                check,
                clause,
                passed: false,
                detail: format!("no matching lab value{why}"),
                sources: Vec::new(),
            },
            Some(reasons::lab_missing(&ask)),
        );
    }
    let newest = stale
        .iter()
        .filter_map(|l| l.observed_at)
        .max()
        .map(|t| format_date(t, policy.utc_offset_minutes));
    (
        CheckResult {
            check,
            clause,
            passed: false,
            detail: format!(
                "none within {} days{why}: {}",
                rule.max_age_days,
                describe(&stale)
            ),
            sources: lab_sources(&stale),
        },
        Some(reasons::lab_too_old(&ask, newest.as_deref())),
    )
}

// --- priors ----------------------------------------------------------------

fn check_priors(
    ctx: &StudyContext,
    policy: &PolicyConfig,
    reference_ms: i64,
) -> (CheckResult, Option<HoldReason>) {
    let cfg = &policy.priors;
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
    priors.sort_by_key(|p| std::cmp::Reverse(p.study_time_ms));
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
    let missing: Vec<&Prior> = required.iter().filter(|p| p.reports == 0).collect();
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
                check: "prior_reports".into(),
                clause,
                passed: true,
                detail,
                sources,
            },
            None,
        );
    }
    let refs: Vec<PriorRef> = missing
        .iter()
        .map(|p| PriorRef {
            accession: p.accession.clone(),
            study_uid: p.study_uid.clone(),
            date: p
                .study_time_ms
                .map(|t| format_date(t, policy.utc_offset_minutes)),
        })
        .collect();
    let mut sources: Vec<Source> = Vec::new();
    for p in &missing {
        if !sources.contains(&p.source) {
            sources.push(p.source.clone());
        }
    }
    (
        CheckResult {
            check: "prior_reports".into(),
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

// --- route -----------------------------------------------------------------

fn check_route(ctx: &StudyContext) -> (CheckResult, Option<HoldReason>) {
    let clause = reasons::ATS_4.to_string();
    match &ctx.destination {
        Some(dest) => (
            CheckResult {
                check: "route".into(),
                clause,
                passed: true,
                detail: format!(
                    "routed to {dest} ({})",
                    ctx.facility.as_deref().unwrap_or("facility not given")
                ),
                sources: Vec::new(),
            },
            None,
        ),
        None => (
            CheckResult {
                check: "route".into(),
                clause,
                passed: false,
                detail: "no [[routes]] entry matches".into(),
                sources: Vec::new(),
            },
            Some(reasons::no_route(&ctx.modalities, &ctx.calling_aes)),
        ),
    }
}

// --- time ------------------------------------------------------------------

/// The study's local date/time in ms since the epoch. Without a time, the end of the
/// study day: a lab drawn that day counts whatever its hour, and a same-day earlier
/// study is still a prior.
fn study_reference_ms(ctx: &StudyContext, utc_offset_minutes: i32) -> Option<i64> {
    let day = time::parse_dicom_da(ctx.study_date.as_deref()?).ok()?;
    let in_day = ctx
        .study_time
        .as_deref()
        .and_then(|t| time::parse_dicom_tm(t).ok())
        .unwrap_or(DAY_MS - 1);
    Some(day * DAY_MS + in_day - i64::from(utc_offset_minutes) * 60_000)
}

/// `YYYY-MM-DD` in the hospital's local time.
fn format_date(ms: i64, utc_offset_minutes: i32) -> String {
    time::format_local_date(ms, i64::from(utc_offset_minutes) * 60)
}

#[cfg(test)]
mod tests;
