//! The TOML configuration: parsed strictly (unknown keys are errors) and validated as a
//! whole before anything starts, so a typo is reported at start-up, not at 3 a.m.

use serde::Deserialize;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_PATH: &str = "config/readgate.toml";

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

#[derive(Debug, Clone, Deserialize)]
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
    #[serde(default)]
    pub log: LogConfig,
    /// HL7 v2 intake over MLLP; absent: no HL7 listener.
    #[serde(default)]
    pub hl7: Option<Hl7Config>,
    #[serde(default)]
    pub notify: NotifyConfig,
    /// The clinical-context policy (JRS-7.3.x): which checks apply, with what parameters.
    #[serde(default)]
    pub policy: crate::decide::policy::PolicyConfig,
    /// The reading ledger: roster, places, eligibility rules (ATS-3, JRS-8.1).
    #[serde(default)]
    pub ledger: crate::ledger::config::LedgerConfig,
    /// The HTTP server (read events API); absent: no HTTP listener.
    #[serde(default)]
    pub http: Option<crate::web::HttpConfig>,
    /// The audit trail's live forwarding to a syslog collector (ATNA).
    #[serde(default)]
    pub audit: AuditConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// `tcp://host:port` or `tls://host:port` (RFC 5425, usually port 6514): ship every
    /// audit entry as an ATNA message, live. Absent: the trail stays in the database only.
    #[serde(default)]
    pub syslog: Option<String>,
    /// PEM file with the CA certificate(s) the collector's certificate must chain to
    /// (required for `tls://`).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate chain and key, for collectors that authenticate nodes
    /// (IHE ATNA mutual TLS). Both or neither.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// RFC 5424 APP-NAME and the application's UserID in ATNA messages.
    #[serde(default = "default_audit_app_name")]
    pub app_name: String,
    /// Longest wait between reconnection attempts to the collector.
    #[serde(default = "default_audit_retry_max")]
    pub retry_max_secs: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            syslog: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            app_name: default_audit_app_name(),
            retry_max_secs: default_audit_retry_max(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// `http://host:port/path` that receives a JSON POST when a study is held, released
    /// or rejected. The log line is written either way.
    #[serde(default)]
    pub webhook_url: Option<String>,
    #[serde(default = "default_webhook_timeout")]
    pub timeout_secs: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhook_url: None,
            timeout_secs: default_webhook_timeout(),
        }
    }
}

impl NotifyConfig {
    pub fn webhook(&self) -> Option<crate::notify::Webhook> {
        let url = self.webhook_url.as_deref()?;
        crate::notify::Webhook::parse(url, std::time::Duration::from_secs(self.timeout_secs)).ok()
    }
}

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
    pub default_charset: crate::hl7::Charset,
    /// MSH-3 of readgate's ACKs when the sender left MSH-5 empty.
    #[serde(default = "default_hl7_application")]
    pub application: String,
}

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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
    /// Time a peer has to send its A-ASSOCIATE-RQ after connecting (the ARTIM timer).
    #[serde(default = "default_association_timeout")]
    pub association_timeout_secs: u64,
    /// An association that sends nothing for this long is aborted.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    #[serde(default = "default_duplicate_policy")]
    pub duplicate_policy: DuplicatePolicy,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub ae_title: String,
    /// When given, the peer must connect from one of these addresses.
    #[serde(default)]
    pub hosts: Vec<IpAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// C-STORE is refused with A700 while the spool's file system has less free space.
    #[serde(default = "default_min_free_mb")]
    pub min_free_mb: u64,
    /// Keep forwarded instances in the spool (for re-sending); otherwise delete them.
    #[serde(default)]
    pub keep_forwarded: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            min_free_mb: default_min_free_mb(),
            keep_forwarded: false,
        }
    }
}

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

