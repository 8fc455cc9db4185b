//! The facts about one study that the policy checks look at, each with where it came
//! from.
//!
//! The store fills a [`StudyContext`] from the HL7 orders and results and the DICOM
//! headers it has indexed; [`super::policy::evaluate`] only reads it. Every fact keeps its
//! [`Source`] so that a hold can say *where* a bad value came from (a placeholder typed
//! into the RIS order is fixed in the RIS, one in the modality worklist at the modality),
//! and so that a pass can be traced to the field that satisfied it (JRS-7.3.1–7.3.3).
//!
//! The context is serialisable (JSON in the store, `readgate check` output) and
//! `Default`, so tests and callers set only what they know.

use serde::{Deserialize, Serialize};

/// Where a fact was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A DICOM attribute of one of the study's instances, e.g. `(0040,1002)`.
    Dicom { tag: String },
    /// A field of an HL7 v2 message, e.g. `OBR-31` of `ORM^O01` with MSH-10 `12345`.
    Hl7 {
        control_id: String,
        message_type: String,
        field: String,
    },
    /// A C-FIND answer from this AE (priors found in the hospital PACS).
    Cfind { ae: String },
}

impl Source {
    /// A DICOM tag source, `tag` written as `(gggg,eeee)`.
    pub fn dicom(tag: &str) -> Self {
        Source::Dicom {
            tag: tag.to_string(),
        }
    }

    /// An HL7 field source.
    pub fn hl7(control_id: &str, message_type: &str, field: &str) -> Self {
        Source::Hl7 {
            control_id: control_id.to_string(),
            message_type: message_type.to_string(),
            field: field.to_string(),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Dicom { tag } => write!(f, "DICOM {tag}"),
            Source::Hl7 {
                control_id,
                message_type,
                field,
            } => write!(f, "HL7 {field} ({message_type} {control_id})"),
            Source::Cfind { ae } => write!(f, "C-FIND {ae}"),
        }
    }
}

/// A free-text fact (exam purpose, clinical information, physician name, phone...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    pub value: String,
    pub source: Source,
}

impl Fact {
    pub fn new(value: &str, source: Source) -> Self {
        Fact {
            value: value.to_string(),
            source,
        }
    }
}

/// A coded fact: a requested procedure code (JJ1017 in Japan) from OBR-4/OBR-44/IPC-6 or
/// (0032,1064)/(0008,1032).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodedFact {
    pub code: String,
    /// Coding system as sent, e.g. `JJ1017-16P`, `JJ1017-32`, a local system.
    pub system: Option<String>,
    pub text: Option<String>,
    pub source: Source,
}

/// One lab value (HL7 OBX: OBX-3 code, OBX-5 value, OBX-6 units, OBX-14 time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabFact {
    /// OBX-3.1 (a JLAC10 code in Japan, e.g. `8A065000002391901` for eGFRcreat).
    pub code: Option<String>,
    /// OBX-3.3, e.g. `JLAC10`, `JC10`, or a local system.
    pub system: Option<String>,
    /// OBX-3.2, e.g. `eGFR`, `クレアチニン`.
    pub name: Option<String>,
    /// OBX-5 as text.
    pub value: String,
    /// OBX-6.
    pub units: Option<String>,
    /// OBX-14 in ms since the Unix epoch; `None` when the sender gave no time.
    pub observed_at: Option<i64>,
    pub source: Source,
}

/// Another study of the same patient known to readgate (received earlier, or answered by
/// a C-FIND to the hospital PACS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prior {
    pub study_uid: String,
    pub accession: Option<String>,
    /// Study date/time in ms since the Unix epoch; `None` when unknown.
    pub study_time_ms: Option<i64>,
    /// Final (F) or corrected (C) reports on file for it; preliminary ones do not count,
    /// the reader needs what was signed.
    pub reports: u32,
    /// Report documents in the PACS (Basic/Enhanced/Comprehensive SR, encapsulated PDF
    /// or CDA) found for it by C-FIND.
    #[serde(default)]
    pub documents: u32,
    /// Its modalities (Modalities in Study, or of the images readgate received).
    #[serde(default)]
    pub modalities: Vec<String>,
    /// Body Part Examined (0018,0015) of its series, when the PACS gave it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub body_parts: Vec<String>,
    pub source: Source,
    /// Why the PACS could not deliver it the last time readgate retrieved it to send
    /// with the study (`None`: never failed, or retrieved since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// How one `[[pacs]]` answered about the patient's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PacsAnswer {
    /// It answered (at, ms since the Unix epoch) with `found` studies.
    Answered { pacs: String, at: i64, found: u32 },
    /// The last attempt failed.
    Failed {
        pacs: String,
        at: i64,
        error: String,
    },
    /// Not asked yet (readgate asks when the order or the first image arrives).
    NotYet { pacs: String },
}

