//! `[policy]`: which facts a study must carry before a remote radiologist reads it
//! (JRS-7.3.1–7.3.3), with what parameters. The engine that applies it is
//! `decide::policy`; every key has a default, so a missing section means the JRS default
//! policy.

use super::Invalid;
use crate::model::Priority;
use serde::{Deserialize, Serialize};

/// `[policy]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Names the policy in every evaluation (and so in the study's timeline and audit),
    /// so a verdict can be traced to the rules that made it.
    #[serde(default = "default_id")]
    pub id: String,
    /// Bump it whenever the rules change; stored with every evaluation next to `id`.
    #[serde(default = "default_version")]
    pub version: String,
    /// Free text (exam purpose, clinical information) shorter than this many characters
    /// counts as missing. Characters, not bytes: Japanese is dense, "胸痛" (2) says a lot.
    #[serde(default = "default_min_text_chars")]
    pub min_text_chars: usize,
    /// Values that mean "nothing written". Compared after trimming spaces (including
    /// the full-width space) and punctuation, case-insensitively, full-width letters
    /// folded to half-width. Text made only of punctuation is always missing.
    #[serde(default = "default_placeholders")]
    pub placeholders: Vec<String>,
    /// What to do with a STAT study that fails checks (a route is always required).
    #[serde(default)]
    pub stat: StatHandling,
    /// Requested procedure codes (JJ1017 in Japan; OBR-4/OBR-44/IPC-6, (0032,1064))
    /// that mean a contrast study even when no image carries (0018,0010) yet. Exact,
    /// case-insensitive; a trailing `*` matches a prefix.
    #[serde(default)]
    pub contrast_procedure_codes: Vec<String>,
    /// Which checks apply to which studies; first match wins; no match (or no rules):
    /// every check.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    /// Lab values some studies need. Listing any replaces the shipped `contrast-egfr`
    /// rule (copy it from docs/checks.md to keep it); `lab_rules = []` requires none.
    #[serde(default = "default_lab_rules")]
    pub lab_rules: Vec<LabRule>,
    /// Prior studies whose reports must be on file (JRS-7.3.2).
    #[serde(default)]
    pub priors: PriorsConfig,
    /// Offset of the hospital's local time from UTC, in minutes, used to read DICOM
    /// study dates/times (which carry no zone) and to print dates. Japan: 540.
    #[serde(default = "default_utc_offset")]
    pub utc_offset_minutes: i32,
}

/// STAT studies that fail checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatHandling {
    /// Forward at once, marked incomplete, and keep asking for the missing facts:
    /// withholding an emergency study can harm the patient more than an incomplete order.
    #[default]
    ForwardFlagged,
    /// Hold like any other study.
    Hold,
}

/// A check that a rule can turn on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// EXAM_PURPOSE_MISSING (JRS-7.3.1).
    ExamPurpose,
    /// CLINICAL_INFO_MISSING (JRS-7.3.1).
    ClinicalInformation,
    /// LAB_MISSING / LAB_TOO_OLD per `[[policy.lab_rules]]` (JRS-7.3.1).
    Labs,
    /// PRIOR_REPORT_MISSING (JRS-7.3.2).
    PriorReports,
    /// ORDERING_PHYSICIAN_MISSING, CALLBACK_CONTACT_MISSING (JRS-7.3.3).
    OrderingContact,
    /// NO_ROUTE (ATS-4). Always enforced; listing it changes nothing.
    Route,
}

impl Check {
    pub const ALL: [Check; 6] = [
        Check::ExamPurpose,
        Check::ClinicalInformation,
        Check::Labs,
        Check::PriorReports,
        Check::OrderingContact,
        Check::Route,
    ];
}

/// `[[policy.rules]]`: which checks apply to matching studies. Every given list must
/// match (an empty or absent list matches anything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// Shown in evaluations (`rules[1] er-ct`); optional.
    pub name: Option<String>,
    /// Destination ids (`[[destinations]] id`) the study is routed to.
    #[serde(default)]
    pub destinations: Vec<String>,
    /// The study has at least one of these modalities (case-insensitive).
    #[serde(default)]
    pub modalities: Vec<String>,
    /// The study was sent by one of these calling AE titles.
    #[serde(default)]
    pub calling_ae: Vec<String>,
    /// The order's priority; a study without one counts as `routine` (HL7's default).
    #[serde(default)]
    pub priorities: Vec<Priority>,
    /// The checks to run; absent: all. `route` runs whatever this says.
    #[serde(default = "all_checks")]
    pub checks: Vec<Check>,
}

