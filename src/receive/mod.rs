//! The C-STORE / C-ECHO SCP: accepts associations from the modalities and PACS listed in
//! the config and hands each received instance to the spool and the store.
//!
//! `access` decides who may associate, `association` runs one association.

mod access;
mod association;
mod recover;

pub use recover::recover;

use crate::config::Config;
use crate::spool::Spool;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};

/// What every association needs: shared, read-only after start.
pub struct Receiver {
    pub config: Arc<Config>,
    pub spool: Arc<Spool>,
    pub store: Arc<Store>,
    pub audit: Arc<crate::audit::AuditLog>,
    /// Woken after every stored instance: the study stage re-checks stability.
    pub stored: Arc<Notify>,
}

/// How long in-flight associations may take to finish after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Accepts associations until `shutdown` turns true, then waits for the open ones.
pub async fn serve(
    listener: TcpListener,
    receiver: Arc<Receiver>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(receiver.config.dicom.max_associations));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!(error = %e, "accepting a DICOM connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let receiver = receiver.clone();
                match limit.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tasks.spawn(async move {
                            association::run(socket, peer, receiver).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        warn!(%peer, limit = receiver.config.dicom.max_associations,
                            "association rejected: too many concurrent associations");
                        tasks.spawn(reject_busy(socket));
                    }
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    if !tasks.is_empty() {
        info!(
            open = tasks.len(),
            "DICOM listener closed; waiting for open associations"
        );
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            open = tasks.len(),
            "associations still open after the shutdown grace period: aborting them (their unacknowledged instances are discarded)"
        );
        tasks.abort_all();
    }
}

/// A-ASSOCIATE-RJ, transient, "local limit exceeded": the peer may retry later.
async fn reject_busy(mut socket: TcpStream) {
    use dicom_ul::pdu::{
        AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason,
        AssociationRJSource,
    };
    use tokio::io::AsyncWriteExt;
    let pdu = dicom_ul::Pdu::AssociationRJ(AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(
            AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
        ),
    });
    let mut buf = Vec::new();
    if dicom_ul::write_pdu(&mut buf, &pdu).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.write_all(&buf)).await;
    }
}
