//! The typed values the parser produces: the MSH [`Header`], patients, orders,
//! reports, merges and the [`Parsed`] message, plus the small coded enums
//! ([`OrderControl`], [`Priority`], [`ReportStatus`]). Plain data, serde-serialisable.

use serde::{Deserialize, Serialize};

use super::escape::Delimiters;
use crate::time::hl7_dtm_to_iso as dtm_to_iso;

/// HD: an application or facility (namespace id, universal id, universal id type).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HierarchicDesignator {
    /// HD.1
    pub namespace_id: Option<String>,
    /// HD.2
    pub universal_id: Option<String>,
    /// HD.3
    pub universal_id_type: Option<String>,
}

impl HierarchicDesignator {
    /// True when no component is set.
    pub fn is_empty(&self) -> bool {
        self.namespace_id.is_none()
            && self.universal_id.is_none()
            && self.universal_id_type.is_none()
    }
}

/// A date/time (HL7 DTM/TS) as received plus an ISO 8601 rendering when it is valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    /// The value as received, e.g. `20240601123456+0900`.
    pub raw: String,
    /// ISO 8601 at the precision received (`2024-06-01`, `2024-06-01T12:34:56+09:00`);
    /// `None` when the value is not a valid DTM.
    pub iso: Option<String>,
}

impl Timestamp {
    /// Wrap a raw DTM.
    pub fn new(raw: &str) -> Self {
        Timestamp {
            raw: raw.to_string(),
            iso: dtm_to_iso(raw),
        }
    }
}

/// MSH-9.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageType {
    /// MSH-9.1, e.g. `OMI`.
    pub code: String,
    /// MSH-9.2, e.g. `O23`.
    pub trigger: String,
    /// MSH-9.3, e.g. `OMI_O23`.
    pub structure: String,
}

impl std::fmt::Display for MessageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}^{}", self.code, self.trigger)
    }
}

/// The MSH segment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// MSH-1 and MSH-2.
    pub delimiters: Delimiters,
    /// MSH-3
    pub sending_application: HierarchicDesignator,
    /// MSH-4
    pub sending_facility: HierarchicDesignator,
    /// MSH-5
    pub receiving_application: HierarchicDesignator,
    /// MSH-6
    pub receiving_facility: HierarchicDesignator,
    /// MSH-7
    pub message_time: Option<Timestamp>,
    /// MSH-9
    pub message_type: MessageType,
    /// MSH-10 (empty when missing).
    pub control_id: String,
    /// MSH-11.1, e.g. `P` (empty when missing).
    pub processing_id: String,
    /// MSH-12.1, e.g. `2.5` (empty when missing).
    pub version: String,
    /// MSH-15
    pub accept_ack_type: Option<String>,
    /// MSH-16
    pub application_ack_type: Option<String>,
    /// MSH-18 exactly as received (e.g. `~ISO IR87`), echoed in the ACK.
    pub character_set: String,
    /// MSH-20 exactly as received (e.g. `ISO 2022-1994`), echoed in the ACK.
    pub alternate_charset_handling: String,
}

/// CX: a patient identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientId {
    /// CX.1
    pub id: String,
    /// CX.4 assigning authority (HD namespace id, else universal id).
    pub assigning_authority: Option<String>,
    /// CX.5 identifier type code (e.g. `PI`, `MR`).
    pub identifier_type: Option<String>,
}

/// XPN / name part of XCN: one name repetition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonName {
    /// Family name (XPN.1 / FN.1).
    pub family: Option<String>,
    /// Given name (XPN.2).
    pub given: Option<String>,
    /// Second and further given names (XPN.3).
    pub middle: Option<String>,
    /// Suffix (XPN.4).
    pub suffix: Option<String>,
    /// Prefix (XPN.5).
    pub prefix: Option<String>,
    /// Name type code (XPN.7, e.g. `L` legal).
    pub name_type: Option<String>,
    /// Name representation code (XPN.8: `I` ideographic/kanji, `P` phonetic/kana,
    /// `A` alphabetic), as JAHIS uses it.
    pub representation: Option<String>,
}

impl PersonName {
    pub(crate) fn is_empty(&self) -> bool {
        self.family.is_none() && self.given.is_none() && self.middle.is_none()
    }
}

