//! Every reason code a policy check can give, with its clause and its words in Japanese
//! and English.
//!
//! Codes are stable: they are stored with held studies, shown by `readgate check` and
//! matched by the hospital's own scripts, so a code is never renamed or reused. The
//! [`catalogue`] is the single list that the docs table (`docs/checks.md`) and
//! `readgate check --lang ja|en` are generated from; the builders below produce the
//! message for one study, naming the values that were rejected and where to fix them.
//!
//! Wording: a technologist or a clerk at the RIS terminal should know what to type where
//! without reading the guideline; the Japanese follows the guideline's own terms
//! (検査目的, 臨床情報, 臨床検査データ, 過去の画像診断報告書, 依頼医).

use super::HoldReason;

pub const EXAM_PURPOSE_MISSING: &str = "EXAM_PURPOSE_MISSING";
pub const CLINICAL_INFO_MISSING: &str = "CLINICAL_INFO_MISSING";
pub const LAB_MISSING: &str = "LAB_MISSING";
pub const LAB_TOO_OLD: &str = "LAB_TOO_OLD";
pub const PRIOR_REPORT_MISSING: &str = "PRIOR_REPORT_MISSING";
pub const PRIORS_UNAVAILABLE: &str = "PRIORS_UNAVAILABLE";
pub const ORDERING_PHYSICIAN_MISSING: &str = "ORDERING_PHYSICIAN_MISSING";
pub const CALLBACK_CONTACT_MISSING: &str = "CALLBACK_CONTACT_MISSING";
pub const NO_ROUTE: &str = "NO_ROUTE";
/// Not a check: a streamed study is held after part of it left (added by the study stage).
pub const PARTLY_SENT: &str = "PARTLY_SENT";

pub const JRS_7_3_1: &str = "JRS-7.3.1";
pub const JRS_7_3_2: &str = "JRS-7.3.2";
pub const JRS_7_3_3: &str = "JRS-7.3.3";
pub const ATS_4: &str = "ATS-4";
pub const ATS_5: &str = "ATS-5";

use crate::i18n::{fill, Texts, EN, JA};
pub use crate::model::Lang;

/// One reason code, for the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonInfo {
    pub code: &'static str,
    pub clause: &'static str,
    /// The `checks` entry of `[[policy.rules]]` that turns it on (`route` is always on).
    pub check: &'static str,
    pub what_en: &'static str,
    pub what_ja: &'static str,
    /// One short line: what is missing and which field (of the RIS, mostly) fixes it.
    pub short_en: &'static str,
    pub short_ja: &'static str,
    /// Where the fact comes from in HL7 v2.
    pub hl7: &'static str,
    /// Where the fact comes from in DICOM.
    pub dicom: &'static str,
    /// The message in its most common form (a study's message names its own values).
    pub message_en: &'static str,
    pub message_ja: &'static str,
    pub fix_en: &'static str,
    pub fix_ja: &'static str,
}

impl ReasonInfo {
    pub fn what(&self, lang: Lang) -> &'static str {
        lang.pick(self.what_ja, self.what_en)
    }
    pub fn short(&self, lang: Lang) -> &'static str {
        lang.pick(self.short_ja, self.short_en)
    }
    pub fn message(&self, lang: Lang) -> &'static str {
        lang.pick(self.message_ja, self.message_en)
    }
    pub fn fix(&self, lang: Lang) -> &'static str {
        lang.pick(self.fix_ja, self.fix_en)
    }
}

