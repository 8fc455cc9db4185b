//! Typed extraction of the messages readgate consumes.
//!
//! Input is text already decoded by [`super::charset`]. Structure is parsed with
//! hl7-parser 0.3; values are taken raw and unescaped by [`Delimiters::unescape`]
//! because hl7-parser's own escape decoding panics on Japanese text. Every call into
//! the parser (and the extraction around it) runs under `catch_unwind`, so a parser
//! bug becomes [`ParseError::Panicked`] instead of killing the daemon (this needs the
//! default `panic = "unwind"`).
//!
//! Supported messages ([`Parsed`]):
//!
//! | MSH-9 | result |
//! |---|---|
//! | `ORM^O01` (2.3.1, IHE SWF), `OMI^O23` (2.5, IHE SWF.b / JAHIS) | [`Order`] |
//! | `ORU^R01` | [`Report`] |
//! | `ADT^A40` | [`Merge`] |
//! | `ADT^A08`, `ADT^A31` | [`PatientUpdate`] |
//! | anything else | [`Parsed::Other`] (the caller decides AR or AA) |
//!
//! Value conventions: every text value is unescaped and trimmed; empty values and
//! the HL7 explicit null `""` are `None`/skipped. Field numbers in docs are HL7's
//! (1-based).

use std::collections::HashMap;

use hl7_parser::message::{Repeat, Segment};
use hl7_parser::Message;
use serde::{Deserialize, Serialize};

use super::ack::{ErrorCode, ErrorLocation};
use super::charset;
use super::escape::Delimiters;

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

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
    fn is_empty(&self) -> bool {
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
    fn is_empty(&self) -> bool {
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
    fn from_code(code: &str) -> Self {
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
    fn from_code(code: &str) -> Self {
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
}

/// ORM^O01 / OMI^O23.
///
/// Content rules ([`ContentError`], answer AE): a PID with at least one PID-3
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
    fn from_code(code: &str) -> Self {
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
/// Content rules ([`ContentError`], answer AE): a PID with at least one PID-3
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

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The text is not a parsable HL7 message: answer AR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but whitespace.
    #[error("empty message")]
    Empty,
    /// The first segment is not MSH.
    #[error("message does not start with an MSH segment")]
    NoMsh,
    /// MSH-1/MSH-2 are not usable delimiters.
    #[error("invalid delimiters in MSH-1/MSH-2: {0:?}")]
    BadDelimiters(String),
    /// A segment the parser could not read (bad segment id...).
    #[error("segment {line} cannot be parsed: {fragment:?}")]
    BadSegment {
        /// 1-based segment (line) number.
        line: usize,
        /// The start of the segment.
        fragment: String,
    },
    /// A second MSH (or a batch header) inside the payload: two messages in one
    /// frame would otherwise mix one patient's order with another's.
    #[error("segment {line} starts another message ({segment}); one message per frame")]
    MultipleMessages {
        /// 1-based segment (line) number.
        line: usize,
        /// The segment id found (MSH, FHS, BHS...).
        segment: String,
    },
    /// hl7-parser rejected the message.
    #[error("HL7 syntax error: {0}")]
    Syntax(String),
    /// hl7-parser (or the extraction) panicked; the panic was contained.
    #[error("internal parser failure (contained panic): {0}")]
    Panicked(String),
}

impl ParseError {
    /// Location for the ERR segment.
    pub fn location(&self) -> Option<ErrorLocation> {
        match self {
            ParseError::Empty | ParseError::NoMsh => Some(ErrorLocation::segment("MSH", 1)),
            ParseError::BadDelimiters(_) => Some(ErrorLocation::field("MSH", 1, 2)),
            _ => None,
        }
    }

    /// HL7 error code for the ERR segment.
    pub fn code(&self) -> ErrorCode {
        match self {
            ParseError::Empty
            | ParseError::NoMsh
            | ParseError::BadSegment { .. }
            | ParseError::MultipleMessages { .. } => ErrorCode::SegmentSequenceError,
            ParseError::BadDelimiters(_) | ParseError::Syntax(_) => ErrorCode::DataTypeError,
            ParseError::Panicked(_) => ErrorCode::ApplicationInternalError,
        }
    }
}

/// The message parsed but its content is unusable: answer AE with an ERR segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{location}: {reason}")]
pub struct ContentError {
    /// Segment, occurrence and field at fault.
    pub location: ErrorLocation,
    /// HL7 error code (101 required field missing, 100 missing segment...).
    pub code: ErrorCode,
    /// Explanation for the log and the ACK.
    pub reason: String,
}

impl ContentError {
    fn missing_field(segment: &str, sequence: u32, field: u32, reason: &str) -> Self {
        ContentError {
            location: ErrorLocation::field(segment, sequence, field),
            code: ErrorCode::RequiredFieldMissing,
            reason: reason.to_string(),
        }
    }

    fn missing_segment(segment: &str, reason: &str) -> Self {
        ContentError {
            location: ErrorLocation::segment(segment, 1),
            code: ErrorCode::SegmentSequenceError,
            reason: reason.to_string(),
        }
    }
}

/// Why [`parse`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Not parsable: AR.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// Parsable but unusable: AE. Carries the header so the ACK can be addressed.
    #[error("{error}")]
    Content {
        /// The message's MSH.
        header: Box<Header>,
        /// What is wrong.
        error: ContentError,
    },
}

impl MessageError {
    /// The header, when the MSH could be read.
    pub fn header(&self) -> Option<&Header> {
        match self {
            MessageError::Parse(_) => None,
            MessageError::Content { header, .. } => Some(header),
        }
    }
}

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

/// Parse decoded message text into a [`Parsed`] value. Segment separators may be
/// CR, LF or CRLF; blank lines are ignored. Never panics.
pub fn parse(text: &str) -> Result<Parsed, MessageError> {
    match std::panic::catch_unwind(|| parse_inner(text)) {
        Ok(result) => result,
        Err(payload) => Err(MessageError::Parse(ParseError::Panicked(panic_text(
            payload.as_ref(),
        )))),
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Best-effort MSH of decoded text that [`parse`] rejected, for addressing the ACK.
/// `None` when there is no MSH with usable delimiters.
pub fn recover_header(text: &str) -> Option<Header> {
    let text = text.trim_start_matches(['\u{feff}', '\r', '\n', ' ', '\t']);
    let line = text.split(['\r', '\n']).next()?;
    let delimiters = read_delimiters(line).ok()?;
    let fields = split_msh_line(line, &delimiters);
    Some(header_from_fields(&fields, delimiters))
}

/// Best-effort MSH of raw bytes that could not even be decoded (unknown charset,
/// malformed bytes): fields are scanned as bytes and non-ASCII becomes `?`.
pub fn recover_header_from_bytes(raw: &[u8]) -> Option<Header> {
    let msh = charset::scan_msh(raw, false)?;
    let sep = char::from(*msh.field(1).first()?);
    let mut line = String::from("MSH");
    for n in 2..=msh.len() {
        line.push(sep);
        line.extend(msh.field(n).iter().map(|&b| {
            if b.is_ascii() && !b.is_ascii_control() {
                b as char
            } else {
                '?'
            }
        }));
    }
    recover_header(&line)
}

// ---------------------------------------------------------------------------
// Delimiters and normalisation
// ---------------------------------------------------------------------------

fn is_delimiter_char(c: char) -> bool {
    c.is_ascii_graphic() && !c.is_ascii_alphanumeric()
}

/// Read MSH-1/MSH-2 from the MSH line.
fn read_delimiters(line: &str) -> Result<Delimiters, ParseError> {
    let rest = line.strip_prefix("MSH").ok_or(ParseError::NoMsh)?;
    let mut chars = rest.chars();
    let field = chars
        .next()
        .filter(|&c| is_delimiter_char(c))
        .ok_or_else(|| ParseError::BadDelimiters(rest.chars().take(6).collect()))?;
    let enc: Vec<char> = chars.take_while(|&c| c != field).collect();
    let bad = || ParseError::BadDelimiters(format!("{field}{}", enc.iter().collect::<String>()));
    if !(4..=5).contains(&enc.len()) || !enc.iter().all(|&c| is_delimiter_char(c)) {
        return Err(bad());
    }
    let mut all = enc.clone();
    all.push(field);
    all.sort_unstable();
    all.dedup();
    if all.len() != enc.len() + 1 {
        return Err(bad());
    }
    Ok(Delimiters {
        field,
        component: enc[0],
        repetition: enc[1],
        escape: enc[2],
        subcomponent: enc[3],
        truncation: enc.get(4).copied(),
    })
}

/// Split segments on CR, LF or CRLF, drop blank lines, make field-less segments
/// (`ZDS`) parsable, and drop the 2.7 truncation character from MSH-2 (hl7-parser
/// reads exactly four encoding characters). Returns the segments joined by CR.
fn normalise(text: &str, d: &Delimiters) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut first = true;
    for line in text.split(['\r', '\n']) {
        if line.trim().is_empty() {
            continue;
        }
        if !first {
            out.push('\r');
        }
        if first {
            // MSH + field separator + 4 encoding characters, then the rest after MSH-2.
            out.push_str("MSH");
            out.push(d.field);
            out.push(d.component);
            out.push(d.repetition);
            out.push(d.escape);
            out.push(d.subcomponent);
            let skip = 3 + d.field.len_utf8() + d.encoding_characters().len();
            out.push_str(line.get(skip..).unwrap_or(""));
            first = false;
            continue;
        }
        out.push_str(line);
        if line.chars().count() == 3 {
            out.push(d.field);
        }
    }
    out
}

fn split_msh_line(line: &str, d: &Delimiters) -> Vec<String> {
    // fields[0] = MSH-1; fields[1] = MSH-2; fields[n-1] = MSH-n.
    let mut fields = vec![d.field.to_string()];
    let body = line.get(3 + d.field.len_utf8()..).unwrap_or("");
    fields.extend(body.split(d.field).map(str::to_string));
    fields
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

fn parse_inner(text: &str) -> Result<Parsed, MessageError> {
    let trimmed = text.trim_start_matches(['\u{feff}', '\r', '\n', ' ', '\t']);
    if trimmed.trim().is_empty() {
        return Err(ParseError::Empty.into());
    }
    let first_line = trimmed.split(['\r', '\n']).next().unwrap_or("");
    if !first_line.starts_with("MSH") {
        return Err(ParseError::NoMsh.into());
    }
    let d = read_delimiters(first_line)?;
    let normalised = normalise(trimmed, &d);
    let message = Message::parse(&normalised).map_err(|e| ParseError::Syntax(e.to_string()))?;
    // hl7-parser stops quietly at the first segment it cannot read; refuse instead
    // of silently dropping the rest of the message.
    let consumed = message.raw_value().len();
    if !normalised
        .get(consumed..)
        .unwrap_or("")
        .trim_matches('\r')
        .is_empty()
    {
        let line = message.segments.len() + 1;
        let fragment = normalised
            .split('\r')
            .nth(line - 1)
            .unwrap_or("")
            .chars()
            .take(20)
            .collect();
        return Err(ParseError::BadSegment { line, fragment }.into());
    }

    if let Some((i, seg)) = message
        .segments
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, s)| matches!(s.name, "MSH" | "FHS" | "BHS" | "BTS" | "FTS"))
    {
        return Err(ParseError::MultipleMessages {
            line: i + 1,
            segment: seg.name.to_string(),
        }
        .into());
    }

    let msh_fields: Vec<String> = message
        .segments
        .first()
        .map(|msh| {
            msh.fields
                .iter()
                .map(|f| f.raw_value().to_string())
                .collect()
        })
        .unwrap_or_default();
    let header = header_from_fields(&msh_fields, d);
    let x = Extractor { d };
    let content = |error: ContentError| MessageError::Content {
        header: Box::new(header.clone()),
        error,
    };
    if header.message_type.code.is_empty() {
        return Err(content(ContentError::missing_field(
            "MSH",
            1,
            9,
            "message type (MSH-9) is empty",
        )));
    }
    if header.control_id.is_empty() {
        return Err(content(ContentError::missing_field(
            "MSH",
            1,
            10,
            "message control id (MSH-10) is empty",
        )));
    }
    let segments = Segments::new(&message.segments);
    let code = header.message_type.code.to_ascii_uppercase();
    let trigger = header.message_type.trigger.to_ascii_uppercase();
    let result = match (code.as_str(), trigger.as_str()) {
        ("ORM", "O01") | ("OMI", "O23") => x.order(&segments, code == "OMI").map(
            |(patient, allergies, patient_notes, requests)| {
                Parsed::Order(Order {
                    header: header.clone(),
                    patient,
                    allergies,
                    patient_notes,
                    requests,
                })
            },
        ),
        ("ORU", "R01") => x.report(&segments).map(|(patient, results)| {
            Parsed::Report(Report {
                header: header.clone(),
                patient,
                results,
            })
        }),
        ("ADT", "A40") => x.merge(&segments).map(|merges| {
            Parsed::Merge(Merge {
                header: header.clone(),
                merges,
            })
        }),
        ("ADT", "A08") | ("ADT", "A31") => x.required_patient(&segments).map(|patient| {
            Parsed::PatientUpdate(PatientUpdate {
                header: header.clone(),
                patient,
            })
        }),
        _ => Ok(Parsed::Other {
            message_type: header.message_type.to_string(),
            header: header.clone(),
        }),
    };
    result.map_err(content)
}

/// Split a raw field value into (repetition 1) component `c`, subcomponent `s`.
fn raw_part<'a>(raw: &'a str, d: &Delimiters, c: usize, s: usize) -> &'a str {
    raw.split(d.repetition)
        .next()
        .and_then(|r| r.split(d.component).nth(c.saturating_sub(1)))
        .and_then(|comp| comp.split(d.subcomponent).nth(s.saturating_sub(1)))
        .unwrap_or("")
}