/// PID: the patient.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patient {
    /// PID-3, every repetition with an id.
    pub identifiers: Vec<PatientId>,
    /// PID-5, every repetition (alphabetic, kanji, kana...).
    pub names: Vec<PersonName>,
    /// PID-7
    pub birth_date: Option<Timestamp>,
    /// PID-8 administrative sex.
    pub sex: Option<String>,
}

/// EI: an entity identifier (placer/filler order number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityId {
    /// EI.1
    pub id: String,
    /// EI.2 namespace id.
    pub namespace_id: Option<String>,
    /// EI.3 universal id.
    pub universal_id: Option<String>,
}

/// CE/CWE: a coded value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodedElement {
    /// .1 identifier
    pub code: Option<String>,
    /// .2 text
    pub text: Option<String>,
    /// .3 coding system (e.g. `JJ1017-16P`, `JLAC10`, `ICD10`)
    pub coding_system: Option<String>,
    /// .4 alternate identifier
    pub alt_code: Option<String>,
    /// .5 alternate text
    pub alt_text: Option<String>,
    /// .6 alternate coding system
    pub alt_coding_system: Option<String>,
}

impl CodedElement {
    pub(crate) fn is_empty(&self) -> bool {
        *self == CodedElement::default()
    }
}

/// XCN: a provider (ordering physician).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provider {
    /// XCN.1
    pub id: Option<String>,
    /// XCN.2-7, 10, 15 as a name.
    pub name: PersonName,
    /// XCN.9 assigning authority.
    pub assigning_authority: Option<String>,
}

/// NDL: an interpreter (OBR-32/33), with the interpretation period if sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interpreter {
    /// CNN.1 id.
    pub id: Option<String>,
    /// CNN.2 family name.
    pub family: Option<String>,
    /// CNN.3 given name.
    pub given: Option<String>,
    /// CNN.4 middle.
    pub middle: Option<String>,
    /// CNN.6 prefix.
    pub prefix: Option<String>,
    /// NDL.2 start date/time.
    pub start: Option<Timestamp>,
    /// NDL.3 end date/time.
    pub end: Option<Timestamp>,
    /// NDL.4 point of care.
    pub point_of_care: Option<String>,
    /// NDL.7 facility (HD namespace id).
    pub facility: Option<String>,
}

/// ORC-1 mapped to what readgate does with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderControl {
    /// NW
    New,
    /// XO, SC, XX
    Change,
    /// CA, DC, OC
    Cancel,
    /// Any other code, as received.
    Other(String),
}

impl OrderControl {
    pub(crate) fn from_code(code: &str) -> Self {
        match code.to_ascii_uppercase().as_str() {
            "NW" => OrderControl::New,
            "XO" | "SC" | "XX" => OrderControl::Change,
            "CA" | "DC" | "OC" => OrderControl::Cancel,
            _ => OrderControl::Other(code.to_string()),
        }
    }
}

/// Order priority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Priority {
    /// S, STAT
    Stat,
    /// A, ASAP
    Asap,
    /// R, ROUTINE
    Routine,
    /// Any other code, as received.
    Other(String),
}

impl Priority {
    pub(crate) fn from_code(code: &str) -> Self {
        match code.to_ascii_uppercase().as_str() {
            "S" | "STAT" => Priority::Stat,
            "A" | "ASAP" => Priority::Asap,
            "R" | "ROUTINE" => Priority::Routine,
            _ => Priority::Other(code.to_string()),
        }
    }
}

/// OBX: an observation (lab value, or a report line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// OBX-2 value type (`NM`, `ST`, `TX`, `CE`...).
    pub value_type: Option<String>,
    /// OBX-3 identifier (JLAC10 codes for lab values in Japan).
    pub code: CodedElement,
    /// OBX-4 sub-id.
    pub sub_id: Option<String>,
    /// OBX-5, repetitions joined by newline. Each repetition is unescaped as a whole,
    /// so a coded value reads `code^text^system`.
    pub value: Option<String>,
    /// OBX-6 units (identifier, else text).
    pub units: Option<String>,
    /// OBX-7 reference range.
    pub reference_range: Option<String>,
    /// OBX-8 abnormal flags, repetitions joined by `~`.
    pub abnormal_flags: Option<String>,
    /// OBX-11 result status (`F`, `P`, `C`...).
    pub status: Option<String>,
    /// OBX-14 observation time.
    pub observation_time: Option<Timestamp>,
}

