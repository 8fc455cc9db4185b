//! The forwarders: one per configured destination. A reload that adds a destination
//! starts its forwarder; one that removes a destination lets its forwarder finish the
//! association it has open and stop (what is queued for it stays queued).

use super::{Forwarder, Wakeups};
use crate::config::Live;
use crate::priors::cache::PriorCache;
use crate::spool::Spool;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

pub struct Fleet {
    pub live: Live,
    pub store: Arc<Store>,
    pub spool: Arc<Spool>,
    pub wakeups: Arc<Wakeups>,
    pub audit: Arc<crate::audit::AuditLog>,
    pub priors: Option<Arc<PriorCache>>,
    /// This node: forwarders claim studies under its lease.
    pub node: crate::cluster::Node,
}

impl Fleet {
    /// Keeps one forwarder per destination of the configuration in force until
    /// `shutdown`, then waits for every forwarder to finish.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut changes = self.live.subscribe();
        let mut workers = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut config_open = true;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let config = changes.borrow_and_update().clone();
            for destination in &config.destinations {
                if running.values().any(|id| *id == destination.id) {
                    continue;
                }
                let forwarder = Forwarder::new(
                    self.live.clone(),
                    destination.clone(),
                    self.store.clone(),
                    self.spool.clone(),
                    &self.wakeups,
                    self.audit.clone(),
                    self.node.clone(),
                )
                .with_priors(self.priors.clone());
                let handle = workers.spawn(forwarder.run(shutdown.clone()));
                running.insert(handle.id(), destination.id.clone());
                info!(destination = %destination.id, "forwarder started");
            }
            tokio::select! {
                changed = changes.changed(), if config_open => {
                    config_open = changed.is_ok();
                }
                Some(done) = workers.join_next_with_id() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => {
                            warn!(error = %e, "a forwarder ended abnormally; it is started again in 1 s");
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                            e.id()
                        }
                    };
                    running.remove(&id);
                }
                _ = shutdown.changed() => {}
            }
        }
        while workers.join_next().await.is_some() {}
    }
}