static CATALOGUE: [ReasonInfo; 10] = [
    ReasonInfo {
        code: EXAM_PURPOSE_MISSING,
        clause: JRS_7_3_1,
        check: "exam_purpose",
        what_en: EN.hold_exam_purpose_missing_what,
        short_en: EN.hold_exam_purpose_missing_short,
        short_ja: JA.hold_exam_purpose_missing_short,
        what_ja: JA.hold_exam_purpose_missing_what,
        hl7: "OBR-31",
        dicom: "(0040,1002), (0040,100A), (0032,1030)",
        message_en: EN.hold_exam_purpose_missing_message,
        message_ja: JA.hold_exam_purpose_missing_message,
        fix_en: EN.hold_exam_purpose_missing_fix,
        fix_ja: JA.hold_exam_purpose_missing_fix,
    },
    ReasonInfo {
        code: CLINICAL_INFO_MISSING,
        clause: JRS_7_3_1,
        check: "clinical_information",
        what_en: EN.hold_clinical_info_missing_what,
        short_en: EN.hold_clinical_info_missing_short,
        short_ja: JA.hold_clinical_info_missing_short,
        what_ja: JA.hold_clinical_info_missing_what,
        hl7: "OBR-13, NTE, DG1-3/DG1-4",
        dicom: "(0010,21B0), (0008,1080)",
        message_en: EN.hold_clinical_info_missing_message,
        message_ja: JA.hold_clinical_info_missing_message,
        fix_en: EN.hold_clinical_info_missing_fix,
        fix_ja: JA.hold_clinical_info_missing_fix,
    },
    ReasonInfo {
        code: LAB_MISSING,
        clause: JRS_7_3_1,
        check: "labs",
        what_en: EN.hold_lab_missing_what,
        short_en: EN.hold_lab_missing_short,
        short_ja: JA.hold_lab_missing_short,
        what_ja: JA.hold_lab_missing_what,
        hl7: "OBX-3 (JLAC10 code or name), OBX-5, OBX-14 (ORU^R01 or OBX in the order)",
        dicom: "(0018,0010) and requested procedure codes decide whether a rule applies",
        message_en: EN.hold_lab_missing_message,
        message_ja: JA.hold_lab_missing_message,
        fix_en: EN.hold_lab_missing_fix,
        fix_ja: JA.hold_lab_missing_fix,
    },
    ReasonInfo {
        code: LAB_TOO_OLD,
        clause: JRS_7_3_1,
        check: "labs",
        what_en: EN.hold_lab_too_old_what,
        short_en: EN.hold_lab_too_old_short,
        short_ja: JA.hold_lab_too_old_short,
        what_ja: JA.hold_lab_too_old_what,
        hl7: "OBX-14 (observation time)",
        dicom: "(0008,0020)/(0008,0030) study date and time are the reference",
        message_en: EN.hold_lab_too_old_message,
        message_ja: JA.hold_lab_too_old_message,
        fix_en: EN.hold_lab_too_old_fix,
        fix_ja: JA.hold_lab_too_old_fix,
    },
    ReasonInfo {
        code: PRIOR_REPORT_MISSING,
        clause: JRS_7_3_2,
        check: "prior_reports",
        what_en: EN.hold_prior_report_missing_what,
        short_en: EN.hold_prior_report_missing_short,
        short_ja: JA.hold_prior_report_missing_short,
        what_ja: JA.hold_prior_report_missing_what,
        hl7: "ORU^R01 with OBR-25 = F or C for the prior's accession",
        dicom: "prior studies: readgate's own store or C-FIND to the hospital PACS",
        message_en: EN.hold_prior_report_missing_message,
        message_ja: JA.hold_prior_report_missing_message,
        fix_en: EN.hold_prior_report_missing_fix,
        fix_ja: JA.hold_prior_report_missing_fix,
    },
    ReasonInfo {
        code: PRIORS_UNAVAILABLE,
        clause: JRS_7_3_2,
        check: "prior_reports",
        what_en: EN.hold_priors_unavailable_what,
        short_en: EN.hold_priors_unavailable_short,
        short_ja: JA.hold_priors_unavailable_short,
        what_ja: JA.hold_priors_unavailable_what,
        hl7: "-",
        dicom: "C-FIND (Study Root) to each `[[pacs]]`, asked when the order or the first image arrives; C-GET or C-MOVE of the chosen priors",
        message_en: EN.hold_priors_unavailable_message,
        message_ja: JA.hold_priors_unavailable_message,
        fix_en: EN.hold_priors_unavailable_fix,
        fix_ja: JA.hold_priors_unavailable_fix,
    },
    ReasonInfo {
        code: ORDERING_PHYSICIAN_MISSING,
        clause: JRS_7_3_3,
        check: "ordering_contact",
        what_en: EN.hold_ordering_physician_missing_what,
        short_en: EN.hold_ordering_physician_missing_short,
        short_ja: JA.hold_ordering_physician_missing_short,
        what_ja: JA.hold_ordering_physician_missing_what,
        hl7: "ORC-12, OBR-16",
        dicom: "(0032,1032)",
        message_en: EN.hold_ordering_physician_missing_message,
        message_ja: JA.hold_ordering_physician_missing_message,
        fix_en: EN.hold_ordering_physician_missing_fix,
        fix_ja: JA.hold_ordering_physician_missing_fix,
    },
    ReasonInfo {
        code: CALLBACK_CONTACT_MISSING,
        clause: JRS_7_3_3,
        check: "ordering_contact",
        what_en: EN.hold_callback_contact_missing_what,
        short_en: EN.hold_callback_contact_missing_short,
        short_ja: JA.hold_callback_contact_missing_short,
        what_ja: JA.hold_callback_contact_missing_what,
        hl7: "ORC-14, OBR-17",
        dicom: "(0040,2010), (0008,0094)",
        message_en: EN.hold_callback_contact_missing_message,
        message_ja: JA.hold_callback_contact_missing_message,
        fix_en: EN.hold_callback_contact_missing_fix,
        fix_ja: JA.hold_callback_contact_missing_fix,
    },
    ReasonInfo {
        code: NO_ROUTE,
        clause: ATS_4,
        check: "route",
        what_en: EN.hold_no_route_what,
        short_en: EN.hold_no_route_short,
        short_ja: JA.hold_no_route_short,
        what_ja: JA.hold_no_route_what,
        hl7: "-",
        dicom: "(0008,0060) modality, calling AE title of the association",
        message_en: EN.hold_no_route_message,
        message_ja: JA.hold_no_route_message,
        fix_en: EN.hold_no_route_fix,
        fix_ja: JA.hold_no_route_fix,
    },
    ReasonInfo {
        code: PARTLY_SENT,
        clause: ATS_5,
        check: "streaming",
        what_en: EN.hold_partly_sent_what,
        short_en: EN.hold_partly_sent_short,
        short_ja: JA.hold_partly_sent_short,
        what_ja: JA.hold_partly_sent_what,
        hl7: "-",
        dicom: "instances delivered (C-STORE 0000/Bxxx) before the hold",
        message_en: EN.hold_partly_sent_message,
        message_ja: JA.hold_partly_sent_message,
        fix_en: EN.hold_partly_sent_fix,
        fix_ja: JA.hold_partly_sent_fix,
    },
];

