//! Forwarding: one worker per destination drains that destination's queue from the store,
//! keeping an association open while work keeps coming, and backing off exponentially
//! when the reading facility is unreachable or refuses instances. The fleet starts and
//! stops workers as a reload adds and removes destinations.

pub mod fleet;
mod outgoing;
mod priors;
mod scu;
mod stamp;

pub use outgoing::Outgoing;
pub use scu::{Scu, ScuError, StoreOutcome, StoreScu};

use crate::config::{Config, Destination, Live};
use crate::dicom::dimse::status;
use crate::spool::Spool;
use crate::store::{Delivery, QueuedInstance, Store};
use crate::time::now_ms;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

const BATCH: usize = 500;

/// Wakes the worker of a destination when work is queued for it, and keeps what is on
/// its way ([`InFlight`]).
#[derive(Default)]
pub struct Wakeups {
    by_destination: std::sync::Mutex<HashMap<String, Arc<Notify>>>,
    /// Shared by every forwarder and the study stage.
    pub in_flight: Arc<InFlight>,
}

/// The instances on their way, so that a streamed study's hold says exactly what left.
/// A forwarder tags, sends and marks delivered each instance under a read permit; the
/// study stage stops a stream (or holds a streamed study) under the write permit, then
/// counts a change. A forwarder whose batch was read before a change reads its queue
/// again: what it holds in memory may have been taken back.
#[derive(Default)]
pub struct InFlight {
    lock: tokio::sync::RwLock<()>,
    changes: std::sync::atomic::AtomicU64,
}

impl InFlight {
    /// Held while one instance is tagged, sent and marked delivered.
    pub async fn sending(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.lock.read().await
    }

