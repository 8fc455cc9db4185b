//! A study the hospital's PACS holds, as its C-FIND answer describes it: what prior
//! selection chooses from and what the store keeps of each lookup.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PacsStudy {
    pub study_uid: String,
    pub accession: Option<String>,
    /// Study Date, DICOM DA (`YYYYMMDD`).
    pub date: Option<String>,
    /// Study Time, DICOM TM.
    pub time: Option<String>,
    /// Modalities in Study (0008,0061).
    pub modalities: Vec<String>,
    pub description: Option<String>,
    /// Number of Study Related Instances (0020,1208), when the PACS gives it.
    pub instances: Option<u32>,
    /// Issuer of Patient ID (0010,0021), when the PACS gives it: the domain its Patient
    /// ID belongs to.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Body Part Examined (0018,0015) of its series (SERIES level; asked for the newest
    /// `priors.max_studies` only), upper case.
    #[serde(default)]
    pub body_parts: Vec<String>,
}