/// Every reason code, in the order checks run.
pub fn catalogue() -> &'static [ReasonInfo] {
    &CATALOGUE
}

/// The catalogue entry of a code.
pub fn find(code: &str) -> Option<&'static ReasonInfo> {
    CATALOGUE.iter().find(|r| r.code == code)
}

/// The reason table of `docs/checks.md` (English, with the Japanese message).
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| code | clause | what it checks | HL7 | DICOM | how to fix | message (ja) |\n|---|---|---|---|---|---|---|\n",
    );
    for r in catalogue() {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} |\n",
            r.code, r.clause, r.what_en, r.hl7, r.dicom, r.fix_en, r.message_ja
        ));
    }
    out
}

// ---------------------------------------------------------------------------
// Builders: the message for one study.
// ---------------------------------------------------------------------------

/// Why the text facts of one kind were not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TextProblem {
    /// No value at all (or only blanks).
    Absent,
    /// Only placeholders ("精査", "-", "特になし"...) or punctuation; the values as sent.
    Placeholder(Vec<String>),
    /// Real text, but shorter than `min_text_chars`.
    TooShort { values: Vec<String>, min: usize },
}

fn quoted_ja(values: &[String]) -> String {
    values.iter().map(|v| format!("「{v}」")).collect()
}

fn quoted_en(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn reason(code: &str, clause: &str, message_en: String, message_ja: String) -> HoldReason {
    HoldReason {
        code: code.to_string(),
        clause: clause.to_string(),
        message_en,
        message_ja,
    }
}

/// The catalogue text `id` in English and in Japanese, each filled with its own values.
fn both(
    id: fn(&Texts) -> &'static str,
    en: &[(&str, &str)],
    ja: &[(&str, &str)],
) -> (String, String) {
    (fill(id(&EN), en), fill(id(&JA), ja))
}

/// The catalogue texts of one text requirement (exam purpose, clinical information).
struct TextTexts {
    missing: fn(&Texts) -> &'static str,
    placeholder: fn(&Texts) -> &'static str,
    too_short: fn(&Texts) -> &'static str,
}

fn text_missing(code: &'static str, texts: TextTexts, problem: &TextProblem) -> HoldReason {
    let (en, ja) = match problem {
        TextProblem::Absent => (
            (texts.missing)(&EN).to_string(),
            (texts.missing)(&JA).to_string(),
        ),
        TextProblem::Placeholder(v) => both(
            texts.placeholder,
            &[("values", &quoted_en(v))],
            &[("values", &quoted_ja(v))],
        ),
        TextProblem::TooShort { values, min } => {
            let min = min.to_string();
            both(
                texts.too_short,
                &[("values", &quoted_en(values)), ("min", &min)],
                &[("values", &quoted_ja(values)), ("min", &min)],
            )
        }
    };
    reason(code, JRS_7_3_1, en, ja)
}

pub(crate) fn exam_purpose_missing(problem: &TextProblem) -> HoldReason {
    let texts = TextTexts {
        missing: |t| t.hold_exam_purpose_missing_message,
        placeholder: |t| t.hold_exam_purpose_placeholder,
        too_short: |t| t.hold_exam_purpose_too_short,
    };
    text_missing(EXAM_PURPOSE_MISSING, texts, problem)
}

pub(crate) fn clinical_info_missing(problem: &TextProblem) -> HoldReason {
    let texts = TextTexts {
        missing: |t| t.hold_clinical_info_missing_message,
        placeholder: |t| t.hold_clinical_info_placeholder,
        too_short: |t| t.hold_clinical_info_too_short,
    };
    text_missing(CLINICAL_INFO_MISSING, texts, problem)
}

/// What a lab rule asked for, already put into words.
pub(crate) struct LabAsk<'a> {
    pub rule: &'a str,
    pub contrast: bool,
    /// e.g. "eGFR or creatinine".
    pub labels_en: String,
    /// e.g. "eGFRまたはクレアチニン".
    pub labels_ja: String,
    /// JLAC10 (or other) codes accepted, for the technologist's lab system.
    pub codes: Vec<String>,
    pub max_age_days: u32,
}

