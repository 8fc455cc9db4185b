//! Priors from the hospital's PACS (JRS-7.3.2: the remote reader must be able to refer to
//! the prior images and reports the reading needs).
//!
//! [`find`] asks a `[[pacs]]` entry for a patient's studies (C-FIND, Study Root, STUDY
//! level). Choosing priors by rule, retrieving them and their reports, and sending them
//! with the current study build on it.

pub mod find;

pub use find::{find_studies, FindError, PacsStudy, StudyQuery};
