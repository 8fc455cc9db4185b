//! `[database]`: where readgate keeps its state. Absent, or without `url`: SQLite in
//! `gateway.data_dir` (`readgate.db`), one machine. With `url`: the PostgreSQL database it
//! names, which several readgate nodes can share (issue #13).

use serde::Deserialize;
use std::path::PathBuf;

/// `[database]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgresql://user[:password]@host[:port]/database[?options]` (libpq's URL form);
    /// unset: SQLite in `data_dir`.
    pub url: Option<String>,
}

/// Where the database is, as the store and the audit trail open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (`<data_dir>/readgate.db`).
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

impl DatabaseConfig {
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
