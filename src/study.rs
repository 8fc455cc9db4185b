//! Studies: instances are grouped by Study Instance UID (in the store); a study is
//! complete once `stable_after_secs` pass without a new instance. This stage notices
//! that, asks the decision stage, and queues or holds the study accordingly.

use crate::decide::{assemble, Decide, Verdict};
use crate::forward::Wakeups;
use crate::model::Disposition;
use crate::notify::StudyEvent;
use crate::store::{DecisionRecord, Store};
use crate::time::now_ms;
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
    pub notify: Notifications,
}

impl StudyStage {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let stable_ms = self.stable_after.as_millis() as i64;
        loop {
            let store = self.store.clone();
            let decider = self.decider.clone();
            let wakeups = self.wakeups.clone();
            let notify = self.notify.clone();
            let next = tokio::task::spawn_blocking(move || {
                complete_stable_studies(&store, decider.as_ref(), &wakeups, &notify, stable_ms)
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
    notify: &Notifications,
    stable_ms: i64,
) -> crate::store::Result<Option<i64>> {
    for uid in store.studies_stable_since(now_ms() - stable_ms)? {
        decide_study(store, decider, wakeups, notify, &uid)?;
    }
    store.oldest_receiving()
}

/// Evaluates one receiving study and records the outcome.
pub fn decide_study(
    store: &Store,
    decider: &dyn Decide,
    wakeups: &Wakeups,
    notify: &Notifications,
    study_uid: &str,
) -> crate::store::Result<()> {
    let snapshot = store.snapshot(study_uid)?;
    let previous = store.decision_of(study_uid)?.unwrap_or_default();
    let ctx = assemble::from_store(
        store,
        &snapshot,
        decider.utc_offset_minutes(),
        &decider.pacs_ids(),
    )?;
    let decision = decider.decide(&ctx);
    let forward = decision.forwards();
    let codes: Vec<&str> = decision.reasons.iter().map(|r| r.code.as_str()).collect();
    let reasons_json = (!decision.reasons.is_empty())
        .then(|| serde_json::to_string(&decision.reasons).ok())
        .flatten();
    let detail = match (&decision.route, forward) {
        (Some(route), true) if codes.is_empty() => route.because.clone(),
        (Some(route), true) => format!("{}; still missing: {}", route.because, codes.join(", ")),
        _ => codes.join(", "),
    };
    let record = DecisionRecord {
        forward,
        destination: decision.route.as_ref().map(|r| r.destination.clone()),
        facility: decision.route.as_ref().map(|r| r.facility.clone()),
        verdict: decision.disposition(),
        reasons_json: reasons_json.clone(),
        evaluation_json: decision
            .evaluation
            .as_ref()
            .and_then(|e| serde_json::to_string(e).ok()),
        context_json: serde_json::to_string(&ctx).ok(),
        detail,
    };
    if store
        .record_decision(&snapshot, &record, now_ms())?
        .is_none()
    {
        return Ok(()); // a new instance arrived meanwhile: decided again once stable
    }
    let was_held = previous.verdict == Some(Disposition::Held);
    if let Some(audit) = &notify.audit {
        let kind = if forward {
            crate::audit::kind::STUDY_RELEASED
        } else {
            crate::audit::kind::STUDY_HELD
        };
        let mut entry = crate::audit::NewEntry::new(kind, "system")
            .study(study_uid)
            .detail(serde_json::json!({
                "verdict": record.verdict,
                "reasons": codes,
                "destination": record.destination,
                "facility": record.facility,
                "policy": decision.evaluation.as_ref().map(|e| serde_json::json!({"id": e.policy_id, "version": e.policy_version})),
                "was_held": was_held,
            }));
        if let Some(acc) = &ctx.accession {
            entry = entry.accession(acc);
        }
        if let Some(r) = audit.record(entry) {
            store.set_audit_seq(study_uid, r.seq)?;
        }
    }
    let event = |name: &str| StudyEvent {
        event: name.to_string(),
        gateway: notify.gateway.clone(),
        study_uid: study_uid.to_string(),
        accession: ctx.accession.clone(),
        reasons: decision.reasons.clone(),
        by: None,
        note: None,
        at: now_ms(),
    };
    match (&record.destination, forward) {
        (Some(dest), true) => {
            if decision.verdict == Verdict::ForwardIncomplete {
                warn!(study_uid, destination = %dest, missing = %codes.join(","), "STAT study forwarded incomplete (flagged); still asking for the missing context");
                crate::notify::study_event(notify.webhook.as_ref(), &event("forwarded_incomplete"));
            } else {
                info!(study_uid, instances = snapshot.instance_count, destination = %dest, "study complete: queued");
            }
            if was_held {
                info!(
                    study_uid,
                    "held study released: the missing context arrived"
                );
                crate::notify::study_event(notify.webhook.as_ref(), &event("released"));
            }
            wakeups.wake(dest);
        }
        _ => {
            warn!(study_uid, reasons = %codes.join(","), "study held");
            // Tell people once per distinct set of reasons, not on every re-evaluation.
            if !was_held || previous.reasons_json != reasons_json {
                crate::notify::study_event(notify.webhook.as_ref(), &event("held"));
            }
        }
    }
    Ok(())
}

/// Where hold/release notifications go.
#[derive(Clone, Default)]
pub struct Notifications {
    pub gateway: String,
    pub webhook: Option<crate::notify::Webhook>,
    /// Every decision lands in the audit trail (and the tags cite its entry).
    pub audit: Option<std::sync::Arc<crate::audit::AuditLog>>,
}
