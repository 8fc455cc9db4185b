//! Reloading the configuration file while serving (`systemctl reload readgate`, which
//! sends SIGHUP, or `readgate reload`).
//!
//! The file is loaded and validated exactly as `readgate config-check` does. An invalid
//! file is refused: the running configuration stays, and the attempt is recorded as
//! `config_rejected`. A valid one is merged with the running configuration
//! ([`crate::config::live::merge`]: listener addresses, storage and the other keys of
//! [`crate::config::live::RESTART_KEYS`] keep their running values and are named as
//! needing a restart), recorded as `config_loaded`, and only then put in force.
//! Associations and MLLP connections in progress are not touched: each finishes with the
//! configuration it started with.

use super::Running;
use crate::audit::{kind, NewEntry};
use crate::config::{live, Config};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use tracing::{info, warn};

/// Sets the log filter (`[log] level`) of the running process; the error says why a
/// level was not taken.
pub type SetLogLevel = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Reloaded {
    /// The new configuration is in force.
    Applied {
        file: String,
        /// The sections whose changes are in force now (empty: nothing changed).
        applied: Vec<String>,
        /// Changed keys that keep their running value until readgate is restarted.
        restart_needed: Vec<String>,
    },
    /// The new configuration was refused; the running one stays.
    Rejected { file: String, error: String },
}

impl Reloaded {
    /// One line for the log and the terminal.
    pub fn summary(&self) -> String {
        match self {
            Reloaded::Applied {
                file,
                applied,
                restart_needed,
            } => {
                let mut s = if applied.is_empty() {
                    format!("{file}: reloaded; nothing that a reload applies had changed")
                } else {
                    format!("{file}: reloaded; in force now: {}", applied.join(", "))
                };
                if !restart_needed.is_empty() {
                    s.push_str(&format!(
                        "; changed but kept until readgate is restarted: {}",
                        restart_needed.join(", ")
                    ));
                }
                s
            }
            Reloaded::Rejected { error, .. } => {
                format!("reload refused, the running configuration stays: {error}")
            }
        }
    }
}

impl Running {
    /// Sets how a reload changes the log level (`readgate serve` passes its log filter).
    pub fn on_log_level(&mut self, set: SetLogLevel) {
        self.log_level = Some(set);
    }

    /// Loads `path` and puts what a reload may change in force (see the module's text).
    pub async fn reload(&self, path: &Path) -> Reloaded {
        let _one_at_a_time = self.reloading.lock().await;
        let file = path.display().to_string();
        let owned = path.to_path_buf();
        let loaded = match tokio::task::spawn_blocking(move || Config::load(&owned)).await {
            Ok(loaded) => loaded.map_err(|e| e.to_string()),
            Err(e) => Err(format!("internal error while loading: {e}")),
        };
        let new = match loaded {
            Ok(new) => new,
            Err(error) => return self.reject(file, error).await,
        };
        let running = self.live.current();
        let merged = live::merge(&running, new);
        let prepared = match &self.web {
            Some(web) => {
                let (web, config) = (web.clone(), merged.config.clone());
                match tokio::task::spawn_blocking(move || web.prepare(&config)).await {
                    Ok(Ok(p)) => Some(p),
                    Ok(Err(e)) => {
                        return self
                            .reject(file, format!("`ledger`: cannot load the roster: {e}"))
                            .await
                    }
                    Err(e) => {
                        return self
                            .reject(file, format!("internal error while loading: {e}"))
                            .await
                    }
                }
            }
            None => None,
        };
        let applied: Vec<String> = merged.applied.iter().map(|s| s.to_string()).collect();
        let restart_needed: Vec<String> = merged
            .restart_needed
            .iter()
            .map(|s| s.to_string())
            .collect();
        let config = &merged.config;
        let entry = NewEntry::new(kind::CONFIG_LOADED, "system").detail(serde_json::json!({
            "reload": true,
            "file": file,
            "applied": applied,
            "restart_needed": restart_needed,
            "gateway": config.gateway.id,
            "policy": {"id": config.policy.id, "version": config.policy.version},
            "destinations": config.destinations.iter().map(|d| serde_json::json!({"id": d.id, "facility": d.facility, "ae_title": d.ae_title})).collect::<Vec<_>>(),
            "routes": config.routes.len(),
            "peers": config.dicom.peers.len(),
        }));
        // The entry first: a configuration whose loading cannot be recorded is not used.
        let audit = self.audit.clone();
        match tokio::task::spawn_blocking(move || audit.append(&entry)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let error = format!("its audit entry could not be written ({e}); not applied");
                warn!(%error, "reload refused");
                return Reloaded::Rejected { file, error };
            }
            Err(e) => {
                return Reloaded::Rejected {
                    file,
                    error: format!("internal error while recording: {e}"),
                }
            }
        }
        let level_changed = merged.config.log.level != running.log.level;
        let level = merged.config.log.level.clone();
        self.live.replace(merged.config);
        if let (Some(web), Some(prepared)) = (&self.web, prepared) {
            // Off the async workers: it deletes the sessions of changed users.
            let web = web.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || web.install(prepared)).await {
                warn!(error = %e, "installing the reloaded web configuration failed");
            }
        }
        if level_changed {
            if let Some(set) = &self.log_level {
                if let Err(e) = set(&level) {
                    warn!(level = %level, error = %e, "log.level not changed");
                }
            }
        }
        // What may pass or route differently now is decided again.
        let decides = ["dicom", "destinations", "routes", "policy"];
        if merged.applied.iter().any(|a| decides.contains(a)) {
            let store = self.store.clone();
            let why = format!("configuration reloaded ({})", applied.join(", "));
            match tokio::task::spawn_blocking(move || {
                store.reconsider_all_held(&why, crate::time::now_ms())
            })
            .await
            {
                Ok(Ok(n)) => {
                    if n > 0 {
                        info!(
                            studies = n,
                            "held studies are decided again under the reloaded configuration"
                        );
                    }
                    // Held studies, and the streams of the studies being received.
                    self.stored.notify_one();
                }
                Ok(Err(e)) => warn!(error = %e, "held studies not decided again after the reload"),
                Err(e) => warn!(error = %e, "held studies not decided again after the reload"),
            }
        }
        let outcome = Reloaded::Applied {
            file,
            applied,
            restart_needed,
        };
        info!("{}", outcome.summary());
        outcome
    }

    /// Refuses a reload: recorded as `config_rejected`; the running configuration stays.
    async fn reject(&self, file: String, error: String) -> Reloaded {
        warn!(%error, "reload refused; the running configuration stays");
        let entry = NewEntry::new(kind::CONFIG_REJECTED, "system").detail(serde_json::json!({
            "file": file, "error": error, "outcome": 4,
        }));
        let audit = self.audit.clone();
        let recorded = tokio::task::spawn_blocking(move || audit.append(&entry)).await;
        let error = match recorded {
            Ok(Ok(_)) => error,
            Ok(Err(e)) => format!("{error} (the refusal's audit entry could not be written: {e})"),
            Err(e) => format!("{error} (the refusal was not recorded: {e})"),
        };
        Reloaded::Rejected { file, error }
    }
}
