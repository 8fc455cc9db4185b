//! `[hl7]`: the MLLP listener for orders, reports and merges from the RIS/HIS.

use crate::model::Charset;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hl7Config {
    pub listen: SocketAddr,
    /// A second listener for MLLP over TLS (TLS 1.2 and 1.3), beside the plain one; needs
    /// `tls_cert` and `tls_key`. Both share `max_connections`.
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain and private key of the TLS listener.
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    /// PEM CA(s): when set, every TLS sender must present a certificate they signed.
    pub tls_client_ca: Option<std::path::PathBuf>,
    /// Senders allowed to connect (RIS/HIS addresses); empty: any.
    #[serde(default)]
    pub allowed_hosts: Vec<IpAddr>,
    /// Larger MLLP frames are discarded and answered AR.
    #[serde(default = "default_max_frame")]
    pub max_frame_bytes: usize,
    /// A connection silent this long is closed.
    #[serde(default = "default_hl7_idle")]
    pub idle_timeout_secs: u64,
    #[serde(default = "default_max_hl7_connections")]
    pub max_connections: usize,
    /// Connections one source address may hold at once (on each listener).
    #[serde(default = "super::dicom::default_per_host")]
    pub max_connections_per_host: usize,
    /// Character set of messages whose MSH-18 is empty.
    #[serde(default = "default_hl7_charset")]
    pub default_charset: Charset,
    /// MSH-3 of readgate's ACKs when the sender left MSH-5 empty.
    #[serde(default = "default_hl7_application")]
    pub application: String,
    /// Refused messages (answered AE or AR) are kept for diagnosis as a bounded
    /// quarantine: at most this many MiB of their raw bytes, the oldest going first.
    #[serde(default = "default_quarantine_mb")]
    pub quarantine_max_mb: u64,
    /// … and none older than this many days.
    #[serde(default = "default_quarantine_days")]
    pub quarantine_days: u64,
    /// `[hl7.limits]`: how much structure one message may have.
    #[serde(default)]
    pub limits: Hl7Limits,
}

/// Bounds on one message's structure, checked in one pass over the text before the
/// parser allocates anything per element: without them, one frame of 1 MiB of `~`
/// becomes a million repetitions and hundreds of MiB (a message over any bound is
/// answered AR naming the segment, field and bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hl7Limits {
    /// Segments in a message.
    pub max_segments: usize,
    /// Fields in a segment.
    pub max_fields: usize,
    /// Repetitions of a field.
    pub max_repetitions: usize,
    /// Components of a repetition.
    pub max_components: usize,
    /// Subcomponents of a component.
    pub max_subcomponents: usize,
    /// Delimiters in the whole message (fields, repetitions, components and
    /// subcomponents together): what bounds the parse as a whole.
    pub max_elements: usize,
}

impl Default for Hl7Limits {
    fn default() -> Self {
        Hl7Limits {
            max_segments: 5_000,
            max_fields: 300,
            max_repetitions: 200,
            max_components: 100,
            max_subcomponents: 50,
            max_elements: 30_000,
        }
    }
}

impl Hl7Limits {
    /// Every bound must allow at least one.
    pub fn validate(&self) -> Result<(), super::Invalid> {
        for (key, v) in [
            ("hl7.limits.max_segments", self.max_segments),
            ("hl7.limits.max_fields", self.max_fields),
            ("hl7.limits.max_repetitions", self.max_repetitions),
            ("hl7.limits.max_components", self.max_components),
            ("hl7.limits.max_subcomponents", self.max_subcomponents),
            ("hl7.limits.max_elements", self.max_elements),
        ] {
            if v == 0 {
                return Err(super::Invalid::new(key, "expected at least 1"));
            }
        }
        Ok(())
    }
}

fn default_max_frame() -> usize {
    1024 * 1024
}
fn default_quarantine_mb() -> u64 {
    64
}
fn default_quarantine_days() -> u64 {
    30
}
fn default_hl7_idle() -> u64 {
    300
}
fn default_max_hl7_connections() -> usize {
    64
}
fn default_hl7_charset() -> Charset {
    Charset::Ascii
}
fn default_hl7_application() -> String {
    "READGATE".into()
}