/// Build the header from MSH fields given raw (escaped) and numbered like HL7 from
/// index 0 = MSH-1. Shared by the parser path and the recovery paths.
fn header_from_fields(fields: &[String], d: Delimiters) -> Header {
    let x = Extractor { d };
    let raw = |n: usize| fields.get(n - 1).map(String::as_str).unwrap_or("");
    let part = |n: usize, c: usize, s: usize| x.clean(raw_part(raw(n), &d, c, s));
    let hd = |n: usize| HierarchicDesignator {
        namespace_id: part(n, 1, 1),
        universal_id: part(n, 2, 1),
        universal_id_type: part(n, 3, 1),
    };
    Header {
        delimiters: d,
        sending_application: hd(3),
        sending_facility: hd(4),
        receiving_application: hd(5),
        receiving_facility: hd(6),
        message_time: part(7, 1, 1).map(|t| Timestamp::new(&t)),
        message_type: MessageType {
            code: part(9, 1, 1).unwrap_or_default(),
            trigger: part(9, 2, 1).unwrap_or_default(),
            structure: part(9, 3, 1).unwrap_or_default(),
        },
        control_id: x.clean(raw(10)).unwrap_or_default(),
        processing_id: part(11, 1, 1).unwrap_or_default(),
        version: part(12, 1, 1).unwrap_or_default(),
        accept_ack_type: part(15, 1, 1),
        application_ack_type: part(16, 1, 1),
        character_set: raw(18).trim().to_string(),
        alternate_charset_handling: raw(20).trim().to_string(),
    }
}

/// A segment and its occurrence number (1-based, per segment id).
type SegRef<'a, 'm> = (&'a Segment<'m>, u32);

/// Segments with their occurrence number (1-based, per segment id), MSH excluded.
struct Segments<'a, 'm> {
    items: Vec<(&'a Segment<'m>, u32)>,
}

impl<'a, 'm> Segments<'a, 'm> {
    fn new(all: &'a [Segment<'m>]) -> Self {
        let mut counts: HashMap<&str, u32> = HashMap::new();
        let items = all
            .iter()
            .map(|s| {
                let n = counts.entry(s.name).or_insert(0);
                *n += 1;
                (s, *n)
            })
            .filter(|(s, _)| s.name != "MSH")
            .collect();
        Segments { items }
    }

    fn first(&self, name: &str) -> Option<(&'a Segment<'m>, u32)> {
        self.items.iter().find(|(s, _)| s.name == name).copied()
    }
}

fn field_reps<'a, 'm>(seg: &'a Segment<'m>, n: usize) -> &'a [Repeat<'m>] {
    n.checked_sub(1)
        .and_then(|i| seg.fields.get(i))
        .map(|f| f.repeats.as_slice())
        .unwrap_or(&[])
}

fn comp_raw<'m>(rep: &Repeat<'m>, c: usize) -> &'m str {
    c.checked_sub(1)
        .and_then(|i| rep.components.get(i))
        .map(|comp| comp.raw_value())
        .unwrap_or("")
}

