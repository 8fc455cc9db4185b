//! Durable intake of HL7 messages with group commit: connection tasks parse in parallel
//! and hand their messages to one writer, which stores everything that arrived
//! together in one transaction (one fsync) before any of them is acknowledged. Then it
//! sends held studies the messages concern back to the decision stage.

use crate::spool::Spool;
use crate::store::{now_ms, IncomingMessage, Recorded, Store};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{info, warn};

/// Messages one transaction may carry.
const MAX_BATCH: usize = 256;

type Job = (
    IncomingMessage,
    oneshot::Sender<Result<Recorded, IntakeError>>,
);

/// Why a message was not stored (the listener answers AE with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntakeError {
    /// The writer no longer takes messages.
    #[error("readgate is shutting down")]
    ShuttingDown,
    /// The writer went away before answering.
    #[error("the HL7 writer stopped")]
    WriterStopped,
    /// The store refused the batch (the store error, rendered: every message of the
    /// batch gets the same answer).
    #[error("could not store the message: {0}")]
    Store(String),
    /// The data directory's file system is below `storage.min_free_mb`: nothing is stored
    /// (the sender keeps the message and sends it again later).
    #[error("not enough free disk space to store the message; send it again later")]
    NoRoom,
    /// The blocking store task failed.
    #[error("internal error while storing")]
    Internal,
}

/// What bounds the disk the HL7 intake may use.
#[derive(Clone)]
pub struct DiskBounds {
    /// The spool: its file system holds the database too, and its free-space check is
    /// the one C-STORE obeys (`storage.min_free_mb`).
    pub spool: Arc<Spool>,
    /// Raw bytes of refused messages kept at most (`hl7.quarantine_max_mb`).
    pub quarantine_bytes: u64,
    /// How long refused messages are kept (`hl7.quarantine_days`), in ms.
    pub quarantine_ms: i64,
    /// Where the reads and confirmations that reports carry are recorded.
    pub audit: Option<Arc<crate::audit::AuditLog>>,
}

#[derive(Clone)]
pub struct Intake {
    jobs: mpsc::Sender<Job>,
}

impl Intake {
    /// Starts the writer; `reconsider` wakes the study stage when a message brought context
    /// (held studies to evaluate again, an order whose count may complete a study),
    /// `history` the priors lookup after every stored batch (an order's patient).
    pub fn start(
        store: Arc<Store>,
        reconsider: Arc<Notify>,
        history: Arc<Notify>,
        disk: DiskBounds,
    ) -> Intake {
        let (jobs, rx) = mpsc::channel(4096);
        tokio::spawn(writer(rx, store, reconsider, history, disk));
        Intake { jobs }
    }

    /// Stores `message`; returns once it is durable (or storing failed).
    pub async fn record(&self, message: IncomingMessage) -> Result<Recorded, IntakeError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((message, reply))
            .await
            .map_err(|_| IntakeError::ShuttingDown)?;
        answer.await.map_err(|_| IntakeError::WriterStopped)?
    }
}

async fn writer(
    mut rx: mpsc::Receiver<Job>,
    store: Arc<Store>,
    reconsider: Arc<Notify>,
    history: Arc<Notify>,
    disk: DiskBounds,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (messages, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let store2 = store.clone();
        let disk2 = disk.clone();
        let outcome =
            tokio::task::spawn_blocking(move || store_batch(&store2, &disk2, &messages)).await;
        match outcome {
            Ok(Ok((recorded, reconsidered))) => {
                if !reconsidered.is_empty() {
                    info!(
                        studies = reconsidered.len(),
                        "held studies and streams decided again after new HL7 context"
                    );
                }
                // Also when nothing was held: an order's expected image count may complete
                // a study that is still receiving.
                if !reconsidered.is_empty()
                    || recorded.iter().any(|r| !r.duplicate && !r.keys.is_empty())
                {
                    reconsider.notify_one();
                }
                history.notify_one();
                for (reply, r) in replies.into_iter().zip(recorded) {
                    let _ = reply.send(Ok(r));
                }
            }
            Ok(Err(e)) => {
                warn!(error = %e, messages = replies.len(), "storing HL7 messages failed: answering AE");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                warn!(error = %e, "HL7 writer task failed");
                for reply in replies {
                    let _ = reply.send(Err(IntakeError::Internal));
                }
            }
        }
    }
}

/// Stores one batch (after the free-space check), re-opens the held studies it gives
/// context to, and keeps the quarantine of refused messages within its bounds.
fn store_batch(
    store: &Store,
    disk: &DiskBounds,
    messages: &[IncomingMessage],
) -> Result<(Vec<Recorded>, Vec<String>), IntakeError> {
    let failed = |e: crate::store::StoreError| IntakeError::Store(e.to_string());
    match disk.spool.has_room() {
        Ok(true) => {}
        Ok(false) => return Err(IntakeError::NoRoom),
        Err(e) => return Err(IntakeError::Store(format!("free space: {e}"))),
    }
    let batch = store.record_hl7_batch(messages).map_err(failed)?;
    let recorded = batch.messages;
    // The batch's keys together: one look for held studies per batch, not per message,
    // and none when no study was open as the batch committed. A repeat's keys count: its
    // first copy may have committed just before readgate stopped, before this step.
    let mut keys = crate::store::ContextKeys::default();
    for r in &recorded {
        keys.merge(&r.keys);
    }
    let released = match batch.studies_open {
        true => store
            .reconsider(&keys, "new HL7 context", now_ms())
            .map_err(failed)?,
        false => Vec::new(),
    };
    if let Some(audit) = &disk.audit {
        let repeated: Vec<bool> = recorded.iter().map(|r| r.duplicate).collect();
        let failed = super::evidence::record_reports(store, audit, messages, &repeated);
        if failed > 0 {
            warn!(
                entries = failed,
                "audit entries of HL7 reports could not be written"
            );
        }
    }
    if messages
        .iter()
        .any(|m| m.ack_code != crate::hl7::AckCode::Accept.as_str())
    {
        let before = now_ms().saturating_sub(disk.quarantine_ms);
        match store.prune_refused_hl7(disk.quarantine_bytes, before) {
            Ok(0) => {}
            Ok(n) => info!(
                messages = n,
                "refused HL7 messages beyond the quarantine's bounds deleted"
            ),
            Err(e) => warn!(error = %e, "pruning refused HL7 messages failed"),
        }
    }
    Ok((recorded, released))
}
