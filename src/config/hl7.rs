//! `[hl7]`: the MLLP listener for orders, reports and merges from the RIS/HIS.

use crate::model::Charset;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hl7Config {
    pub listen: SocketAddr,
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
    /// Character set of messages whose MSH-18 is empty.
    #[serde(default = "default_hl7_charset")]
    pub default_charset: Charset,
    /// MSH-3 of readgate's ACKs when the sender left MSH-5 empty.
    #[serde(default = "default_hl7_application")]
    pub application: String,
}

fn default_max_frame() -> usize {
    1024 * 1024
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
