//! readgate's HTTP server (axum, on the daemon's tokio runtime): `GET /healthz` and the
//! reading systems' `POST /api/v1/read-events`. The web console ([`console`], with
//! sessions and roles from [`auth`]) is merged into this router.
//!
//! Integrations authenticate with a bearer token; the config holds only its SHA-256
//! (`[[http.tokens]]`), compared in constant time. `readgate token add NAME` makes one.

pub mod api;
pub mod auth;
pub mod console;
pub mod metrics;
pub mod openapi;
pub mod read_events;
pub mod serve;

use crate::config::ledger::LedgerConfig;
use crate::ledger::Ledger;
use crate::store::Store;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;
use tracing::{info, warn};

pub use crate::config::http::{HttpConfig, TokenConfig};
pub use crate::model::Role;

use crate::digest::{ct_eq, parse_sha256_hex as parse_hash};
pub use crate::digest::{hex, new_token, sha256_hex};
use sha2::{Digest, Sha256};

/// Shared state of the HTTP handlers.
pub struct WebState {
    pub store: Arc<Store>,
    ledger_config: RwLock<LedgerConfig>,
    ledger: RwLock<Arc<Ledger>>,
    roster_version: Mutex<(i64, i64)>,
    /// `[[http.tokens]]`: each integration's name, token hash and role.
    tokens: RwLock<Arc<Tokens>>,
    /// The web console's users and sessions (sessions in the store).
    pub auth: auth::Auth,
    /// `[gateway] id` and `sending_facility` (the console's accountability page).
    pub gateway: (String, String),
    /// The audit trail actions are recorded in (set by `readgate serve`).
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    /// Wakes the study stage (re-evaluation).
    pub stored: Option<Arc<tokio::sync::Notify>>,
    /// Wakes the forwarders (release, retry).
    pub wakeups: Option<Arc<crate::forward::Wakeups>>,
    /// Where rejected instances are removed from.
    pub spool_dir: Option<std::path::PathBuf>,
    /// The configured destinations (the queue lists each, even when empty).
    destinations: RwLock<Vec<String>>,
    /// For ledger reports.
    pub gateway_id: String,
    pub sending_facility: String,
    /// `[http] metrics`.
    pub metrics: bool,
    /// Password checks allowed at once (`http.max_concurrent_logins`).
    pub login_checks: Arc<tokio::sync::Semaphore>,
    /// Tampering findings already recorded as `security_alert`.
    pub alerted: Arc<crate::audit::Alerted>,
    /// How the priors that go with a study are chosen (set by `readgate serve`).
    pub prior_choice: Option<crate::priors::view::Choice>,
}

/// A reloaded configuration, checked by [`WebState::prepare`], ready to install.
pub struct Prepared {
    ledger: Ledger,
    version: (i64, i64),
    config: crate::config::Config,
}

/// `[[http.tokens]]` as the API checks them.
#[derive(Default)]
struct Tokens {
    hashes: Vec<(String, [u8; 32])>,
    roles: std::collections::HashMap<String, Role>,
}

impl Tokens {
    fn of(tokens: &[crate::config::http::TokenConfig]) -> Tokens {
        Tokens {
            hashes: tokens
                .iter()
                .filter_map(|t| {
                    parse_hash(t.token_sha256.trim()).map(|h| (t.name.trim().to_string(), h))
                })
                .collect(),
            roles: tokens
                .iter()
                .map(|t| (t.name.trim().to_string(), t.role))
                .collect(),
        }
    }
}