impl LabAsk<'_> {
    /// ", code A / B" (in `t`'s language), or nothing when no code is configured.
    fn codes_suffix(&self, t: &Texts) -> String {
        if self.codes.is_empty() {
            String::new()
        } else {
            fill(t.hold_lab_codes, &[("codes", &self.codes.join(" / "))])
        }
    }

    /// The placeholders every lab message uses, in `lang`.
    fn values<'a>(&'a self, lang: Lang, days: &'a str, codes: &'a str) -> Vec<(&'a str, &'a str)> {
        let labels = match lang {
            Lang::En => &self.labels_en,
            Lang::Ja => &self.labels_ja,
        };
        vec![
            ("labels", labels.as_str()),
            ("days", days),
            ("rule", self.rule),
            ("codes", codes),
        ]
    }
}

pub(crate) fn lab_missing(ask: &LabAsk) -> HoldReason {
    let id: fn(&Texts) -> &'static str = if ask.contrast {
        |t| t.hold_lab_missing_contrast
    } else {
        |t| t.hold_lab_missing_plain
    };
    let days = ask.max_age_days.to_string();
    let (codes_en, codes_ja) = (ask.codes_suffix(&EN), ask.codes_suffix(&JA));
    let (en, ja) = both(
        id,
        &ask.values(Lang::En, &days, &codes_en),
        &ask.values(Lang::Ja, &days, &codes_ja),
    );
    reason(LAB_MISSING, JRS_7_3_1, en, ja)
}

