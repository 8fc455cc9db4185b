//! Live forwarding of the audit trail to a syslog collector (an IHE ATNA Audit Record
//! Repository): RFC 5424 messages carrying the PS3.15 XML, octet-counted over TCP
//! (RFC 6587) or TLS (RFC 5425, optionally with a client certificate as ATNA's node
//! authentication asks).
//!
//! A background thread reads the table, not a queue: appends never wait for the network,
//! and the cursor (last sequence number delivered, table `audit_cursor`) survives
//! restarts, so nothing is skipped.
//!
//! Syslog has no acknowledgement, and a successful write only means the kernel took the
//! bytes (finding L7: a collector that had closed still "took" 28 entries). So each batch
//! goes over its own connection, which readgate then ends (TLS: close_notify; then TCP
//! FIN) and waits for the collector to end its side. A collector ends its side only after
//! reading to readgate's end; one that stopped earlier resets the connection instead, or
//! never answers. Only a batch whose connection ended cleanly advances the cursor; any
//! other is sent again (at-least-once: a collector may see a batch twice, recognisable by
//! `[meta sequenceId]`).

use super::atna::{self, AtnaSource};
use super::{AuditError, AuditLog};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

pub use crate::config::audit::{Scheme, Target};

/// Why the sender `[audit]` asks for cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("audit.syslog: {0}")]
    Target(#[from] crate::config::BadValue),
    #[error("audit.tls_ca is required for tls://")]
    NoCa,
    #[error("audit TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// What the sender needs; see [`Sender::start_from_config`] for the usual way to build it.
#[derive(Clone)]
pub struct SenderConfig {
    pub target: Target,
    /// Required for `tls://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub source: AtnaSource,
    /// Longest wait between reconnection attempts (the first is 1 s, doubling).
    pub retry_max: Duration,
    /// How often the table is looked at when everything has been sent.
    pub poll: Duration,
    /// Ships only while this says so: with several nodes on one database, the node
    /// that runs the cluster's timers ships the one trail (None: always).
    pub only_while: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

/// The background sender. Dropping it stops it too; [`Sender::stop`] also waits.
pub struct Sender {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sender {
    /// The sender `[audit] syslog` asks for, or `None` without one.
    pub fn start_from_config(
        config: &crate::config::Config,
        only_while: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    ) -> Result<Option<Sender>, StartError> {
        let a = &config.audit;
        let Some(url) = &a.syslog else {
            return Ok(None);
        };
        let target = Target::parse(url)?;
        let tls = match (target.scheme, &a.tls_ca) {
            (Scheme::Tls, Some(ca)) => Some(crate::tls::client_config(
                ca,
                a.tls_cert.as_deref().zip(a.tls_key.as_deref()),
            )?),
            (Scheme::Tls, None) => return Err(StartError::NoCa),
            (Scheme::Tcp, _) => None,
        };
        let cfg = SenderConfig {
            target,
            tls,
            source: AtnaSource::from_config(config),
            retry_max: Duration::from_secs(a.retry_max_secs),
            poll: Duration::from_millis(500),
            only_while,
        };
        Ok(Some(Sender::spawn(&config.database(), cfg)?))
    }

    /// Starts the thread; it opens its own connection to the database.
    pub fn spawn(db: &crate::config::Database, cfg: SenderConfig) -> Result<Sender, AuditError> {
        let log = AuditLog::open_at(db)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("audit-syslog".into())
            .spawn(move || run(log, cfg, flag))
            .map_err(AuditError::Io)?;
        Ok(Sender {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops after a last attempt (at most ~3 s) to send what is pending on an open
    /// connection; returns when the thread has ended.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The data path to the collector: plain TCP or TLS over it.
enum Conn {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

/// How long the collector may take to end its side after readgate ended the batch.
const CONFIRM_WAIT: Duration = Duration::from_secs(10);

impl Conn {
    /// Sends `bytes`, ends the stream, and waits for the collector to end its side: the
    /// proof that it read everything (see the module's documentation). Bytes the
    /// collector sends meanwhile are ignored.
    fn deliver(self, bytes: &[u8]) -> std::io::Result<()> {
        let mut ignored = [0u8; 512];
        match self {
            Conn::Tcp(mut s) => {
                s.set_read_timeout(Some(CONFIRM_WAIT))?;
                s.write_all(bytes)?;
                s.flush()?;
                s.shutdown(std::net::Shutdown::Write)?;
                while s.read(&mut ignored)? > 0 {}
                Ok(())
            }
            Conn::Tls(mut s) => {
                s.sock.set_read_timeout(Some(CONFIRM_WAIT))?;
                s.write_all(bytes)?;
                s.flush()?;
                s.conn.send_close_notify();
                while s.conn.wants_write() {
                    s.conn.write_tls(&mut s.sock)?;
                }
                s.sock.shutdown(std::net::Shutdown::Write)?;
                loop {
                    match s.read(&mut ignored) {
                        // The collector's close_notify.
                        Ok(0) => return Ok(()),
                        Ok(_) => {}
                        // A clean TCP end without close_notify: the collector closed in
                        // answer to ours (what many collectors do). A reset is an error.
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
}

fn connect(cfg: &SenderConfig) -> std::io::Result<Conn> {
    let addrs: Vec<_> = (cfg.target.host.as_str(), cfg.target.port)
        .to_socket_addrs()?
        .collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
            Ok(s) => {
                s.set_nodelay(true)?;
                // A collector that stops reading must not hold the thread forever.
                s.set_write_timeout(Some(Duration::from_secs(30)))?;
                return match (cfg.target.scheme, &cfg.tls) {
                    (Scheme::Tcp, _) => Ok(Conn::Tcp(s)),
                    (Scheme::Tls, Some(tls)) => {
                        let name = rustls::pki_types::ServerName::try_from(cfg.target.host.clone())
                            .map_err(|e| {
                                std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
                            })?;
                        let conn = rustls::ClientConnection::new(tls.clone(), name)
                            .map_err(std::io::Error::other)?;
                        let mut stream = rustls::StreamOwned::new(conn, s);
                        // Handshake now, so a certificate problem is reported as such.
                        while stream.conn.is_handshaking() {
                            stream.conn.complete_io(&mut stream.sock)?;
                        }
                        Ok(Conn::Tls(Box::new(stream)))
                    }
                    (Scheme::Tls, None) => Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "tls:// without a TLS configuration",
                    )),
                };
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

const BATCH: usize = 256;
const DRAIN_ON_STOP: Duration = Duration::from_secs(3);

fn run(log: AuditLog, cfg: SenderConfig, stop: Arc<AtomicBool>) {
    let key = cfg.target.to_string();
    let mut backoff = Duration::from_secs(1);
    let mut stopping_since: Option<Instant> = None;
    let mut delivering = false;
    info!(target_url = %key, "audit: forwarding to syslog");
    loop {
        if stop.load(Ordering::SeqCst) {
            let since = *stopping_since.get_or_insert_with(Instant::now);
            if !delivering || since.elapsed() > DRAIN_ON_STOP {
                break;
            }
        }
        if cfg.only_while.as_ref().is_some_and(|ships| !ships()) {
            if stopping_since.is_some() {
                break;
            }
            delivering = false;
            pause(&stop, cfg.poll);
            continue;
        }
        let batch = match log.cursor(&key).and_then(|c| log.entries_after(c, BATCH)) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "audit: cannot read the trail for syslog");
                pause(&stop, backoff);
                continue;
            }
        };
        let Some(last) = batch.last().map(|e| e.seq) else {
            if stopping_since.is_some() {
                break;
            }
            pause(&stop, cfg.poll);
            continue;
        };
        let mut bytes = Vec::with_capacity(batch.len() * 2048);
        for e in &batch {
            bytes.extend(atna::frame(&atna::syslog_message(e, &cfg.source)));
        }
        match connect(&cfg).and_then(|c| c.deliver(&bytes)) {
            Ok(()) => {
                if !delivering {
                    info!(target_url = %key, "audit: the syslog collector confirms receipt");
                    delivering = true;
                }
                debug!(entries = batch.len(), last, "audit: batch delivered");
                backoff = Duration::from_secs(1);
                if let Err(e) = log.set_cursor(&key, last) {
                    // Not fatal: the batch is sent again later (at-least-once).
                    warn!(error = %e, "audit: cannot record the syslog cursor");
                }
            }
            Err(e) => {
                delivering = false;
                if stopping_since.is_some() {
                    break;
                }
                warn!(target_url = %key, error = %e, retry_in_s = backoff.as_secs(),
                    "audit: the syslog collector did not confirm receipt; sending again");
                pause(&stop, backoff);
                backoff = (backoff * 2).min(cfg.retry_max);
            }
        }
    }
}

/// Sleeps in short steps so that stopping is prompt.
fn pause(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("tls://collector.example:6514").unwrap();
        assert_eq!(t.scheme, Scheme::Tls);
        assert_eq!(t.host, "collector.example");
        assert_eq!(t.port, 6514);
        assert_eq!(t.to_string(), "tls://collector.example:6514");
        let t = Target::parse("tcp://[::1]:601").unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(t.to_string(), "tcp://[::1]:601");
        assert!(Target::parse("udp://x:514").is_err());
        assert!(Target::parse("tcp://x").is_err());
        assert!(Target::parse("tcp://:514").is_err());
        assert!(Target::parse("tcp://x:0").is_err());
    }
}
