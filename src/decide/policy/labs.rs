//! Lab values a kind of study needs (JRS-7.3.1: contrast studies need a recent eGFR or
//! creatinine), matched by JLAC10 code or by name.

use super::*;

/// Why the study counts as a contrast study, for the detail text; `None`: it does not.
pub(super) fn contrast_evidence(ctx: &StudyContext, policy: &PolicyConfig) -> Option<String> {
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

pub(super) fn code_matches(code: &str, patterns: &[String]) -> bool {
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

pub(super) fn lab_matches(lab: &LabFact, req: &LabRequirement) -> bool {
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
pub(super) fn same_code(a: &str, b: &str) -> bool {
    fn key(s: &str) -> impl Iterator<Item = char> + '_ {
        s.chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
    }
    key(a).eq(key(b))
}

/// The names one coding system goes by in OBX-3.3: JAHIS and SS-MIX2 messages say
/// `JC10` for JLAC10 (`JC11` for JLAC11), other senders spell it out.
pub(super) const SYSTEM_ALIASES: [&[&str]; 2] = [
    &["JLAC10", "JC10", "JLAC-10"],
    &["JLAC11", "JC11", "JLAC-11"],
];

pub(super) fn same_system(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    a.eq_ignore_ascii_case(b)
        || SYSTEM_ALIASES.iter().any(|group| {
            group.iter().any(|g| g.eq_ignore_ascii_case(a))
                && group.iter().any(|g| g.eq_ignore_ascii_case(b))
        })
}

pub(super) fn req_label_en(req: &LabRequirement) -> String {
    req.label_en
        .clone()
        .or_else(|| req.names.first().cloned())
        .or_else(|| req.code.clone())
        .unwrap_or_default()
}

pub(super) fn req_label_ja(req: &LabRequirement) -> String {
    req.label_ja.clone().unwrap_or_else(|| req_label_en(req))
}

pub(super) fn check_lab_rule(
    ctx: &StudyContext,
    policy: &PolicyConfig,
    rule: &LabRule,
    contrast: Option<&String>,
    reference_ms: i64,
) -> (CheckResult, Option<HoldReason>) {
    let check = format!("{}{}", check_id::LABS_PREFIX, rule.name);
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
