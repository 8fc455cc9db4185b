//! `[forward]`, `[[destinations]]` and `[[routes]]`: where studies go and how hard
//! readgate tries to deliver them.

use super::dicom::default_max_pdu;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    pub id: String,
    /// The receiving facility responsible for the studies sent here (ATS-4).
    pub facility: String,
    pub ae_title: String,
    pub host: String,
    pub port: u16,
    /// Calling AE title readgate uses towards this destination (default: `dicom.ae_title`).
    pub calling_ae_title: Option<String>,
    /// DICOM over TLS (PS3.15 Annex B, BCP 195: TLS 1.2 and 1.3) to this destination.
    #[serde(default)]
    pub tls: bool,
    /// PEM CA certificates the destination's certificate must chain to (required with
    /// `tls`).
    pub tls_ca: Option<std::path::PathBuf>,
    /// readgate's client certificate chain and key (PEM), for destinations that ask for
    /// one (mutual TLS).
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    /// The name the destination's certificate must carry (default: `host`).
    pub tls_server_name: Option<String>,
    /// Send the chosen priors from the `[[pacs]]` (images and reports) here before each
    /// study (JRS-7.3.2). `false` for a facility that fetches priors itself.
    #[serde(default = "default_send_priors")]
    pub send_priors: bool,
}

fn default_send_priors() -> bool {
    true
}

/// `tls_client()` and `tls_name()` for a config type with the DICOM link fields `tls`,
/// `tls_ca`, `tls_cert`, `tls_key`, `tls_server_name` and `host` (a destination, a PACS):
/// a macro because serde's `deny_unknown_fields` rules out a flattened shared struct.
macro_rules! dicom_link_tls {
    ($link:ty) => {
        impl $link {
            /// The TLS client configuration of this link, when it has `tls = true`.
            pub fn tls_client(
                &self,
            ) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, String> {
                $crate::config::forward::tls_client(
                    self.tls,
                    self.tls_ca.as_deref(),
                    self.tls_cert.as_deref(),
                    self.tls_key.as_deref(),
                )
            }

            /// The name the peer's TLS certificate must carry (default: `host`).
            pub fn tls_name(&self) -> &str {
                self.tls_server_name.as_deref().unwrap_or(&self.host)
            }
        }
    };
}
pub(crate) use dicom_link_tls;

dicom_link_tls!(Destination);

/// The TLS client configuration of a DICOM link readgate opens (a destination, a PACS),
/// when it has `tls = true`: the peer's CA, and readgate's certificate for mutual TLS.
pub fn tls_client(
    tls: bool,
    ca: Option<&std::path::Path>,
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, String> {
    if !tls {
        return Ok(None);
    }
    let Some(ca) = ca else {
        return Err("tls = true needs tls_ca (the PEM CA of the peer)".into());
    };
    let client = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("tls_cert and tls_key go together".into()),
    };
    crate::tls::client_config(ca, client)
        .map(Some)
        .map_err(|e| e.to_string())
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub destination: String,
    /// Match when the study has at least one of these modalities (empty: any).
    #[serde(default)]
    pub modalities: Vec<String>,
    /// Match when the study was sent by one of these calling AE titles (empty: any).
    #[serde(default)]
    pub calling_ae: Vec<String>,
    /// Send the chosen priors with the studies of this route; unset: the destination's
    /// `send_priors`.
    pub send_priors: Option<bool>,
    /// When the studies of this route leave: `"streaming"` (each instance as soon as it
    /// is durable, once the gate has passed the study) or `"on_complete"` (the whole study
    /// once it is complete). Unset: streaming for a study whose order is STAT, on
    /// completion otherwise ([`crate::model::ForwardMode::default_for`]).
    pub forward: Option<crate::model::ForwardMode>,
}

impl Route {
    /// How this route forwards a study of `priority`.
    pub fn forward_mode(
        &self,
        priority: Option<crate::model::Priority>,
    ) -> crate::model::ForwardMode {
        self.forward
            .unwrap_or_else(|| crate::model::ForwardMode::default_for(priority))
    }

    /// Whether any study of this route may stream (not `forward = "on_complete"`).
    pub fn may_stream(&self) -> bool {
        self.forward != Some(crate::model::ForwardMode::OnComplete)
    }
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
