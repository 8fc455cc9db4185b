//! Notifications when a study is held, released or rejected: a log line always, and an
//! HTTP POST with a JSON body to `[notify] webhook_url` when configured (e.g. a RIS or
//! chat integration that tells the technologist what to fix).

use serde::Serialize;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;
use tracing::warn;

#[derive(Debug, Clone, Serialize)]
pub struct StudyEvent {
    /// "held", "released", "released_override", "rejected", "forwarded_incomplete".
    pub event: String,
    pub gateway: String,
    pub study_uid: String,
    pub accession: Option<String>,
    pub reasons: Vec<crate::decide::HoldReason>,
    /// Who acted, for operator actions.
    pub by: Option<String>,
    pub note: Option<String>,
    pub at: i64,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    host: String,
    port: u16,
    path: String,
    timeout: Duration,
}

impl Webhook {
    /// `http://host[:port]/path`. (TLS endpoints sit behind a local relay: readgate
    /// speaks to the hospital network only.)
    /// The webhook `[notify]` asks for, or `None` without one (the URL was validated
    /// with the configuration).
    pub fn from_config(config: &crate::config::NotifyConfig) -> Option<Webhook> {
        let url = config.webhook_url.as_deref()?;
        Webhook::parse(url, Duration::from_secs(config.timeout_secs)).ok()
    }

    pub fn parse(url: &str, timeout: Duration) -> Result<Webhook, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("expected an http:// URL, got {url:?}"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("bad port in {url:?}"))?,
            ),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("no host in {url:?}"));
        }
        Ok(Webhook {
            host: host.to_string(),
            port,
            path: path.to_string(),
            timeout,
        })
    }

    /// POSTs `body`; Ok when the receiver answered 2xx.
    pub fn post_blocking(&self, body: &[u8]) -> Result<(), String> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("no address")?;
        let mut s = TcpStream::connect_timeout(&addr, self.timeout).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(self.timeout))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(self.timeout))
            .map_err(|e| e.to_string())?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: readgate/{}\r\n\r\n",
            self.path,
            self.host,
            self.port,
            body.len(),
            env!("CARGO_PKG_VERSION")
        );
        s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
        s.write_all(body).map_err(|e| e.to_string())?;
        let mut status = [0u8; 12];
        s.read_exact(&mut status).map_err(|e| e.to_string())?;
        let code = std::str::from_utf8(&status[9..12])
            .unwrap_or("???")
            .to_string();
        if code.starts_with('2') {
            Ok(())
        } else {
            Err(format!("webhook answered HTTP {code}"))
        }
    }
}

/// Sends `event` to the webhook, if any, retrying a few times; never blocks the caller's
/// work on failure (a notification is best effort; the study's state is in the store).
pub fn study_event(webhook: Option<&Webhook>, event: &StudyEvent) {
    let Some(hook) = webhook.cloned() else { return };
    let body = match serde_json::to_vec(event) {
        Ok(b) => b,
        Err(_) => return,
    };
    let study = event.study_uid.clone();
    let send = move || {
        for attempt in 1..=3 {
            match hook.post_blocking(&body) {
                Ok(()) => return,
                Err(e) if attempt == 3 => {
                    warn!(study_uid = %study, error = %e, "webhook notification failed after 3 attempts")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(500 * attempt)),
            }
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(send);
        }
        Err(_) => send(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let w = Webhook::parse("http://127.0.0.1:9000/hook", Duration::from_secs(1)).unwrap();
        assert_eq!(
            (w.host.as_str(), w.port, w.path.as_str()),
            ("127.0.0.1", 9000, "/hook")
        );
        let w = Webhook::parse("http://ris.local", Duration::from_secs(1)).unwrap();
        assert_eq!((w.port, w.path.as_str()), (80, "/"));
        assert!(Webhook::parse("https://x", Duration::from_secs(1)).is_err());
        assert!(Webhook::parse("http://:80/", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn posts_json_and_reads_the_status() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let w = Webhook::parse(
            &format!("http://127.0.0.1:{port}/h"),
            Duration::from_secs(2),
        )
        .unwrap();
        w.post_blocking(br#"{"event":"held"}"#).unwrap();
        let request = server.join().unwrap();
        assert!(request.starts_with("POST /h HTTP/1.1"), "{request}");
        assert!(request.contains("application/json"));
    }
}