/// `[[policy.lab_rules]]`: lab values a kind of study needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabRule {
    /// Stable name, quoted in messages ("contrast-egfr").
    pub name: String,
    /// `true`: applies only to contrast studies ((0018,0010) present, or a
    /// `contrast_procedure_codes` match). `false`: contrast does not matter.
    #[serde(default)]
    pub contrast: bool,
    /// Applies only when the study has one of these modalities (empty: any).
    #[serde(default)]
    pub modalities: Vec<String>,
    /// Applies only when the study has one of these requested procedure codes (empty:
    /// any); same matching as `contrast_procedure_codes`.
    #[serde(default)]
    pub procedure_codes: Vec<String>,
    /// Any one of these values satisfies the rule.
    pub require_any_of: Vec<LabRequirement>,
    /// A value counts when measured at most this many days before the study (study
    /// date/time, else now). Values measured after the study count too: the reader sees
    /// them.
    #[serde(default = "default_max_age_days")]
    pub max_age_days: u32,
}

/// One acceptable lab value: matched by code (OBX-3.1) or by name (OBX-3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabRequirement {
    /// e.g. a JLAC10 code `8A065000002391901`; case-insensitive, hyphens ignored.
    pub code: Option<String>,
    /// When given, a value whose OBX-3.3 names another system does not match by code
    /// (a value without a system still does: many senders leave it out). `JLAC10`,
    /// `JC10` (the JAHIS/SS-MIX2 spelling) and `JLAC-10` are the same system.
    pub system: Option<String>,
    /// Names as senders write them; exact after trimming, case-insensitive, full-width
    /// letters folded (so "ｅＧＦＲ" = "eGFR").
    #[serde(default)]
    pub names: Vec<String>,
    /// How English messages call it (default: the first name, else the code).
    pub label_en: Option<String>,
    /// How Japanese messages call it (default: `label_en`).
    pub label_ja: Option<String>,
}

/// `[policy.priors]` (JRS-7.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorsConfig {
    /// Only priors from this many days before the study are looked at.
    #[serde(default = "default_lookback_days")]
    pub lookback_days: u32,
    /// `"most_recent"`: the `most_recent_count` newest priors need a report;
    /// `"all"`: every prior in the look-back period does.
    #[serde(default)]
    pub require: PriorRequirement,
    #[serde(default = "default_most_recent_count")]
    pub most_recent_count: u32,
    /// Only priors that share a modality with the study (or one of
    /// `related_modalities`) count: a chest CT is compared with chest CT and CR, not with
    /// a knee MR. A prior or study whose modality is unknown always counts.
    #[serde(default = "default_true")]
    pub same_modality: bool,
    /// Modalities that count as priors of each other, e.g. `CT = ["CR", "DX"]` (one
    /// direction; list both for both).
    #[serde(default)]
    pub related_modalities: std::collections::BTreeMap<String, Vec<String>>,
    /// Only priors that examined the study's body part (Body Part Examined (0018,0015) of
    /// their series, or one of `related_body_parts`) count: a chest CT is compared with
    /// a chest CT, not a head CT. A prior or study whose body part is unknown always
    /// counts.
    #[serde(default = "default_true")]
    pub same_body_part: bool,
    /// Body parts that count as each other, e.g. `CHEST = ["THORAX", "LUNG"]` (one
    /// direction; list both for both).
    #[serde(default)]
    pub related_body_parts: std::collections::BTreeMap<String, Vec<String>>,
    /// When a `[[pacs]]` could not be asked for the patient's history (down, refused,
    /// not yet answered): `"hold"` the study (PRIORS_UNAVAILABLE), or
    /// `"forward_flagged"` (forward it, flagged incomplete, with the reason). STAT
    /// studies follow `policy.stat` either way.
    #[serde(default)]
    pub on_pacs_unreachable: PacsUnreachable,
}

/// What a PRIORS_UNAVAILABLE does to a study.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PacsUnreachable {
    #[default]
    Hold,
    ForwardFlagged,
}

fn default_true() -> bool {
    true
}

impl Default for PriorsConfig {
    fn default() -> Self {
        PriorsConfig {
            lookback_days: default_lookback_days(),
            require: PriorRequirement::default(),
            most_recent_count: default_most_recent_count(),
            same_modality: true,
            related_modalities: Default::default(),
            same_body_part: true,
            related_body_parts: Default::default(),
            on_pacs_unreachable: PacsUnreachable::default(),
        }
    }
}

