//! `[http]`: the REST API, the web console and metrics: where they listen, the API
//! tokens, the console users, HTTPS.

use super::Invalid;
use crate::model::Role;
use argon2::PasswordHash;
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// One per integration (reading-system vendor).
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Web console users (`readgate user add NAME --role viewer|admin` prints one).
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Mark the console's session cookie `Secure` (always so when readgate serves HTTPS
    /// itself): set it when the console is behind a TLS proxy.
    #[serde(default)]
    pub secure_cookies: bool,
    /// Password checks running at once (each argon2id check takes ~19 MiB and a core
    /// for a fraction of a second); further logins wait up to 10 s, then get 503.
    #[serde(default = "default_login_checks")]
    pub max_concurrent_logins: usize,
    /// HTTP connections open at once; more are closed as they arrive.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// HTTP connections one client address may hold at once (a browser opens about 6).
    #[serde(default = "default_max_connections_per_host")]
    pub max_connections_per_host: usize,
    /// A request's headers must arrive within this time of the connection opening or
    /// of the previous response (an idle keep-alive connection is closed after it).
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Reading a request's body and answering it may take this long; then 408.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Serve Prometheus text at `GET /metrics` (no token).
    #[serde(default)]
    pub metrics: bool,
    /// Serve HTTPS: PEM certificate chain and private key (both or neither).
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The integration's name, recorded with each of its events (`rest:<name>`).
    pub name: String,
    /// Lower-case hex SHA-256 of the token (`readgate token add NAME` prints both).
    pub token_sha256: String,
    /// `viewer` (reads) or `admin` (also actions: release, reject, re-evaluate, retry).
    #[serde(default)]
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub role: Role,
    /// argon2id PHC string (`readgate user add NAME --role ...` prints it).
    pub password_hash: String,
}

fn default_login_checks() -> usize {
    2
}

fn default_max_connections() -> usize {
    256
}

fn default_max_connections_per_host() -> usize {
    32
}

fn default_header_timeout() -> u64 {
    10
}

fn default_request_timeout() -> u64 {
    60
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

impl HttpConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(Invalid::new(
                "http.tls_cert",
                "tls_cert and tls_key go together (PEM files)",
            ));
        }
        let at_least_one = [
            (
                "http.max_concurrent_logins",
                self.max_concurrent_logins as u64,
            ),
            ("http.max_connections", self.max_connections as u64),
            (
                "http.max_connections_per_host",
                self.max_connections_per_host as u64,
            ),
            ("http.header_timeout_secs", self.header_timeout_secs),
            ("http.request_timeout_secs", self.request_timeout_secs),
        ];
        if let Some((key, _)) = at_least_one.iter().find(|(_, v)| *v == 0) {
            return Err(Invalid::new(*key, "expected at least 1"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            if t.name.trim().is_empty() {
                return Err(Invalid::new(
                    format!("http.tokens[{i}].name"),
                    "expected a non-empty name",
                ));
            }
            if !names.insert(t.name.trim()) {
                return Err(Invalid::new(
                    format!("http.tokens[{i}].name"),
                    format!("duplicate token name {:?}", t.name),
                ));
            }
            if crate::digest::parse_sha256_hex(t.token_sha256.trim()).is_none() {
                return Err(Invalid::new(
                    format!("http.tokens[{i}].token_sha256"),
                    "expected 64 hex digits (the SHA-256 of the token; `readgate token add NAME` prints it)",
                ));
            }
        }
        validate_users(&self.users)
    }
}

pub fn validate_users(users: &[UserConfig]) -> Result<(), Invalid> {
    let mut names = std::collections::HashSet::new();
    for (i, u) in users.iter().enumerate() {
        if u.name.trim().is_empty() {
            return Err(Invalid::new(
                format!("http.users[{i}].name"),
                "expected a non-empty name",
            ));
        }
        if !names.insert(u.name.trim()) {
            return Err(Invalid::new(
                format!("http.users[{i}].name"),
                format!("duplicate user name {:?}", u.name),
            ));
        }
        match PasswordHash::new(&u.password_hash) {
            Ok(h) if h.algorithm.as_str() == "argon2id" => {}
            _ => {
                return Err(Invalid::new(
                    format!("http.users[{i}].password_hash"),
                    "expected an argon2id PHC string ($argon2id$...; `readgate user add NAME --role viewer|admin` prints one)",
                ))
            }
        }
    }
    Ok(())
}