/// AL1: an allergy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allergy {
    /// AL1-2 allergen type (code).
    pub allergen_type: Option<String>,
    /// AL1-3 allergen.
    pub allergen: CodedElement,
    /// AL1-4 severity (code).
    pub severity: Option<String>,
    /// AL1-5 reactions, repetitions joined by newline.
    pub reaction: Option<String>,
}

/// DG1: a diagnosis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// DG1-2 coding method (2.3.1).
    pub coding_method: Option<String>,
    /// DG1-3 code.
    pub code: Option<CodedElement>,
    /// DG1-4 description.
    pub description: Option<String>,
    /// DG1-6 diagnosis type (A admitting, W working, F final).
    pub diagnosis_type: Option<String>,
}

/// One ORC/OBR group of an order message (one requested procedure / accession).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    /// ORC-1 mapped.
    pub control: OrderControl,
    /// ORC-1 as received.
    pub control_code: String,
    /// ORC-2, else OBR-2.
    pub placer_order_number: Option<EntityId>,
    /// ORC-3, else OBR-3.
    pub filler_order_number: Option<EntityId>,
    /// IPC-1 (OMI), else OBR-18 (ORM, IHE).
    pub accession_number: Option<String>,
    /// IPC-3 (OMI), else ZDS-1 (ORM, IHE).
    pub study_instance_uid: Option<String>,
    /// IPC-2, else OBR-19 (placer field 2: the requested procedure id in IHE SWF).
    pub requested_procedure_id: Option<String>,
    /// IPC-4, else OBR-20 (filler field 1: the scheduled procedure step id in IHE SWF).
    pub scheduled_procedure_step_id: Option<String>,
    /// OBR-4 universal service id: the requested procedure (JJ1017 in Japan).
    pub requested_procedure: Option<CodedElement>,
    /// OBR-44 procedure code.
    pub procedure_code: Option<CodedElement>,
    /// IPC-6 protocol codes of every IPC of the group.
    pub protocol_codes: Vec<CodedElement>,
    /// IPC-5.1 (OMI), else OBR-24 diagnostic service section.
    pub modality: Option<String>,
    /// ORC-12 repetitions, else OBR-16.
    pub ordering_provider: Vec<Provider>,
    /// ORC-14 repetitions, else OBR-17 (number, else unformatted, else parts, else
    /// e-mail).
    pub callback_phones: Vec<String>,
    /// OBR-13 relevant clinical information.
    pub clinical_information: Option<String>,
    /// OBR-31 reason for study (exam purpose).
    pub exam_purpose: Vec<CodedElement>,
    /// TQ1-9, else ORC-7.6, else OBR-27.6.
    pub priority: Option<Priority>,
    /// The priority code as received.
    pub priority_code: Option<String>,
    /// TQ1-7, else ORC-7.4, else OBR-36.
    pub scheduled_time: Option<Timestamp>,
    /// NTE-3 of the group (after ORC/OBR/OBX), one entry per NTE.
    pub notes: Vec<String>,
    /// DG1 of the group, plus any DG1 before the first ORC.
    pub diagnoses: Vec<Diagnosis>,
    /// OBX of the group, plus any OBX before the first ORC.
    pub observations: Vec<Observation>,
    /// How many images the study will have, from the configured field
    /// (`hl7.expected_images_field`): a positive integer, else `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_images: Option<u32>,
}

/// ORM^O01 / OMI^O23.
///
/// Content rules ([`ContentError`](super::error::ContentError), answer AE): a PID with at least one PID-3
/// identifier, at least one ORC/OBR group, ORC-1 in every group, and for a new order
/// (NW) an accession number or a study UID (reported at IPC-1 for OMI, OBR-18 for
/// ORM); other order controls may identify the order by placer/filler number alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// MSH.
    pub header: Header,
    /// PID.
    pub patient: Patient,
    /// AL1 segments.
    pub allergies: Vec<Allergy>,
    /// NTE before the first ORC (patient-level notes).
    pub patient_notes: Vec<String>,
    /// One entry per ORC/OBR group, in message order (at least one).
    pub requests: Vec<OrderRequest>,
    /// Values the order was accepted without (answered AA, the first one in MSA-3): an
    /// expected image count that is not a positive integer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<ValueWarning>,
}

/// A value a message was accepted without: where it was and why it was not used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueWarning {
    /// Segment id, e.g. `OBR`.
    pub segment: String,
    /// Occurrence of that segment in the message, 1-based.
    pub sequence: u32,
    /// Field number.
    pub field: u32,
    /// Explanation for the log and MSA-3, naming the field.
    pub reason: String,
}

