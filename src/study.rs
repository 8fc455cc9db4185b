//! Studies: instances are grouped by Study Instance UID (in the store); a study is
//! complete once `stable_after_secs` pass without a new instance, or at once when its
//! modality's MPPS step is COMPLETED with every instance it lists in, or when it holds
//! exactly the number of images its order states (`hl7.expected_images_field`; the
//! conditions are SQL in `store/studies.rs`, which records which one completed it). This
//! stage notices that, asks the decision stage, and queues or holds the study accordingly.
//!
//! Streaming (`[[routes]] forward = "streaming"`, or unset for a STAT order): the stage
//! also decides a study while it is being received — at its first instance, on the
//! study-level context (the headers of its images so far, its orders, labs and priors),
//! and again whenever that context changes (an instance with header context not seen
//! before, an HL7 message or a PACS answer about it; `stream_check`). Once the gate passes
//! it, its instances are queued as they arrive ([`crate::store::Store::index_received`]);
//! if the verdict turns, the stream stops and the rest is held, the hold saying what
//! already left (`PARTLY_SENT`). At completion the study is decided as any other.

use crate::decide::{assemble, reasons, Decide, Decision, Verdict};
use crate::forward::Wakeups;
use crate::model::{Disposition, EventKind, ForwardMode, StreamState, StudyState};
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
    /// This node: the stage runs only while it holds the cluster's timers, and looks
    /// for work other nodes recorded every [`crate::cluster::SHARED_POLL`] when the
    /// database is shared.
    pub node: crate::cluster::Node,
}

/// How long the stage waits after a wake-up for more of the same burst before it looks.
const COALESCE: Duration = Duration::from_millis(20);

