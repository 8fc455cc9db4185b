//! `[gateway]`, `[dicom]`, `[storage]` and `[log]`: who readgate is, how it listens for
//! DICOM, where it keeps what it received, and how it logs.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Stamped into the audit trail and into the tags of forwarded instances.
    pub id: String,
    /// Relative paths are taken from the working directory readgate starts in.
    pub data_dir: PathBuf,
    /// The hospital that sends studies out for reading (the facility that bills).
    pub sending_facility: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DuplicatePolicy {
    /// A second instance with a known SOP Instance UID is acknowledged but not stored.
    KeepFirst,
    /// A second instance with a known SOP Instance UID replaces the first one.
    Replace,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DicomConfig {
    pub ae_title: String,
    pub listen: SocketAddr,
    #[serde(default = "default_stable_after")]
    pub stable_after_secs: u64,
    #[serde(default)]
    pub allow_any_calling_ae: bool,
    #[serde(default)]
    pub peers: Vec<Peer>,
    #[serde(default = "default_max_pdu")]
    pub max_pdu_length: u32,
    #[serde(default = "default_max_associations")]
    pub max_associations: usize,
    /// Connections one source address may hold at once (on each listener), so that one
    /// host cannot take the slots of the others.
    #[serde(default = "default_per_host")]
    pub max_connections_per_host: usize,
    /// Time a peer has to send its A-ASSOCIATE-RQ after connecting (the ARTIM timer).
    #[serde(default = "default_association_timeout")]
    pub association_timeout_secs: u64,
    /// An association that sends nothing for this long is aborted.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    #[serde(default = "default_duplicate_policy")]
    pub duplicate_policy: DuplicatePolicy,
    /// The largest MPPS data set (N-CREATE / N-SET) readgate reads into memory; a larger
    /// one is answered `0213` (resource limitation) and discarded as it streams in. A step
    /// lists its instances' UIDs: a 5,000-image study takes about 400 KB.
    #[serde(default = "default_max_mpps_bytes")]
    pub max_mpps_bytes: usize,
    /// A second listener for DICOM over TLS (PS3.15 Annex B, BCP 195: TLS 1.2 and 1.3
    /// only), beside the plain one; needs `tls_cert` and `tls_key`.
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain and private key of the TLS listener.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: when set, every TLS peer must present a certificate they
    /// signed (mutual TLS); otherwise no client certificate is asked for.
    pub tls_client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub ae_title: String,
    /// When given, the peer must connect from one of these addresses.
    #[serde(default)]
    pub hosts: Vec<IpAddr>,
    /// When given, the peer must come over DICOM TLS with a client certificate whose
    /// subject is exactly this (`CN=ct01.hospital.example, O=Yamada Hospital`; order
    /// and spaces do not matter); needs `dicom.tls_client_ca`.
    pub tls_subject: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// C-STORE is refused with A700 while the spool's file system has less free space.
    #[serde(default = "default_min_free_mb")]
    pub min_free_mb: u64,
    /// Keep forwarded instances in the spool (for re-sending); otherwise delete them.
    #[serde(default)]
    pub keep_forwarded: bool,
    /// Where received instances are spooled; unset: `gateway.data_dir/spool`. Nodes
    /// sharing one PostgreSQL database share one spool (a mount every node sees).
    #[serde(default)]
    pub spool_dir: Option<PathBuf>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            min_free_mb: default_min_free_mb(),
            keep_forwarded: false,
            spool_dir: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// tracing filter, e.g. "info" or "readgate=debug,info"; RUST_LOG overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_log_level(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

fn default_stable_after() -> u64 {
    10
}
/// 256 KiB, for receiving and forwarding alike.
fn default_max_mpps_bytes() -> usize {
    4 << 20
}

pub(super) fn default_max_pdu() -> u32 {
    262_144
}
pub(super) fn default_per_host() -> usize {
    16
}
fn default_max_associations() -> usize {
    32
}
fn default_association_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    120
}
fn default_duplicate_policy() -> DuplicatePolicy {
    DuplicatePolicy::Replace
}
fn default_min_free_mb() -> u64 {
    512
}
fn default_log_level() -> String {
    "info".to_string()
}
