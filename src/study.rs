//! Studies: instances are grouped by Study Instance UID (in the store); a study is
//! complete once `stable_after_secs` pass without a new instance. This stage notices
//! that, asks the decision stage, and queues or holds the study accordingly.

use crate::decide::{Decide, Decision};
use crate::forward::Wakeups;
use crate::store::{now_ms, DecisionRecord, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

pub struct StudyStage {
    pub store: Arc<Store>,
    pub decider: Arc<dyn Decide>,
    pub stable_after: Duration,
    /// Woken by the receiver after each stored instance.
    pub stored: Arc<Notify>,
    pub wakeups: Arc<Wakeups>,
}

impl StudyStage {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let stable_ms = self.stable_after.as_millis() as i64;
        loop {
            let store = self.store.clone();
            let decider = self.decider.clone();
            let wakeups = self.wakeups.clone();
            let next = tokio::task::spawn_blocking(move || {
                complete_stable_studies(&store, decider.as_ref(), &wakeups, stable_ms)
            })
            .await;
            let wait = match next {
                Ok(Ok(Some(oldest))) => {
                    Duration::from_millis((oldest + stable_ms - now_ms()).clamp(1, 3_600_000) as u64)
                }
                Ok(Ok(None)) => Duration::from_secs(3600),
                Ok(Err(e)) => {
                    warn!(error = %e, "study stage: store access failed; retrying");
                    Duration::from_secs(1)
                }
                Err(e) => {
                    warn!(error = %e, "study stage task failed; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = self.stored.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => break,
            }
        }
    }
}

/// Decides every study that is stable now; returns when the next receiving study was
/// last touched (to sleep until it may be stable).
pub fn complete_stable_studies(
    store: &Store,
    decider: &dyn Decide,
    wakeups: &Wakeups,
    stable_ms: i64,
) -> crate::store::Result<Option<i64>> {
    for uid in store.studies_stable_since(now_ms() - stable_ms)? {
        decide_study(store, decider, wakeups, &uid)?;
    }
    store.oldest_receiving()
}

/// Evaluates one receiving study and records the outcome.
pub fn decide_study(
    store: &Store,
    decider: &dyn Decide,
    wakeups: &Wakeups,
    study_uid: &str,
) -> crate::store::Result<()> {
    let snapshot = store.snapshot(study_uid)?;
    let (record, destination) = match decider.decide(&snapshot) {
        Decision::Forward {
            destination,
            facility,
            because,
        } => (
            DecisionRecord {
                forward: true,
                destination: Some(destination.clone()),
                facility: Some(facility),
                verdict: "PASS".into(),
                detail: because,
                ..Default::default()
            },
            Some(destination),
        ),
        Decision::Hold { reasons } => {
            let codes: Vec<&str> = reasons.iter().map(|r| r.code.as_str()).collect();
            (
                DecisionRecord {
                    forward: false,
                    verdict: "HELD".into(),
                    reasons_json: serde_json::to_string(&reasons).ok(),
                    detail: codes.join(","),
                    ..Default::default()
                },
                None,
            )
        }
    };
    if store
        .record_decision(&snapshot, &record, now_ms())?
        .is_some()
    {
        match &destination {
            Some(dest) => {
                info!(study_uid, instances = snapshot.instance_count, destination = %dest, "study complete: queued");
                wakeups.wake(dest);
            }
            None => warn!(study_uid, reasons = %record.detail, "study complete: held"),
        }
    }
    Ok(())
}