/// `newest`: the date of the newest matching value, `None` when no value has a time.
pub(crate) fn lab_too_old(ask: &LabAsk, newest: Option<&str>) -> HoldReason {
    let lead = |t: &Texts| {
        if ask.contrast {
            t.hold_lab_contrast_lead
        } else {
            ""
        }
    };
    let id: fn(&Texts) -> &'static str = if newest.is_some() {
        |t| t.hold_lab_too_old_dated
    } else {
        |t| t.hold_lab_too_old_untimed
    };
    let days = ask.max_age_days.to_string();
    let codes = ask.codes_suffix(&EN);
    let mut en_values = ask.values(Lang::En, &days, &codes);
    en_values.extend([("lead", lead(&EN)), ("date", newest.unwrap_or(""))]);
    let mut ja_values = ask.values(Lang::Ja, &days, "");
    ja_values.extend([("lead", lead(&JA)), ("date", newest.unwrap_or(""))]);
    let (mut en, ja) = both(id, &en_values, &ja_values);
    if !ask.contrast {
        // Sentence case when there is no lead-in.
        en = capitalise(&en);
    }
    reason(LAB_TOO_OLD, JRS_7_3_1, en, ja)
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// One prior lacking a report, already put into words.
pub(crate) struct PriorRef {
    pub accession: Option<String>,
    pub study_uid: String,
    /// Its imaging modalities, e.g. `CT`, when known.
    pub modality: Option<String>,
    /// `YYYY-MM-DD`, or `None` when unknown.
    pub date: Option<String>,
}

/// At most this many priors are named; a long list helps nobody at the RIS terminal.
const PRIORS_NAMED: usize = 5;

/// A prior as the texts name it: modality, accession (else UID), date.
fn prior_name(t: &Texts, p: &PriorRef) -> String {
    let id = match &p.accession {
        Some(a) => fill(t.hold_prior_accession, &[("accession", a)]),
        None => fill(t.hold_prior_study, &[("uid", &p.study_uid)]),
    };
    let id = match &p.modality {
        Some(m) => fill(t.hold_prior_modality, &[("modality", m), ("id", &id)]),
        None => id,
    };
    match &p.date {
        Some(d) => fill(t.hold_prior_dated, &[("id", &id), ("date", d)]),
        None => fill(t.hold_prior_undated, &[("id", &id)]),
    }
}

pub(crate) fn prior_report_missing(missing: &[PriorRef], lookback_days: u32) -> HoldReason {
    let list = |t: &Texts| {
        let name = |p: &PriorRef| prior_name(t, p);
        let mut names: Vec<String> = missing.iter().take(PRIORS_NAMED).map(name).collect();
        let more = missing.len().saturating_sub(PRIORS_NAMED);
        if more > 0 {
            names.push(fill(t.hold_prior_more, &[("more", &more.to_string())]));
        }
        names.join(t.hold_prior_separator)
    };
    let n = missing.len();
    let id: fn(&Texts) -> &'static str = if n == 1 {
        |t| t.hold_prior_missing_one
    } else {
        |t| t.hold_prior_missing_many
    };
    let (n, days) = (n.to_string(), lookback_days.to_string());
    let (list_en, list_ja) = (list(&EN), list(&JA));
    let (en, ja) = both(
        id,
        &[("n", &n), ("days", &days), ("list", &list_en)],
        &[("n", &n), ("days", &days), ("list", &list_ja)],
    );
    reason(PRIOR_REPORT_MISSING, JRS_7_3_2, en, ja)
}

