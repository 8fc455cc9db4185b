//! The C-STORE / C-ECHO / MPPS SCP: accepts associations from the modalities and PACS listed in
//! the config and hands each received instance to the spool and the store.
//!
//! `access` decides who may associate, `association` runs one association, `mpps`
//! records the modality's performed procedure steps.

mod access;
mod association;
pub mod moves;
pub mod mpps;
mod recover;

pub use recover::recover;

use crate::config::Live;
use crate::listen::Listening;
use crate::spool::Spool;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};

/// What every association needs: shared, read-only after start.
pub struct Receiver {
    /// Read at the start of each association: a reload applies to the next one.
    pub config: Live,
    pub spool: Arc<Spool>,
    pub store: Arc<Store>,
    pub audit: Arc<crate::audit::AuditLog>,
    /// Woken after every stored instance: the study stage re-checks stability.
    pub stored: Arc<Notify>,
    /// Woken after every stored instance too: the priors lookup asks the PACS for the
    /// patient's history (`priors::lookup`; nobody waits when no `[[pacs]]` is set).
    pub history: Arc<Notify>,
    /// Association slots (`dicom.max_associations`), shared by the plain and TLS listeners.
    pub slots: Arc<Semaphore>,
    /// readgate's own pending C-MOVEs: their sub-operations are priors, not studies.
    pub moves: Arc<moves::Moves>,
    /// The forwarders: an instance of a streaming study is queued at once and its
    /// destination's forwarder woken.
    pub wakeups: Arc<crate::forward::Wakeups>,
}

/// How long in-flight associations may take to finish after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Accepts associations until `shutdown` turns true, then waits for the open ones.
/// With `tls`, every connection is a TLS connection (DICOM over TLS).
pub async fn serve(
    listener: TcpListener,
    receiver: Arc<Receiver>,
    shutdown: watch::Receiver<bool>,
    tls: Option<Arc<crate::tls::ServerTls>>,
) {
    let listening = Listening {
        protocol: if tls.is_some() { "DICOM TLS" } else { "DICOM" },
        grace: SHUTDOWN_GRACE,
        on_abort: "their unacknowledged instances are discarded",
        per_host: receiver.config.current().dicom.max_connections_per_host,
        refusal: None,
    };
    crate::listen::serve(listener, listening, shutdown, |socket, peer| {
        let receiver = receiver.clone();
        let tls = tls.clone();
        Some(Box::pin(association::run(socket, peer, receiver, tls)))
    })
    .await;
}

/// A-ASSOCIATE-RJ, transient, "local limit exceeded": the peer may retry later. The
/// request (at most `max_request` bytes) is read first, so that closing does not reset
/// the connection before the peer has read the answer.
async fn reject_busy(mut socket: TcpStream, max_request: usize) {
    use dicom_ul::pdu::{
        AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason,
        AssociationRJSource,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let consume = async {
        let mut header = [0u8; 6];
        socket.read_exact(&mut header).await?;
        let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
        if len > max_request {
            return Err(std::io::Error::other("request too long"));
        }
        let mut rest = vec![0u8; len];
        socket.read_exact(&mut rest).await.map(|_| ())
    };
    if !matches!(
        tokio::time::timeout(Duration::from_secs(5), consume).await,
        Ok(Ok(()))
    ) {
        return;
    }
    let pdu = dicom_ul::Pdu::AssociationRJ(AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(
            AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
        ),
    });
    let mut buf = Vec::new();
    if dicom_ul::write_pdu(&mut buf, &pdu).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.write_all(&buf)).await;
        let _ = socket.shutdown().await;
    }
}
