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

/// The ids of the checks, as the evaluation record stores them (`checks[].check`): the
/// console names each one in the page's language.
pub mod check_id {
    pub const EXAM_PURPOSE: &str = "exam_purpose";
    pub const CLINICAL_INFORMATION: &str = "clinical_information";
    /// Followed by the rule's name: `labs.<name>`, one check per `[[policy.labs]]` rule.
    pub const LABS_PREFIX: &str = "labs.";
    pub const PRIOR_REPORTS: &str = "prior_reports";
    pub const PRIOR_REPORTS_PACS: &str = "prior_reports.pacs";
    pub const ORDERING_PHYSICIAN: &str = "ordering_contact.physician";
    pub const ORDERING_CALLBACK: &str = "ordering_contact.callback";
    pub const ROUTE: &str = "route";
}

/// The outcome of one check, kept with the study so a verdict can be explained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// One of [`check_id`]'s.
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
        if !ctx.pacs.is_empty() {
            push(check_pacs(ctx, policy, reference_ms));
        }
    }
    if checks.contains(&Check::OrderingContact) {
        push(check_physician(ctx, policy));
        push(check_callback(ctx, policy));
    }
    // Always: with no responsible receiving facility there is nowhere to send it.
    let routed = ctx.destination.is_some();
    push(check_route(ctx));

    // A PACS that cannot be asked may be let through flagged
    // (`policy.priors.on_pacs_unreachable`), when it is all that is missing.
    let only_pacs = reasons
        .iter()
        .all(|r| r.code == reasons::PRIORS_UNAVAILABLE);
    let stat_flagged = priority == Priority::Stat && policy.stat == StatHandling::ForwardFlagged;
    let pacs_flagged = only_pacs
        && policy.priors.on_pacs_unreachable
            == crate::config::policy::PacsUnreachable::ForwardFlagged;
    let verdict = if reasons.is_empty() {
        Verdict::Pass
    } else if routed && (stat_flagged || pacs_flagged) {
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

// --- ordering contact ------------------------------------------------------

fn check_physician(ctx: &StudyContext, policy: &PolicyConfig) -> (CheckResult, Option<HoldReason>) {
    // Names: one kanji can be a whole family name (林), so no minimum length; PN
    // separators ^ and = are punctuation and so "^^" reads as blank.
    check_contact(
        check_id::ORDERING_PHYSICIAN,
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
        check_id::ORDERING_CALLBACK,
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

// --- route -----------------------------------------------------------------

fn check_route(ctx: &StudyContext) -> (CheckResult, Option<HoldReason>) {
    let clause = reasons::ATS_4.to_string();
    match &ctx.destination {
        Some(dest) => (
            CheckResult {
                check: check_id::ROUTE.into(),
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
                check: check_id::ROUTE.into(),
                clause,
                passed: false,
                detail: "no [[routes]] entry matches".into(),
                sources: Vec::new(),
            },
            Some(reasons::no_route(&ctx.modalities, &ctx.calling_aes)),
        ),
    }
}

/// The priors that go with the study (newest first): those the prior-report check
/// considers (look-back, comparable modality), with `now_ms` as the reference time when
/// the study has no usable date.
pub fn comparable_priors(ctx: &StudyContext, policy: &PolicyConfig, now_ms: i64) -> Vec<Prior> {
    let reference_ms = study_reference_ms(ctx, policy.utc_offset_minutes).unwrap_or(now_ms);
    priors::comparable_priors(ctx, &policy.priors, reference_ms)
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

mod labs;
mod priors;
mod text;

use labs::*;
use priors::*;
use text::*;

#[cfg(test)]
mod tests;
