//! The accept loop every TCP listener of readgate runs (DICOM, HL7): accept with a
//! back-off when the process is out of descriptors, hand each connection to its
//! protocol, stop accepting on shutdown and give open connections a grace period.
//!
//! Where a connection is admitted or refused is the protocol's decision (`admit`); this
//! module only owns the loop, so that limits added to it hold for every listener.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

/// The work one accepted connection does.
pub type Connection = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How a listener is named in its log lines and how long it waits at shutdown.
pub struct Listening {
    /// e.g. "DICOM", "HL7".
    pub protocol: &'static str,
    /// How long open connections may take to finish after shutdown is requested; then
    /// they are aborted.
    pub grace: Duration,
    /// What aborting an open connection costs, for the warning (e.g. "their
    /// unacknowledged instances are discarded").
    pub on_abort: &'static str,
    /// Connections one source address may hold at once: more are closed at once, so
    /// that one host (silent sockets, a port scanner) cannot take every slot from the
    /// others (findings M3, M4).
    pub per_host: usize,
    /// What a refused connection is told before it is closed, when the protocol can say
    /// it without reading anything first (HTTP's 503, DICOM's A-ASSOCIATE-RJ); written
    /// only if the socket takes it at once, so a refusal never waits on the peer.
    pub refusal: Option<&'static [u8]>,
}

/// Tells a refused peer why (best effort, never waiting), then closes the socket.
pub fn refuse(socket: TcpStream, refusal: Option<&'static [u8]>) {
    if let Some(bytes) = refusal {
        let _ = socket.try_write(bytes);
    }
}

/// Open connections per source address.
type PerHost = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Gives a source address's place back when its connection ends.
struct HostPlace {
    hosts: PerHost,
    ip: IpAddr,
}

impl Drop for HostPlace {
    fn drop(&mut self) {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = hosts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                hosts.remove(&self.ip);
            }
        }
    }
}

/// Accepts until `shutdown` turns true; `admit` turns each connection into its work, or
/// refuses it (None: the socket is dropped, i.e. closed).
pub async fn serve(
    listener: TcpListener,
    listening: Listening,
    mut shutdown: watch::Receiver<bool>,
    mut admit: impl FnMut(TcpStream, SocketAddr) -> Option<Connection>,
) {
    let protocol = listening.protocol;
    let hosts: PerHost = Arc::default();
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!(error = %e, protocol, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let ip = peer.ip().to_canonical();
                let place = {
                    let mut open = hosts.lock().unwrap_or_else(|p| p.into_inner());
                    let n = open.entry(ip).or_insert(0);
                    if *n >= listening.per_host {
                        None
                    } else {
                        *n += 1;
                        Some(HostPlace { hosts: hosts.clone(), ip })
                    }
                };
                let Some(place) = place else {
                    warn!(%peer, protocol, limit = listening.per_host,
                        "connection refused: too many connections from this address");
                    refuse(socket, listening.refusal);
                    continue;
                };
                let _ = socket.set_nodelay(true);
                if let Some(work) = admit(socket, peer) {
                    tasks.spawn(async move {
                        work.await;
                        drop(place);
                    });
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
            protocol, "listener closed; waiting for open connections"
        );
    }
    let drained = tokio::time::timeout(listening.grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            open = tasks.len(),
            protocol,
            "connections still open after the shutdown grace period: aborting them ({})",
            listening.on_abort
        );
        tasks.abort_all();
    }
}