fn sub_raw<'m>(rep: &Repeat<'m>, c: usize, s: usize) -> &'m str {
    c.checked_sub(1)
        .and_then(|i| rep.components.get(i))
        .and_then(|comp| s.checked_sub(1).and_then(|j| comp.subcomponents.get(j)))
        .map(|sub| sub.raw_value())
        .unwrap_or("")
}

fn has_subcomponents(rep: &Repeat<'_>, c: usize) -> bool {
    c.checked_sub(1)
        .and_then(|i| rep.components.get(i))
        .is_some_and(|comp| comp.subcomponents.len() > 1)
}

fn is_uid(s: &str) -> bool {
    s.len() <= 64
        && !s.is_empty()
        && s.split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// A group of segments belonging to one ORC/OBR (orders) or OBR (reports).
#[derive(Default)]
struct Group<'a, 'm> {
    orc: Option<(&'a Segment<'m>, u32)>,
    obr: Option<(&'a Segment<'m>, u32)>,
    tq1: Option<&'a Segment<'m>>,
    ipc: Vec<(&'a Segment<'m>, u32)>,
    zds: Option<&'a Segment<'m>>,
    nte: Vec<&'a Segment<'m>>,
    dg1: Vec<&'a Segment<'m>>,
    obx: Vec<&'a Segment<'m>>,
}

/// Value extraction with the message's delimiters.
struct Extractor {
    d: Delimiters,
}

impl Extractor {
    /// Unescape and trim; empty and the explicit null `""` are None.
    fn clean(&self, raw: &str) -> Option<String> {
        let v = self.d.unescape(raw);
        let t = v.trim();
        if t.is_empty() || t == "\"\"" {
            None
        } else {
            Some(t.to_string())
        }
    }

    /// A whole component (subcomponent delimiters inside kept literally, since a
    /// stray `&` in text is common and losing text is worse).
    fn comp(&self, rep: &Repeat<'_>, c: usize) -> Option<String> {
        self.clean(comp_raw(rep, c))
    }

    /// One subcomponent, for components that are composite (FN, HD...).
    fn sub(&self, rep: &Repeat<'_>, c: usize, s: usize) -> Option<String> {
        self.clean(sub_raw(rep, c, s))
    }

    /// Component `c` of the first repetition of field `f`.
    fn first(&self, seg: &Segment<'_>, f: usize, c: usize) -> Option<String> {
        field_reps(seg, f).first().and_then(|r| self.comp(r, c))
    }

    /// Field `f` as text: repetitions unescaped whole, joined by newline.
    fn text(&self, seg: &Segment<'_>, f: usize) -> Option<String> {
        let parts: Vec<String> = field_reps(seg, f)
            .iter()
            .filter_map(|r| self.clean(r.raw_value()))
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n"))
    }

    fn timestamp(&self, seg: &Segment<'_>, f: usize, c: usize) -> Option<Timestamp> {
        self.first(seg, f, c).map(|t| Timestamp::new(&t))
    }

    fn coded(&self, rep: &Repeat<'_>) -> Option<CodedElement> {
        let ce = CodedElement {
            code: self.comp(rep, 1),
            text: self.comp(rep, 2),
            coding_system: self.comp(rep, 3),
            alt_code: self.comp(rep, 4),
            alt_text: self.comp(rep, 5),
            alt_coding_system: self.comp(rep, 6),
        };
        (!ce.is_empty()).then_some(ce)
    }

    fn coded_first(&self, seg: &Segment<'_>, f: usize) -> Option<CodedElement> {
        field_reps(seg, f).first().and_then(|r| self.coded(r))
    }

    fn coded_all(&self, seg: &Segment<'_>, f: usize) -> Vec<CodedElement> {
        field_reps(seg, f)
            .iter()
            .filter_map(|r| self.coded(r))
            .collect()
    }

    fn entity_id(&self, seg: &Segment<'_>, f: usize) -> Option<EntityId> {
        let rep = field_reps(seg, f).first()?;
        Some(EntityId {
            id: self.comp(rep, 1)?,
            namespace_id: self.comp(rep, 2),
            universal_id: self.comp(rep, 3),
        })
    }

    /// HD inside one component: namespace id, else universal id.
    fn authority(&self, rep: &Repeat<'_>, c: usize) -> Option<String> {
        self.sub(rep, c, 1).or_else(|| self.sub(rep, c, 2))
    }

    fn patient_ids(&self, seg: &Segment<'_>, f: usize) -> Vec<PatientId> {
        field_reps(seg, f)
            .iter()
            .filter_map(|rep| {
                Some(PatientId {
                    id: self.comp(rep, 1)?,
                    assigning_authority: self.authority(rep, 4),
                    identifier_type: self.comp(rep, 5),
                })
            })
            .collect()
    }

    fn person_names(&self, seg: &Segment<'_>, f: usize) -> Vec<PersonName> {
        field_reps(seg, f)
            .iter()
            .map(|rep| PersonName {
                // XPN.1 is FN (surname&prefix...) from 2.3 on: take the surname.
                family: self.sub(rep, 1, 1),
                given: self.comp(rep, 2),
                middle: self.comp(rep, 3),
                suffix: self.comp(rep, 4),
                prefix: self.comp(rep, 5),
                name_type: self.comp(rep, 7),
                representation: self.comp(rep, 8),
            })
            .filter(|n| !n.is_empty())
            .collect()
    }

    fn patient(&self, seg: &Segment<'_>) -> Patient {
        Patient {
            identifiers: self.patient_ids(seg, 3),
            names: self.person_names(seg, 5),
            birth_date: self.timestamp(seg, 7, 1),
            sex: self.first(seg, 8, 1),
        }
    }

    fn required_patient(&self, segs: &Segments<'_, '_>) -> Result<Patient, ContentError> {
        let (pid, n) = segs
            .first("PID")
            .ok_or_else(|| ContentError::missing_segment("PID", "PID segment is missing"))?;
        let patient = self.patient(pid);
        if patient.identifiers.is_empty() {
            return Err(ContentError::missing_field(
                "PID",
                n,
                3,
                "patient identifier list (PID-3) is empty",
            ));
        }
        Ok(patient)
    }

    fn providers(&self, seg: &Segment<'_>, f: usize) -> Vec<Provider> {
        field_reps(seg, f)
            .iter()
            .map(|rep| Provider {
                id: self.comp(rep, 1),
                name: PersonName {
                    family: self.sub(rep, 2, 1),
                    given: self.comp(rep, 3),
                    middle: self.comp(rep, 4),
                    suffix: self.comp(rep, 5),
                    prefix: self.comp(rep, 6),
                    name_type: self.comp(rep, 10),
                    representation: self.comp(rep, 15),
                },
                assigning_authority: self.authority(rep, 9),
            })
            .filter(|p| p.id.is_some() || !p.name.is_empty())
            .collect()
    }

    /// XTN repetitions as display strings.
    fn phones(&self, seg: &Segment<'_>, f: usize) -> Vec<String> {
        field_reps(seg, f)
            .iter()
            .filter_map(|rep| {
                if let Some(n) = self.comp(rep, 1).or_else(|| self.comp(rep, 12)) {
                    return Some(n);
                }
                let parts: Vec<String> = [5, 6, 7]
                    .iter()
                    .filter_map(|&c| self.comp(rep, c))
                    .collect();
                if !parts.is_empty() {
                    let mut s = parts.join("-");
                    if let Some(ext) = self.comp(rep, 8) {
                        s.push_str(" ext. ");
                        s.push_str(&ext);
                    }
                    return Some(s);
                }
                self.comp(rep, 4)
            })
            .collect()
    }

    fn notes(&self, ntes: &[&Segment<'_>]) -> Vec<String> {
        ntes.iter().filter_map(|nte| self.text(nte, 3)).collect()
    }

    fn observation(&self, obx: &Segment<'_>) -> Observation {
        Observation {
            value_type: self.first(obx, 2, 1),
            code: self.coded_first(obx, 3).unwrap_or_default(),
            sub_id: self.first(obx, 4, 1),
            value: self.text(obx, 5),
            units: self.first(obx, 6, 1).or_else(|| self.first(obx, 6, 2)),
            reference_range: self.first(obx, 7, 1),
            abnormal_flags: {
                let flags: Vec<String> = field_reps(obx, 8)
                    .iter()
                    .filter_map(|r| self.comp(r, 1))
                    .collect();
                (!flags.is_empty()).then(|| flags.join("~"))
            },
            status: self.first(obx, 11, 1),
            observation_time: self.timestamp(obx, 14, 1),
        }
    }

    fn diagnosis(&self, dg1: &Segment<'_>) -> Diagnosis {
        Diagnosis {
            coding_method: self.first(dg1, 2, 1),
            code: self.coded_first(dg1, 3),
            description: self.text(dg1, 4),
            diagnosis_type: self.first(dg1, 6, 1),
        }
    }

    fn allergy(&self, al1: &Segment<'_>) -> Allergy {
        Allergy {
            allergen_type: self.first(al1, 2, 1),
            allergen: self.coded_first(al1, 3).unwrap_or_default(),
            severity: self.first(al1, 4, 1),
            reaction: self.text(al1, 5),
        }
    }

    /// NDL (or an XCN-style `id^family^given` that some senders put there).
    fn interpreter(&self, rep: &Repeat<'_>) -> Option<Interpreter> {
        let comp2 = self.comp(rep, 2);
        let looks_like_time = |v: &Option<String>| {
            v.as_deref()
                .is_none_or(|s| s.chars().next().is_some_and(|c| c.is_ascii_digit()))
        };
        let i = if has_subcomponents(rep, 1) || looks_like_time(&comp2) {
            Interpreter {
                id: self.sub(rep, 1, 1),
                family: self.sub(rep, 1, 2),
                given: self.sub(rep, 1, 3),
                middle: self.sub(rep, 1, 4),
                prefix: self.sub(rep, 1, 6),
                start: comp2.map(|t| Timestamp::new(&t)),
                end: self.comp(rep, 3).map(|t| Timestamp::new(&t)),
                point_of_care: self.comp(rep, 4),
                facility: self.authority(rep, 7),
            }
        } else {
            Interpreter {
                id: self.comp(rep, 1),
                family: comp2,
                given: self.comp(rep, 3),
                middle: self.comp(rep, 4),
                prefix: self.comp(rep, 6),
                ..Interpreter::default()
            }
        };
        (i != Interpreter::default()).then_some(i)
    }

    fn interpreters(&self, seg: &Segment<'_>, f: usize) -> Vec<Interpreter> {
        field_reps(seg, f)
            .iter()
            .filter_map(|r| self.interpreter(r))
            .collect()
    }

    // -- orders ---------------------------------------------------------------

    #[allow(clippy::type_complexity)]
    fn order(
        &self,
        segs: &Segments<'_, '_>,
        is_omi: bool,
    ) -> Result<(Patient, Vec<Allergy>, Vec<String>, Vec<OrderRequest>), ContentError> {
        let patient = self.required_patient(segs)?;
        let mut allergies = Vec::new();
        let mut patient_nte = Vec::new();
        let mut pre_dg1 = Vec::new();
        let mut pre_obx = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        for &(seg, n) in &segs.items {
            match seg.name {
                "ORC" => groups.push(Group {
                    orc: Some((seg, n)),
                    ..Group::default()
                }),
                "OBR" => match groups.last_mut() {
                    Some(g) if g.obr.is_none() => g.obr = Some((seg, n)),
                    // ORM/OMI allow one OBR per ORC; a second one starts a new group.
                    _ => groups.push(Group {
                        obr: Some((seg, n)),
                        ..Group::default()
                    }),
                },
                "AL1" => allergies.push(self.allergy(seg)),
                _ => match groups.last_mut() {
                    None => match seg.name {
                        "NTE" => patient_nte.push(seg),
                        "DG1" => pre_dg1.push(seg),
                        "OBX" => pre_obx.push(seg),
                        _ => {}
                    },
                    Some(g) => match seg.name {
                        "TQ1" if g.tq1.is_none() => g.tq1 = Some(seg),
                        "IPC" => g.ipc.push((seg, n)),
                        "ZDS" if g.zds.is_none() => g.zds = Some(seg),
                        "NTE" => g.nte.push(seg),
                        "DG1" => g.dg1.push(seg),
                        "OBX" => g.obx.push(seg),
                        _ => {}
                    },
                },
            }
        }
        if groups.is_empty() {
            return Err(ContentError::missing_segment(
                "ORC",
                "order message without ORC/OBR",
            ));
        }
        let mut requests = Vec::with_capacity(groups.len());
        for g in &groups {
            let mut r = self.order_request(g, is_omi)?;
            let mut diagnoses: Vec<Diagnosis> = pre_dg1.iter().map(|s| self.diagnosis(s)).collect();
            diagnoses.append(&mut r.diagnoses);
            r.diagnoses = diagnoses;
            let mut observations: Vec<Observation> =
                pre_obx.iter().map(|s| self.observation(s)).collect();
            observations.append(&mut r.observations);
            r.observations = observations;
            requests.push(r);
        }
        Ok((patient, allergies, self.notes(&patient_nte), requests))
    }

    fn order_request(&self, g: &Group<'_, '_>, is_omi: bool) -> Result<OrderRequest, ContentError> {
        let orc = g.orc.map(|(s, _)| s);
        let obr = g.obr.map(|(s, _)| s);
        let ipc = g.ipc.first().map(|(s, _)| *s);
        let control_code = orc.and_then(|s| self.first(s, 1, 1));
        let Some(control_code) = control_code else {
            return Err(match g.orc {
                Some((_, n)) => {
                    ContentError::missing_field("ORC", n, 1, "order control (ORC-1) is empty")
                }
                None => ContentError::missing_segment("ORC", "OBR without a preceding ORC"),
            });
        };
        let control = OrderControl::from_code(&control_code);
        let either = |f_orc: usize, f_obr: usize| {
            orc.and_then(|s| self.entity_id(s, f_orc))
                .or_else(|| obr.and_then(|s| self.entity_id(s, f_obr)))
        };
        let from_obr = |f: usize| obr.and_then(|s| self.first(s, f, 1));
        let from_ipc = |f: usize| ipc.and_then(|s| self.first(s, f, 1));

        let mut providers = orc.map(|s| self.providers(s, 12)).unwrap_or_default();
        if providers.is_empty() {
            providers = obr.map(|s| self.providers(s, 16)).unwrap_or_default();
        }
        let mut phones = orc.map(|s| self.phones(s, 14)).unwrap_or_default();
        if phones.is_empty() {
            phones = obr.map(|s| self.phones(s, 17)).unwrap_or_default();
        }
        let priority_code = g
            .tq1
            .and_then(|s| self.first(s, 9, 1))
            .or_else(|| orc.and_then(|s| self.first(s, 7, 6)))
            .or_else(|| obr.and_then(|s| self.first(s, 27, 6)));
        let scheduled_time = g
            .tq1
            .and_then(|s| self.timestamp(s, 7, 1))
            .or_else(|| orc.and_then(|s| self.timestamp(s, 7, 4)))
            .or_else(|| obr.and_then(|s| self.timestamp(s, 36, 1)));

        let request = OrderRequest {
            control,
            control_code,
            placer_order_number: either(2, 2),
            filler_order_number: either(3, 3),
            accession_number: from_ipc(1).or_else(|| from_obr(18)),
            study_instance_uid: from_ipc(3).or_else(|| g.zds.and_then(|s| self.first(s, 1, 1))),
            requested_procedure_id: from_ipc(2).or_else(|| from_obr(19)),
            scheduled_procedure_step_id: from_ipc(4).or_else(|| from_obr(20)),
            requested_procedure: obr.and_then(|s| self.coded_first(s, 4)),
            procedure_code: obr.and_then(|s| self.coded_first(s, 44)),
            protocol_codes: g
                .ipc
                .iter()
                .flat_map(|(s, _)| self.coded_all(s, 6))
                .collect(),
            modality: from_ipc(5).or_else(|| from_obr(24)),
            ordering_provider: providers,
            callback_phones: phones,
            clinical_information: obr.and_then(|s| self.text(s, 13)),
            exam_purpose: obr.map(|s| self.coded_all(s, 31)).unwrap_or_default(),
            priority: priority_code.as_deref().map(Priority::from_code),
            priority_code,
            scheduled_time,
            notes: self.notes(&g.nte),
            diagnoses: g.dg1.iter().map(|s| self.diagnosis(s)).collect(),
            observations: g.obx.iter().map(|s| self.observation(s)).collect(),
        };

        // Matching a new order to a study needs the accession number or the study
        // UID. Changes, cancels and other controls refer to an order readgate already
        // has, so its placer/filler number is enough.
        let has_study_key =
            request.accession_number.is_some() || request.study_instance_uid.is_some();
        let has_order_key =
            request.placer_order_number.is_some() || request.filler_order_number.is_some();
        let ok = match request.control {
            OrderControl::New => has_study_key,
            _ => has_study_key || has_order_key,
        };
        if !ok {
            let reason = "order has neither an accession number nor a study instance UID";
            return Err(match (g.ipc.first(), g.obr, is_omi) {
                (Some(&(_, n)), _, _) => ContentError::missing_field("IPC", n, 1, reason),
                (None, _, true) => ContentError::missing_segment("IPC", reason),
                (None, Some((_, n)), false) => ContentError::missing_field("OBR", n, 18, reason),
                (None, None, false) => ContentError::missing_segment("OBR", reason),
            });
        }
        Ok(request)
    }

    // -- reports --------------------------------------------------------------

    fn report(
        &self,
        segs: &Segments<'_, '_>,
    ) -> Result<(Patient, Vec<ReportResult>), ContentError> {
        let patient = self.required_patient(segs)?;
        let mut pending_orc = None;
        let mut groups: Vec<Group> = Vec::new();
        for &(seg, n) in &segs.items {
            match seg.name {
                "ORC" => pending_orc = Some((seg, n)),
                "OBR" => groups.push(Group {
                    orc: pending_orc.take(),
                    obr: Some((seg, n)),
                    ..Group::default()
                }),
                _ => {
                    if let Some(g) = groups.last_mut() {
                        match seg.name {
                            "OBX" => g.obx.push(seg),
                            "NTE" => g.nte.push(seg),
                            "ZDS" if g.zds.is_none() => g.zds = Some(seg),
                            _ => {}
                        }
                    }
                }
            }
        }
        if groups.is_empty() {
            return Err(ContentError::missing_segment(
                "OBR",
                "result message without OBR",
            ));
        }
        groups
            .iter()
            .map(|g| self.report_result(g))
            .collect::<Result<Vec<_>, _>>()
            .map(|r| (patient, r))
    }

    fn study_uid_from_obx(&self, obx: &Segment<'_>) -> Option<String> {
        let id = self.first(obx, 3, 1).unwrap_or_default();
        let text = self
            .first(obx, 3, 2)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let names_uid = matches!(id.as_str(), "113014" | "0020000D" | "(0020,000D)")
            || id.to_ascii_lowercase().contains("study instance uid")
            || text.contains("study instance uid");
        if !names_uid {
            return None;
        }
        let rep = field_reps(obx, 5).first()?;
        [self.sub(rep, 1, 1), self.sub(rep, 2, 1)]
            .into_iter()
            .flatten()
            .find(|v| is_uid(v))
    }

    fn report_result(&self, g: &Group<'_, '_>) -> Result<ReportResult, ContentError> {
        let Some((obr, obr_n)) = g.obr else {
            return Err(ContentError::missing_segment("OBR", "result without OBR"));
        };
        let orc = g.orc.map(|(s, _)| s);
        let either = |f: usize| {
            orc.and_then(|s| self.entity_id(s, f))
                .or_else(|| self.entity_id(obr, f))
        };
        let mut study_uid = g.zds.and_then(|s| self.first(s, 1, 1));
        let mut lines = Vec::new();
        let mut observations = Vec::new();
        for obx in &g.obx {
            if let Some(uid) = self.study_uid_from_obx(obx) {
                study_uid.get_or_insert(uid);
                continue;
            }
            let value_type = self
                .first(obx, 2, 1)
                .unwrap_or_default()
                .to_ascii_uppercase();
            if matches!(value_type.as_str(), "TX" | "FT" | "ST" | "TEXT") {
                // Keep empty repetitions: they are blank lines of the report.
                for rep in field_reps(obx, 5) {
                    lines.push(self.d.unescape(rep.raw_value()).trim_end().to_string());
                }
            } else {
                observations.push(self.observation(obx));
            }
        }
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let Some(status_code) = self.first(obr, 25, 1) else {
            return Err(ContentError::missing_field(
                "OBR",
                obr_n,
                25,
                "result status (OBR-25) is empty",
            ));
        };
        let result = ReportResult {
            placer_order_number: either(2),
            filler_order_number: either(3),
            accession_number: self.first(obr, 18, 1),
            study_instance_uid: study_uid,
            procedure: self.coded_first(obr, 4),
            status: ReportStatus::from_code(&status_code),
            status_code,
            principal_interpreter: field_reps(obr, 32)
                .first()
                .and_then(|r| self.interpreter(r)),
            assistant_interpreters: self.interpreters(obr, 33),
            results_time: self.timestamp(obr, 22, 1),
            observation_time: self.timestamp(obr, 7, 1),
            text: lines.join("\n"),
            observations,
            notes: self.notes(&g.nte),
        };
        if result.accession_number.is_none()
            && result.study_instance_uid.is_none()
            && result.placer_order_number.is_none()
            && result.filler_order_number.is_none()
        {
            return Err(ContentError::missing_field(
                "OBR",
                obr_n,
                18,
                "report has no accession number, study instance UID or order number",
            ));
        }
        Ok(result)
    }

    // -- merges ---------------------------------------------------------------

    fn merge(&self, segs: &Segments<'_, '_>) -> Result<Vec<PatientMerge>, ContentError> {
        let mut pairs: Vec<(SegRef, Option<SegRef>)> = Vec::new();
        for &(seg, n) in &segs.items {
            match seg.name {
                "PID" => pairs.push(((seg, n), None)),
                "MRG" => {
                    if let Some(last) = pairs.last_mut() {
                        last.1.get_or_insert((seg, n));
                    }
                }
                _ => {}
            }
        }
        if pairs.is_empty() {
            return Err(ContentError::missing_segment(
                "PID",
                "PID segment is missing",
            ));
        }
        pairs
            .iter()
            .map(|&((pid, pid_n), mrg)| {
                let surviving = self.patient(pid);
                if surviving.identifiers.is_empty() {
                    return Err(ContentError::missing_field(
                        "PID",
                        pid_n,
                        3,
                        "surviving patient identifier list (PID-3) is empty",
                    ));
                }
                let Some((mrg, mrg_n)) = mrg else {
                    return Err(ContentError::missing_segment(
                        "MRG",
                        "PID without its MRG segment",
                    ));
                };
                let prior_identifiers = self.patient_ids(mrg, 1);
                if prior_identifiers.is_empty() {
                    return Err(ContentError::missing_field(
                        "MRG",
                        mrg_n,
                        1,
                        "prior patient identifier list (MRG-1) is empty",
                    ));
                }
                Ok(PatientMerge {
                    surviving,
                    prior_identifiers,
                    prior_names: self.person_names(mrg, 7),
                })
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Date/time
// ---------------------------------------------------------------------------

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

/// HL7 DTM (`YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]`) to ISO 8601 at the same
/// precision. `None` when not a valid DTM.
pub fn dtm_to_iso(raw: &str) -> Option<String> {
    let s = raw.trim();
    let (main, offset) = match s.find(['+', '-']) {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    let (digits, fraction) = match main.find('.') {
        Some(i) => (&main[..i], Some(&main[i + 1..])),
        None => (main, None),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![4, 6, 8, 10, 12, 14].contains(&digits.len())
    {
        return None;
    }
    let num = |from: usize, len: usize| {
        digits
            .get(from..from + len)
            .and_then(|p| p.parse::<u32>().ok())
    };
    let year = num(0, 4)?;
    let mut out = format!("{year:04}");
    if digits.len() >= 6 {
        let month = num(4, 2)?;
        if !(1..=12).contains(&month) {
            return None;
        }
        out.push_str(&format!("-{month:02}"));
        if digits.len() >= 8 {
            let day = num(6, 2)?;
            if day < 1 || day > days_in_month(year, month) {
                return None;
            }
            out.push_str(&format!("-{day:02}"));
        }
    }
    if digits.len() >= 10 {
        let hour = num(8, 2)?;
        let minute = if digits.len() >= 12 { num(10, 2)? } else { 0 };
        if hour > 23 || minute > 59 {
            return None;
        }
        out.push_str(&format!("T{hour:02}:{minute:02}"));
        if digits.len() >= 14 {
            let second = num(12, 2)?;
            if second > 60 {
                return None;
            }
            out.push_str(&format!(":{second:02}"));
            if let Some(f) = fraction {
                if f.is_empty() || f.len() > 4 || !f.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                out.push('.');
                out.push_str(f);
            }
        } else if fraction.is_some() {
            return None;
        }
    } else if fraction.is_some() {
        return None;
    }
    if let Some(o) = offset {
        let sign = o.get(..1)?;
        let hhmm = o.get(1..)?;
        if hhmm.len() != 4 || !hhmm.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (h, m) = (
            hhmm.get(..2)?.parse::<u32>().ok()?,
            hhmm.get(2..)?.parse::<u32>().ok()?,
        );
        if h > 14 || m > 59 {
            return None;
        }
        // An offset is only meaningful with a time of day.
        if digits.len() >= 10 {
            out.push_str(&format!("{sign}{h:02}:{m:02}"));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::charset::{decode, Charset};

    macro_rules! sample {
        ($name:literal) => {
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hl7/", $name))
        };
    }

    fn parse_sample(raw: &[u8]) -> Result<Parsed, MessageError> {
        let decoded = decode(raw, Charset::Ascii).expect("sample decodes");
        parse(&decoded.text)
    }

    fn order(raw: &[u8]) -> Order {
        match parse_sample(raw) {
            Ok(Parsed::Order(o)) => o,
            other => panic!("expected an order, got {other:?}"),
        }
    }

    fn report(raw: &[u8]) -> Report {
        match parse_sample(raw) {
            Ok(Parsed::Report(r)) => r,
            other => panic!("expected a report, got {other:?}"),
        }
    }

    fn name(family: &str, given: &str, name_type: &str, repr: Option<&str>) -> PersonName {
        PersonName {
            family: Some(family.into()),
            given: Some(given.into()),
            name_type: Some(name_type.into()),
            representation: repr.map(Into::into),
            ..PersonName::default()
        }
    }

    #[test]
    fn omi_o23_jahis_iso2022jp() {
        let raw = sample!("omi_o23_iso2022jp.hl7");
        let decoded = decode(raw, Charset::Ascii).unwrap();
        assert_eq!(decoded.detection.charset, Charset::Iso2022Jp);
        assert!(!decoded.detection.defaulted);
        let o = order(raw);

        let h = &o.header;
        assert_eq!(h.message_type.code, "OMI");
        assert_eq!(h.message_type.trigger, "O23");
        assert_eq!(h.message_type.structure, "OMI_O23");
        assert_eq!(h.control_id, "MSG00001");
        assert_eq!(h.version, "2.5");
        assert_eq!(h.processing_id, "P");
        assert_eq!(h.character_set, "~ISO IR87");
        assert_eq!(h.alternate_charset_handling, "ISO 2022-1994");
        assert_eq!(h.sending_application.namespace_id.as_deref(), Some("HIS"));
        assert_eq!(
            h.sending_facility.namespace_id.as_deref(),
            Some("TOKYO_GEN")
        );
        assert_eq!(
            h.receiving_application.namespace_id.as_deref(),
            Some("READGATE")
        );
        assert_eq!(
            h.message_time.as_ref().and_then(|t| t.iso.as_deref()),
            Some("2024-06-01T09:30:00+09:00")
        );

        let p = &o.patient;
        assert_eq!(
            p.identifiers,
            vec![
                PatientId {
                    id: "1234567".into(),
                    assigning_authority: Some("TOKYO_GEN".into()),
                    identifier_type: Some("PI".into()),
                },
                PatientId {
                    id: "99887766".into(),
                    // CX.4 with only a universal id (&OID&ISO).
                    assigning_authority: Some("1.2.392.100495.9.99.1".into()),
                    identifier_type: Some("HC".into()),
                },
            ]
        );
        assert_eq!(
            p.names,
            vec![
                name("山田", "太郎", "L", Some("I")),
                name("ヤマダ", "タロウ", "L", Some("P")),
                name("YAMADA", "TARO", "L", Some("A")),
            ]
        );
        assert_eq!(p.sex.as_deref(), Some("M"));
        assert_eq!(
            p.birth_date.as_ref().and_then(|t| t.iso.as_deref()),
            Some("1965-04-12")
        );

        assert_eq!(o.allergies.len(), 1);
        assert_eq!(o.allergies[0].allergen_type.as_deref(), Some("DA"));
        assert_eq!(
            o.allergies[0].allergen.text.as_deref(),
            Some("ヨード造影剤")
        );
        assert_eq!(o.allergies[0].reaction.as_deref(), Some("じんましん"));

        assert_eq!(o.requests.len(), 1);
        let r = &o.requests[0];
        assert_eq!(r.control, OrderControl::New);
        assert_eq!(r.control_code, "NW");
        assert_eq!(
            r.placer_order_number.as_ref().map(|e| e.id.as_str()),
            Some("ORD-2024-0001")
        );
        assert_eq!(r.accession_number.as_deref(), Some("ACC-0001"));
        assert_eq!(
            r.study_instance_uid.as_deref(),
            Some("1.2.392.200036.9116.2.5.1.37.2417525.20240601.1")
        );
        assert_eq!(r.requested_procedure_id.as_deref(), Some("RP-0001"));
        assert_eq!(r.scheduled_procedure_step_id.as_deref(), Some("SPS-0001"));
        let proc_ = r.requested_procedure.as_ref().unwrap();
        assert_eq!(
            proc_.code.as_deref(),
            Some("32110011000000000000000000000000")
        );
        assert_eq!(proc_.text.as_deref(), Some("CT 胸部 造影"));
        assert_eq!(proc_.coding_system.as_deref(), Some("JJ1017-32"));
        assert_eq!(r.modality.as_deref(), Some("CT"));
        assert_eq!(
            r.protocol_codes
                .iter()
                .map(|c| c.text.as_deref().unwrap_or(""))
                .collect::<Vec<_>>(),
            vec!["肺動脈相", "静脈相"]
        );

        // Ordering provider: kanji and kana repetitions of the same person.
        assert_eq!(r.ordering_provider.len(), 2);
        assert_eq!(r.ordering_provider[0].id.as_deref(), Some("123456"));
        assert_eq!(
            r.ordering_provider[0].name,
            name("佐藤", "花子", "L", Some("I"))
        );
        assert_eq!(
            r.ordering_provider[1].name,
            name("サトウ", "ハナコ", "L", Some("P"))
        );
        // 2.5 XTN without XTN.1: country-area-local and extension.
        assert_eq!(r.callback_phones, vec!["81-3-12345678 ext. 201"]);

        assert_eq!(
            r.clinical_information.as_deref(),
            Some("胸痛、労作時息切れ")
        );
        assert_eq!(r.exam_purpose.len(), 1);
        assert_eq!(r.exam_purpose[0].code.as_deref(), Some("L01"));
        // 除 is 3D 7C in JIS: a '|' byte inside the kanji in the raw message.
        assert_eq!(r.exam_purpose[0].text.as_deref(), Some("肺塞栓の除外"));
        assert_eq!(r.priority, Some(Priority::Stat));
        assert_eq!(r.priority_code.as_deref(), Some("S"));
        assert_eq!(
            r.scheduled_time.as_ref().map(|t| t.raw.as_str()),
            Some("20240601100000+0900")
        );
        // The escape after kanji (hl7-parser's panic case) decoded by our code.
        assert_eq!(r.notes, vec!["造影剤アレルギー歴あり^前投薬済み"]);
        assert_eq!(r.diagnoses.len(), 1);
        let dx = r.diagnoses[0].code.as_ref().unwrap();
        assert_eq!(dx.code.as_deref(), Some("I26.9"));
        assert_eq!(dx.text.as_deref(), Some("肺塞栓症疑い"));
        assert_eq!(r.diagnoses[0].diagnosis_type.as_deref(), Some("W"));

        assert_eq!(r.observations.len(), 2);
        let egfr = &r.observations[0];
        assert_eq!(egfr.value_type.as_deref(), Some("NM"));
        assert_eq!(egfr.code.code.as_deref(), Some("8A065000002391901"));
        assert_eq!(egfr.code.text.as_deref(), Some("eGFR"));
        assert_eq!(egfr.code.coding_system.as_deref(), Some("JC10"));
        assert_eq!(egfr.value.as_deref(), Some("45.2"));
        assert_eq!(egfr.units.as_deref(), Some("mL/min/1.73m2"));
        assert_eq!(egfr.reference_range.as_deref(), Some(">=60"));
        assert_eq!(egfr.abnormal_flags.as_deref(), Some("L"));
        assert_eq!(egfr.status.as_deref(), Some("F"));
        assert_eq!(
            egfr.observation_time
                .as_ref()
                .and_then(|t| t.iso.as_deref()),
            Some("2024-05-30T10:15:00+09:00")
        );
        assert_eq!(r.observations[1].code.text.as_deref(), Some("クレアチニン"));

        // Serialisable for storage, Japanese text intact.
        let json = serde_json::to_string(&Parsed::Order(o.clone())).unwrap();
        assert!(json.contains("\"kind\":\"order\""));
        assert!(json.contains("肺塞栓の除外"));
    }

    #[test]
    fn orm_o01_ihe_2_3_1() {
        let o = order(sample!("orm_o01_ihe.hl7"));
        assert_eq!(o.header.version, "2.3.1");
        assert_eq!(o.header.character_set, "");
        assert_eq!(o.patient.identifiers[0].id, "PAT-1001");
        assert_eq!(
            o.patient.identifiers[0].assigning_authority.as_deref(),
            Some("GENHOSP")
        );
        assert_eq!(o.patient.names[0].family.as_deref(), Some("DOE"));
        assert_eq!(o.patient.names[0].middle.as_deref(), Some("Q"));
        assert_eq!(o.patient.sex.as_deref(), Some("F"));
        let r = &o.requests[0];
        assert_eq!(r.control, OrderControl::New);
        assert_eq!(r.accession_number.as_deref(), Some("ACC-1001"));
        assert_eq!(
            r.study_instance_uid.as_deref(),
            Some("1.2.840.99999.1.1001")
        );
        assert_eq!(
            r.filler_order_number.as_ref().map(|e| e.id.as_str()),
            Some("FIL-2001")
        );
        assert_eq!(r.requested_procedure_id.as_deref(), Some("RP-1001"));
        assert_eq!(r.scheduled_procedure_step_id.as_deref(), Some("SPS-1001"));
        assert_eq!(r.modality.as_deref(), Some("MR"));
        assert_eq!(r.priority, Some(Priority::Routine));
        assert_eq!(
            r.scheduled_time.as_ref().and_then(|t| t.iso.as_deref()),
            Some("2024-06-02T09:00:00")
        );
        assert_eq!(r.ordering_provider[0].id.as_deref(), Some("9001"));
        assert_eq!(r.ordering_provider[0].name.family.as_deref(), Some("SMITH"));
        assert_eq!(r.ordering_provider[0].name.given.as_deref(), Some("JOHN"));
        assert_eq!(r.callback_phones, vec!["555-0100"]);
        assert_eq!(
            r.clinical_information.as_deref(),
            Some("Headache for 3 weeks & nausea")
        );
        assert_eq!(
            r.exam_purpose[0].text.as_deref(),
            Some("Rule out mass lesion")
        );
        assert_eq!(r.notes, vec!["Patient is claustrophobic"]);
        assert_eq!(r.diagnoses[0].coding_method.as_deref(), Some("I9"));
        assert_eq!(r.diagnoses[0].description.as_deref(), Some("Headache"));
        assert_eq!(r.observations[0].code.code.as_deref(), Some("2160-0"));
        assert_eq!(r.observations[0].value.as_deref(), Some("0.9"));
        assert_eq!(o.allergies[0].allergen.text.as_deref(), Some("Penicillin"));
    }

    #[test]
    fn oru_prelim_then_final_for_the_same_accession() {
        let p = report(sample!("oru_r01_prelim.hl7"));
        let f = report(sample!("oru_r01_final.hl7"));
        assert_eq!(p.header.character_set, "UNICODE UTF-8");
        let (p, f) = (&p.results[0], &f.results[0]);
        assert_eq!(p.accession_number.as_deref(), Some("ACC-0001"));
        assert_eq!(f.accession_number, p.accession_number);
        assert_eq!(p.status, ReportStatus::Preliminary);
        assert_eq!(f.status, ReportStatus::Final);
        assert_eq!(f.status_code, "F");
        assert_eq!(
            p.filler_order_number.as_ref().map(|e| e.id.as_str()),
            Some("FIL-0001")
        );

        // Preliminary: trainee in OBR-33 (XCN-like layout), no signer yet.
        assert_eq!(p.principal_interpreter, None);
        assert_eq!(p.assistant_interpreters.len(), 1);
        assert_eq!(p.assistant_interpreters[0].id.as_deref(), Some("2001"));
        assert_eq!(p.assistant_interpreters[0].family.as_deref(), Some("田中"));
        assert_eq!(p.assistant_interpreters[0].given.as_deref(), Some("次郎"));
        assert_eq!(p.assistant_interpreters[0].start, None);
        assert_eq!(
            p.text,
            "所見：両肺動脈に明らかな造影欠損を認めない。\n\
             右下葉に小結節あり^要経過観察。\n\
             印象：肺塞栓症なし。\n（仮報告）"
        );
        assert_eq!(p.study_instance_uid, None);

        // Final: signer in OBR-32 (NDL with CNN subcomponents and period), trainee kept.
        let signer = f.principal_interpreter.as_ref().unwrap();
        assert_eq!(signer.id.as_deref(), Some("1001"));
        assert_eq!(signer.family.as_deref(), Some("鈴木"));
        assert_eq!(signer.given.as_deref(), Some("一郎"));
        assert_eq!(
            signer.start.as_ref().and_then(|t| t.iso.as_deref()),
            Some("2024-06-01T15:00:00+09:00")
        );
        assert_eq!(
            signer.end.as_ref().map(|t| t.raw.as_str()),
            Some("20240601151500+0900")
        );
        assert_eq!(signer.facility.as_deref(), Some("READ_CENTER"));
        let trainee = &f.assistant_interpreters[0];
        assert_eq!(trainee.family.as_deref(), Some("田中"));
        assert_eq!(
            trainee.end.as_ref().map(|t| t.raw.as_str()),
            Some("20240601123000+0900")
        );
        assert_eq!(
            f.results_time.as_ref().map(|t| t.raw.as_str()),
            Some("20240601151500+0900")
        );
        assert_eq!(
            f.observation_time.as_ref().map(|t| t.raw.as_str()),
            Some("20240601101500+0900")
        );
        // The study UID came from the HD OBX, which is not report text.
        assert_eq!(
            f.study_instance_uid.as_deref(),
            Some("1.2.392.200036.9116.2.5.1.37.2417525.20240601.1")
        );
        assert!(f.observations.is_empty());
        assert_eq!(
            f.text,
            "所見：両肺動脈に明らかな造影欠損を認めない。\n\
             右下葉S9に4mm大の小結節あり、要経過観察。\n\
             印象：肺塞栓症なし。\n右下葉小結節。"
        );
    }

    #[test]
    fn adt_a40_merge() {
        let m = match parse_sample(sample!("adt_a40_merge.hl7")) {
            Ok(Parsed::Merge(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(m.merges.len(), 1);
        let pair = &m.merges[0];
        assert_eq!(pair.surviving.identifiers[0].id, "1234567");
        assert_eq!(
            pair.prior_identifiers
                .iter()
                .map(|i| (i.id.as_str(), i.assigning_authority.as_deref()))
                .collect::<Vec<_>>(),
            vec![("7654321", Some("TOKYO_GEN")), ("X-55", Some("OLD_SYSTEM"))]
        );
        assert_eq!(pair.prior_names[0].given.as_deref(), Some("TAROU"));
    }

    #[test]
    fn malformed_samples() {
        assert_eq!(
            parse_sample(sample!("malformed_no_msh.hl7")),
            Err(MessageError::Parse(ParseError::NoMsh))
        );
        // hl7-parser would stop quietly before "OB" and return five segments.
        assert_eq!(
            parse_sample(sample!("malformed_truncated.hl7")),
            Err(MessageError::Parse(ParseError::BadSegment {
                line: 6,
                fragment: "OB".into()
            }))
        );
        match parse_sample(sample!("orm_missing_accession.hl7")) {
            Err(MessageError::Content { header, error }) => {
                assert_eq!(header.control_id, "ORM0002");
                assert_eq!(error.location, ErrorLocation::field("OBR", 1, 18));
                assert_eq!(error.code, ErrorCode::RequiredFieldMissing);
            }
            other => panic!("{other:?}"),
        }
    }

    const MSH_25: &str = "MSH|^~\\&|S|SF|R|RF|20240101||";

    #[test]
    fn lenient_segment_separators_and_fieldless_segments() {
        let text = format!(
            "{MSH_25}ORM^O01|C1|P|2.3.1\r\n\r\nPID|||P1\nORC|NW|PL1\r\nOBR|1|PL1||||||||||||||||X1\nZDS\n\n"
        );
        match parse(&text) {
            Ok(Parsed::Order(o)) => {
                assert_eq!(o.requests[0].accession_number.as_deref(), Some("X1"));
                assert_eq!(o.requests[0].study_instance_uid, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn two_messages_in_one_payload_are_refused() {
        let text = format!(
            "{MSH_25}ORM^O01|C1|P|2.3.1\rPID|||P1\rORC|NW|PL1\rOBR|1||||||||||||||||A1\r\
             {MSH_25}ORM^O01|C2|P|2.3.1\rPID|||P2\rORC|NW|PL2\rOBR|1||||||||||||||||A2\r"
        );
        assert_eq!(
            parse(&text),
            Err(MessageError::Parse(ParseError::MultipleMessages {
                line: 5,
                segment: "MSH".into()
            }))
        );
    }

    #[test]
    fn several_order_groups_and_patient_level_segments() {
        let text = format!(
            "{MSH_25}OMI^O23|C2|P|2.5\rPID|||P1\rNTE|1||patient note\rOBX|1|NM|CRE^Cr||0.8\r\
             ORC|NW|PL1\rOBR|1|PL1\rIPC|A1||1.2.3\r\
             ORC|CA|PL2\rOBR|2|PL2\rORC|XO|PL3\rOBR|3|PL3\r"
        );
        let o = match parse(&text) {
            Ok(Parsed::Order(o)) => o,
            other => panic!("{other:?}"),
        };
        assert_eq!(o.patient_notes, vec!["patient note"]);
        assert_eq!(o.requests.len(), 3);
        assert_eq!(o.requests[0].accession_number.as_deref(), Some("A1"));
        assert_eq!(o.requests[2].control, OrderControl::Change);
        // A cancel or change may identify its order by the placer number alone.
        assert_eq!(o.requests[1].control, OrderControl::Cancel);
        assert_eq!(o.requests[1].accession_number, None);
        // The pre-ORC OBX applies to every request.
        assert_eq!(o.requests[0].observations[0].value.as_deref(), Some("0.8"));
        assert_eq!(o.requests[1].observations.len(), 1);
    }

    #[test]
    fn omi_without_accession_points_at_ipc() {
        let text = format!("{MSH_25}OMI^O23|C3|P|2.5\rPID|||P1\rORC|NW|PL1\rOBR|1|PL1\rIPC||RP1\r");
        match parse(&text) {
            Err(MessageError::Content { error, .. }) => {
                assert_eq!(error.location, ErrorLocation::field("IPC", 1, 1));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn content_errors_name_the_field() {
        let cases = [
            (
                format!("{MSH_25}ORM^O01||P|2.3.1\rPID|||P1"),
                ("MSH", Some(10)),
            ),
            (format!("{MSH_25}|C|P|2.3.1"), ("MSH", Some(9))),
            (format!("{MSH_25}ORM^O01|C|P|2.3.1\rORC|NW"), ("PID", None)),
            (
                format!("{MSH_25}ORM^O01|C|P|2.3.1\rPID|1"),
                ("PID", Some(3)),
            ),
            (
                format!("{MSH_25}ORM^O01|C|P|2.3.1\rPID|||P1"),
                ("ORC", None),
            ),
            (
                format!("{MSH_25}ORM^O01|C|P|2.3.1\rPID|||P1\rORC||PL\rOBR|1||||||||||||||||||A"),
                ("ORC", Some(1)),
            ),
            (
                format!("{MSH_25}ORU^R01|C|P|2.5\rPID|||P1\rOBR|1|PL1"),
                ("OBR", Some(25)),
            ),
            (
                format!("{MSH_25}ORU^R01|C|P|2.5\rPID|||P1\rOBR|1||||||||||||||||||||||||F"),
                ("OBR", Some(18)),
            ),
            (format!("{MSH_25}ADT^A40|C|P|2.5\rPID|||P1"), ("MRG", None)),
            (
                format!("{MSH_25}ADT^A40|C|P|2.5\rPID|||P1\rMRG|"),
                ("MRG", Some(1)),
            ),
        ];
        for (text, (segment, field)) in cases {
            match parse(&text) {
                Err(MessageError::Content { error, .. }) => {
                    assert_eq!(
                        (error.location.segment.as_str(), error.location.field),
                        (segment, field),
                        "{text:?}"
                    );
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn patient_update_and_other_types() {
        let text = format!("{MSH_25}ADT^A08|C4|P|2.5\rEVN|A08\rPID|||P9^^^H^MR||Doe^John");
        match parse(&text) {
            Ok(Parsed::PatientUpdate(u)) => {
                assert_eq!(u.patient.identifiers[0].id, "P9");
                assert_eq!(u.patient.names[0].given.as_deref(), Some("John"));
            }
            other => panic!("{other:?}"),
        }
        let text = format!("{MSH_25}SIU^S12|C5|P|2.5\rSCH|1");
        match parse(&text) {
            Ok(Parsed::Other {
                message_type,
                header,
            }) => {
                assert_eq!(message_type, "SIU^S12");
                assert_eq!(header.control_id, "C5");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn delimiters_are_validated_and_2_7_truncation_is_accepted() {
        assert!(matches!(
            parse("MSH|^~\\|S|SF"),
            Err(MessageError::Parse(ParseError::BadDelimiters(_)))
        ));
        assert!(matches!(
            parse("MSH|^^\\&|S"),
            Err(MessageError::Parse(ParseError::BadDelimiters(_)))
        ));
        assert!(matches!(
            parse("MSHA^~\\&"),
            Err(MessageError::Parse(ParseError::BadDelimiters(_)))
        ));
        assert_eq!(parse("  \r\n"), Err(MessageError::Parse(ParseError::Empty)));
        let text = "MSH|^~\\&#|S|SF|R|RF|20240101||ADT^A08|C6|P|2.7\rPID|||P1||A\\P\\B";
        match parse(text) {
            Ok(Parsed::PatientUpdate(u)) => {
                assert_eq!(u.header.delimiters.truncation, Some('#'));
                assert_eq!(
                    u.header.sending_application.namespace_id.as_deref(),
                    Some("S")
                );
                assert_eq!(u.patient.names[0].family.as_deref(), Some("A#B"));
            }
            other => panic!("{other:?}"),
        }
        // Non-default delimiters.
        let text = "MSH!@%$*!S!SF!R!RF!20240101!!ADT@A08!C7!P!2.5\rPID!!!P1@@@H$T$X";
        match parse(text) {
            Ok(Parsed::PatientUpdate(u)) => {
                assert_eq!(
                    u.patient.identifiers[0].assigning_authority.as_deref(),
                    Some("H*X")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn header_recovery() {
        let h =
            recover_header("MSH|^~\\&|S|SF|R|RF|20240101||ORM^O01|C8|P|2.3.1\rgarbage").unwrap();
        assert_eq!(h.control_id, "C8");
        assert_eq!(h.message_type.trigger, "O01");
        // From bytes in an unsupported charset: non-ASCII bytes become '?'.
        let raw = b"MSH|^~\\&|S\xE9|SF|R|RF|20240101||ORM^O01|C9|P|2.3.1||||||8859/1\rPID";
        let h = recover_header_from_bytes(raw).unwrap();
        assert_eq!(h.sending_application.namespace_id.as_deref(), Some("S?"));
        assert_eq!(h.control_id, "C9");
        assert_eq!(h.character_set, "8859/1");
        assert!(recover_header_from_bytes(b"PID|1").is_none());
    }

    #[test]
    fn dtm_conversion() {
        assert_eq!(dtm_to_iso("2024"), Some("2024".into()));
        assert_eq!(dtm_to_iso("202406"), Some("2024-06".into()));
        assert_eq!(dtm_to_iso("20240229"), Some("2024-02-29".into()));
        assert_eq!(dtm_to_iso("20230229"), None);
        assert_eq!(dtm_to_iso("2024060112"), Some("2024-06-01T12:00".into()));
        assert_eq!(
            dtm_to_iso("20240601123456.78-0500"),
            Some("2024-06-01T12:34:56.78-05:00".into())
        );
        assert_eq!(dtm_to_iso("20240601+0900"), Some("2024-06-01".into()));
        assert_eq!(dtm_to_iso("20241301"), None);
        assert_eq!(dtm_to_iso("2024060125"), None);
        assert_eq!(dtm_to_iso("2024-06-01"), None);
        assert_eq!(dtm_to_iso("２０２４"), None);
        assert_eq!(dtm_to_iso(""), None);
        assert_eq!(dtm_to_iso("20240601+09"), None);
    }
}
