//! The shape of a month's ledger report: what `build` returns and the renderers write
//! (JSON, CSV, HTML). Field names are part of the report's schema (`SCHEMA_ID`).

use super::*;

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportScope {
    pub month: Month,
    /// Only studies whose responsible receiving facility is this one.
    pub facility: Option<String>,
    pub gateway_id: String,
    pub sending_facility: String,
}

crate::text_enum! {
    /// How a reader counts in the report: their roster employment, or `unknown` for a
    /// reader the roster does not know.
    pub enum ReaderCategory ("reader category") {
        FullTime => "full_time",
        PartTime => "part_time",
        Trainee => "trainee",
        Unknown => "unknown",
    }
}

impl From<Option<Employment>> for ReaderCategory {
    fn from(e: Option<Employment>) -> Self {
        match e {
            Some(Employment::FullTime) => ReaderCategory::FullTime,
            Some(Employment::PartTime) => ReaderCategory::PartTime,
            Some(Employment::Trainee) => ReaderCategory::Trainee,
            None => ReaderCategory::Unknown,
        }
    }
}

crate::text_enum! {
    /// Where the part-time share stands against its thresholds (ATS-3-note2).
    pub enum ShareLevel ("share level") {
        /// At or below the warning threshold.
        Ok => "ok",
        /// Above the warning threshold.
        Warning => "warning",
        /// Above the critical threshold.
        Critical => "critical",
    }
}

pub const SCHEMA_ID: &str = "readgate.ledger.report/1";

#[derive(Debug, Clone, Serialize)]
pub struct LedgerReport {
    pub schema: &'static str,
    pub generated_at: String,
    pub gateway: String,
    pub sending_facility: String,
    pub month: String,
    pub utc_offset: String,
    pub receiving_facility_filter: Option<String>,
    pub policy: Policy,
    pub totals: Totals,
    pub reasons: Vec<ReasonCount>,
    pub part_time_share: Share,
    pub by_receiving_facility: Vec<Share>,
    pub reads_by_category_place: Vec<ReadCount>,
    pub formal_confirmations: Vec<FormalRow>,
    pub unknown_readers: Vec<UnknownReader>,
    pub unknown_places: Vec<UnknownPlace>,
    pub held: Vec<HeldRow>,
    pub forwarded_incomplete: Vec<HeldRow>,
    pub studies: Vec<StudyLedger>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    pub full_time_remote_eligible: bool,
    pub part_time_warning_percent: f64,
    pub part_time_critical_percent: f64,
    pub min_open_secs: u64,
    pub unchanged_similarity: f64,
    pub burst_count: u32,
    pub burst_window_secs: u64,
    pub roster_entries: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub studies: usize,
    pub forwarded: usize,
    pub with_reads: usize,
    pub with_final_report: usize,
    pub eligible: usize,
    pub not_eligible: usize,
    pub held_now: usize,
    pub ever_held: usize,
    pub released_override: usize,
    pub forwarded_incomplete: usize,
    pub rejected: usize,
    pub read_events_rest: usize,
    pub read_events_hl7: usize,
    pub confirmations: usize,
    pub formal_confirmations: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReasonCount {
    pub code: &'static str,
    pub clause: &'static str,
    pub studies: usize,
}

/// The part-time share of claimed reads (ATS-3-note2).
#[derive(Debug, Clone, Serialize)]
pub struct Share {
    /// The sending facility, or a receiving facility in `by_receiving_facility`.
    pub facility: String,
    /// Eligible studies (claimed reads).
    pub claimed: usize,
    pub first_read_full_time: usize,
    pub first_read_part_time: usize,
    pub first_read_trainee: usize,
    /// (part-time + trainee) / claimed × 100; 0 when nothing is claimed.
    pub share_percent: f64,
    pub warning_percent: f64,
    pub critical_percent: f64,
    pub level: ShareLevel,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReadCount {
    pub category: ReaderCategory,
    pub place: Location,
    /// Distinct (study, reader) pairs.
    pub reads: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct FormalRow {
    pub study_uid: String,
    pub accession: Option<String>,
    pub author: String,
    pub signer: String,
    pub similarity: Option<f64>,
    pub signer_open_secs: f64,
    pub prelim_to_final_secs: Option<f64>,
    pub burst: bool,
    pub why: Vec<&'static str>,
    /// Whether it makes the study not eligible (the first reader was not full-time).
    pub counts_against_claim: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnknownReader {
    pub reader_id: String,
    pub events: usize,
    pub studies: usize,
    pub sources: Vec<String>,
    pub example_studies: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnknownPlace {
    pub reader_id: String,
    pub events: usize,
    pub studies: usize,
    pub example_studies: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeldRow {
    pub study_uid: String,
    pub accession: Option<String>,
    pub state: crate::model::StudyState,
    pub verdict: Option<Disposition>,
    /// Hold / incomplete reason codes as the gate recorded them.
    pub reasons: Vec<String>,
    pub held_at: Option<String>,
    pub released_at: Option<String>,
    pub override_by: Option<String>,
    pub override_reason: Option<String>,
    pub rejected: bool,
}

/// A reader as they appear on one study.
#[derive(Debug, Clone, Serialize)]
pub struct ReaderOnStudy {
    pub reader_id: String,
    pub known: bool,
    pub name: Option<String>,
    pub category: ReaderCategory,
    pub board_certified: Option<bool>,
    pub facility: Option<String>,
    /// Outside if any of their events on this study was outside, else inside if any was
    /// inside, else unknown.
    pub place: Location,
    pub responsible: Option<bool>,
    pub events: usize,
    /// Bit 1: REST events, bit 2: HL7 reports.
    #[serde(skip)]
    pub(super) origins: u8,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainEntry {
    /// `preliminary`, `final`, `confirmed`, `addendum`.
    pub action: &'static str,
    pub reader_id: String,
    pub at: String,
    /// `hl7` (with MSH-10) or `rest`.
    pub source: String,
    pub place: Location,
    /// Similarity of this version's text to the previous HL7 version's.
    pub similarity_to_previous: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Confirmation {
    pub author: String,
    pub confirmer: String,
    pub author_category: ReaderCategory,
    pub preliminary_at: String,
    pub final_at: String,
    pub prelim_to_final_secs: Option<f64>,
    /// Preliminary vs final text (None: one of them is not known).
    pub similarity: Option<f64>,
    pub text_changed: Option<bool>,
    /// How long the confirmer had the study open before signing.
    pub signer_open_secs: f64,
    /// `read_events` (opened/closed), `hl7_period` (NDL start/end), or `none`.
    pub open_basis: &'static str,
    pub burst: bool,
    pub formal: bool,
    pub formal_why: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StudyLedger {
    pub study_uid: String,
    pub accession: Option<String>,
    pub state: crate::model::StudyState,
    pub verdict: Option<Disposition>,
    pub receiving_facility: Option<String>,
    pub modalities: String,
    pub first_received_at: String,
    pub forwarded_at: Option<String>,
    pub eligible: bool,
    pub reasons: Vec<&'static str>,
    pub first_reader: Option<ReaderOnStudy>,
    pub signer: Option<ReaderOnStudy>,
    pub confirmation: Option<Confirmation>,
    pub chain: Vec<ChainEntry>,
    pub readers: Vec<ReaderOnStudy>,
    pub read_events: usize,
}
