//! Priors with each study (JRS-7.3.2: the remote reader must be able to refer to the
//! prior images and reports). Before a study's instances go to a destination that takes
//! priors, the priors `priors::choose` picks for it are taken from the `PriorCache`
//! (fetched ahead by the prefetcher, or retrieved now) and sent there on their own
//! association, each instance tagged with the study's accountability block plus
//! (0099,xx0A) naming the study it is a prior of.
//!
//! A prior whose report exists only as an HL7 ORU (no SR or PDF came from the PACS) gets
//! its newest final report as a Basic Text SR in the prior study ([`report_sr`]), sent
//! after its images.
//!
//! A prior goes to a destination once (`prior_sends`, or the study forwarded there by
//! readgate itself). Priors are not studies: they are not in `studies`, so the reading
//! ledger never counts them. A prior that cannot be retrieved now holds the study back
//! (retried with the forwarder's back-off, the reason in its last error; the failure is
//! recorded, so a study decided again meanwhile is held with PRIORS_UNAVAILABLE) unless
//! `policy.priors.on_pacs_unreachable = "forward_flagged"`, or the study is STAT and
//! `policy.stat = "forward_flagged"`; one the destination refuses always does.

use super::{tag_copy, Forwarder, Scu, StoreOutcome};
use crate::config::policy::PacsUnreachable;
use crate::config::Config;
use crate::decide::context::StudyContext;
use crate::dicom::dimse::status;
use crate::priors::cache::{PriorCache, Purpose};
use crate::priors::choose::{self, Pending};
use crate::priors::find::REPORT_SOP_CLASSES;
use crate::priors::report_sr;
use crate::priors::retrieve::{Fetched, Retrieved};
use crate::spool::Spool;
use crate::store::{QueuedInstance, SentPrior, Store};
use crate::time::now_ms;
use std::collections::BTreeSet;
use std::sync::Arc;
use tracing::{info, warn};

/// Studies remembered as having their priors at the destination; past this many the
/// memory is cleared (asking the store again costs a query per study, sends nothing).
const PREPARED_MAX: usize = 10_000;

/// Why a study waits for its priors (kept as the study's last error).
#[derive(Debug, thiserror::Error)]
enum PriorError {
    #[error("prior study {prior} could not be retrieved from PACS {pacs}: {reason}")]
    Retrieve {
        prior: String,
        pacs: String,
        reason: String,
    },
    #[error("prior study {prior} could not be sent: {reason}")]
    Send { prior: String, reason: String },
    #[error("priors not sent: {0}")]
    Internal(String),
}

/// What to send before one study.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub priors: Vec<Pending>,
    /// What (0099,xx0A) names: the study's accession, else its UID.
    pub prior_of: String,
    /// Whether a prior that cannot be retrieved lets the study go without it:
    /// `on_pacs_unreachable = "forward_flagged"`, or a STAT study under
    /// `policy.stat = "forward_flagged"` (withholding an emergency study does more harm).
    pub go_without: bool,
}

/// The priors of `study_uid` to send to `destination`, newest first, as
/// `priors::choose` picks them for the study as its recorded decision saw it.
pub(super) fn pending(
    store: &Store,
    config: &Config,
    destination: &str,
    study_uid: &str,
    now: i64,
) -> crate::store::Result<Plan> {
    let Some(decision) = store.decision_of(study_uid)? else {
        return Ok(Plan::default());
    };
    let context: StudyContext = decision
        .context_json
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    if !choose::takes_priors(config, &context, destination) {
        return Ok(Plan::default());
    }
    let policy = &config.policy;
    let go_without = policy.priors.on_pacs_unreachable == PacsUnreachable::ForwardFlagged
        || (context.priority == Some(crate::model::Priority::Stat)
            && policy.stat == crate::config::policy::StatHandling::ForwardFlagged);
    let out = choose::to_send(store, config, &context, destination, now)?;
    Ok(Plan {
        priors: out,
        prior_of: decision
            .accession
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| study_uid.to_string()),
        go_without,
    })
}

impl Forwarder {
    /// Whether the study's priors are at the destination (or it gets none).
    pub(super) fn priors_ready(&self, study_uid: &str) -> bool {
        self.priors.is_none()
            || self
                .prepared
                .lock()
                .map(|p| p.contains(study_uid))
                .unwrap_or(false)
    }

