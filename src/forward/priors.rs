//! Priors with each study (JRS-7.3.2: the remote reader must be able to refer to the
//! prior images and reports). Before a study's instances go to a destination with
//! `send_priors`, the priors the prior-report check compares it with (look-back,
//! comparable modality, the newest `priors.send_max` within `priors.max_studies`) that a
//! `[[pacs]]` holds and the
//! destination does not have yet are retrieved (C-GET, or C-MOVE to readgate's own
//! listener, per `[[pacs]] retrieve`, into this destination's priors spool) and sent there on their own association, each instance tagged with the
//! study's accountability block plus (0099,xx0A) naming the study it is a prior of.
//!
//! A prior whose report exists only as an HL7 ORU (no SR or PDF came from the PACS) gets
//! its newest final report as a Basic Text SR in the prior study ([`report_sr`]), sent
//! after its images.
//!
//! A prior goes to a destination once (`prior_sends`, or the study forwarded there by
//! readgate itself). Priors are not studies: they are not in `studies`, so the reading
//! ledger never counts them. A prior that cannot be retrieved holds the study back
//! (retried with the forwarder's back-off, the reason in its last error) unless
//! `policy.priors.on_pacs_unreachable = "forward_flagged"`, or the study is STAT and
//! `policy.stat = "forward_flagged"`; one the destination refuses always does.

use super::{tag_copy, Forwarder, Scu, StoreOutcome};
use crate::config::pacs::Retrieve;
use crate::config::policy::PacsUnreachable;
use crate::config::Config;
use crate::decide::context::StudyContext;
use crate::dicom::dimse::status;
use crate::priors::find::REPORT_SOP_CLASSES;
use crate::priors::move_scu::move_study;
use crate::priors::report_sr;
use crate::priors::retrieve::{get_study, Fetched, Retrieved};
use crate::spool::Spool;
use crate::store::{QueuedInstance, SentPrior, Store};
use crate::time::now_ms;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::{info, warn};

/// Studies remembered as having their priors at the destination; past this many the
/// memory is cleared (asking the store again costs a query per study, sends nothing).
const PREPARED_MAX: usize = 10_000;

/// A chosen prior the destination does not have, and the PACS that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pending {
    pub uid: String,
    pub accession: Option<String>,
    pub pacs: String,
}

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