impl WebState {
    pub fn new(
        store: Arc<Store>,
        http: &HttpConfig,
        ledger_config: &LedgerConfig,
    ) -> Result<WebState, crate::ledger::LedgerError> {
        let version = store.roster_version()?;
        let ledger = Ledger::load(ledger_config, Some(&store))?;
        Ok(WebState {
            store: store.clone(),
            ledger_config: RwLock::new(ledger_config.clone()),
            ledger: RwLock::new(Arc::new(ledger)),
            roster_version: Mutex::new(version),
            tokens: RwLock::new(Arc::new(Tokens::of(&http.tokens))),
            // Over HTTPS the session cookie is always Secure.
            auth: auth::Auth::new(
                store.clone(),
                http.users.clone(),
                http.secure_cookies || http.tls_cert.is_some(),
            ),
            gateway: (String::new(), String::new()),
            audit: None,
            stored: None,
            wakeups: None,
            spool_dir: None,
            destinations: RwLock::default(),
            gateway_id: String::new(),
            sending_facility: String::new(),
            metrics: http.metrics,
            login_checks: Arc::new(tokio::sync::Semaphore::new(http.max_concurrent_logins)),
            alerted: Arc::default(),
            prior_choice: None,
        })
    }

    /// Connects the API's actions to the running pipeline and its audit trail.
    pub fn with_pipeline(
        mut self,
        config: &crate::config::Config,
        audit: Arc<crate::audit::AuditLog>,
        stored: Arc<tokio::sync::Notify>,
        wakeups: Arc<crate::forward::Wakeups>,
    ) -> WebState {
        self.audit = Some(audit);
        self.stored = Some(stored);
        self.wakeups = Some(wakeups);
        self.spool_dir = Some(config.spool_dir());
        self.destinations = RwLock::new(config.destinations.iter().map(|d| d.id.clone()).collect());
        self.gateway_id = config.gateway.id.clone();
        self.sending_facility = config.gateway.sending_facility.clone();
        self.gateway = (self.gateway_id.clone(), self.sending_facility.clone());
        self.prior_choice =
            (!config.pacs.is_empty()).then(|| crate::priors::view::Choice::of(config));
        self
    }

    /// Loads a reloaded configuration's roster and places (`[ledger]`), changing nothing
    /// yet: a `[ledger]` that cannot be loaded refuses the reload. Blocking (store).
    pub fn prepare(
        &self,
        config: &crate::config::Config,
    ) -> Result<Prepared, crate::ledger::LedgerError> {
        Ok(Prepared {
            ledger: Ledger::load(&config.ledger, Some(&self.store))?,
            version: self.store.roster_version()?,
            config: config.clone(),
        })
    }

