//! `[audit]`: live forwarding of the audit trail to a syslog collector (IHE ATNA).

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// `tcp://host:port` or `tls://host:port` (RFC 5425, usually port 6514): ship every
    /// audit entry as an ATNA message, live. Absent: the trail stays in the database only.
    pub syslog: Option<String>,
    /// PEM file with the CA certificate(s) the collector's certificate must chain to
    /// (required for `tls://`).
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate chain and key, for collectors that authenticate nodes
    /// (IHE ATNA mutual TLS). Both or neither.
    pub tls_cert: Option<PathBuf>,
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

fn default_audit_app_name() -> String {
    "readgate".into()
}
fn default_audit_retry_max() -> u64 {
    60
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Tcp,
    Tls,
}

/// `tcp://host:port` or `tls://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
}

impl Target {
    /// `tcp://host:port` or `tls://host:port`; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Target, super::BadValue> {
        let (scheme, rest) = if let Some(r) = s.strip_prefix("tcp://") {
            (Scheme::Tcp, r)
        } else if let Some(r) = s.strip_prefix("tls://") {
            (Scheme::Tls, r)
        } else {
            return Err(format!("expected tcp://host:port or tls://host:port, got {s:?}").into());
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?}: a port is required (RFC 5425 uses 6514)"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{s:?}: expected a TCP port 1-65535"))?;
        if host.is_empty() {
            return Err(format!("{s:?}: expected a host name or address").into());
        }
        Ok(Target {
            scheme,
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.scheme {
            Scheme::Tcp => "tcp",
            Scheme::Tls => "tls",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}