/// OBR-25 result status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportStatus {
    /// P
    Preliminary,
    /// F
    Final,
    /// C
    Corrected,
    /// Any other code (e.g. `X` cancelled, `R` results stored), as received.
    Other(String),
}

impl ReportStatus {
    pub(crate) fn from_code(code: &str) -> Self {
        match code.to_ascii_uppercase().as_str() {
            "P" => ReportStatus::Preliminary,
            "F" => ReportStatus::Final,
            "C" => ReportStatus::Corrected,
            _ => ReportStatus::Other(code.to_string()),
        }
    }
}

/// One OBR group of an ORU^R01 (one report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportResult {
    /// ORC-2, else OBR-2.
    pub placer_order_number: Option<EntityId>,
    /// ORC-3, else OBR-3.
    pub filler_order_number: Option<EntityId>,
    /// OBR-18.
    pub accession_number: Option<String>,
    /// ZDS-1, else an OBX whose OBX-3 names the Study Instance UID (code `113014` or
    /// `0020000D`, or text containing "Study Instance UID") with a UID-shaped value in
    /// OBX-5.1 or OBX-5.2 (types RP, HD, ST...).
    pub study_instance_uid: Option<String>,
    /// OBR-4.
    pub procedure: Option<CodedElement>,
    /// OBR-25 mapped.
    pub status: ReportStatus,
    /// OBR-25 as received.
    pub status_code: String,
    /// OBR-32 principal result interpreter (the signer).
    pub principal_interpreter: Option<Interpreter>,
    /// OBR-33 assistant result interpreters (trainee, part-time first reader).
    pub assistant_interpreters: Vec<Interpreter>,
    /// OBR-22 results report/status change time.
    pub results_time: Option<Timestamp>,
    /// OBR-7 observation time.
    pub observation_time: Option<Timestamp>,
    /// OBX-5 of the text OBX (TX, FT, ST, TEXT), repetitions and OBX joined by
    /// newline, in message order.
    pub text: String,
    /// The other OBX (coded, numeric...), excluding the one that carried the study UID.
    pub observations: Vec<Observation>,
    /// NTE-3 of the group.
    pub notes: Vec<String>,
}

/// ORU^R01.
///
/// Content rules ([`ContentError`](super::error::ContentError), answer AE): a PID with at least one PID-3
/// identifier, at least one OBR, OBR-25 in every OBR, and in every OBR group an
/// accession number, study UID, placer or filler number to match it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// MSH.
    pub header: Header,
    /// PID.
    pub patient: Patient,
    /// One entry per OBR, in message order (at least one).
    pub results: Vec<ReportResult>,
}

/// One PID/MRG pair of an ADT^A40.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientMerge {
    /// PID: the surviving patient.
    pub surviving: Patient,
    /// MRG-1: identifiers of the prior patient, merged into `surviving`.
    pub prior_identifiers: Vec<PatientId>,
    /// MRG-7 prior patient names.
    pub prior_names: Vec<PersonName>,
}

/// ADT^A40 (merge patient - patient identifier list).
///
/// Content rules: every PID has a PID-3 identifier and is followed by an MRG with an
/// MRG-1 identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merge {
    /// MSH.
    pub header: Header,
    /// One entry per PID/MRG pair (at least one).
    pub merges: Vec<PatientMerge>,
}

/// ADT^A08 / ADT^A31 (update patient information).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientUpdate {
    /// MSH.
    pub header: Header,
    /// PID.
    pub patient: Patient,
}

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Parsed {
    /// ORM^O01, OMI^O23.
    Order(Order),
    /// ORU^R01.
    Report(Report),
    /// ADT^A40.
    Merge(Merge),
    /// ADT^A08, ADT^A31.
    PatientUpdate(PatientUpdate),
    /// A message type readgate does not handle.
    Other {
        /// MSH.
        header: Header,
        /// MSH-9.1^MSH-9.2.
        message_type: String,
    },
}

impl Parsed {
    /// The MSH of any variant.
    pub fn header(&self) -> &Header {
        match self {
            Parsed::Order(o) => &o.header,
            Parsed::Report(r) => &r.header,
            Parsed::Merge(m) => &m.header,
            Parsed::PatientUpdate(p) => &p.header,
            Parsed::Other { header, .. } => header,
        }
    }
}
