//! Notifications when a study is held, released or rejected: a log line always, and an
//! HTTP POST with a JSON body to `[notify] webhook_url` when configured (e.g. a RIS or
//! chat integration that tells the technologist what to fix). The POST goes through
//! reqwest (HTTP/1.1, rustls on ring with the webpki roots), so `http://` and `https://`
//! receivers both work.

use serde::Serialize;
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

/// Why a notification could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("webhook answered HTTP {0}")]
    Status(u16),
    #[error("bad certificate for the webhook's trust store: {0}")]
    Certificate(String),
    #[error("webhook URL: {0}")]
    Url(String),
}

#[derive(Debug, Clone)]
pub struct Webhook {
    url: reqwest::Url,
    timeout: Duration,
    client: reqwest::Client,
}

fn client(
    timeout: Duration,
    extra_root: Option<reqwest::Certificate>,
) -> reqwest::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("readgate/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(c) = extra_root {
        b = b.add_root_certificate(c);
    }
    b.build()
}

impl Webhook {
    /// The webhook `[notify]` asks for, or `None` without one (the URL was validated
    /// with the configuration).
    pub fn from_config(config: &crate::config::NotifyConfig) -> Option<Webhook> {
        let url = config.webhook_url.as_deref()?;
        Webhook::parse(url, Duration::from_secs(config.timeout_secs)).ok()
    }

    /// `http://host[:port]/path` or `https://host[:port]/path` (verified against the
    /// public web PKI roots).
    pub fn parse(url: &str, timeout: Duration) -> Result<Webhook, WebhookError> {
        let parsed = crate::config::notify::webhook_url(url).map_err(|e| WebhookError::Url(e.0))?;
        let client = client(timeout, None)?;
        Ok(Webhook {
            url: parsed,
            timeout,
            client,
        })
    }

    /// Also trusts the CA (or self-signed certificate) in `pem`, for a receiver whose
    /// certificate does not chain to a public root.
    pub fn trusting_pem(self, pem: &[u8]) -> Result<Webhook, WebhookError> {
        let cert = reqwest::Certificate::from_pem(pem)
            .map_err(|e| WebhookError::Certificate(e.to_string()))?;
        let client = client(self.timeout, Some(cert))?;
        Ok(Webhook { client, ..self })
    }

    /// POSTs `body`; Ok when the receiver answered 2xx.
    pub async fn post(&self, body: Vec<u8>) -> Result<(), WebhookError> {
        let resp = self
            .client
            .post(self.url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(WebhookError::Status(status.as_u16()))
        }
    }
}

async fn send_with_retries(hook: Webhook, body: Vec<u8>, study: String) {
    for attempt in 1..=3u64 {
        match hook.post(body.clone()).await {
            Ok(()) => return,
            Err(e) if attempt == 3 => {
                warn!(study_uid = %study, error = %e, "webhook notification failed after 3 attempts")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500 * attempt)).await,
        }
    }
}

/// Sends `event` to the webhook, if any, retrying a few times; never blocks the caller's
/// work on failure (a notification is best effort; the study's state is in the store).
/// Inside a tokio runtime the POST runs as a task; outside one (the CLI) it runs to the
/// end on a small runtime of its own before returning.
pub fn study_event(webhook: Option<&Webhook>, event: &StudyEvent) {
    let Some(hook) = webhook.cloned() else { return };
    let body = match serde_json::to_vec(event) {
        Ok(b) => b,
        Err(_) => return,
    };
    let study = event.study_uid.clone();
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(send_with_retries(hook, body, study));
        }
        Err(_) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(send_with_retries(hook, body, study)),
            Err(e) => warn!(study_uid = %study, error = %e, "webhook notification not sent"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn urls() {
        let w = Webhook::parse("http://127.0.0.1:9000/hook", Duration::from_secs(1)).unwrap();
        assert_eq!(
            (
                w.url.host_str(),
                w.url.port_or_known_default(),
                w.url.path()
            ),
            (Some("127.0.0.1"), Some(9000), "/hook")
        );
        let w = Webhook::parse("http://ris.local", Duration::from_secs(1)).unwrap();
        assert_eq!(
            (w.url.port_or_known_default(), w.url.path()),
            (Some(80), "/")
        );
        let w = Webhook::parse("https://ris.local/h", Duration::from_secs(1)).unwrap();
        assert_eq!(w.url.port_or_known_default(), Some(443));
        assert!(Webhook::parse("ftp://x", Duration::from_secs(1)).is_err());
        assert!(Webhook::parse("http://:80/", Duration::from_secs(1)).is_err());
        assert!(Webhook::parse("ris.local/hook", Duration::from_secs(1)).is_err());
    }

    /// Reads one HTTP/1.1 request (head and Content-Length body) from `s`.
    fn read_request(s: &mut impl Read) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    return text;
                }
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    #[tokio::test]
    async fn posts_json_and_reads_the_status() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let request = read_request(&mut s);
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
            request
        });
        let w = Webhook::parse(
            &format!("http://127.0.0.1:{port}/h"),
            Duration::from_secs(2),
        )
        .unwrap();
        w.post(br#"{"event":"held"}"#.to_vec()).await.unwrap();
        let request = server.join().unwrap();
        assert!(request.starts_with("POST /h HTTP/1.1"), "{request}");
        assert!(request.contains("application/json"));
        assert!(request.ends_with(r#"{"event":"held"}"#), "{request}");
    }

    #[tokio::test]
    async fn non_2xx_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            read_request(&mut s);
            s.write_all(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
        });
        let w =
            Webhook::parse(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(2)).unwrap();
        let e = w.post(b"{}".to_vec()).await.unwrap_err();
        assert!(matches!(e, WebhookError::Status(503)), "{e}");
        server.join().unwrap();
    }

    #[allow(dead_code)] // the integration tests use all of it, this test a part
    mod pki {
        include!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/pki.rs"));
    }

    #[tokio::test]
    async fn posts_over_https_to_a_receiver_with_a_private_certificate() {
        // A CA and a certificate for localhost, made for this test; the server side is
        // built as readgate builds every TLS server: from PEM files.
        let ca = pki::TestCa::new("readgate test CA");
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca.issue(&["localhost"]).write(dir.path(), "server");
        let config = crate::tls::server_config(&cert, &key, &[]).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let conn = rustls::ServerConnection::new(config).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let request = read_request(&mut tls);
            tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
            tls.flush().unwrap();
            tls.conn.send_close_notify();
            let _ = tls.flush();
            request
        });
        let url = format!("https://localhost:{port}/hook");
        let w = Webhook::parse(&url, Duration::from_secs(5))
            .unwrap()
            .trusting_pem(ca.pem.as_bytes())
            .unwrap();
        let body = serde_json::to_vec(&serde_json::json!({"event": "held", "study_uid": "1.2.3"}))
            .unwrap();
        w.post(body.clone()).await.unwrap();
        let request = server.join().unwrap();
        assert!(request.starts_with("POST /hook HTTP/1.1"), "{request}");
        assert!(request.contains("application/json; charset=utf-8"));
        assert!(
            request.ends_with(&String::from_utf8(body).unwrap()),
            "{request}"
        );
    }
}
