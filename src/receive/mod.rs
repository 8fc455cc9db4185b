//! The C-STORE / C-ECHO SCP: accepts associations from the modalities and PACS listed in
//! the config and hands each received instance to the spool and the store.
//!
//! `access` decides who may associate, `association` runs one association.

mod access;
mod association;
mod recover;

pub use recover::recover;

use crate::config::Config;
use crate::listen::Listening;
use crate::spool::Spool;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tracing::warn;

/// What every association needs: shared, read-only after start.
pub struct Receiver {
    pub config: Arc<Config>,
    pub spool: Arc<Spool>,
    pub store: Arc<Store>,
    pub audit: Arc<crate::audit::AuditLog>,
    /// Woken after every stored instance: the study stage re-checks stability.
    pub stored: Arc<Notify>,
    /// Association slots (`dicom.max_associations`), shared by the plain and TLS listeners.
    pub slots: Arc<Semaphore>,
}

/// How long in-flight associations may take to finish after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Accepts associations until `shutdown` turns true, then waits for the open ones.
/// With `tls`, every connection is a TLS connection (DICOM over TLS).
pub async fn serve(
    listener: TcpListener,
    receiver: Arc<Receiver>,
    shutdown: watch::Receiver<bool>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let max = receiver.config.dicom.max_associations;
    let limit = receiver.slots.clone();
    let listening = Listening {
        protocol: if tls.is_some() { "DICOM TLS" } else { "DICOM" },
        grace: SHUTDOWN_GRACE,
        on_abort: "their unacknowledged instances are discarded",
        per_host: receiver.config.dicom.max_connections_per_host,
        refusal: None,
    };
    crate::listen::serve(listener, listening, shutdown, |socket, peer| {
        let receiver = receiver.clone();
        let tls = tls.clone();
        Some(match limit.clone().try_acquire_owned() {
            Ok(permit) => Box::pin(async move {
                association::run(socket, peer, receiver, tls).await;
                drop(permit);
            }),
            Err(_) => {
                warn!(%peer, limit = max, "association rejected: too many concurrent associations");
                Box::pin(reject_busy(socket))
            }
        })
    })
    .await;
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
