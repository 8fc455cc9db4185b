//! This process as a node of a cluster: several readgate nodes sharing one PostgreSQL
//! database (`docs/deploy.md`). On SQLite the same code runs with one node.
//!
//! Every node receives DICOM and HL7 and forwards (claiming studies with leases:
//! `store/queue.rs`). The timers — deciding complete studies, their streams, the
//! re-evaluation of held studies when context arrives, shipping the audit trail to
//! syslog — run on one node at a time: the holder of the cluster lease `timers`
//! ([`Leadership`]). The node task ([`run`]) records the node's heartbeat and takes or
//! renews that lease every `database.heartbeat_secs`; when the holder dies its lease
//! lapses after `database.lease_secs` and another node takes it over.
//!
//! Leases compare times written by different nodes: the nodes' clocks must agree (NTP)
//! to well within a heartbeat. A node believes it leads only until one heartbeat before
//! its lease ends, so a node that cannot reach the database stops leading before another
//! may start.

use crate::store::{JoinRefused, Lease, NodeBeat, Store};
use crate::time::now_ms;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

/// The cluster lease of the node that runs the timers.
pub const TIMERS: &str = "timers";

/// How often the timers' holder looks for work other nodes recorded (instances they
/// received, HL7 context that makes a held study worth deciding again) when the
/// database is shared.
pub const SHARED_POLL: Duration = Duration::from_secs(1);

/// This node: its identity, its lease timing and whether it runs the timers now.
#[derive(Clone)]
pub struct Node {
    pub beat: NodeBeat,
    heartbeat: Duration,
    lease_ms: i64,
    /// Several nodes may share the database (PostgreSQL): work recorded by another node
    /// is looked for every [`SHARED_POLL`].
    pub shared: bool,
    /// Until when (ms) this node may act as the timers' holder; 0: it does not.
    leads_until: Arc<AtomicI64>,
    /// Woken when this node starts leading (the timers run at once).
    pub became_leader: Arc<Notify>,
}

impl Node {
    /// This process as node `config.gateway.id`, listening on `listens`.
    pub fn new(config: &crate::config::Config, listens: String) -> Node {
        let incarnation = crate::digest::random_bytes::<16>()
            .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>())
            .unwrap_or_else(|_| format!("{}-{}", std::process::id(), now_ms()));
        Node {
            beat: NodeBeat {
                id: config.gateway.id.clone(),
                incarnation,
                host: hostname(),
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                listens,
            },
            heartbeat: Duration::from_secs(config.database.heartbeat_secs),
            lease_ms: (config.database.lease_secs * 1000) as i64,
            shared: config.database.url.is_some(),
            leads_until: Arc::new(AtomicI64::new(0)),
            became_leader: Arc::new(Notify::new()),
        }
    }

    /// The lease this node claims forwarding work with.
    pub fn lease(&self) -> Lease<'_> {
        Lease {
            node: &self.beat.id,
            ms: self.lease_ms,
        }
    }

    /// Whether this node runs the timers now.
    pub fn leads(&self) -> bool {
        self.leads_until.load(Ordering::SeqCst) > now_ms()
    }

    /// A handle that answers [`Node::leads`] (for a thread that must not hold the node).
    pub fn leadership(&self) -> Leadership {
        Leadership(self.leads_until.clone())
    }

    /// Records the node as started and runs its first heartbeat (blocking), so that it
    /// knows whether it leads before its stages start. Refused when another live
    /// process has the same `[gateway] id`.
    pub fn join(&self, store: &Store) -> anyhow::Result<()> {
        let (host, me) = (self.beat.host.clone(), self.beat.pid as i64);
        // A run on this host whose process is gone (killed, crashed) is not a rival.
        let still_running = |other_host: &str, pid: i64| {
            other_host != host || (pid != me && is_readgate_process(pid))
        };
        match store.join_cluster(&self.beat, now_ms(), self.lease_ms, &still_running)? {
            Ok(()) => {}
            Err(refused @ JoinRefused::SameId { .. }) => return Err(refused.into()),
        }
        let leads = self.beat(store)?;
        crate::metrics::set_node(&self.beat.id);
        info!(node = %self.beat.id, leads, shared = self.shared, "joined the cluster");
        Ok(())
    }

    /// One heartbeat (blocking): records the node alive and takes or renews the timers'
    /// lease. Returns whether it leads now.
    fn beat(&self, store: &Store) -> crate::store::Result<bool> {
        let now = now_ms();
        if !store.heartbeat(&self.beat, now)? {
            warn!(node = %self.beat.id, "this node's row belongs to another run of the same gateway.id; not leading");
            self.leads_until.store(0, Ordering::SeqCst);
            crate::metrics::RUNS_TIMERS_UNTIL.store(0, Ordering::SeqCst);
            return Ok(false);
        }
        let held = store.hold_lease(TIMERS, &self.beat.id, now, self.lease_ms)?;
        let until = match held {
            // Believed one heartbeat less than the database grants (see the module doc).
            Some(_) => now + self.lease_ms - self.heartbeat.as_millis() as i64,
            None => 0,
        };
        self.leads_until.store(until, Ordering::SeqCst);
        crate::metrics::RUNS_TIMERS_UNTIL.store(until, Ordering::SeqCst);
        Ok(held.is_some())
    }

    /// Heartbeats until shutdown, then records the node stopped and gives its leases
    /// back ([`Node::join`] ran the first heartbeat).
    pub async fn run(self, store: Arc<Store>, mut shutdown: watch::Receiver<bool>) {
        let mut leading = self.leads();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.heartbeat) => {}
                _ = shutdown.changed() => break,
            }
            let (node, st) = (self.clone(), store.clone());
            let now_leads = match tokio::task::spawn_blocking(move || node.beat(&st)).await {
                Ok(Ok(leads)) => leads,
                Ok(Err(e)) => {
                    warn!(error = %e, "cluster: cannot record this node's heartbeat; retrying");
                    self.leads()
                }
                Err(e) => {
                    warn!(error = %e, "cluster: heartbeat task failed; retrying");
                    self.leads()
                }
            };
            if now_leads != leading {
                leading = now_leads;
                if leading {
                    info!(node = %self.beat.id, "this node runs the timers (study completion, re-evaluation, audit shipping)");
                    self.became_leader.notify_one();
                } else {
                    info!(node = %self.beat.id, "another node runs the timers now");
                }
            }
        }
        self.leads_until.store(0, Ordering::SeqCst);
        crate::metrics::RUNS_TIMERS_UNTIL.store(0, Ordering::SeqCst);
        let beat = self.beat.clone();
        match tokio::task::spawn_blocking(move || store.leave_cluster(&beat, now_ms())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(error = %e, "cluster: cannot record this node stopped; its leases lapse instead")
            }
            Err(e) => {
                warn!(error = %e, "cluster: leaving task failed; this node's leases lapse instead")
            }
        }
    }
}

/// Whether this node runs the timers now (a cheap, clonable view of [`Node::leads`]).
#[derive(Clone)]
pub struct Leadership(Arc<AtomicI64>);

impl Leadership {
    pub fn leads(&self) -> bool {
        self.0.load(Ordering::SeqCst) > now_ms()
    }
}

/// Whether process `pid` on this host is a readgate (its command line names it).
fn is_readgate_process(pid: i64) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmd| String::from_utf8_lossy(&cmd).contains("readgate"))
        .unwrap_or(false)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
