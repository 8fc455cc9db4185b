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
    /// The field of an order that states how many images its study will have, as a
    /// path `SEG-field[.component[.subcomponent]]` (e.g. `OBR-46.2`, `ZDS-2`): a study
    /// holding that many instances is complete at once, without the quiet wait. RIS
    /// vendors put it in different places; unset (the default): the signal is off.
    #[serde(default)]
    pub expected_images_field: Option<FieldPath>,
}

/// Where a value sits in a message: a segment's field, optionally one component of its
/// first repetition and one subcomponent of that (`OBR-46`, `OBR-46.2`, `ZDS-2.1.1`).
/// Written and read in that form only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FieldPath {
    /// Segment id, three upper-case letters or digits starting with a letter (`OBR`, `ZDS`).
    pub segment: String,
    /// Field number, from 1.
    pub field: usize,
    /// Component number, from 1; `None`: the whole first repetition.
    pub component: Option<usize>,
    /// Subcomponent number, from 1 (only with a component).
    pub subcomponent: Option<usize>,
}

impl std::str::FromStr for FieldPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "{s:?} is not a field path: {why} (expected SEG-field[.component[.subcomponent]], \
                 e.g. \"OBR-46.2\")"
            )
        };
        let (segment, rest) = s.split_once('-').ok_or_else(|| bad("no `-`"))?;
        let seg_ok = segment.len() == 3
            && segment.starts_with(|c: char| c.is_ascii_uppercase())
            && segment
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !seg_ok {
            return Err(bad(
                "the segment must be three upper-case letters or digits",
            ));
        }
        if segment == "MSH" {
            return Err(bad("MSH describes the message, not an order"));
        }
        let numbers = rest
            .split('.')
            .map(|n| {
                (!n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| n.parse::<usize>().ok())
                    .flatten()
                    .filter(|&n| n >= 1)
            })
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| bad("field, component and subcomponent are numbers from 1"))?;
        match numbers[..] {
            [field] => Ok(FieldPath {
                segment: segment.to_string(),
                field,
                component: None,
                subcomponent: None,
            }),
            [field, c] => Ok(FieldPath {
                segment: segment.to_string(),
                field,
                component: Some(c),
                subcomponent: None,
            }),
            [field, c, sub] => Ok(FieldPath {
                segment: segment.to_string(),
                field,
                component: Some(c),
                subcomponent: Some(sub),
            }),
            _ => Err(bad("at most field.component.subcomponent")),
        }
    }
}

impl TryFrom<String> for FieldPath {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.trim().parse()
    }
}

impl From<FieldPath> for String {
    fn from(p: FieldPath) -> String {
        p.to_string()
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.segment, self.field)?;
        if let Some(c) = self.component {
            write!(f, ".{c}")?;
        }
        if let Some(s) = self.subcomponent {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
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