pub use crate::model::Priority;

/// Everything the checks know about one study.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StudyContext {
    pub study_uid: String,
    pub accession: Option<String>,
    pub modalities: Vec<String>,
    pub calling_aes: Vec<String>,
    /// Body Part Examined (0018,0015) of its series, e.g. `CHEST`: priors of another body
    /// part are not compared (`policy.priors.same_body_part`).
    pub body_parts: Vec<String>,
    /// Study Date (0008,0020), DICOM DA `YYYYMMDD`, local time of the hospital.
    pub study_date: Option<String>,
    /// Study Time (0008,0030), DICOM TM `HHMMSS.FFFFFF` (any prefix), local time.
    pub study_time: Option<String>,
    /// `None`: no priority known; treated as routine (HL7's default for OBR-27/TQ1-9).
    pub priority: Option<Priority>,
    /// OBR-31; (0040,1002), (0040,100A), (0032,1030).
    pub exam_purpose: Vec<Fact>,
    /// OBR-13, NTE; (0010,21B0), (0008,1080).
    pub clinical_information: Vec<Fact>,
    /// DG1-3/DG1-4.
    pub diagnoses: Vec<Fact>,
    /// OBR-4/OBR-44/IPC-6; (0032,1064), (0008,1032).
    pub procedure_codes: Vec<CodedFact>,
    /// (0018,0010) Contrast/Bolus Agent; any entry makes the study a contrast study.
    pub contrast_agent: Vec<Fact>,
    /// ORC-12/OBR-16; (0032,1032).
    pub ordering_physician: Vec<Fact>,
    /// ORC-14/OBR-17; (0040,2010), (0008,0094).
    pub callback_phone: Vec<Fact>,
    pub labs: Vec<LabFact>,
    pub priors: Vec<Prior>,
    /// One entry per configured `[[pacs]]`: whether the priors above include its answer.
    pub pacs: Vec<PacsAnswer>,
    /// Set by routing; `None`: no route matched.
    pub destination: Option<String>,
    /// The receiving facility responsible for the reading (ATS-4).
    pub facility: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_round_trips_through_json() {
        let ctx = StudyContext {
            study_uid: "1.2.3".into(),
            priority: Some(Priority::Stat),
            exam_purpose: vec![Fact::new("胸痛", Source::hl7("M1", "ORM^O01", "OBR-31"))],
            contrast_agent: vec![Fact::new("Iopamidol", Source::dicom("(0018,0010)"))],
            ..Default::default()
        };
        let json = serde_json::to_string(&ctx).unwrap();
        assert!(json.contains(r#""kind":"hl7""#), "{json}");
        assert!(json.contains(r#""priority":"stat""#), "{json}");
        let back: StudyContext = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ctx);
        // Fields the filler does not know may be left out.
        let partial: StudyContext = serde_json::from_str(r#"{"study_uid":"9"}"#).unwrap();
        assert_eq!(partial.study_uid, "9");
    }

    #[test]
    fn priority_codes() {
        assert_eq!(Priority::from_code(" s "), Some(Priority::Stat));
        assert_eq!(Priority::from_code("HIGH"), Some(Priority::Asap));
        assert_eq!(Priority::from_code("Routine"), Some(Priority::Routine));
        assert_eq!(Priority::from_code("T"), None);
        assert_eq!(
            crate::decide::assemble::priority_from_hl7(&crate::hl7::message::Priority::Other(
                "stat".into()
            )),
            Some(Priority::Stat)
        );
    }
}