    /// How many decisions changed what a forwarder may send so far.
    pub fn changes(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Runs `f` with no instance on its way, then counts a change. Blocking: call it
    /// from a blocking thread (the study stage's), never from async code.
    pub fn stopping<T>(&self, f: impl FnOnce() -> T) -> T {
        let _all = self.lock.blocking_write();
        let out = f();
        self.changed();
        out
    }

    /// A decision changed what instances carry (their tags): forwarders read their
    /// queue and the decision again.
    pub fn changed(&self) {
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Wakeups {
    pub fn new(config: &Config) -> Self {
        let wakeups = Wakeups::default();
        for d in &config.destinations {
            wakeups.get(&d.id);
        }
        wakeups
    }

    pub fn wake(&self, destination: &str) {
        self.get(destination).notify_one();
    }

    /// The destination's wake-up (made on first use: a reload may add destinations).
    fn get(&self, destination: &str) -> Arc<Notify> {
        self.by_destination
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(destination.to_string())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }
}

pub struct Forwarder {
    live: Live,
    /// `live` as of the current pass (refreshed by [`Forwarder::refresh`]).
    config: Arc<Config>,
    /// This destination as of the current pass.
    destination: Destination,
    store: Arc<Store>,
    spool: Arc<Spool>,
    wake: Arc<Notify>,
    /// Shared with the study stage (see [`InFlight`]).
    in_flight: Arc<InFlight>,
    audit: Arc<crate::audit::AuditLog>,
    /// The retrieved priors, shared with the prefetcher and the other destinations
    /// (`None` without a `[[pacs]]`).
    cache: Option<Arc<crate::priors::cache::PriorCache>>,
    /// `cache` when this destination gets priors now (`send_priors`), else `None`.
    priors: Option<Arc<crate::priors::cache::PriorCache>>,
    /// Studies whose priors are at the destination (bounded: see `priors.rs`).
    prepared: std::sync::Mutex<std::collections::HashSet<String>>,
    /// This node: studies are claimed, and deliveries recorded, under its lease.
    node: crate::cluster::Node,
}

impl Forwarder {
    pub fn new(
        live: Live,
        destination: Destination,
        store: Arc<Store>,
        spool: Arc<Spool>,
        wakeups: &Wakeups,
        audit: Arc<crate::audit::AuditLog>,
        node: crate::cluster::Node,
    ) -> Self {
        let wake = wakeups.get(&destination.id);
        Forwarder {
            config: live.current(),
            live,
            destination,
            store,
            spool,
            wake,
            in_flight: wakeups.in_flight.clone(),
            audit,
            cache: None,
            priors: None,
            prepared: Default::default(),
            node,
        }
    }

    /// Sends each study's priors, taken from `cache`, before it (when this destination
    /// takes priors: `Config::sends_priors`).
    pub fn with_priors(mut self, cache: Option<Arc<crate::priors::cache::PriorCache>>) -> Self {
        self.cache = cache;
        self.refresh();
        self
    }

    /// Takes the configuration in force for the next pass; false when a reload removed
    /// this destination.
    fn refresh(&mut self) -> bool {
        let config = self.live.current();
        let Some(destination) = config.destination(&self.destination.id).cloned() else {
            return false;
        };
        self.priors = self
            .cache
            .clone()
            .filter(|_| config.sends_priors(&destination));
        self.destination = destination;
        self.config = config;
        true
    }

    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            if !self.refresh() {
                info!(destination = %self.destination.id,
                    "destination removed from the configuration; its forwarder stops (its queue stays)");
                break;
            }
            let changes = self.in_flight.changes();
            let batch = match self.claim().await {
                Some(b) => b,
                None => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if batch.is_empty() {
                let id = self.destination.id.clone();
                let next = self
                    .blocking(move |s| s.next_attempt_for(&id))
                    .await
                    .flatten();
                // Re-check at least every few seconds: operators release studies from
                // another process (`readgate release`), which cannot wake this one.
                let wait = match next {
                    Some(at) => Duration::from_millis((at - now_ms()).clamp(10, 2_000) as u64),
                    None => Duration::from_secs(2),
                };
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let batch = self.with_priors_sent(batch).await;
            if batch.is_empty() {
                continue;
            }
            self.send_session(batch, changes, &mut shutdown).await;
        }
        info!(destination = %self.destination.id, "forwarder stopped");
    }

    /// Instances due for this destination, of studies this node holds (or takes now)
    /// the forwarding lease of; None (logged) when the store fails.
    async fn claim(&self) -> Option<Vec<QueuedInstance>> {
        let (id, node) = (self.destination.id.clone(), self.node.clone());
        self.blocking(move |s| s.queued_for(&id, &node.lease(), now_ms(), BATCH))
            .await
    }

    /// Runs a store call off the async threads; None (logged) when it fails.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> crate::store::Result<T> + Send + 'static,
    ) -> Option<T> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                warn!(error = %e, "store access failed in the forwarder");
                None
            }
            Err(e) => {
                warn!(error = %e, "store task failed in the forwarder");
                None
            }
        }
    }

    /// One association: sends `batch` (read when [`InFlight::changes`] was `changes`),
    /// then whatever else gets queued while it is open.
    async fn send_session(
        &self,
        mut batch: Vec<QueuedInstance>,
        mut changes: u64,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let dest = &self.destination;
        let kinds: Vec<(String, String)> = batch
            .iter()
            .map(|i| (i.sop_class_uid.clone(), i.transfer_syntax.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let calling = dest.calling_ae(&self.config).to_string();
        let mut scu = match Scu::connect(dest, &calling, &kinds, &self.config.forward).await {
            Ok(scu) => scu,
            Err(e) => {
                let studies = study_set(&batch);
                warn!(destination = %dest.id, error = %e, studies = studies.len(), "cannot reach destination; will retry");
                self.attempt_failed(studies, e.to_string()).await;
                return;
            }
        };
        let started = std::time::Instant::now();
        let mut sent = 0u64;
        let mut stamps = HashMap::new();
        loop {
            let mut failed_studies: HashMap<String, String> = HashMap::new();
            let mut reassociate = false;
            for inst in &batch {
                if failed_studies.contains_key(&inst.study_uid) {
                    continue; // its study backs off as a whole
                }
                if !scu.can_carry(&inst.sop_class_uid, &inst.transfer_syntax) {
                    reassociate = true;
                    continue;
                }
                // One instance on its way: a stream stopped meanwhile may have taken the
                // rest of this batch back, so it is read again.
                let _sending = self.in_flight.sending().await;
                if self.in_flight.changes() != changes {
                    break;
                }
                let tagged = match self.tagged_copy(inst, &mut stamps).await {
                    Ok(p) => p,
                    Err(why) => {
                        let why = why.to_string();
                        warn!(destination = %dest.id, sop_instance = %inst.sop_uid, error = %why, "cannot tag an instance: not sent");
                        let (uid, w) = (inst.sop_uid.clone(), why.clone());
                        self.blocking(move |s| s.record_instance_failure(&uid, None, &w))
                            .await;
                        failed_studies.insert(inst.study_uid.clone(), why);
                        continue;
                    }
                };
                let outcome = scu
                    .store(
                        &tagged,
                        &inst.sop_class_uid,
                        &inst.sop_uid,
                        &inst.transfer_syntax,
                    )
                    .await;
                drop(tagged);
                match outcome {
                    Ok(StoreOutcome {
                        status: code,
                        comment,
                    }) if status::is_success_or_warning(code) => {
                        if code != status::SUCCESS {
                            info!(destination = %dest.id, sop_instance = %inst.sop_uid, status = format!("{code:04X}"),
                                comment = comment.as_deref().unwrap_or(""), "destination stored with a warning");
                        }
                        sent += 1;
                        let done = inst.clone();
                        let keep = self.config.storage.keep_forwarded;
                        let spool = self.spool.clone();
                        let node = self.node.clone();
                        let forwarded = self
                            .blocking(move |s| {
                                let r = s.mark_forwarded(&done, code, &node.lease(), now_ms());
                                // Under a lease lost meanwhile, the file stays for the
                                // node that holds the study now.
                                if matches!(r, Ok(Delivery::Recorded | Delivery::StudyForwarded))
                                    && !keep
                                {
                                    let _ = spool.remove(&done.path);
                                }
                                // When the study is complete at the destination: its time
                                // to reader, from its row.
                                r.map(|delivery| {
                                    (delivery == Delivery::StudyForwarded).then(|| {
                                        s.study_row(&done.study_uid)
                                            .ok()
                                            .flatten()
                                            .and_then(|row| row.time_to_reader_secs())
                                    })
                                })
                            })
                            .await;
                        if let Some(Some(time_to_reader)) = forwarded {
                            let secs = time_to_reader.unwrap_or(0.0);
                            if time_to_reader.is_some() {
                                crate::metrics::time_to_reader(&dest.id, secs);
                            }
                            info!(destination = %dest.id, facility = %dest.facility, study_uid = %inst.study_uid,
                                time_to_reader_ms = (secs * 1000.0) as u64, "study forwarded");
                            let entry = crate::audit::NewEntry::new(crate::audit::kind::STUDY_FORWARDED, &dest.ae_title)
                                .study(&inst.study_uid)
                                .detail(serde_json::json!({"destination": dest.id, "facility": dest.facility}));
                            let audit = self.audit.clone();
                            let _ = tokio::task::spawn_blocking(move || audit.record(entry)).await;
                        }
                    }
                    Ok(StoreOutcome {
                        status: code,
                        comment,
                    }) => {
                        let why = format!(
                            "{} refused {} with status {code:04X}{}",
                            dest.ae_title,
                            inst.sop_uid,
                            comment
                                .as_deref()
                                .map(|c| format!(" ({c})"))
                                .unwrap_or_default()
                        );
                        warn!(destination = %dest.id, sop_instance = %inst.sop_uid, status = format!("{code:04X}"),
                            comment = comment.as_deref().unwrap_or(""), "destination refused an instance");
                        let (uid, w) = (inst.sop_uid.clone(), why.clone());
                        self.blocking(move |s| s.record_instance_failure(&uid, Some(code), &w))
                            .await;
                        failed_studies.insert(inst.study_uid.clone(), why);
                    }
                    Err(ScuError::LocalFile { path, reason }) => {
                        let why = format!("cannot read spooled instance {path}: {reason}");
                        warn!(destination = %dest.id, sop_instance = %inst.sop_uid, error = %why, "local file problem");
                        let (uid, w) = (inst.sop_uid.clone(), why.clone());
                        self.blocking(move |s| s.record_instance_failure(&uid, None, &w))
                            .await;
                        failed_studies.insert(inst.study_uid.clone(), why);
                    }
                    Err(e) => {
                        // The association is gone: every study still in this batch retries.
                        warn!(destination = %dest.id, error = %e, "association to destination failed");
                        let mut studies = study_set(&batch);
                        studies.retain(|s| !failed_studies.contains_key(s));
                        for (study, why) in failed_studies {
                            self.attempt_failed(vec![study], why).await;
                        }
                        self.attempt_failed(studies, e.to_string()).await;
                        return;
                    }
                }
            }
            for (study, why) in failed_studies {
                self.attempt_failed(vec![study], why).await;
            }
            if reassociate || *shutdown.borrow() {
                break;
            }
            // Keep the association for work that arrives meanwhile (e.g. the rest of a
            // study still being received), up to the linger time.
            let linger = Duration::from_millis(self.config.forward.linger_ms);
            let deadline = tokio::time::Instant::now() + linger;
            batch = loop {
                if self.in_flight.changes() != changes {
                    // A decision changed: the tags are made from it again.
                    stamps.clear();
                }
                changes = self.in_flight.changes();
                let next = self.claim().await.unwrap_or_default();
                if !next.is_empty() {
                    // A study whose priors have not been sent goes back to the main loop.
                    if next.iter().any(|i| !self.priors_ready(&i.study_uid)) {
                        break Vec::new();
                    }
                    break next;
                }
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep_until(deadline) => break Vec::new(),
                    _ = shutdown.changed() => break Vec::new(),
                }
            };
            if batch.is_empty() {
                break;
            }
        }
        info!(destination = %dest.id, instances = sent, elapsed_ms = started.elapsed().as_millis() as u64, "association to destination released");
        scu.release().await;
    }

    /// A tagged working copy of `inst` (its study's accountability block, plus the
    /// order's context where the image lacks it), streamed into the spool's tmp/.
    async fn tagged_copy(
        &self,
        inst: &QueuedInstance,
        stamps: &mut Stamps,
    ) -> Result<Outgoing, CopyError> {
        if !stamps.contains_key(&inst.study_uid) {
            let (config, uid) = (self.config.clone(), inst.study_uid.clone());
            let stamp = self
                .blocking(move |s| Ok(stamp::for_study(s, &config, &uid)))
                .await
                .ok_or(CopyError::StoreUnavailable)?;
            stamps.insert(inst.study_uid.clone(), stamp);
        }
        let (accountability, copy) = match stamps.get(&inst.study_uid) {
            Some(Ok(s)) => s.clone(),
            Some(Err(e)) => return Err(CopyError::Stamp(e.clone())),
            None => return Err(CopyError::StoreUnavailable),
        };
        tag_copy(&self.spool, &inst.path, accountability, copy).await
    }

    async fn attempt_failed(&self, studies: Vec<String>, error: String) {
        if studies.is_empty() {
            return;
        }
        crate::metrics::forward_failed(&self.destination.id, studies.len());
        let max = self.config.forward.max_attempts;
        let base = self.config.forward.retry_base_secs;
        let cap = self.config.forward.retry_max_secs;
        let failed = self
            .blocking(move |s| {
                let backoff = move |n: u32| backoff_ms(base, cap, n);
                s.record_attempt_failure(&studies, &error, now_ms(), &backoff, max)
            })
            .await
            .unwrap_or_default();
        for study in failed {
            warn!(destination = %self.destination.id, study_uid = %study, attempts = max,
                "study marked failed after its last attempt; `readgate studies --state failed` lists it");
        }
    }
}

