//! The reading accountability ledger (ATS-3, ATS-3-note1, ATS-3-note2, ATS-4, JRS-8.1):
//! who read which study, where and as what; how another reader's report was confirmed;
//! whether the study is claimable, with every reason; the part-time share per month.
//!
//! Inputs: the roster and places (`[ledger]`, [`roster`], [`places`]); read events from
//! reading systems (REST, [`events`]) and from the HL7 reports that come back
//! (`reports` table, derived in [`events::from_hl7_report`]); the studies and their
//! decisions. [`compute`] turns a month of them into a [`compute::LedgerReport`];
//! [`render`] writes it as JSON, CSV or HTML. [`evidence`] builds the audit entries its events leave.

pub mod compute;
/// `[ledger]` (its section lives with the rest of the configuration).
pub use crate::config::ledger as config;
pub mod events;
pub mod evidence;
pub mod places;
pub mod reasons;
pub mod render;
pub mod roster;
pub mod similarity;

use crate::store::Store;
use config::LedgerConfig;
use places::{PlaceClues, PlaceResolution, Places};
use roster::{Employment, Reader, Roster};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Roster(#[from] roster::RosterError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Invalid(String),
}

/// The roster, the places and the rules, ready to resolve reads.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub config: LedgerConfig,
    pub roster: Roster,
    pub places: Places,
    /// Seconds east of UTC for days and months.
    pub offset: i64,
}

/// One read resolved against the roster and places.
#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    pub reader_id: String,
    pub known: bool,
    /// The reader's name from the roster (staff, never a patient).
    pub name: Option<String>,
    pub employment: Option<Employment>,
    pub board_certified: Option<bool>,
    /// The receiving facility that employs the reader.
    pub facility: Option<String>,
    pub place: PlaceResolution,
    /// The facility the study's route made responsible (ATS-4).
    pub responsible_facility: Option<String>,
    /// Reader's facility is the responsible one (None: reader or route unknown).
    pub responsible: Option<bool>,
}

impl Ledger {
    /// The roster from `[[ledger.readers]]`, `ledger.roster_csv` and the imported roster
    /// (in that order of precedence).
    pub fn load(config: &LedgerConfig, store: Option<&Store>) -> Result<Ledger, LedgerError> {
        let mut readers = roster::from_config(config);
        if let Some(path) = &config.roster_csv {
            let mut csv = roster::read_csv(path)?;
            for r in &mut csv {
                r.source = format!("csv:{}", path.display());
            }
            readers.extend(csv);
        }
        if let Some(store) = store {
            readers.extend(store.imported_roster()?.into_iter().map(Reader::from_entry));
        }
        Ok(Ledger::with_readers(config, readers))
    }

    pub fn with_readers(config: &LedgerConfig, readers: Vec<Reader>) -> Ledger {
        Ledger {
            config: config.clone(),
            roster: Roster::new(readers),
            places: Places::new(&config.places),
            offset: config.offset_secs(),
        }
    }

    pub fn reader(&self, id: &str, at: i64) -> Option<&Reader> {
        self.roster
            .lookup(id, crate::time::local_day(at, self.offset))
    }

    /// Resolves one read: who (on the day it happened), where, for whom.
    pub fn resolve(
        &self,
        reader_id: &str,
        at: i64,
        clues: &PlaceClues<'_>,
        responsible_facility: Option<&str>,
    ) -> Resolution {
        let reader = self.reader(reader_id, at);
        let home = reader.map(|r| r.facility.as_str()).or(responsible_facility);
        let place = self.places.resolve(clues, home);
        Resolution {
            reader_id: reader_id.to_string(),
            known: reader.is_some(),
            name: reader.map(|r| r.name.clone()),
            employment: reader.map(|r| r.employment),
            board_certified: reader.map(|r| r.board_certified),
            facility: reader.map(|r| r.facility.clone()),
            place,
            responsible_facility: responsible_facility.map(str::to_string),
            responsible: match (reader, responsible_facility) {
                (Some(r), Some(f)) => Some(r.facility == f),
                _ => None,
            },
        }
    }
}