    /// Puts a prepared configuration's users, tokens, roster, places and destinations in
    /// force. Blocking (store: the sessions of removed or changed users are deleted).
    pub fn install(&self, prepared: Prepared) {
        let Prepared {
            ledger,
            version,
            config,
        } = prepared;
        *self
            .ledger_config
            .write()
            .unwrap_or_else(|p| p.into_inner()) = config.ledger.clone();
        *self.ledger.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ledger);
        *self
            .roster_version
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = version;
        if let Some(http) = &config.http {
            *self.tokens.write().unwrap_or_else(|p| p.into_inner()) =
                Arc::new(Tokens::of(&http.tokens));
            self.auth.replace_users(http.users.clone());
        }
        *self.destinations.write().unwrap_or_else(|p| p.into_inner()) =
            config.destinations.iter().map(|d| d.id.clone()).collect();
    }

    /// `[ledger]` as in force now.
    pub fn ledger_config(&self) -> LedgerConfig {
        self.ledger_config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The configured destinations' ids.
    pub fn destinations(&self) -> Vec<String> {
        self.destinations
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn tokens(&self) -> Arc<Tokens> {
        self.tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The token's integration name, if it may do this: 401 without a valid token, 403
    /// when an action needs `admin` and the token is a `viewer`'s.
    pub fn authorize(&self, headers: &HeaderMap, admin: bool) -> Result<String, ApiError> {
        let name = self.authenticate(headers)?;
        if admin && self.tokens().roles.get(&name).copied().unwrap_or_default() != Role::Admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("token {name:?} has role viewer; this action needs an admin token ([[http.tokens]] role = \"admin\")"),
                Some("authorization"),
            ));
        }
        Ok(name)
    }

    /// Records an audit entry off the async workers (the trail fsyncs every entry).
    pub async fn record(&self, entry: crate::audit::NewEntry) -> Option<crate::audit::EntryRef> {
        let audit = self.audit.clone()?;
        tokio::task::spawn_blocking(move || audit.record(entry))
            .await
            .ok()
            .flatten()
    }

    /// The operator actions on this state's store, audit log, spool and wake-ups.
    pub fn operator(&self) -> crate::actions::Operator<'_> {
        crate::actions::Operator {
            store: &self.store,
            audit: self.audit.as_deref(),
            spool_dir: self.spool_dir.as_deref(),
            wakeups: self.wakeups.as_deref(),
            decider: self.stored.as_deref(),
        }
    }

    /// The integration a bearer token belongs to. Every configured hash is compared, in
    /// constant time, whatever matched before.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized("missing bearer token"));
        };
        let value = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("invalid token"))?;
        let token = match value.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            _ => {
                return Err(ApiError::unauthorized(
                    "expected `Authorization: Bearer <token>`",
                ))
            }
        };
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found: Option<&str> = None;
        let tokens = self.tokens();
        for (name, hash) in &tokens.hashes {
            if ct_eq(&presented, hash) && found.is_none() {
                found = Some(name);
            }
        }
        found
            .map(str::to_string)
            .ok_or_else(|| ApiError::unauthorized("invalid token"))
    }

    /// The ledger, reloaded when a roster was imported since it was loaded.
    pub fn ledger(&self) -> Arc<Ledger> {
        if let Ok(v) = self.store.roster_version() {
            let mut seen = self
                .roster_version
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if *seen != v {
                let config = self
                    .ledger_config
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                match Ledger::load(&config, Some(&self.store)) {
                    Ok(l) => {
                        *self.ledger.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(l);
                        *seen = v;
                        info!("roster reloaded");
                    }
                    Err(e) => warn!(error = %e, "roster reload failed; keeping the previous one"),
                }
            }
        }
        self.ledger
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// An API error: status and `{error, field}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>, field: Option<&str>) -> Self {
        ApiError {
            status,
            error: error.into(),
            field: field.map(str::to_string),
        }
    }
    pub fn bad(field: &str, error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, Some(field))
    }
    pub fn invalid(field: &str, error: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, error, Some(field))
    }
    pub fn unauthorized(error: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, error, Some("authorization"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.error, "field": self.field }));
        if self.status == StatusCode::UNAUTHORIZED {
            (
                self.status,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"readgate\"")],
                body,
            )
                .into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/read-events", post(read_events::post))
        .merge(console::routes(state.clone()))
        .merge(api::routes())
        .merge(openapi::routes())
        .merge(metrics::routes())
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::middleware::map_response(security_headers))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

/// Headers on every response (finding L5): no page may be framed (clickjacking of the
/// admin forms), no script runs (the console has none), forms post only to readgate,
/// content types are not sniffed, and no URL leaks to other sites in a Referer.
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::HeaderValue;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok", "service": "readgate" }))
}

/// Binds `[http] listen` and serves the router until `shutdown` turns true. Returns the
/// address.
pub async fn start(
    http: &HttpConfig,
    state: Arc<WebState>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    if http.tokens.is_empty() {
        warn!("[http] has no [[http.tokens]]: every POST /api/v1/read-events is refused (401)");
    }
    serve::start(http, router(state), shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_hash_and_compare() {
        let (token, hash) = new_token().unwrap();
        assert!(token.starts_with("rg_") && token.len() == 67);
        assert_eq!(sha256_hex(&token), hash);
        let h = parse_hash(&hash).unwrap();
        assert!(ct_eq(&h, &h));
        let mut other = h;
        other[31] ^= 1;
        assert!(!ct_eq(&h, &other));
        assert!(parse_hash("abc").is_none());
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
