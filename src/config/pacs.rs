//! `[[pacs]]`: the hospital's PACS, which readgate queries (C-FIND, Study Root) for a
//! patient's earlier studies (JRS-7.3.2: the reader needs the priors and their reports).

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pacs {
    /// Named in logs and on the command line (`readgate pacs find --pacs ID`).
    pub id: String,
    pub ae_title: String,
    pub host: String,
    pub port: u16,
    /// Calling AE title readgate uses towards this PACS (default: `dicom.ae_title`); the
    /// PACS must know it.
    pub calling_ae_title: Option<String>,
    /// DICOM over TLS to this PACS, with the same settings as a destination's.
    #[serde(default)]
    pub tls: bool,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_server_name: Option<String>,
    /// Longest wait to connect and for each answer of a query.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// A query that finds more studies than this is cancelled and reported as too broad.
    #[serde(default = "default_max_results")]
    pub max_results: usize,
    /// How priors are retrieved from this PACS to send with a study.
    #[serde(default)]
    pub retrieve: Retrieve,
}

/// `[[pacs]] retrieve`: how readgate fetches a prior study.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Retrieve {
    /// C-GET: the instances come back on readgate's own association; nothing to set up
    /// in the PACS.
    #[default]
    Get,
    /// C-MOVE to readgate's `dicom.ae_title`: the PACS must know that AE with readgate's
    /// host and DICOM port, and readgate must accept the PACS's AE as a peer.
    Move,
}

super::forward::dicom_link_tls!(Pacs);

impl Pacs {
    /// The calling AE title readgate uses towards this PACS.
    pub fn calling_ae(&self, config: &super::Config) -> String {
        self.calling_ae_title
            .clone()
            .unwrap_or_else(|| config.dicom.ae_title.clone())
    }
}

fn default_timeout() -> u64 {
    30
}

fn default_max_results() -> usize {
    500
}

/// `[priors]`: how readgate keeps each patient's history in the `[[pacs]]` at hand. Which
/// priors need a report, and how far back, is policy (`[policy.priors]`); the PACS is
/// asked for the same look-back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorsSettings {
    /// A patient's history is asked again after this long (new studies may have been
    /// reported meanwhile).
    #[serde(default = "default_refresh_secs")]
    pub refresh_secs: u64,
    /// A failed lookup (PACS down, refused) is tried again after this long.
    #[serde(default = "default_retry_secs")]
    pub retry_secs: u64,
    /// Of a patient's studies in the look-back period, the newest this many are looked
    /// into for report documents (SR, encapsulated PDF/CDA): two small queries each.
    #[serde(default = "default_max_studies")]
    pub max_studies: usize,
    /// Of the priors the check compares a study with, the newest this many (at most
    /// `max_studies`) are sent with it: what a remote reader compares, not the whole
    /// history over a hospital's uplink.
    #[serde(default = "default_send_max")]
    pub send_max: usize,
    /// Retrieve the priors to send as soon as the PACS has answered for the patient (on
    /// the order, or the study's first image) rather than when the study leaves: the
    /// study then waits for nothing. `false`: retrieved at sending time.
    #[serde(default = "default_prefetch")]
    pub prefetch: bool,
    /// Disk the retrieved priors may take (`data_dir/priors/cache`); past it, priors
    /// already sent everywhere, then the longest unused, are removed, and prefetching
    /// pauses until there is room (retrieval at sending time still goes).
    #[serde(default = "default_cache_max_mb")]
    pub cache_max_mb: u64,
}

impl Default for PriorsSettings {
    fn default() -> Self {
        PriorsSettings {
            refresh_secs: default_refresh_secs(),
            retry_secs: default_retry_secs(),
            max_studies: default_max_studies(),
            send_max: default_send_max(),
            prefetch: default_prefetch(),
            cache_max_mb: default_cache_max_mb(),
        }
    }
}

fn default_prefetch() -> bool {
    true
}

fn default_cache_max_mb() -> u64 {
    10_240
}

fn default_send_max() -> usize {
    3
}

fn default_refresh_secs() -> u64 {
    3600
}

fn default_retry_secs() -> u64 {
    60
}

fn default_max_studies() -> usize {
    10
}
