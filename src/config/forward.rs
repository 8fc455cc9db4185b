//! `[forward]`, `[[destinations]]` and `[[routes]]`: where studies go and how hard
//! readgate tries to deliver them.

use super::dicom::default_max_pdu;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    #[serde(default = "default_retry_base")]
    pub retry_base_secs: u64,
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: u64,
    /// After this many failed attempts a study is marked failed (and listed), not retried.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// How long to wait for each C-STORE response.
    #[serde(default = "default_response_timeout")]
    pub response_timeout_secs: u64,
    /// An open association waits this long for more queued work before it is released.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    #[serde(default = "default_max_pdu")]
    pub max_pdu_length: u32,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            retry_base_secs: default_retry_base(),
            retry_max_secs: default_retry_max(),
            max_attempts: default_max_attempts(),
            connect_timeout_secs: default_connect_timeout(),
            response_timeout_secs: default_response_timeout(),
            linger_ms: default_linger_ms(),
            max_pdu_length: default_max_pdu(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    pub id: String,
    /// The receiving facility responsible for the studies sent here (ATS-4).
    pub facility: String,
    pub ae_title: String,
    pub host: String,
    pub port: u16,
    /// Calling AE title readgate uses towards this destination (default: `dicom.ae_title`).
    #[serde(default)]
    pub calling_ae_title: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub destination: String,
    /// Match when the study has at least one of these modalities (empty: any).
    #[serde(default)]
    pub modalities: Vec<String>,
    /// Match when the study was sent by one of these calling AE titles (empty: any).
    #[serde(default)]
    pub calling_ae: Vec<String>,
}

fn default_retry_base() -> u64 {
    5
}
fn default_retry_max() -> u64 {
    300
}
fn default_max_attempts() -> u32 {
    20
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_response_timeout() -> u64 {
    60
}
fn default_linger_ms() -> u64 {
    2000
}