impl StudyStage {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let stable_ms = self.stable_after.as_millis() as i64;
        loop {
            if !self.node.leads() {
                // Another node decides; this one takes over when its lease lapses.
                tokio::select! {
                    _ = self.node.became_leader.notified() => {}
                    _ = tokio::time::sleep(crate::cluster::SHARED_POLL) => {}
                    _ = shutdown.changed() => break,
                }
                continue;
            }
            let store = self.store.clone();
            let decider = self.decider.clone();
            let wakeups = self.wakeups.clone();
            let notify = self.notify.clone();
            let next = tokio::task::spawn_blocking(move || {
                let next =
                    complete_stable_studies(&store, decider.as_ref(), &wakeups, &notify, stable_ms);
                decide_streams(&store, decider.as_ref(), &wakeups, &notify)?;
                next
            })
            .await;
            let longest = if self.node.shared {
                crate::cluster::SHARED_POLL
            } else {
                Duration::from_secs(3600)
            };
            let wait = match next {
                Ok(Ok(Some(oldest))) => Duration::from_millis(
                    (oldest + stable_ms - now_ms()).clamp(1, 3_600_000) as u64,
                )
                .min(longest),
                Ok(Ok(None)) => longest,
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
                _ = self.stored.notified() => {
                    // Instances arrive in bursts: one look for the burst, not one per
                    // instance (each look is three queries; on PostgreSQL, three round
                    // trips competing with the receive for the CPU).
                    tokio::time::sleep(COALESCE).await;
                }
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
    let previous = store.decision_of(study_uid)?.unwrap_or_default();
    let streamed = store.study_row(study_uid)?.and_then(|r| r.stream);
    let (snapshot, ctx, mut decision) = evaluate(store, decider, study_uid)?;
    let forward = decision.forwards();
    let recorded = if streamed.is_some() && !forward {
        // A streamed study held: with no instance on its way, what left is exact, and
        // the hold says so.
        wakeups.in_flight.stopping(|| {
            add_partly_sent(store, &mut decision, study_uid, snapshot.instance_count)?;
            let record = record_of(&decision, &ctx);
            Ok::<_, crate::store::StoreError>((
                store.record_decision(&snapshot, &record, now_ms())?,
                record,
            ))
        })?
    } else {
        let record = record_of(&decision, &ctx);
        (store.record_decision(&snapshot, &record, now_ms())?, record)
    };
    let (Some(_), record) = recorded else {
        return Ok(()); // a new instance arrived meanwhile: decided again once stable
    };
    let reasons_json = record.reasons_json.clone();
    let codes: Vec<&str> = decision.reasons.iter().map(|r| r.code.as_str()).collect();
    let was_held = previous.verdict == Some(Disposition::Held);
    if let Some(audit) = &notify.audit {
        // What told readgate the images were all in: the quiet period, the MPPS step or
        // the order's image count (recorded with the decision).
        let completed_by = store.study_row(study_uid)?.and_then(|r| r.completed_by);
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
                "completed_by": completed_by,
            }));
        if let Some(acc) = &ctx.accession {
            entry = entry.accession(acc);
        }
        if let Some(r) = audit.record(entry) {
            store.set_audit_seq(study_uid, r.seq)?;
        }
    }
    let event = |name: &str| stream_event(notify, name, study_uid, &ctx, &decision);
    match (&record.destination, forward) {
        (Some(dest), true) => {
            // A study that streamed under the same verdict was announced when it started.
            let announced = streamed.is_some()
                && previous.verdict == Some(record.verdict)
                && previous.reasons_json == reasons_json;
            if decision.verdict == Verdict::ForwardIncomplete {
                warn!(study_uid, destination = %dest, missing = %codes.join(","), "STAT study forwarded incomplete (flagged); still asking for the missing context");
                if !announced {
                    crate::notify::study_event(
                        notify.webhook.as_ref(),
                        &event("forwarded_incomplete"),
                    );
                }
            } else {
                info!(study_uid, instances = snapshot.instance_count, destination = %dest, "study complete: queued");
            }
            if streamed.is_some() {
                // Instances still on their way carry this decision's tags from now on.
                wakeups.in_flight.changed();
                forwarded_already(store, notify, study_uid, dest)?;
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

/// What is recorded of `decision`, taken on `ctx`.
fn record_of(decision: &Decision, ctx: &crate::decide::context::StudyContext) -> DecisionRecord {
    let forward = decision.forwards();
    let codes: Vec<&str> = decision.reasons.iter().map(|r| r.code.as_str()).collect();
    let detail = match (&decision.route, forward) {
        (Some(route), true) if codes.is_empty() => route.because.clone(),
        (Some(route), true) => format!("{}; still missing: {}", route.because, codes.join(", ")),
        _ => codes.join(", "),
    };
    DecisionRecord {
        forward,
        destination: decision.route.as_ref().map(|r| r.destination.clone()),
        facility: decision.route.as_ref().map(|r| r.facility.clone()),
        verdict: decision.disposition(),
        reasons_json: (!decision.reasons.is_empty())
            .then(|| serde_json::to_string(&decision.reasons).ok())
            .flatten(),
        evaluation_json: decision
            .evaluation
            .as_ref()
            .and_then(|e| serde_json::to_string(e).ok()),
        context_json: serde_json::to_string(ctx).ok(),
        detail,
    }
}

/// Adds `PARTLY_SENT` to a hold of a streamed study some of whose instances left: how
/// many, to which destination. Call it with no instance on its way
/// ([`crate::forward::InFlight::stopping`]).
fn add_partly_sent(
    store: &Store,
    decision: &mut Decision,
    study_uid: &str,
    received: i64,
) -> crate::store::Result<Vec<(String, i64)>> {
    let sent = store.sent_summary(study_uid)?;
    if !sent.is_empty() {
        decision.reasons.push(reasons::partly_sent(&sent, received));
    }
    Ok(sent)
}

/// A streamed study whose decision at completion found every instance delivered: it is
/// forwarded now; logged, measured and audited as the forwarder does for the others.
fn forwarded_already(
    store: &Store,
    notify: &Notifications,
    study_uid: &str,
    destination: &str,
) -> crate::store::Result<()> {
    let Some(row) = store.study_row(study_uid)? else {
        return Ok(());
    };
    if row.state != StudyState::Forwarded {
        return Ok(()); // the rest is still on its way: the forwarder completes it
    }
    let secs = row.time_to_reader_secs();
    if let Some(secs) = secs {
        crate::metrics::time_to_reader(destination, secs);
    }
    info!(
        destination,
        facility = row.facility.as_deref().unwrap_or(""),
        study_uid,
        time_to_reader_ms = (secs.unwrap_or(0.0) * 1000.0) as u64,
        streamed = true,
        "study forwarded"
    );
    if let Some(audit) = &notify.audit {
        // The actor is the destination's AE title, as when the forwarder records it.
        let ae = notify
            .config
            .as_ref()
            .and_then(|c| {
                c.current()
                    .destination(destination)
                    .map(|d| d.ae_title.clone())
            })
            .unwrap_or_else(|| destination.to_string());
        audit.record(
            crate::audit::NewEntry::new(crate::audit::kind::STUDY_FORWARDED, &ae)
                .study(study_uid)
                .detail(serde_json::json!({"destination": destination, "facility": row.facility, "streamed": true})),
        );
    }
    Ok(())
}

/// Decides the streams of the studies being received that need it (their first
/// instance, new header context, new HL7 or PACS context, a reload).
pub fn decide_streams(
    store: &Store,
    decider: &dyn Decide,
    wakeups: &Wakeups,
    notify: &Notifications,
) -> crate::store::Result<()> {
    let uids = store.stream_checks()?;
    if uids.is_empty() {
        return Ok(());
    }
    if !decider.streams() {
        store.clear_stream_checks()?;
        return Ok(());
    }
    for uid in uids {
        // Taken before reading: context that arrives from here on asks again.
        if store.take_stream_check(&uid)? {
            decide_stream(store, decider, wakeups, notify, &uid)?;
        }
    }
    Ok(())
}

/// Decides one receiving study's stream: start it, go on, or stop it.
fn decide_stream(
    store: &Store,
    decider: &dyn Decide,
    wakeups: &Wakeups,
    notify: &Notifications,
    study_uid: &str,
) -> crate::store::Result<()> {
    let Some(row) = store.study_row(study_uid)? else {
        return Ok(());
    };
    if row.state != StudyState::Receiving || row.stream == Some(StreamState::Stopped) {
        return Ok(());
    }
    // What the gate reads of the images, read first: an instance that arrives while it
    // decides waits for the next decision unless its header context is among these.
    let contexts = store.header_contexts(study_uid)?;
    let (snapshot, ctx, mut decision) = evaluate(store, decider, study_uid)?;
    let mode = decider.forward_mode(&ctx);
    let streams = decision.forwards() && mode == ForwardMode::Streaming;
    let destination = decision.route.as_ref().map(|r| r.destination.clone());
    let now = now_ms();
    match row.stream {
        None if !streams => Ok(()), // decided at completion, as any other study
        None => {
            let record = record_of(&decision, &ctx);
            let detail = format!("streaming as instances arrive: {}", record.detail);
            let Some(queued) = store.stream(
                study_uid,
                &record,
                &contexts,
                Some((EventKind::Streaming, &detail)),
                now,
            )?
            else {
                return Ok(());
            };
            let dest = destination.unwrap_or_default();
            info!(study_uid, destination = %dest, verdict = %record.verdict, queued, "study streams: its instances leave as they arrive");
            audit_stream(store, notify, study_uid, &record, &ctx, "started", None)?;
            if decision.verdict == Verdict::ForwardIncomplete {
                crate::notify::study_event(
                    notify.webhook.as_ref(),
                    &stream_event(notify, "forwarded_incomplete", study_uid, &ctx, &decision),
                );
            }
            wakeups.wake(&dest);
            Ok(())
        }
        Some(StreamState::Streaming) if streams && destination == row.destination => {
            let record = record_of(&decision, &ctx);
            let previous = store.decision_of(study_uid)?.unwrap_or_default();
            let changed = previous.verdict != Some(record.verdict)
                || previous.reasons_json != record.reasons_json;
            let detail = format!("still streaming, decided again: {}", record.detail);
            let event = changed.then_some((EventKind::Streaming, detail.as_str()));
            let Some(queued) = store.stream(study_uid, &record, &contexts, event, now)? else {
                return Ok(());
            };
            if changed {
                wakeups.in_flight.changed();
                audit_stream(
                    store,
                    notify,
                    study_uid,
                    &record,
                    &ctx,
                    "decided again",
                    None,
                )?;
            }
            if queued > 0 {
                wakeups.wake(destination.as_deref().unwrap_or_default());
            }
            Ok(())
        }
        Some(StreamState::Streaming) if decision.forwards() => {
            // Still passes, but no longer streams here: the route forwards on
            // completion now, or names another destination. What left stays sent; the
            // rest is decided at completion.
            let why = if mode != ForwardMode::Streaming {
                "the study's route forwards on completion now".to_string()
            } else {
                format!(
                    "the study's route names {} now",
                    destination.as_deref().unwrap_or("-")
                )
            };
            let stopped = wakeups.in_flight.stopping(|| {
                let sent = store.sent_summary(study_uid)?;
                let detail = format!(
                    "{why}; {} already sent; the rest leaves when the study is complete",
                    sent_text(&sent)
                );
                store.stop_stream(study_uid, None, &detail, now)
            })?;
            if stopped {
                info!(study_uid, reason = %why, "streaming stopped");
            }
            Ok(())
        }
        Some(StreamState::Streaming) => {
            // The verdict turned: stop, hold the rest, say what already left.
            let (stopped, record, sent) = wakeups.in_flight.stopping(|| {
                let sent =
                    add_partly_sent(store, &mut decision, study_uid, snapshot.instance_count)?;
                let mut record = record_of(&decision, &ctx);
                record.detail = format!(
                    "{}; streaming stopped: {} already sent, the rest is held",
                    record.detail,
                    sent_text(&sent)
                );
                let stopped = store.stop_stream(study_uid, Some(&record), &record.detail, now)?;
                Ok::<_, crate::store::StoreError>((stopped, record, sent))
            })?;
            if !stopped {
                return Ok(());
            }
            let codes: Vec<&str> = decision.reasons.iter().map(|r| r.code.as_str()).collect();
            warn!(study_uid, reasons = %codes.join(","), sent = %sent_text(&sent), "streaming stopped: study held; what already left is in its hold");
            audit_stream(
                store,
                notify,
                study_uid,
                &record,
                &ctx,
                "stopped",
                Some(&sent),
            )?;
            crate::notify::study_event(
                notify.webhook.as_ref(),
                &stream_event(notify, "held", study_uid, &ctx, &decision),
            );
            Ok(())
        }
        Some(StreamState::Stopped) => Ok(()),
    }
}

/// `42 instance(s) to rc1, 3 to rc2`, or `nothing`.
fn sent_text(sent: &[(String, i64)]) -> String {
    if sent.is_empty() {
        return "nothing".into();
    }
    sent.iter()
        .map(|(d, n)| format!("{n} instance(s) to {d}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The audit entry of a stream decision: released (started, decided again) or held
/// (stopped), cited by the tags of the instances that leave under it.
fn audit_stream(
    store: &Store,
    notify: &Notifications,
    study_uid: &str,
    record: &DecisionRecord,
    ctx: &crate::decide::context::StudyContext,
    stream: &str,
    sent: Option<&[(String, i64)]>,
) -> crate::store::Result<()> {
    let Some(audit) = &notify.audit else {
        return Ok(());
    };
    let kind = if record.forward {
        crate::audit::kind::STUDY_RELEASED
    } else {
        crate::audit::kind::STUDY_HELD
    };
    let codes: Vec<String> = record
        .reasons_json
        .as_deref()
        .and_then(|j| serde_json::from_str::<Vec<crate::decide::HoldReason>>(j).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.code)
        .collect();
    let mut entry = crate::audit::NewEntry::new(kind, "system")
        .study(study_uid)
        .detail(serde_json::json!({
            "verdict": record.verdict,
            "reasons": codes,
            "destination": record.destination,
            "facility": record.facility,
            "stream": stream,
            "sent": sent.map(|s| s.iter().map(|(d, n)| serde_json::json!({"destination": d, "instances": n})).collect::<Vec<_>>()),
        }));
    if let Some(acc) = &ctx.accession {
        entry = entry.accession(acc);
    }
    if let Some(r) = audit.record(entry) {
        store.set_audit_seq(study_uid, r.seq)?;
    }
    Ok(())
}

/// The study as it stands now, its clinical context and the gate's decision on it.
fn evaluate(
    store: &Store,
    decider: &dyn Decide,
    study_uid: &str,
) -> crate::store::Result<(
    crate::store::StudySnapshot,
    crate::decide::context::StudyContext,
    Decision,
)> {
    let snapshot = store.snapshot(study_uid)?;
    let ctx = assemble::from_store(
        store,
        &snapshot,
        decider.utc_offset_minutes(),
        &decider.pacs_ids(),
    )?;
    let decision = decider.decide(&ctx);
    Ok((snapshot, ctx, decision))
}

/// The webhook's event `name` for a decision about `study_uid`.
fn stream_event(
    notify: &Notifications,
    name: &str,
    study_uid: &str,
    ctx: &crate::decide::context::StudyContext,
    decision: &Decision,
) -> StudyEvent {
    StudyEvent {
        event: name.to_string(),
        gateway: notify.gateway.clone(),
        study_uid: study_uid.to_string(),
        accession: ctx.accession.clone(),
        reasons: decision.reasons.clone(),
        by: None,
        note: None,
        at: now_ms(),
    }
}

/// Where hold/release notifications go.
#[derive(Clone, Default)]
pub struct Notifications {
    pub gateway: String,
    pub webhook: Option<crate::notify::Webhook>,
    /// Every decision lands in the audit trail (and the tags cite its entry).
    pub audit: Option<std::sync::Arc<crate::audit::AuditLog>>,
    /// The configuration in force: the AE title of a destination a streamed study is
    /// recorded as forwarded to (the actor of `study_forwarded`).
    pub config: Option<crate::config::Live>,
}