/// A `[[pacs]]` that has not told readgate the patient's history: `error` is why the
/// last attempt failed, `None` when it has not answered yet.
/// With `prior`, the PACS answered but could not deliver that chosen prior.
pub(crate) struct UnansweredPacs {
    pub pacs: String,
    pub error: Option<String>,
    pub prior: Option<PriorRef>,
}

pub(crate) fn priors_unavailable(unanswered: &[UnansweredPacs]) -> HoldReason {
    let one = |t: &Texts, p: &UnansweredPacs| match (&p.prior, &p.error) {
        (Some(prior), error) => fill(
            t.hold_prior_not_retrieved,
            &[
                ("pacs", &p.pacs),
                ("prior", &prior_name(t, prior)),
                ("error", error.as_deref().unwrap_or("")),
            ],
        ),
        (None, Some(e)) => fill(t.hold_priors_failed, &[("pacs", &p.pacs), ("error", e)]),
        (None, None) => fill(t.hold_priors_not_yet, &[("pacs", &p.pacs)]),
    };
    let all = |t: &Texts| {
        unanswered
            .iter()
            .map(|p| one(t, p))
            .collect::<Vec<_>>()
            .join(" ")
    };
    reason(PRIORS_UNAVAILABLE, JRS_7_3_2, all(&EN), all(&JA))
}

/// `rejected`: values that were sent but are placeholders ("不明", "-").
pub(crate) fn ordering_physician_missing(rejected: &[String]) -> HoldReason {
    let (note_en, note_ja) = rejected_note(rejected);
    let (en, ja) = both(
        |t| t.hold_ordering_physician,
        &[("note", &note_en)],
        &[("note", &note_ja)],
    );
    reason(ORDERING_PHYSICIAN_MISSING, JRS_7_3_3, en, ja)
}

pub(crate) fn callback_contact_missing(rejected: &[String]) -> HoldReason {
    let (note_en, note_ja) = rejected_note(rejected);
    let (en, ja) = both(
        |t| t.hold_callback_contact,
        &[("note", &note_en)],
        &[("note", &note_ja)],
    );
    reason(CALLBACK_CONTACT_MISSING, JRS_7_3_3, en, ja)
}

fn rejected_note(rejected: &[String]) -> (String, String) {
    if rejected.is_empty() {
        (String::new(), String::new())
    } else {
        both(
            |t| t.hold_not_usable,
            &[("values", &quoted_en(rejected))],
            &[("values", &quoted_ja(rejected))],
        )
    }
}

/// Same words as [`super::Router`]'s hold, so a study reads the same whichever path
/// held it.
pub(crate) fn no_route(modalities: &[String], calling_aes: &[String]) -> HoldReason {
    let values = [
        ("modalities", display_list(modalities)),
        ("aes", display_list(calling_aes)),
    ];
    let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (en, ja) = both(|t| t.hold_no_route, &values, &values);
    reason(NO_ROUTE, ATS_4, en, ja)
}

/// A streamed study held after part of it left: `sent` (destination, instances) of the
/// `received` instances received so far (ATS-5: the sending side must not leave a known
/// irregularity unsaid; the reading facility has images of a study readgate holds).
pub fn partly_sent(sent: &[(String, i64)], received: i64) -> HoldReason {
    let total: i64 = sent.iter().map(|(_, n)| n).sum();
    let list = |lang: &Texts, sep: &str| {
        sent.iter()
            .map(|(d, n)| {
                fill(
                    lang.hold_partly_sent_to,
                    &[("destination", d.as_str()), ("n", &n.to_string())],
                )
            })
            .collect::<Vec<_>>()
            .join(sep)
    };
    let (total, received) = (total.to_string(), received.to_string());
    let (to_en, to_ja) = (list(&EN, ", "), list(&JA, "、"));
    let en = [
        ("sent", total.as_str()),
        ("received", received.as_str()),
        ("to", to_en.as_str()),
    ];
    let ja = [
        ("sent", total.as_str()),
        ("received", received.as_str()),
        ("to", to_ja.as_str()),
    ];
    let (message_en, message_ja) = both(|t| t.hold_partly_sent, &en, &ja);
    reason(PARTLY_SENT, ATS_5, message_en, message_ja)
}