    /// `batch` without the instances of studies whose priors could not be sent yet:
    /// those studies back off (their last error says which prior and why).
    pub(super) async fn with_priors_sent(
        &self,
        mut batch: Vec<QueuedInstance>,
    ) -> Vec<QueuedInstance> {
        let Some(cache) = self.priors.clone() else {
            return batch;
        };
        let studies: BTreeSet<String> = batch
            .iter()
            .filter(|i| !self.priors_ready(&i.study_uid))
            .map(|i| i.study_uid.clone())
            .collect();
        let mut waiting = BTreeSet::new();
        for study in studies {
            match self.send_priors_of(&study, &cache).await {
                Ok(()) => {
                    if let Ok(mut p) = self.prepared.lock() {
                        if p.len() >= PREPARED_MAX {
                            p.clear();
                        }
                        p.insert(study);
                    }
                }
                Err(why) => {
                    warn!(destination = %self.destination.id, study_uid = %study, error = %why,
                        "study waits for its priors; will retry");
                    self.attempt_failed(vec![study.clone()], why.to_string())
                        .await;
                    waiting.insert(study);
                }
            }
        }
        batch.retain(|i| !waiting.contains(&i.study_uid));
        batch
    }

    async fn send_priors_of(&self, study_uid: &str, cache: &PriorCache) -> Result<(), PriorError> {
        let (config, destination, uid) = (
            self.config.clone(),
            self.destination.id.clone(),
            study_uid.to_string(),
        );
        let plan = self
            .blocking(move |s| pending(s, &config, &destination, &uid, now_ms()))
            .await
            .ok_or_else(|| PriorError::Internal("store unavailable".into()))?;
        if plan.priors.is_empty() {
            return Ok(());
        }
        // The study's own tags, once for all its priors, naming the study.
        let (config, uid) = (self.config.clone(), study_uid.to_string());
        let (mut accountability, _) = self
            .blocking(move |s| Ok(super::stamp::for_study(s, &config, &uid)))
            .await
            .ok_or_else(|| PriorError::Internal("store unavailable".into()))?
            .map_err(|e| PriorError::Internal(e.to_string()))?;
        accountability.prior_of = Some(plan.prior_of.clone());
        let spool = cache.spool();
        for prior in plan.priors {
            let retrieved = match cache
                .fetch(&prior.pacs, &prior.uid, study_uid, Purpose::Send)
                .await
            {
                Ok(r) => r,
                Err(reason) => {
                    let error = PriorError::Retrieve {
                        prior: prior.uid.clone(),
                        pacs: prior.pacs.clone(),
                        reason,
                    };
                    if plan.go_without {
                        warn!(destination = %self.destination.id, study_uid = %study_uid, error = %error,
                            "study sent without this prior (STAT, or on_pacs_unreachable = forward_flagged)");
                        continue;
                    }
                    return Err(error);
                }
            };
            // The cached prior stays as retrieved; this send may add readgate's SR.
            let mut retrieved = Retrieved::clone(&retrieved);
            let mut made = None;
            if !retrieved
                .instances
                .iter()
                .any(|i| REPORT_SOP_CLASSES.contains(&i.sop_class_uid.as_str()))
            {
                match self.report_from_hl7(&prior, &retrieved, spool).await {
                    Ok(Some(sr)) => {
                        made = Some(sr.path.clone());
                        retrieved.instances.push(sr)
                    }
                    Ok(None) => {}
                    // The images still go: the report is on file at the hospital, and
                    // the check already saw it.
                    Err(e) => warn!(destination = %self.destination.id, prior_uid = %prior.uid,
                        error = %e, "the prior's HL7 report could not be made a DICOM SR"),
                }
            }
            let sent = self
                .send_prior(study_uid, &prior, &retrieved, &accountability, spool)
                .await;
            if let Some(sr) = made {
                let cleanup = spool.clone();
                let _ = tokio::task::spawn_blocking(move || cleanup.remove(&sr)).await;
            }
            sent?;
        }
        Ok(())
    }