/// The priors directory of each destination that gets priors (`send_priors` and at
/// least one `[[pacs]]`), emptied: priors are kept only while being sent, and one an
/// earlier run left is retrieved again. Blocking (file system).
pub fn open_priors_spools(config: &Config) -> std::io::Result<Vec<Option<Arc<Spool>>>> {
    let root = config.gateway.data_dir.join("priors");
    match std::fs::remove_dir_all(&root) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut out = Vec::new();
    for (i, destination) in config.destinations.iter().enumerate() {
        let some_route_sends = config
            .routes
            .iter()
            .any(|r| r.destination == destination.id && r.send_priors == Some(true));
        if !(destination.send_priors || some_route_sends) || config.pacs.is_empty() {
            out.push(None);
            continue;
        }
        // By position, not id: ids may hold any character; the tree is emptied at start.
        let dir = root.join(i.to_string());
        crate::spool::private_dir(&dir)?;
        out.push(Some(Arc::new(Spool::open(
            &dir,
            config.storage.min_free_mb * 1024 * 1024,
        )?)));
    }
    Ok(out)
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

/// The priors of `study_uid` to send to `destination`, newest first: comparable to the
/// study as its recorded decision saw it, at most `priors.send_max` and
/// `priors.max_studies`, held by a
/// `[[pacs]]`, not at the destination yet.
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
    // The route's `send_priors`, else the destination's.
    let send = crate::decide::first_route(config, &context.modalities, &context.calling_aes)
        .and_then(|(_, route, _)| route.send_priors)
        .or_else(|| config.destination(destination).map(|d| d.send_priors))
        .unwrap_or(false);
    if !send {
        return Ok(Plan::default());
    }
    let policy = &config.policy;
    let go_without = policy.priors.on_pacs_unreachable == PacsUnreachable::ForwardFlagged
        || (context.priority == Some(crate::model::Priority::Stat)
            && policy.stat == crate::config::policy::StatHandling::ForwardFlagged);
    let pacs_ids: Vec<String> = config.pacs.iter().map(|p| p.id.clone()).collect();
    let mut out = Vec::new();
    let chosen = crate::decide::policy::comparable_priors(&context, &config.policy, now);
    let most = config.priors.max_studies.min(config.priors.send_max);
    for prior in chosen.into_iter().take(most) {
        let Some(pacs) = store
            .pacs_holding(&prior.study_uid, &pacs_ids)?
            .into_iter()
            .next()
        else {
            continue; // readgate knows it only from its own traffic
        };
        if !store.destination_has(destination, &prior.study_uid)? {
            out.push(Pending {
                uid: prior.study_uid,
                accession: prior.accession,
                pacs,
            });
        }
    }
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
        let Some(spool) = self.priors.clone() else {
            return batch;
        };
        let studies: BTreeSet<String> = batch
            .iter()
            .filter(|i| !self.priors_ready(&i.study_uid))
            .map(|i| i.study_uid.clone())
            .collect();
        let mut waiting = BTreeSet::new();
        for study in studies {
            match self.send_priors_of(&study, &spool).await {
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

    async fn send_priors_of(&self, study_uid: &str, spool: &Arc<Spool>) -> Result<(), PriorError> {
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
        for prior in plan.priors {
            let Some(pacs) = self.config.pacs.iter().find(|p| p.id == prior.pacs) else {
                continue;
            };
            let audit = self.audit.clone();
            let operation = match pacs.retrieve {
                Retrieve::Get => "C-GET",
                Retrieve::Move => "C-MOVE",
            };
            let what = serde_json::json!({"pacs": pacs.id, "ae_title": pacs.ae_title,
                "operation": operation, "study_uid": prior.uid, "for_study_uid": study_uid});
            tokio::task::spawn_blocking(move || audit.record_pacs_query("system", what))
                .await
                .map_err(|e| PriorError::Internal(e.to_string()))?
                .map_err(|e| PriorError::Internal(format!("the retrieval's audit entry: {e}")))?;
            let calling = pacs.calling_ae(&self.config);
            let fetch = match pacs.retrieve {
                Retrieve::Get => get_study(pacs, &calling, &prior.uid, spool).await,
                Retrieve::Move => {
                    let destination = &self.config.dicom.ae_title;
                    move_study(pacs, &calling, destination, &prior.uid, spool, &self.moves).await
                }
            };
            let retrieved = match fetch {
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
            let mut retrieved = match retrieved {
                Ok(r) => {
                    info!(pacs = %pacs.id, prior_uid = %prior.uid, operation, instances = r.instances.len(),
                        bytes = r.bytes(), failed = r.failed, elapsed_ms = r.millis, "prior retrieved");
                    r
                }
                Err(reason) => {
                    let error = PriorError::Retrieve {
                        prior: prior.uid.clone(),
                        pacs: pacs.id.clone(),
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
            if !retrieved
                .instances
                .iter()
                .any(|i| REPORT_SOP_CLASSES.contains(&i.sop_class_uid.as_str()))
            {
                match self.report_from_hl7(&prior, &retrieved, spool).await {
                    Ok(Some(sr)) => retrieved.instances.push(sr),
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
            let files: Vec<String> = retrieved.instances.iter().map(|i| i.path.clone()).collect();
            let cleanup = spool.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for f in files {
                    let _ = cleanup.remove(&f);
                }
            })
            .await;
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
            let tagged: PathBuf = tag_copy(
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
            let _ = std::fs::remove_file(&tagged);
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