#[derive(Debug, Clone, Deserialize)]
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
fn default_max_pdu() -> u32 {
    262_144
}
fn default_max_associations() -> usize {
    32
}
fn default_association_timeout() -> u64 {
    30
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
fn default_webhook_timeout() -> u64 {
    5
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
fn default_hl7_charset() -> crate::hl7::Charset {
    crate::hl7::Charset::Ascii
}
fn default_hl7_application() -> String {
    "READGATE".into()
}
fn default_audit_app_name() -> String {
    "readgate".into()
}
fn default_audit_retry_max() -> u64 {
    60
}
fn default_log_level() -> String {
    "info".to_string()
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
        non_empty("gateway.id", &self.gateway.id).map_err(|m| invalid("gateway.id", m))?;
        non_empty("gateway.sending_facility", &self.gateway.sending_facility)
            .map_err(|m| invalid("gateway.sending_facility", m))?;
        if self.gateway.data_dir.as_os_str().is_empty() {
            return Err(invalid(
                "gateway.data_dir",
                "expected a directory path".into(),
            ));
        }
        ae_title(&self.dicom.ae_title).map_err(|m| invalid("dicom.ae_title", m))?;
        if !(4096..=16 * 1024 * 1024).contains(&self.dicom.max_pdu_length) {
            return Err(invalid(
                "dicom.max_pdu_length",
                format!(
                    "expected 4096 to 16777216 bytes, got {}",
                    self.dicom.max_pdu_length
                ),
            ));
        }
        if !(4096..=16 * 1024 * 1024).contains(&self.forward.max_pdu_length) {
            return Err(invalid(
                "forward.max_pdu_length",
                format!(
                    "expected 4096 to 16777216 bytes, got {}",
                    self.forward.max_pdu_length
                ),
            ));
        }
        if self.dicom.max_associations == 0 {
            return Err(invalid(
                "dicom.max_associations",
                "expected at least 1".into(),
            ));
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
        if self.forward.max_attempts == 0 {
            return Err(invalid(
                "forward.max_attempts",
                "expected at least 1".into(),
            ));
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
            ae_title(&peer.ae_title).map_err(|m| invalid(&key, m))?;
            if !seen.insert(peer.ae_title.trim().to_string()) {
                return Err(invalid(&key, format!("duplicate peer {:?}", peer.ae_title)));
            }
        }
        let mut ids = HashSet::new();
        for (i, d) in self.destinations.iter().enumerate() {
            non_empty("id", &d.id).map_err(|m| invalid(&format!("destinations[{i}].id"), m))?;
            if !ids.insert(d.id.as_str()) {
                return Err(invalid(
                    &format!("destinations[{i}].id"),
                    format!("duplicate destination id {:?}", d.id),
                ));
            }
            non_empty("facility", &d.facility)
                .map_err(|m| invalid(&format!("destinations[{i}].facility"), m))?;
            ae_title(&d.ae_title)
                .map_err(|m| invalid(&format!("destinations[{i}].ae_title"), m))?;
            if let Some(calling) = &d.calling_ae_title {
                ae_title(calling)
                    .map_err(|m| invalid(&format!("destinations[{i}].calling_ae_title"), m))?;
            }
            non_empty("host", &d.host)
                .map_err(|m| invalid(&format!("destinations[{i}].host"), m))?;
            if d.port == 0 {
                return Err(invalid(
                    &format!("destinations[{i}].port"),
                    "expected a TCP port 1-65535".into(),
                ));
            }
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
        self.policy
            .validate()
            .map_err(|(key, message)| invalid(&key, message))?;
        let known: Vec<&str> = self.destinations.iter().map(|d| d.id.as_str()).collect();
        self.policy
            .validate_destinations(&known)
            .map_err(|(key, message)| invalid(&key, message))?;
        if let Some(url) = &self.notify.webhook_url {
            crate::notify::Webhook::parse(url, std::time::Duration::from_secs(1))
                .map_err(|m| invalid("notify.webhook_url", m))?;
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
            non_empty("application", &h.application).map_err(|m| invalid("hl7.application", m))?;
        }
        self.ledger
            .validate()
            .map_err(|(key, message)| invalid(&key, message))?;
        if let Some(http) = &self.http {
            http.validate()
                .map_err(|(key, message)| invalid(&key, message))?;
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
        let target =
            crate::audit::syslog::Target::parse(url).map_err(|m| invalid("audit.syslog", m))?;
        match target.scheme {
            crate::audit::syslog::Scheme::Tcp => {
                for (key, v) in [("audit.tls_ca", &a.tls_ca), ("audit.tls_cert", &a.tls_cert)] {
                    if v.is_some() {
                        return Err(invalid(
                            key,
                            format!("only used with tls://, but audit.syslog is {url:?}"),
                        ));
                    }
                }
            }
            crate::audit::syslog::Scheme::Tls => {
                let Some(ca) = &a.tls_ca else {
                    return Err(invalid(
                        "audit.tls_ca",
                        "required for tls://: the PEM CA certificate the collector's certificate chains to".into(),
                    ));
                };
                // Load everything now: a wrong path should stop start-up, not surface as
                // a warning in the sender hours later.
                crate::audit::syslog::tls_config(
                    ca,
                    a.tls_cert.as_deref().zip(a.tls_key.as_deref()),
                )
                .map_err(|m| {
                    invalid(
                        if m.contains("client") {
                            "audit.tls_cert"
                        } else {
                            "audit.tls_ca"
                        },
                        m,
                    )
                })?;
            }
        }
        Ok(())
    }

    pub fn destination(&self, id: &str) -> Option<&Destination> {
        self.destinations.iter().find(|d| d.id == id)
    }

    pub fn database_path(&self) -> PathBuf {
        self.gateway.data_dir.join("readgate.db")
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.gateway.data_dir.join("spool")
    }
}

impl Destination {
    pub fn calling_ae<'a>(&'a self, config: &'a Config) -> &'a str {
        self.calling_ae_title
            .as_deref()
            .unwrap_or(&config.dicom.ae_title)
    }
}

fn non_empty(_what: &str, v: &str) -> Result<(), String> {
    if v.trim().is_empty() {
        Err("expected a non-empty string".into())
    } else {
        Ok(())
    }
}

/// AE titles: 1–16 characters of the default repertoire, no backslash or control characters.
fn ae_title(v: &str) -> Result<(), String> {
    let t = v.trim();
    if t.is_empty() || v.len() > 16 {
        return Err(format!(
            "expected an AE title of 1 to 16 characters, got {v:?}"
        ));
    }
    if v.chars()
        .any(|c| !c.is_ascii() || c.is_ascii_control() || c == '\\')
    {
        return Err(format!(
            "expected ASCII characters without backslash or control characters, got {v:?}"
        ));
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
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[gateway]
id = "gw-1"
data_dir = "var"
sending_facility = "HOSP-A"
[dicom]
ae_title = "READGATE"
listen = "0.0.0.0:11112"
[[dicom.peers]]
ae_title = "CT01"
[[destinations]]
id = "rc1"
facility = "RC1"
ae_title = "RC1PACS"
host = "127.0.0.1"
port = 11113
[[routes]]
destination = "rc1"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.dicom.stable_after_secs, 10);
        assert_eq!(c.dicom.duplicate_policy, DuplicatePolicy::Replace);
        assert_eq!(c.forward.max_attempts, 20);
    }

    #[test]
    fn unknown_key_is_named() {
        let text = MINIMAL.replace("stable", "x").replace(
            "listen = \"0.0.0.0:11112\"",
            "listen = \"0.0.0.0:11112\"\nstabel_after_secs = 3",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("stabel_after_secs"), "{err}");
    }

    #[test]
    fn bad_value_names_key() {
        let text = MINIMAL.replace("port = 11113", "port = \"eleven\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("`destinations.port` (line 16)"), "{err}");
        let text = MINIMAL.replace("destination = \"rc1\"", "destination = \"rc9\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("routes[0].destination") && err.contains("rc9"),
            "{err}"
        );
        let text = MINIMAL.replace("ae_title = \"CT01\"", "ae_title = \"A_TITLE_TOO_LONG_X\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("dicom.peers[0].ae_title"), "{err}");
    }

    #[test]
    fn audit_section() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.audit.syslog, None);
        assert_eq!(c.audit.app_name, "readgate");
        let with = |extra: &str| parse(&format!("{MINIMAL}\n[audit]\n{extra}"));
        let c = with("syslog = \"tcp://127.0.0.1:601\"\napp_name = \"rg-gw1\"").unwrap();
        assert_eq!(c.audit.syslog.as_deref(), Some("tcp://127.0.0.1:601"));
        for (extra, key) in [
            ("syslog = \"udp://x:514\"", "audit.syslog"),
            ("syslog = \"tcp://x\"", "audit.syslog"),
            ("syslog = \"tls://x:6514\"", "audit.tls_ca"),
            (
                "syslog = \"tls://x:6514\"\ntls_ca = \"/nonexistent/ca.pem\"",
                "audit.tls_ca",
            ),
            (
                "syslog = \"tcp://x:601\"\ntls_ca = \"ca.pem\"",
                "audit.tls_ca",
            ),
            ("tls_cert = \"c.pem\"", "audit.tls_key"),
            ("app_name = \"read gate\"", "audit.app_name"),
            ("retry_max_secs = 0", "audit.retry_max_secs"),
            ("sylog = \"tcp://x:601\"", "sylog"),
        ] {
            let err = with(extra).unwrap_err().to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
    }

    #[test]
    fn shipped_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
        let c = Config::load(&path).unwrap();
        assert_eq!(c.dicom.ae_title, "READGATE");
        assert_eq!(c.dicom.listen.port(), 11112);
        assert_eq!(c.destinations[0].port, 11113);
        assert_eq!(c.ledger.part_time_warning_percent, 20.0);
        assert_eq!(
            c.http.as_ref().map(|h| h.listen.port()),
            Some(8080),
            "shipped config serves HTTP on 8080"
        );
    }

    #[test]
    fn ledger_and_http_keys_are_validated_by_name() {
        let c = parse(MINIMAL).unwrap();
        assert!(!c.ledger.full_time_remote_eligible);
        assert_eq!(c.ledger.part_time_critical_percent, 30.0);
        assert!(c.http.is_none());
        for (extra, key) in [
            ("[ledger]\npart_time_warning_percent = 120\n", "ledger.part_time_warning_percent"),
            ("[ledger]\npart_time_warning_percent = 40\n", "ledger.part_time_critical_percent"),
            ("[ledger]\nunchanged_similarity = 1.5\n", "ledger.unchanged_similarity"),
            ("[ledger]\nburst_count = 1\n", "ledger.burst_count"),
            ("[ledger]\nutc_offset = \"JST\"\n", "ledger.utc_offset"),
            ("[ledger]\nmin_open_sec = 5\n", "min_open_sec"),
            (
                "[[ledger.readers]]\nids = []\nname = \"a\"\nfacility = \"RC1\"\nemployment = \"full_time\"\n",
                "ledger.readers[0].ids",
            ),
            (
                "[[ledger.readers]]\nids = [\"1\"]\nname = \"a\"\nfacility = \"RC1\"\nemployment = \"boss\"\n",
                "employment",
            ),
            (
                "[[ledger.readers]]\nids = [\"1\"]\nname = \"a\"\nfacility = \"RC1\"\nemployment = \"trainee\"\nvalid_to = \"2026-02-30\"\n",
                "ledger.readers[0].valid_to",
            ),
            (
                "[[ledger.places]]\nfacility = \"RC1\"\nnetworks = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n",
                "ledger.places[0].networks[1]",
            ),
            (
                "[http]\n[[http.tokens]]\nname = \"v\"\ntoken_sha256 = \"abc\"\n",
                "http.tokens[0].token_sha256",
            ),
            ("[http]\nlisten = \"nowhere\"\n", "http.listen"),
        ] {
            let err = parse(&format!("{MINIMAL}{extra}")).unwrap_err().to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
    }
}
