//! Serving the router: HTTP/1.1 with hyper, over plain TCP or TLS (`[http] tls_cert`,
//! `tls_key`), through the accept loop every readgate listener shares ([`crate::listen`]).
//!
//! Nothing a client sends before it authenticates may cost unbounded connections or time
//! (finding M5): connections are capped in total (`http.max_connections`) and per client
//! address (`http.max_connections_per_host`); a request's headers must arrive within
//! `http.header_timeout_secs` of the connection opening or of the previous response (so a
//! slow-header or idle keep-alive connection is closed); reading a body and answering it
//! is bounded by `http.request_timeout_secs` (then 408). A TLS handshake gets the header
//! timeout too.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower_service::Service;
use tracing::{debug, info, warn};

use super::HttpConfig;
use crate::listen::{Connection, Listening};

/// The client's address as the HTTP handlers see it (`ConnectInfo<ClientAddr>`), over
/// plain TCP and over TLS alike: login throttling and the audit trail key on it, so it
/// must never be "unknown" (finding M1).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// What every connection shares.
struct Serving {
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    header_timeout: Duration,
    request_timeout: Duration,
    slots: Arc<Semaphore>,
    max: usize,
    shutdown: watch::Receiver<bool>,
}

/// Binds `[http] listen` and serves `app` until `shutdown` turns true. Returns the
/// address.
pub async fn start(
    http: &HttpConfig,
    app: Router,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use anyhow::Context as _;
    let listener = TcpListener::bind(http.listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {} (http.listen)", http.listen))?;
    let addr = listener.local_addr()?;
    let tls = match (&http.tls_cert, &http.tls_key) {
        (Some(cert), Some(key)) => {
            let config = crate::tls::server_config(cert, key, &[b"http/1.1"])
                .map_err(|e| anyhow::anyhow!("http.tls_cert / http.tls_key: {e}"))?;
            Some(tokio_rustls::TlsAcceptor::from(config))
        }
        _ => None,
    };
    let protocol = if tls.is_some() { "HTTPS" } else { "HTTP" };
    info!(listen = %addr, "readgate is serving {protocol}");
    let serving = Arc::new(Serving {
        app,
        tls,
        header_timeout: Duration::from_secs(http.header_timeout_secs),
        request_timeout: Duration::from_secs(http.request_timeout_secs),
        slots: Arc::new(Semaphore::new(http.max_connections)),
        max: http.max_connections,
        shutdown: shutdown.clone(),
    });
    let listening = Listening {
        protocol,
        grace: Duration::from_secs(5),
        on_abort: "their requests are not answered",
        per_host: http.max_connections_per_host,
        // Over TLS nothing can be said before a handshake: the connection is just closed.
        refusal: serving.tls.is_none().then_some(BUSY),
    };
    let task = tokio::spawn(crate::listen::serve(
        listener,
        listening,
        shutdown,
        move |socket, peer| admit(&serving, socket, peer),
    ));
    Ok((addr, task))
}

/// The answer to a connection over the caps (plain HTTP only).
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n\r\ntoo many connections\n";

fn admit(
    serving: &Arc<Serving>,
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
) -> Option<Connection> {
    let Ok(permit) = serving.slots.clone().try_acquire_owned() else {
        warn!(%peer, limit = serving.max, "HTTP connection refused: too many connections (http.max_connections)");
        crate::listen::refuse(socket, serving.tls.is_none().then_some(BUSY));
        return None;
    };
    let serving = serving.clone();
    Some(Box::pin(async move {
        match &serving.tls {
            None => connection(socket, peer, &serving).await,
            Some(acceptor) => {
                match tokio::time::timeout(serving.header_timeout, acceptor.accept(socket)).await {
                    Ok(Ok(tls)) => connection(tls, peer, &serving).await,
                    Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                }
            }
        }
        drop(permit);
    }))
}

/// Serves one connection's requests until the client closes it, a timeout closes it, or
/// shutdown asks it to finish (the request in progress is answered first).
async fn connection<S: crate::tls::Wire + 'static>(socket: S, peer: SocketAddr, serving: &Serving) {
    let app = serving.app.clone();
    let request_timeout = serving.request_timeout;
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request
            .extensions_mut()
            .insert(ConnectInfo(ClientAddr(peer)));
        let mut app = app.clone();
        async move {
            match tokio::time::timeout(request_timeout, app.call(request)).await {
                Ok(response) => response,
                Err(_) => {
                    debug!(%peer, "HTTP request timed out (http.request_timeout_secs)");
                    Ok::<_, Infallible>(
                        (
                            StatusCode::REQUEST_TIMEOUT,
                            "request not completed in time\n",
                        )
                            .into_response(),
                    )
                }
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(serving.header_timeout);
    let conn = builder.serve_connection(TokioIo::new(socket), service);
    tokio::pin!(conn);
    let mut shutdown = serving.shutdown.clone();
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        debug!(%peer, error = %e, "HTTP connection ended");
    }
}
