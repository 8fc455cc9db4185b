//! Retrieved priors, shared by the prefetcher ([`super::prefetch`]) and every
//! destination's forwarder: a prior is retrieved from its PACS once (C-GET, or C-MOVE to
//! readgate's own listener) into `data_dir/priors/cache`, then sent from there to each
//! destination that takes it. A study whose priors were fetched ahead waits for nothing
//! when it leaves.
//!
//! Each retrieval is audited (`query`, before it is asked) and its outcome recorded: a
//! failure in `prior_fetch_failures`, which the decision stage reads (PRIORS_UNAVAILABLE
//! names the prior), a success clearing it and sending the patient's held studies back
//! to the decision stage.
//!
//! The cache holds files only while the process runs (emptied at start: a prior is
//! retrieved again rather than trusted half-written), within `priors.cache_max_mb`:
//! [`PriorCache::sweep`] removes priors every destination has, then those unused for a
//! day, then the longest unused while over the limit. A prior being sent is never
//! removed under its sender.

use super::move_scu::move_study;
use super::retrieve::{get_study, Retrieved};
use crate::audit::AuditLog;
use crate::config::pacs::Retrieve;
use crate::config::Live;
use crate::receive::moves::Moves;
use crate::spool::Spool;
use crate::store::{ContextKeys, Store};
use crate::time::now_ms;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tracing::{info, warn};

/// A prior unused this long is removed even if some destination still lacks it (the
/// orders whose images were expected are a day old).
const KEEP: Duration = Duration::from_secs(24 * 3600);

/// Why a prior is retrieved (audit detail and log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Ahead of the study's decision (`priors.prefetch`).
    Prefetch,
    /// As the study leaves.
    Send,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Prefetch => "prefetch",
            Purpose::Send => "send",
        }
    }
}

#[derive(Default)]
struct Slot {
    held: Option<Arc<Retrieved>>,
    used: Option<Instant>,
}

pub struct PriorCache {
    config: Live,
    store: Arc<Store>,
    audit: Arc<AuditLog>,
    moves: Arc<Moves>,
    /// Woken when held studies were sent back to the decision stage.
    reconsider: Arc<Notify>,
    spool: Arc<Spool>,
    /// One slot per prior study: its lock is held while it is retrieved, so a prior is
    /// retrieved once however many ask for it at the same time.
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl PriorCache {
    /// Empties `data_dir/priors` and opens the cache in it. Blocking (file system).
    pub fn open(
        config: Live,
        store: Arc<Store>,
        audit: Arc<AuditLog>,
        moves: Arc<Moves>,
        reconsider: Arc<Notify>,
    ) -> std::io::Result<PriorCache> {
        let now = config.current();
        let root = now.gateway.data_dir.join("priors");
        match std::fs::remove_dir_all(&root) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let dir = root.join("cache");
        crate::spool::private_dir(&root)?;
        let spool = Arc::new(Spool::open(
            &dir,
            now.storage.min_free_mb.saturating_mul(1024 * 1024),
        )?);
        Ok(PriorCache {
            config,
            store,
            audit,
            moves,
            reconsider,
            spool,
            slots: Mutex::default(),
        })
    }

    /// Where the retrieved files are (relative paths in [`Retrieved`] are from here).
    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }

    fn slot(&self, uid: &str) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = match self.slots.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        slots.entry(uid.to_string()).or_default().clone()
    }

    /// Whether the prior is here now (not while it is being retrieved).
    pub fn has(&self, uid: &str) -> bool {
        let slot = match self.slots.lock() {
            Ok(s) => s.get(uid).cloned(),
            Err(_) => None,
        };
        slot.is_some_and(|s| s.try_lock().is_ok_and(|s| s.held.is_some()))
    }

    /// Bytes held (priors being retrieved not counted).
    /// `priors.cache_max_mb` in bytes.
    pub fn limit(&self) -> u64 {
        self.config
            .current()
            .priors
            .cache_max_mb
            .saturating_mul(1024 * 1024)
    }

    pub fn bytes(&self) -> u64 {
        let slots: Vec<_> = match self.slots.lock() {
            Ok(s) => s.values().cloned().collect(),
            Err(_) => return 0,
        };
        slots
            .iter()
            .filter_map(|s| {
                s.try_lock()
                    .ok()
                    .and_then(|s| s.held.as_ref().map(|r| r.bytes()))
            })
            .sum()
    }

    /// The prior, from here or retrieved from `pacs_id` now. `for_study_uid` is the
    /// study it is wanted for (audit detail). The error says why in words.
    pub async fn fetch(
        &self,
        pacs_id: &str,
        prior_uid: &str,
        for_study_uid: &str,
        purpose: Purpose,
    ) -> Result<Arc<Retrieved>, String> {
        let slot = self.slot(prior_uid);
        let mut slot = slot.lock().await;
        if let Some(held) = slot.held.clone() {
            slot.used = Some(Instant::now());
            return Ok(held);
        }
        let config = self.config.current();
        let Some(pacs) = config.pacs.iter().find(|p| p.id == pacs_id) else {
            return Err(format!("no [[pacs]] with id {pacs_id}"));
        };
        let operation = match pacs.retrieve {
            Retrieve::Get => "C-GET",
            Retrieve::Move => "C-MOVE",
        };
        let what = serde_json::json!({"pacs": pacs.id, "ae_title": pacs.ae_title,
            "operation": operation, "study_uid": prior_uid, "for_study_uid": for_study_uid,
            "purpose": purpose.as_str()});
        let audit = self.audit.clone();
        tokio::task::spawn_blocking(move || audit.record_pacs_query("system", what))
            .await
            .map_err(|e| format!("not asked: internal error ({e})"))?
            .map_err(|e| format!("not asked: the retrieval's audit entry ({e})"))?;
        let calling = pacs.calling_ae(&config);
        let fetched = match pacs.retrieve {
            Retrieve::Get => get_study(pacs, &calling, prior_uid, &self.spool).await,
            Retrieve::Move => {
                let destination = &config.dicom.ae_title;
                move_study(
                    pacs,
                    &calling,
                    destination,
                    prior_uid,
                    &self.spool,
                    &self.moves,
                )
                .await
            }
        };
        let retrieved = match fetched {
            Ok(r) if !r.instances.is_empty() => Ok(r),
            Ok(r) => Err(format!(
                "the PACS sent no instance ({} sub-operations failed)",
                r.failed
            )),
            Err(e) => Err(e.to_string()),
        };
        crate::metrics::pacs_retrieve(
            &pacs.id,
            retrieved.is_ok(),
            retrieved.as_ref().map(|r| r.bytes()).unwrap_or(0),
        );
        match &retrieved {
            Ok(r) => info!(pacs = %pacs.id, prior_uid, operation, purpose = purpose.as_str(),
                instances = r.instances.len(), bytes = r.bytes(), failed = r.failed,
                elapsed_ms = r.millis, "prior retrieved"),
            Err(e) => warn!(pacs = %pacs.id, prior_uid, operation, purpose = purpose.as_str(),
                error = %e, "prior could not be retrieved"),
        }
        self.record(
            prior_uid,
            &pacs.id,
            retrieved
                .as_ref()
                .map(|r| (r.instances.len() as u32, r.bytes())),
        )
        .await;
        let retrieved = Arc::new(retrieved?);
        slot.held = Some(retrieved.clone());
        slot.used = Some(Instant::now());
        Ok(retrieved)
    }

    /// Records the outcome for the decision stage; a prior retrieved after failing sends
    /// its patient's held studies back to be decided again.
    async fn record(&self, prior_uid: &str, pacs_id: &str, outcome: Result<(u32, u64), &String>) {
        let store = self.store.clone();
        let (uid, pacs) = (prior_uid.to_string(), pacs_id.to_string());
        let outcome = outcome.map_err(|e| e.to_string());
        let recorded = tokio::task::spawn_blocking(move || {
            let recovered = store.record_prior_fetch(
                &uid,
                &pacs,
                now_ms(),
                outcome.as_ref().map(|r| *r).map_err(|e| e.as_str()),
            )?;
            if !recovered {
                return Ok(Vec::new());
            }
            let keys = ContextKeys {
                patient_ids: store.pacs_study_patients(&uid)?,
                ..Default::default()
            };
            store.reconsider_held(&keys, "prior retrieved from the PACS", now_ms())
        })
        .await;
        match recorded {
            Ok(Ok(reopened)) => {
                if !reopened.is_empty() {
                    self.reconsider.notify_one();
                }
            }
            _ => warn!(pacs = %pacs_id, "the prior's retrieval could not be recorded"),
        }
    }

    /// Removes priors no longer needed (see the module's description).
    pub async fn sweep(&self) {
        let now = Instant::now();
        // Unused priors: none being retrieved or sent.
        let mut idle: Vec<(String, Arc<Retrieved>, Instant)> = Vec::new();
        {
            let slots = match self.slots.lock() {
                Ok(s) => s,
                Err(_) => return,
            };
            for (uid, slot) in slots.iter() {
                let Ok(s) = slot.try_lock() else { continue };
                if let Some(held) = &s.held {
                    if Arc::strong_count(held) == 1 {
                        idle.push((uid.clone(), held.clone(), s.used.unwrap_or(now)));
                    }
                }
            }
        }
        if idle.is_empty() {
            return;
        }
        let (store, config) = (self.store.clone(), self.config.current());
        let uids: Vec<String> = idle.iter().map(|(u, _, _)| u.clone()).collect();
        let everywhere = tokio::task::spawn_blocking(move || {
            let takers: Vec<&str> = config
                .destinations
                .iter()
                .filter(|d| config.sends_priors(d))
                .map(|d| d.id.as_str())
                .collect();
            uids.into_iter()
                .filter(|u| {
                    takers
                        .iter()
                        .all(|d| store.destination_has(d, u).unwrap_or(false))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let limit = self.limit();
        let mut total = self.bytes();
        idle.sort_by_key(|(_, _, used)| *used);
        let mut gone = Vec::new();
        for (uid, held, used) in idle {
            if everywhere.contains(&uid) || now.duration_since(used) >= KEEP || total > limit {
                total = total.saturating_sub(held.bytes());
                gone.push((uid, held));
            }
        }
        let mut removed = Vec::new();
        for (uid, held) in gone {
            let slot = self.slot(&uid);
            let Ok(mut s) = slot.try_lock() else { continue };
            // Still unused: this list and the slot are the only holders.
            if s.held.as_ref().is_some_and(|h| Arc::strong_count(h) == 2) {
                s.held = None;
                removed.push(held);
            }
        }
        if let Ok(mut slots) = self.slots.lock() {
            slots.retain(|_, s| s.try_lock().map_or(true, |s| s.held.is_some()));
        }
        let spool = self.spool.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for held in removed {
                for f in &held.instances {
                    let _ = spool.remove(&f.path);
                }
            }
        })
        .await;
    }
}