/// Which priors need a report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorRequirement {
    All,
    /// The default: the reader compares with the latest study(ies); requiring every
    /// report of a year of oncology follow-ups would hold studies for reports nobody
    /// reads.
    #[default]
    MostRecent,
}

fn default_id() -> String {
    "jrs-2024".into()
}
fn default_version() -> String {
    "1".into()
}
fn default_min_text_chars() -> usize {
    2
}
fn default_placeholders() -> Vec<String> {
    ["-", "なし", "特になし", "不明", "精査", "n/a", "none"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn default_max_age_days() -> u32 {
    90
}
fn default_lookback_days() -> u32 {
    365
}
fn default_most_recent_count() -> u32 {
    1
}
fn default_utc_offset() -> i32 {
    540
}
fn all_checks() -> Vec<Check> {
    Check::ALL.to_vec()
}

/// JLAC10 8A065000002391901: 推算GFRcreat (eGFR from serum creatinine).
pub const JLAC10_EGFR_CREAT: &str = "8A065000002391901";
/// JLAC10 3C015000002327101: serum creatinine, enzymatic method (3C015-0000-023-271).
pub const JLAC10_CREATININE: &str = "3C015000002327101";

/// The shipped lab rule: contrast media are dosed and allowed by renal function, and the
/// reader weighs contrast-induced findings against it.
fn default_lab_rules() -> Vec<LabRule> {
    vec![LabRule {
        name: "contrast-egfr".into(),
        contrast: true,
        modalities: Vec::new(),
        procedure_codes: Vec::new(),
        require_any_of: vec![
            LabRequirement {
                code: Some(JLAC10_EGFR_CREAT.into()),
                system: Some("JLAC10".into()),
                names: ["eGFR", "eGFRcreat", "推算GFR", "推算GFRcreat"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                label_en: Some("eGFR".into()),
                label_ja: Some("eGFR".into()),
            },
            LabRequirement {
                code: Some(JLAC10_CREATININE.into()),
                system: Some("JLAC10".into()),
                names: [
                    "クレアチニン",
                    "血清クレアチニン",
                    "Cre",
                    "Cr",
                    "CRE",
                    "Creatinine",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                label_en: Some("creatinine".into()),
                label_ja: Some("クレアチニン".into()),
            },
        ],
        max_age_days: default_max_age_days(),
    }]
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            id: default_id(),
            version: default_version(),
            min_text_chars: default_min_text_chars(),
            placeholders: default_placeholders(),
            stat: StatHandling::default(),
            contrast_procedure_codes: Vec::new(),
            rules: Vec::new(),
            lab_rules: default_lab_rules(),
            priors: PriorsConfig::default(),
            utc_offset_minutes: default_utc_offset(),
        }
    }
}

/// Reads `[policy]` out of a whole readgate.toml (other sections are ignored).
#[derive(Deserialize)]
struct PolicyDocument {
    #[serde(default)]
    policy: PolicyConfig,
}

impl PolicyConfig {
    /// Parses and validates the `[policy]` section of a TOML document; errors are
    /// `(key, message)` like [`PolicyConfig::validate`].
    pub fn from_toml(text: &str) -> Result<PolicyConfig, Invalid> {
        let doc: PolicyDocument = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let message = match line {
                Some(n) => format!("line {n}: {}", e.message().trim()),
                None => e.message().trim().to_string(),
            };
            Invalid::new("policy", message)
        })?;
        doc.policy.validate()?;
        Ok(doc.policy)
    }

    /// Checks values serde cannot: the error names the key, e.g.
    /// `("policy.lab_rules[0].max_age_days", "expected at least 1 day")`.
    pub fn validate(&self) -> Result<(), Invalid> {
        let err = |key: String, message: &str| Err(Invalid::new(key, message));
        if self.id.trim().is_empty() {
            return err("policy.id".into(), "expected a non-empty string");
        }
        if self.version.trim().is_empty() {
            return err("policy.version".into(), "expected a non-empty string");
        }
        if !(1..=200).contains(&self.min_text_chars) {
            return Err(Invalid::new(
                "policy.min_text_chars",
                format!("expected 1 to 200 characters, got {}", self.min_text_chars),
            ));
        }
        for (i, p) in self.placeholders.iter().enumerate() {
            if p.trim().is_empty() {
                return err(
                    format!("policy.placeholders[{i}]"),
                    "expected a non-empty placeholder (blank text is always missing)",
                );
            }
        }
        code_patterns(
            "policy.contrast_procedure_codes",
            &self.contrast_procedure_codes,
        )?;
        for (i, rule) in self.rules.iter().enumerate() {
            let key = |k: &str| format!("policy.rules[{i}].{k}");
            if let Some(name) = &rule.name {
                if name.trim().is_empty() {
                    return err(key("name"), "expected a non-empty string, or leave it out");
                }
            }
            non_empty_items(&key("destinations"), &rule.destinations)?;
            non_empty_items(&key("modalities"), &rule.modalities)?;
            non_empty_items(&key("calling_ae"), &rule.calling_ae)?;
            for (j, c) in rule.checks.iter().enumerate() {
                if rule.checks[..j].contains(c) {
                    return Err(Invalid::new(
                        format!("policy.rules[{i}].checks[{j}]"),
                        format!("{c:?} is listed twice"),
                    ));
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, rule) in self.lab_rules.iter().enumerate() {
            let key = |k: &str| format!("policy.lab_rules[{i}].{k}");
            if rule.name.trim().is_empty() {
                return err(key("name"), "expected a non-empty string");
            }
            if !names.insert(rule.name.trim()) {
                return Err(Invalid::new(
                    key("name"),
                    format!("duplicate lab rule name {:?}", rule.name),
                ));
            }
            non_empty_items(&key("modalities"), &rule.modalities)?;
            code_patterns(&key("procedure_codes"), &rule.procedure_codes)?;
            if rule.max_age_days == 0 {
                return err(key("max_age_days"), "expected at least 1 day");
            }
            if rule.require_any_of.is_empty() {
                return err(
                    key("require_any_of"),
                    "expected at least one { code = ..., names = [...] }",
                );
            }
            for (j, req) in rule.require_any_of.iter().enumerate() {
                let key = |k: &str| format!("policy.lab_rules[{i}].require_any_of[{j}]{k}");
                let has_code = req.code.as_deref().is_some_and(|c| !c.trim().is_empty());
                if !has_code && req.names.is_empty() {
                    return err(key(""), "expected a `code` or at least one name in `names`");
                }
                if req.code.is_some() && !has_code {
                    return err(key(".code"), "expected a non-empty code, or leave it out");
                }
                non_empty_items(&key(".names"), &req.names)?;
            }
        }
        if self.priors.lookback_days == 0 {
            return err(
                "policy.priors.lookback_days".into(),
                "expected at least 1 day",
            );
        }
        if self.priors.most_recent_count == 0 {
            return err(
                "policy.priors.most_recent_count".into(),
                "expected at least 1 (to require no prior reports, leave prior_reports out of the rule's checks)",
            );
        }
        if !(-720..=840).contains(&self.utc_offset_minutes) {
            return Err(Invalid::new(
                "policy.utc_offset_minutes",
                format!(
                    "expected -720 to 840 minutes (Japan: 540), got {}",
                    self.utc_offset_minutes
                ),
            ));
        }
        Ok(())
    }

    /// Checks that every destination named by a rule exists; `known` lists the
    /// `[[destinations]]` ids. Separate from [`PolicyConfig::validate`] because only the
    /// whole configuration knows them.
    pub fn validate_destinations(&self, known: &[&str]) -> Result<(), Invalid> {
        for (i, rule) in self.rules.iter().enumerate() {
            for (j, d) in rule.destinations.iter().enumerate() {
                if !known.contains(&d.as_str()) {
                    return Err(Invalid::new(
                        format!("policy.rules[{i}].destinations[{j}]"),
                        format!(
                            "no [[destinations]] entry has id {d:?} (known: {})",
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn non_empty_items(key: &str, items: &[String]) -> Result<(), Invalid> {
    match items.iter().position(|s| s.trim().is_empty()) {
        Some(j) => Err(Invalid::new(
            format!("{key}[{j}]"),
            "expected a non-empty string",
        )),
        None => Ok(()),
    }
}

fn code_patterns(key: &str, items: &[String]) -> Result<(), Invalid> {
    non_empty_items(key, items)?;
    match items
        .iter()
        .position(|s| s.trim() == "*" || s.trim_end_matches('*').contains('*'))
    {
        Some(j) => Err(Invalid::new(
            format!("{key}[{j}]"),
            "expected a code, or a code prefix followed by a single trailing `*`",
        )),
        None => Ok(()),
    }
}
