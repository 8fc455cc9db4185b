//! `[database]`: where readgate keeps its state. Absent, or without `url`: SQLite in
//! `gateway.data_dir` (`readgate.db`), one machine. With `url`: the PostgreSQL database it
//! names, which several readgate nodes can share (issue #13).

use serde::Deserialize;
use std::path::PathBuf;

/// `[database]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgresql://user[:password]@host[:port]/database[?options]` (libpq's URL form);
    /// unset: SQLite in `data_dir`.
    pub url: Option<String>,
    /// How often a node records that it is alive (`readgate nodes`) and renews the lease
    /// on the cluster's timers when it runs them.
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: u64,
    /// How long a lease (a study being forwarded, the cluster's timers) holds without
    /// renewal: after a node dies, another takes its work over this much later.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// PostgreSQL: how many connections the store keeps to the database, at most (one per
    /// store operation in progress: receives, HL7 batches, forwarders, pages). The audit
    /// trail and the cluster's heartbeat have connections of their own besides.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            heartbeat_secs: default_heartbeat_secs(),
            lease_secs: default_lease_secs(),
            pool_size: default_pool_size(),
        }
    }
}

fn default_heartbeat_secs() -> u64 {
    5
}

fn default_lease_secs() -> u64 {
    30
}

fn default_pool_size() -> usize {
    8
}

/// Where the database is, as the store and the audit trail open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (`<data_dir>/readgate.db`).
    Sqlite(PathBuf),
    /// A PostgreSQL URL, and how many connections the store may keep to it.
    Postgres { url: String, pool_size: usize },
}

impl DatabaseConfig {
    /// Why the lease timing does not work, naming the key: a lease must outlive two
    /// missed heartbeats, or a live node loses its work to another.
    pub fn check_timing(&self) -> Result<(), (&'static str, String)> {
        if !(1..=3600).contains(&self.heartbeat_secs) {
            return Err((
                "database.heartbeat_secs",
                format!("expected 1 to 3600 seconds, got {}", self.heartbeat_secs),
            ));
        }
        if !(2..=256).contains(&self.pool_size) {
            return Err((
                "database.pool_size",
                format!("expected 2 to 256 connections, got {}", self.pool_size),
            ));
        }
        if self.lease_secs < 3 * self.heartbeat_secs || self.lease_secs > 86_400 {
            return Err((
                "database.lease_secs",
                format!(
                    "expected at least 3 × database.heartbeat_secs ({}) and at most 86400 seconds, got {}",
                    3 * self.heartbeat_secs,
                    self.lease_secs
                ),
            ));
        }
        Ok(())
    }

    /// Why `url` is not a PostgreSQL URL readgate can use, if it is not.
    pub fn check(&self) -> Result<(), String> {
        match &self.url {
            Some(url) => check_postgres_url(url),
            None => Ok(()),
        }
    }
}

/// Why `url` is not a PostgreSQL URL readgate can use, if it is not (`[database] url`,
/// `readgate db copy --to`). The message never holds the URL's password.
pub fn check_postgres_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
        return Err(format!(
            "expected a PostgreSQL URL (postgresql://user@host:port/database), got {:?}",
            url.split_once("://").map_or(url, |(s, _)| s)
        ));
    }
    let target = crate::db::pgtls::parse(url)?;
    target
        .driver_url
        .parse::<tokio_postgres::Config>()
        .map_err(|e| format!("not a PostgreSQL URL readgate can use: {e}"))?;
    // The CA file of verify-ca / verify-full is read now: a wrong path is named at start.
    crate::db::pgtls::connector(&target.mode).map(|_| ())
}