fn display_list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_japanese(s: &str) -> bool {
        s.chars().any(|c| {
            ('\u{3040}'..='\u{30FF}').contains(&c) || ('\u{4E00}'..='\u{9FFF}').contains(&c)
        })
    }

    #[test]
    fn every_reason_has_both_languages() {
        let mut codes = std::collections::HashSet::new();
        for r in catalogue() {
            assert!(codes.insert(r.code), "duplicate code {}", r.code);
            assert!(r.clause.starts_with("JRS-") || r.clause.starts_with("ATS-"));
            for lang in [Lang::Ja, Lang::En] {
                for text in [r.what(lang), r.message(lang), r.fix(lang)] {
                    assert!(!text.trim().is_empty(), "{} {lang:?}", r.code);
                    assert_eq!(has_japanese(text), lang == Lang::Ja, "{}: {text}", r.code);
                }
            }
            assert!(!r.hl7.is_empty() && !r.dicom.is_empty());
        }
        assert_eq!(find(LAB_TOO_OLD).map(|r| r.clause), Some(JRS_7_3_1));
        assert!(find("NOPE").is_none());
    }

    #[test]
    fn builders_fill_both_languages() {
        let ask = LabAsk {
            rule: "contrast-egfr",
            contrast: true,
            labels_en: "eGFR or creatinine".into(),
            labels_ja: "eGFRまたはクレアチニン".into(),
            codes: vec!["8A065000002391901".into()],
            max_age_days: 90,
        };
        let prior = PriorRef {
            modality: None,
            accession: Some("A1".into()),
            study_uid: "1.2".into(),
            date: None,
        };
        for r in [
            exam_purpose_missing(&TextProblem::Absent),
            exam_purpose_missing(&TextProblem::Placeholder(vec!["精査".into()])),
            exam_purpose_missing(&TextProblem::TooShort {
                values: vec!["痛".into()],
                min: 2,
            }),
            clinical_info_missing(&TextProblem::Absent),
            clinical_info_missing(&TextProblem::Placeholder(vec!["特になし".into()])),
            clinical_info_missing(&TextProblem::TooShort {
                values: vec!["x".into()],
                min: 2,
            }),
            lab_missing(&ask),
            lab_too_old(&ask, Some("2024-01-01")),
            lab_too_old(&ask, None),
            prior_report_missing(std::slice::from_ref(&prior), 365),
            ordering_physician_missing(&[]),
            callback_contact_missing(&["不明".into()]),
            no_route(&[], &[]),
            partly_sent(&[("rc1".into(), 42)], 120),
        ] {
            let info = find(&r.code).expect("code in catalogue");
            assert_eq!(info.clause, r.clause);
            assert!(has_japanese(&r.message_ja), "{r:?}");
            assert!(!r.message_en.is_empty(), "{r:?}");
        }
    }

    #[test]
    fn catalogue_examples_match_builders() {
        assert_eq!(
            exam_purpose_missing(&TextProblem::Absent).message_ja,
            find(EXAM_PURPOSE_MISSING).unwrap().message_ja
        );
        assert_eq!(
            ordering_physician_missing(&[]).message_en,
            find(ORDERING_PHYSICIAN_MISSING).unwrap().message_en
        );
        assert_eq!(
            no_route(&["CT".into()], &["CT01".into()]).message_ja,
            find(NO_ROUTE).unwrap().message_ja
        );
        let partly = partly_sent(&[("rc1".into(), 42)], 120);
        assert_eq!(partly.message_ja, find(PARTLY_SENT).unwrap().message_ja);
        assert_eq!(partly.message_en, find(PARTLY_SENT).unwrap().message_en);
    }

    #[test]
    fn lang_parses() {
        assert_eq!("JA".parse::<Lang>(), Ok(Lang::Ja));
        assert_eq!("en".parse::<Lang>(), Ok(Lang::En));
        assert!("fr".parse::<Lang>().is_err());
    }
}
