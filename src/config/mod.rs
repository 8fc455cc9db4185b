//! The TOML configuration: parsed strictly (unknown keys are errors) and validated as a
//! whole before anything starts, so a typo is reported at start-up, not at 3 a.m.
//!
//! The bottom layer: every feature's section is declared here (one file per section) and
//! features read theirs; nothing under `config/` imports a feature module, only the other
//! foundations (`model`, `time`, `tls`, `digest`).

pub mod audit;
pub mod database;
pub mod dicom;
pub mod forward;
pub mod hl7;
pub mod http;
pub mod ledger;
pub mod live;
pub mod net;
pub mod notify;
pub mod pacs;
pub mod policy;

pub use self::audit::AuditConfig;
pub use self::database::{Database, DatabaseConfig};
pub use self::dicom::{
    DicomConfig, DuplicatePolicy, GatewayConfig, LogConfig, LogFormat, Peer, StorageConfig,
};
pub use self::forward::{Destination, ForwardConfig, Route};
pub use self::hl7::{FieldPath, Hl7Config, Hl7Limits};
pub use self::http::HttpConfig;
pub use self::ledger::LedgerConfig;
pub use self::live::Live;
pub use self::notify::NotifyConfig;
pub use self::policy::PolicyConfig;

use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_PATH: &str = "config/readgate.toml";

/// A value that does not parse; the text says what was expected (the caller names the
/// key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadValue(pub String);

impl From<String> for BadValue {
    fn from(s: String) -> Self {
        BadValue(s)
    }
}

impl From<&str> for BadValue {
    fn from(s: &str) -> Self {
        BadValue(s.to_string())
    }
}

