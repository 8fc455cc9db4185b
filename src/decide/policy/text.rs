//! How a text value reads: blank, a placeholder, too short, or usable; and the check of
//! one text fact (exam purpose, clinical information; JRS-7.3.1).

use super::*;

/// How one text value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TextQuality {
    /// Nothing but blanks: as if not sent.
    Blank,
    /// A placeholder or punctuation only.
    Placeholder,
    TooShort,
    Usable,
}

/// Blanks (including U+3000) and punctuation, ASCII, CJK and full-width.
pub(super) fn is_filler(c: char) -> bool {
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
pub(super) fn fold(c: char) -> impl Iterator<Item = char> {
    let c = match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    };
    c.to_lowercase()
}

pub(super) fn folded_eq(a: &str, b: &str) -> bool {
    a.chars().flat_map(fold).eq(b.chars().flat_map(fold))
}

/// The text without leading/trailing blanks and punctuation ("精査。" → "精査").
pub(super) fn core(s: &str) -> &str {
    s.trim_matches(is_filler)
}

pub(super) fn quality(value: &str, policy: &PolicyConfig, min_chars: usize) -> TextQuality {
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

pub(super) fn core_or_self(p: &str) -> &str {
    let c = core(p);
    if c.is_empty() {
        p.trim()
    } else {
        c
    }
}

#[derive(Clone, Copy)]
pub(super) enum TextCheck {
    ExamPurpose,
    ClinicalInformation,
}

pub(super) fn check_text(
    kind: TextCheck,
    groups: &[&Vec<Fact>],
    policy: &PolicyConfig,
) -> (CheckResult, Option<HoldReason>) {
    let (name, clause) = match kind {
        TextCheck::ExamPurpose => (check_id::EXAM_PURPOSE, reasons::JRS_7_3_1),
        TextCheck::ClinicalInformation => (check_id::CLINICAL_INFORMATION, reasons::JRS_7_3_1),
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

pub(super) fn distinct_values(facts: &[&Fact]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in facts {
        let v = f.value.trim().to_string();
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

pub(super) fn describe_facts(facts: &[&Fact]) -> String {
    facts
        .iter()
        .map(|f| format!("{:?} from {}", f.value.trim(), f.source))
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn sources_of(facts: &[&Fact]) -> Vec<Source> {
    let mut out: Vec<Source> = Vec::new();
    for f in facts {
        if !out.contains(&f.source) {
            out.push(f.source.clone());
        }
    }
    out
}