    /// The prior's newest final (or corrected) HL7 report as a Basic Text SR in the
    /// prior study, written to `spool`; `None` when there is no such report.
    async fn report_from_hl7(
        &self,
        prior: &Pending,
        retrieved: &Retrieved,
        spool: &Arc<Spool>,
    ) -> Result<Option<Fetched>, String> {
        let Some(first) = retrieved.instances.first() else {
            return Ok(None);
        };
        let (store, spool) = (self.store.clone(), spool.clone());
        let (uid, accession) = (prior.uid.clone(), prior.accession.clone());
        let (source, gateway) = (spool.absolute(&first.path), self.config.gateway.id.clone());
        let offset = i64::from(self.config.policy.utc_offset_minutes) * 60;
        let calling = self.destination.calling_ae(&self.config).to_string();
        tokio::task::spawn_blocking(move || {
            let reports = store
                .reports_for(Some(&uid), accession.as_deref(), &[])
                .map_err(|e| e.to_string())?;
            let Some(report) = reports.iter().rev().find(|r| r.is_final()) else {
                return Ok(None);
            };
            let header = crate::dicom::dataset::walk_file(&source)?;
            let sr = report_sr::build(&report_sr::ReportSource {
                prior: &header,
                report,
                gateway_id: &gateway,
                utc_offset_secs: offset,
            })
            .map_err(|e| e.to_string())?;
            let class = dicom_dictionary_std::uids::BASIC_TEXT_SR_STORAGE;
            let syntax = crate::dicom::EXPLICIT_VR_LE;
            let meta = crate::dicom::part10::encode_file_meta(
                class,
                &sr.sop_instance_uid,
                syntax,
                &calling,
            );
            let mut file = spool.begin(&meta).map_err(|e| e.to_string())?;
            file.write(&sr.dataset).map_err(|e| e.to_string())?;
            let (path, bytes) = spool.commit_unsynced(file).map_err(|e| e.to_string())?;
            Ok(Some(Fetched {
                sop_class_uid: class.to_string(),
                sop_instance_uid: sr.sop_instance_uid,
                transfer_syntax: syntax.to_string(),
                path,
                bytes,
            }))
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Sends one retrieved prior on its own association, tagged as a prior of the study.
    async fn send_prior(
        &self,
        study_uid: &str,
        prior: &Pending,
        retrieved: &Retrieved,
        accountability: &crate::tag::Accountability,
        spool: &Spool,
    ) -> Result<(), PriorError> {
        let dest = &self.destination;
        let fail = |reason: String| PriorError::Send {
            prior: prior.uid.clone(),
            reason,
        };
        let of = accountability.prior_of.clone().unwrap_or_default();
        let calling = dest.calling_ae(&self.config).to_string();
        // Written before the instances go: a prior whose entry cannot be written is not
        // sent (a failed send is retried, and written again).
        let entry = crate::audit::NewEntry::new(crate::audit::kind::PRIOR_SENT, &calling)
            .study(&prior.uid)
            .detail(serde_json::json!({"destination": dest.id, "destination_ae": dest.ae_title,
                "facility": dest.facility, "pacs": prior.pacs, "for_study_uid": study_uid,
                "prior_of": of, "instances": retrieved.instances.len(), "bytes": retrieved.bytes()}));
        let audit = self.audit.clone();
        tokio::task::spawn_blocking(move || audit.append(&entry))
            .await
            .map_err(|e| PriorError::Internal(e.to_string()))?
            .map_err(|e| PriorError::Internal(format!("the send's audit entry: {e}")))?;

        let kinds: Vec<(String, String)> = retrieved
            .instances
            .iter()
            .map(|i| (i.sop_class_uid.clone(), i.transfer_syntax.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut scu = Scu::connect(dest, &calling, &kinds, &self.config.forward)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut sent = 0u32;
        for inst in &retrieved.instances {
            if !scu.can_carry(&inst.sop_class_uid, &inst.transfer_syntax) {
                warn!(destination = %dest.id, sop_class = %inst.sop_class_uid,
                    "the destination accepts no context for this prior instance; not sent");
                continue;
            }
            let tagged = tag_copy(
                spool,
                &inst.path,
                accountability.clone(),
                crate::tag::ContextCopy::default(),
            )
            .await
            .map_err(|e| fail(e.to_string()))?;
            let outcome = scu
                .store(
                    &tagged,
                    &inst.sop_class_uid,
                    &inst.sop_instance_uid,
                    &inst.transfer_syntax,
                )
                .await;
            drop(tagged);
            match outcome {
                Ok(StoreOutcome { status: code, .. }) if status::is_success_or_warning(code) => {
                    sent += 1
                }
                Ok(StoreOutcome {
                    status: code,
                    comment,
                }) => {
                    scu.release().await;
                    return Err(fail(format!(
                        "{} refused {} with status {code:04X}{}",
                        dest.ae_title,
                        inst.sop_instance_uid,
                        comment.map(|c| format!(" ({c})")).unwrap_or_default()
                    )));
                }
                Err(e) => return Err(fail(e.to_string())),
            }
        }
        scu.release().await;
        let record = SentPrior {
            destination: dest.id.clone(),
            prior_uid: prior.uid.clone(),
            pacs_id: prior.pacs.clone(),
            for_study_uid: study_uid.to_string(),
            instances: sent,
            bytes: retrieved.bytes(),
            sent_at: now_ms(),
        };
        self.blocking(move |s| s.record_prior_sent(&record))
            .await
            .ok_or_else(|| PriorError::Internal("store unavailable".into()))?;
        crate::metrics::prior_sent(&dest.id, u64::from(sent));
        info!(destination = %dest.id, study_uid = %study_uid, prior_uid = %prior.uid,
            instances = sent, pacs = %prior.pacs, "prior sent with the study");
        Ok(())
    }
}