/// Delay after `attempts` failures: base · 2^(attempts−1) seconds, capped.
fn backoff_ms(base_secs: u64, cap_secs: u64, attempts: u32) -> i64 {
    let exp = attempts.saturating_sub(1).min(30);
    let secs = base_secs.saturating_mul(1u64 << exp).min(cap_secs);
    (secs * 1000) as i64
}

/// A tagged copy of the spool file `path`: in memory up to `outgoing::IN_MEMORY_MAX`, else
/// streamed into the spool's tmp/ (memory does not grow with the instance).
async fn tag_copy(
    spool: &Spool,
    path: &str,
    accountability: crate::tag::Accountability,
    copy: crate::tag::ContextCopy,
) -> Result<Outgoing, CopyError> {
    let source = spool.absolute(path);
    let size = std::fs::metadata(&source)
        .map_err(|e| CopyError::file(&source, e))?
        .len();
    let mut tagged = Outgoing::for_source(spool, size);
    tokio::task::spawn_blocking(move || {
        let src = std::fs::File::open(&source).map_err(|e| CopyError::file(&source, e))?;
        let report = match &mut tagged {
            Outgoing::Memory(bytes) => {
                crate::tag::tag_part10_file(src, bytes, &accountability, &copy)
            }
            Outgoing::Scratch(out) | Outgoing::Kept(out) => {
                let dst = std::fs::File::create(&*out).map_err(|e| CopyError::file(out, e))?;
                crate::tag::tag_part10_file(src, dst, &accountability, &copy)
            }
        }
        .map_err(|e| CopyError::Tag(e.to_string()))?;
        for (attr, why) in &report.skipped {
            warn!(attribute = %attr, reason = %why, "order context not copied into the image");
        }
        Ok(tagged)
    })
    .await
    .map_err(|e| CopyError::Task(e.to_string()))?
}

type Stamps = HashMap<
    String,
    Result<(crate::tag::Accountability, crate::tag::ContextCopy), stamp::StampError>,
>;

/// Why an instance's tagged copy could not be made (it is not sent; the text is kept as
/// the instance's and study's last error).
#[derive(Debug, thiserror::Error)]
enum CopyError {
    #[error("{0}")]
    Stamp(stamp::StampError),
    #[error("store unavailable")]
    StoreUnavailable,
    #[error("{}: {message}", path.display())]
    File {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("tagging failed: {0}")]
    Tag(String),
    #[error("tagging task failed: {0}")]
    Task(String),
}

impl CopyError {
    fn file(path: &std::path::Path, e: std::io::Error) -> CopyError {
        CopyError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

fn study_set(batch: &[QueuedInstance]) -> Vec<String> {
    batch
        .iter()
        .map(|i| i.study_uid.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(super::backoff_ms(5, 300, 1), 5_000);
        assert_eq!(super::backoff_ms(5, 300, 2), 10_000);
        assert_eq!(super::backoff_ms(5, 300, 4), 40_000);
        assert_eq!(super::backoff_ms(5, 300, 60), 300_000);
    }
}
