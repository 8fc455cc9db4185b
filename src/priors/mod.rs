//! Priors from the hospital's PACS (JRS-7.3.2: the remote reader must be able to refer to
//! the prior images and reports the reading needs).
//!
//! [`find`] asks a `[[pacs]]` entry for a patient's studies (C-FIND, Study Root, STUDY
//! level) and for the report documents in a study (SERIES and IMAGE level); [`lookup`]
//! keeps every patient with a study or order in progress asked, and stores the answers
//! that the prior-report check reads; [`retrieve`] fetches a prior study (C-GET) and
//! [`report_sr`] turns a prior's HL7-only report into a Basic Text SR, for
//! `forward::priors`, which sends them with the current study.

pub mod find;
mod link;
pub mod lookup;
pub mod move_scu;
pub mod report_sr;
pub mod retrieve;
pub mod view;

pub use find::{find_studies, FindError, PacsStudy, StudyQuery};