/// One key whose value is wrong, as a section's validation reports it (the whole-file
/// validation adds the file's path: [`ConfigError::Invalid`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct Invalid {
    /// The full key, e.g. `policy.lab_rules[0].max_age_days`.
    pub key: String,
    pub message: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub gateway: GatewayConfig,
    pub dicom: DicomConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub forward: ForwardConfig,
    #[serde(default)]
    pub destinations: Vec<Destination>,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// The hospital's PACS, queried for patients' earlier studies.
    #[serde(default)]
    pub pacs: Vec<pacs::Pacs>,
    /// How readgate keeps patients' histories in the PACS at hand.
    #[serde(default)]
    pub priors: pacs::PriorsSettings,
    #[serde(default)]
    pub log: LogConfig,
    /// HL7 v2 intake over MLLP; absent: no HL7 listener.
    pub hl7: Option<Hl7Config>,
    #[serde(default)]
    pub notify: NotifyConfig,
    /// The clinical-context policy (JRS-7.3.x): which checks apply, with what parameters.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The reading ledger: roster, places, eligibility rules (ATS-3, JRS-8.1).
    #[serde(default)]
    pub ledger: LedgerConfig,
    /// The HTTP server (read events API); absent: no HTTP listener.
    pub http: Option<HttpConfig>,
    /// The audit trail's live forwarding to a syslog collector (ATNA).
    #[serde(default)]
    pub audit: AuditConfig,
    /// `[database]`: SQLite in `data_dir` (default) or a PostgreSQL URL.
    #[serde(default)]
    pub database: DatabaseConfig,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: describe_toml_error(&e, text),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        non_empty("gateway.id", &self.gateway.id)
            .map_err(|BadValue(m)| invalid("gateway.id", m))?;
        non_empty("gateway.sending_facility", &self.gateway.sending_facility)
            .map_err(|BadValue(m)| invalid("gateway.sending_facility", m))?;
        if self.gateway.data_dir.as_os_str().is_empty() {
            return Err(invalid(
                "gateway.data_dir",
                "expected a directory path".into(),
            ));
        }
        self.database
            .check()
            .map_err(|m| invalid("database.url", m))?;
        self.database
            .check_timing()
            .map_err(|(key, m)| invalid(key, m))?;
        if self.database.url.is_some() && !node_name(&self.gateway.id) {
            // Several nodes: the id names this node's files in a shared spool.
            return Err(invalid(
                "gateway.id",
                format!(
                    "with [database] url (several nodes), expected 1 to 64 letters, digits, '.', '-' or '_', got {:?}",
                    self.gateway.id
                ),
            ));
        }
        ae_title(&self.dicom.ae_title).map_err(|BadValue(m)| invalid("dicom.ae_title", m))?;
        if !(64 * 1024..=64 * 1024 * 1024).contains(&self.dicom.max_mpps_bytes) {
            return Err(invalid(
                "dicom.max_mpps_bytes",
                format!(
                    "expected 65536 to 67108864 bytes, got {}",
                    self.dicom.max_mpps_bytes
                ),
            ));
        }
        for (key, v) in [
            ("dicom.max_pdu_length", self.dicom.max_pdu_length),
            ("forward.max_pdu_length", self.forward.max_pdu_length),
        ] {
            if !(4096..=16 * 1024 * 1024).contains(&v) {
                return Err(invalid(
                    key,
                    format!("expected 4096 to 16777216 bytes, got {v}"),
                ));
            }
        }
        for (key, v) in [
            ("dicom.max_associations", self.dicom.max_associations as u64),
            (
                "dicom.max_connections_per_host",
                self.dicom.max_connections_per_host as u64,
            ),
            ("forward.max_attempts", u64::from(self.forward.max_attempts)),
        ] {
            if v == 0 {
                return Err(invalid(key, "expected at least 1".into()));
            }
        }
        for (key, v) in [
            (
                "dicom.association_timeout_secs",
                self.dicom.association_timeout_secs,
            ),
            ("dicom.idle_timeout_secs", self.dicom.idle_timeout_secs),
            ("forward.retry_base_secs", self.forward.retry_base_secs),
            (
                "forward.connect_timeout_secs",
                self.forward.connect_timeout_secs,
            ),
            (
                "forward.response_timeout_secs",
                self.forward.response_timeout_secs,
            ),
        ] {
            if v == 0 {
                return Err(invalid(key, "expected a number of seconds ≥ 1".into()));
            }
        }
        if self.forward.retry_max_secs < self.forward.retry_base_secs {
            return Err(invalid(
                "forward.retry_max_secs",
                format!(
                    "expected ≥ forward.retry_base_secs ({})",
                    self.forward.retry_base_secs
                ),
            ));
        }
        if self.dicom.tls_listen.is_some() {
            let (Some(cert), Some(key)) = (&self.dicom.tls_cert, &self.dicom.tls_key) else {
                return Err(invalid(
                    "dicom.tls_cert",
                    "dicom.tls_listen needs tls_cert and tls_key (PEM files)".into(),
                ));
            };
            let client_ca = self.dicom.tls_client_ca.as_deref();
            if let Err(e) = crate::tls::server_config_for_clients(cert, key, client_ca, &[]) {
                return Err(invalid("dicom.tls_cert", e.to_string()));
            }
        }
        if !self.dicom.allow_any_calling_ae && self.dicom.peers.is_empty() {
            return Err(invalid(
                "dicom.peers",
                "no peer may send: list [[dicom.peers]] or set dicom.allow_any_calling_ae = true"
                    .into(),
            ));
        }
        let mut seen = HashSet::new();
        for (i, peer) in self.dicom.peers.iter().enumerate() {
            let key = format!("dicom.peers[{i}].ae_title");
            ae_title(&peer.ae_title).map_err(|BadValue(m)| invalid(&key, m))?;
            if !seen.insert(peer.ae_title.trim().to_string()) {
                return Err(invalid(&key, format!("duplicate peer {:?}", peer.ae_title)));
            }
            if let Some(subject) = &peer.tls_subject {
                let key = format!("dicom.peers[{i}].tls_subject");
                if crate::tls::parse_subject(subject).is_none() {
                    return Err(invalid(
                        &key,
                        "expected attribute=value pairs separated by commas (CN=ct01.example, O=Hospital)".into(),
                    ));
                }
                if self.dicom.tls_client_ca.is_none() {
                    return Err(invalid(
                        &key,
                        "a pinned subject needs client certificates: set dicom.tls_client_ca"
                            .into(),
                    ));
                }
            }
        }
        let mut ids = HashSet::new();
        for (i, d) in self.destinations.iter().enumerate() {
            non_empty("id", &d.id)
                .map_err(|BadValue(m)| invalid(&format!("destinations[{i}].id"), m))?;
            if !ids.insert(d.id.as_str()) {
                return Err(invalid(
                    &format!("destinations[{i}].id"),
                    format!("duplicate destination id {:?}", d.id),
                ));
            }
            non_empty("facility", &d.facility)
                .map_err(|BadValue(m)| invalid(&format!("destinations[{i}].facility"), m))?;
            ae_title(&d.ae_title)
                .map_err(|BadValue(m)| invalid(&format!("destinations[{i}].ae_title"), m))?;
            if let Some(calling) = &d.calling_ae_title {
                ae_title(calling).map_err(|BadValue(m)| {
                    invalid(&format!("destinations[{i}].calling_ae_title"), m)
                })?;
            }
            non_empty("host", &d.host)
                .map_err(|BadValue(m)| invalid(&format!("destinations[{i}].host"), m))?;
            if d.port == 0 {
                return Err(invalid(
                    &format!("destinations[{i}].port"),
                    "expected a TCP port 1-65535".into(),
                ));
            }
            d.tls_client()
                .map_err(|m| invalid(&format!("destinations[{i}].tls_ca"), m))?;
        }
        let mut pacs_ids = HashSet::new();
        for (i, p) in self.pacs.iter().enumerate() {
            let key = |field: &str| format!("pacs[{i}].{field}");
            non_empty("id", &p.id).map_err(|BadValue(m)| invalid(&key("id"), m))?;
            if !pacs_ids.insert(p.id.as_str()) {
                return Err(invalid(&key("id"), format!("duplicate PACS id {:?}", p.id)));
            }
            ae_title(&p.ae_title).map_err(|BadValue(m)| invalid(&key("ae_title"), m))?;
            if let Some(calling) = &p.calling_ae_title {
                ae_title(calling).map_err(|BadValue(m)| invalid(&key("calling_ae_title"), m))?;
            }
            non_empty("host", &p.host).map_err(|BadValue(m)| invalid(&key("host"), m))?;
            if p.timeout_secs == 0 || p.max_results == 0 {
                let field = if p.timeout_secs == 0 {
                    "timeout_secs"
                } else {
                    "max_results"
                };
                return Err(invalid(&key(field), "expected at least 1".into()));
            }
            p.tls_client().map_err(|m| invalid(&key("tls_ca"), m))?;
        }
        for (field, v) in [
            ("refresh_secs", self.priors.refresh_secs),
            ("retry_secs", self.priors.retry_secs),
            ("max_studies", self.priors.max_studies as u64),
            ("send_max", self.priors.send_max as u64),
            ("cache_max_mb", self.priors.cache_max_mb),
        ] {
            if v == 0 {
                return Err(invalid(
                    &format!("priors.{field}"),
                    "expected at least 1".into(),
                ));
            }
        }
        if !self.pacs.is_empty()
            && (self.priors.max_studies as u64) < u64::from(self.policy.priors.most_recent_count)
        {
            return Err(invalid(
                "priors.max_studies",
                format!(
                    "expected at least policy.priors.most_recent_count ({}): the newest priors must be searched for reports",
                    self.policy.priors.most_recent_count
                ),
            ));
        }
        for (i, r) in self.routes.iter().enumerate() {
            if !ids.contains(r.destination.as_str()) {
                return Err(invalid(
                    &format!("routes[{i}].destination"),
                    format!(
                        "no [[destinations]] entry has id {:?} (known: {})",
                        r.destination,
                        self.destinations
                            .iter()
                            .map(|d| d.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        let section = |r: Result<(), Invalid>| r.map_err(|e| invalid(&e.key, e.message));
        section(self.policy.validate())?;
        let known: Vec<&str> = self.destinations.iter().map(|d| d.id.as_str()).collect();
        section(self.policy.validate_destinations(&known))?;
        if let Some(url) = &self.notify.webhook_url {
            notify::webhook_url(url).map_err(|BadValue(m)| invalid("notify.webhook_url", m))?;
        }
        if self.notify.timeout_secs == 0 {
            return Err(invalid(
                "notify.timeout_secs",
                "expected a number of seconds ≥ 1".into(),
            ));
        }
        if let Some(h) = &self.hl7 {
            if !(1024..=64 * 1024 * 1024).contains(&h.max_frame_bytes) {
                return Err(invalid(
                    "hl7.max_frame_bytes",
                    format!("expected 1024 to 67108864 bytes, got {}", h.max_frame_bytes),
                ));
            }
            if h.idle_timeout_secs == 0 {
                return Err(invalid(
                    "hl7.idle_timeout_secs",
                    "expected a number of seconds ≥ 1".into(),
                ));
            }
            if h.max_connections == 0 {
                return Err(invalid("hl7.max_connections", "expected at least 1".into()));
            }
            if h.max_connections_per_host == 0 {
                return Err(invalid(
                    "hl7.max_connections_per_host",
                    "expected at least 1".into(),
                ));
            }
            non_empty("application", &h.application)
                .map_err(|BadValue(m)| invalid("hl7.application", m))?;
            section(h.limits.validate())?;
            if h.tls_listen.is_some() {
                let (Some(cert), Some(key)) = (&h.tls_cert, &h.tls_key) else {
                    return Err(invalid(
                        "hl7.tls_cert",
                        "hl7.tls_listen needs tls_cert and tls_key (PEM files)".into(),
                    ));
                };
                let client_ca = h.tls_client_ca.as_deref();
                if let Err(e) = crate::tls::server_config_for_clients(cert, key, client_ca, &[]) {
                    return Err(invalid("hl7.tls_cert", e.to_string()));
                }
            }
        }
        section(self.ledger.validate())?;
        if let Some(http) = &self.http {
            section(http.validate())?;
        }
        self.validate_audit(path)?;
        Ok(())
    }

    fn validate_audit(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let a = &self.audit;
        let name = &a.app_name;
        if name.is_empty() || name.len() > 48 || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "audit.app_name",
                format!("expected 1-48 printable ASCII characters without spaces (RFC 5424 APP-NAME), got {name:?}"),
            ));
        }
        if a.retry_max_secs == 0 {
            return Err(invalid(
                "audit.retry_max_secs",
                "expected a number of seconds ≥ 1".into(),
            ));
        }
        if a.tls_cert.is_some() != a.tls_key.is_some() {
            let key = if a.tls_cert.is_some() {
                "audit.tls_key"
            } else {
                "audit.tls_cert"
            };
            return Err(invalid(
                key,
                "tls_cert and tls_key go together: give both or neither".into(),
            ));
        }
        let Some(url) = &a.syslog else {
            for (key, v) in [("audit.tls_ca", &a.tls_ca), ("audit.tls_cert", &a.tls_cert)] {
                if v.is_some() {
                    return Err(invalid(
                        key,
                        "only used with audit.syslog = \"tls://…\"".into(),
                    ));
                }
            }
            return Ok(());
        };
        let target = audit::Target::parse(url).map_err(|BadValue(m)| invalid("audit.syslog", m))?;
        match target.scheme {
            audit::Scheme::Tcp => {
                for (key, v) in [("audit.tls_ca", &a.tls_ca), ("audit.tls_cert", &a.tls_cert)] {
                    if v.is_some() {
                        return Err(invalid(
                            key,
                            format!("only used with tls://, but audit.syslog is {url:?}"),
                        ));
                    }
                }
            }
            audit::Scheme::Tls => {
                let Some(ca) = &a.tls_ca else {
                    return Err(invalid(
                        "audit.tls_ca",
                        "required for tls://: the PEM CA certificate the collector's certificate chains to".into(),
                    ));
                };
                // Load everything now: a wrong path should stop start-up, not surface as
                // a warning in the sender hours later.
                crate::tls::client_config(ca, a.tls_cert.as_deref().zip(a.tls_key.as_deref()))
                    .map_err(|e| {
                        let key = match &e {
                            crate::tls::TlsError::ClientCertificate(_) => "audit.tls_cert",
                            crate::tls::TlsError::Pem { path, .. }
                            | crate::tls::TlsError::NoCertificate { path }
                                if Some(path.as_path()) == a.tls_cert.as_deref()
                                    || Some(path.as_path()) == a.tls_key.as_deref() =>
                            {
                                "audit.tls_cert"
                            }
                            _ => "audit.tls_ca",
                        };
                        invalid(key, e.to_string())
                    })?;
            }
        }
        Ok(())
    }

    pub fn destination(&self, id: &str) -> Option<&Destination> {
        self.destinations.iter().find(|d| d.id == id)
    }

    /// Whether priors may go to this destination: there is a `[[pacs]]`, and the
    /// destination's `send_priors` or some route to it says so.
    pub fn sends_priors(&self, destination: &Destination) -> bool {
        let some_route_sends = self
            .routes
            .iter()
            .any(|r| r.destination == destination.id && r.send_priors == Some(true));
        !self.pacs.is_empty() && (destination.send_priors || some_route_sends)
    }

    /// The SQLite file, when the database is SQLite (`[database] url` unset); also where
    /// a PostgreSQL installation's `readgate db copy` source used to be.
    pub fn database_path(&self) -> PathBuf {
        self.gateway.data_dir.join("readgate.db")
    }

    /// Where the store and the audit trail are: SQLite in `data_dir`, or `[database] url`.
    pub fn database(&self) -> Database {
        match &self.database.url {
            Some(url) => Database::Postgres {
                url: url.clone(),
                pool_size: self.database.pool_size,
            },
            None => Database::Sqlite(self.database_path()),
        }
    }

    /// `storage.spool_dir`, or `data_dir/spool`.
    pub fn spool_dir(&self) -> PathBuf {
        self.storage
            .spool_dir
            .clone()
            .unwrap_or_else(|| self.gateway.data_dir.join("spool"))
    }

    /// This node's name in a spool shared by several nodes (`[database] url` set), so
    /// that no node clears or re-indexes another's files; None on SQLite (one node).
    pub fn spool_node(&self) -> Option<&str> {
        self.database.url.as_ref().map(|_| self.gateway.id.as_str())
    }
}

impl Destination {
    pub fn calling_ae<'a>(&'a self, config: &'a Config) -> &'a str {
        self.calling_ae_title
            .as_deref()
            .unwrap_or(&config.dicom.ae_title)
    }
}

/// A node id usable in file names: `[A-Za-z0-9._-]{1,64}`, not `.` or `..`.
fn node_name(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn non_empty(_what: &str, v: &str) -> Result<(), BadValue> {
    if v.trim().is_empty() {
        Err("expected a non-empty string".into())
    } else {
        Ok(())
    }
}

/// AE titles: 1–16 characters of the default repertoire, no backslash or control characters.
fn ae_title(v: &str) -> Result<(), BadValue> {
    let t = v.trim();
    if t.is_empty() || v.len() > 16 {
        return Err(format!("expected an AE title of 1 to 16 characters, got {v:?}").into());
    }
    if v.chars()
        .any(|c| !c.is_ascii() || c.is_ascii_control() || c == '\\')
    {
        return Err(format!(
            "expected ASCII characters without backslash or control characters, got {v:?}"
        )
        .into());
    }
    Ok(())
}

/// Names the key and line an error points at: toml says "invalid type: string, expected
/// u16" without saying which key, and its own excerpt spans several lines.
fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().to_string();
    let Some(span) = e.span() else { return msg };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    let table = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.starts_with('['));
    match (table, key) {
        (Some(t), Some(k)) => format!("`{t}.{k}` (line {line_no}): {msg}"),
        (None, Some(k)) => format!("`{k}` (line {line_no}): {msg}"),
        (Some(t), None) => format!("[{t}] (line {line_no}): {msg}"),
        (None, None) => format!("line {line_no}: {msg}"),
    }
}

#[cfg(test)]
mod tests;
