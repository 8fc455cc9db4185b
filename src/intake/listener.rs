//! The MLLP listener: one task per connection reads frames, processes each message
//! (charset, parse, ACK) and answers only after the intake made it durable.

use super::{mllp, Intake};
use crate::config::Hl7Config;
use crate::hl7::mllp::{Decoder, FrameError};
use crate::hl7::{self, ack, AckCode, AckError, AckOptions, ErrorCode};
use crate::listen::Listening;
use crate::store::IncomingMessage;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

/// Frames up to this size are parsed on the connection's task.
const INLINE_PARSE_MAX: usize = 16 * 1024;

pub struct Listener {
    /// `[hl7]` as the listener started; its per-connection keys follow `live`.
    pub config: Hl7Config,
    /// The configuration in force, when the listener runs under `readgate serve`.
    live: Option<crate::config::Live>,
    pub intake: Intake,
    /// Connection slots (`hl7.max_connections`), shared by the plain and TLS listeners.
    slots: Arc<Semaphore>,
    /// ACK control ids: a per-start prefix plus a counter, unique across restarts.
    prefix: String,
    counter: AtomicU64,
}

impl Listener {
    pub fn new(config: Hl7Config, intake: Intake) -> Listener {
        let start = crate::store::now_ms() as u64;
        Listener {
            slots: Arc::new(Semaphore::new(config.max_connections)),
            config,
            live: None,
            intake,
            prefix: format!("RG{}", to_base36(start)),
            counter: AtomicU64::new(0),
        }
    }

    /// Reads the per-connection keys of `[hl7]` (allowed hosts, frame size, idle time,
    /// character set, application name, limits) from `live`, so that a reload applies them
    /// to the next connection.
    pub fn following(mut self, live: crate::config::Live) -> Listener {
        self.live = Some(live);
        self
    }

    /// `[hl7]` in force now (the listener's own when no reload can change it).
    fn current(&self) -> Hl7Config {
        self.live
            .as_ref()
            .and_then(|l| l.current().hl7.clone())
            .unwrap_or_else(|| self.config.clone())
    }

    fn next_control_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}{}", self.prefix, to_base36(n))
    }

    fn hl7_config(config: &Hl7Config) -> hl7::Config {
        hl7::Config {
            default_charset: config.default_charset,
            accept_unsupported_types: true,
            application: Some(config.application.clone()),
            facility: None,
            limits: config.limits,
            expected_images: config.expected_images_field.clone(),
        }
    }
}

fn to_base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// Accepts MLLP connections until `shutdown`; with `tls`, each is a TLS connection.
pub async fn serve(
    listener: TcpListener,
    state: Arc<Listener>,
    shutdown: watch::Receiver<bool>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let max = state.config.max_connections;
    // Messages in flight finish (they are short); idle connections are closed.
    let listening = Listening {
        protocol: if tls.is_some() { "HL7 TLS" } else { "HL7" },
        grace: Duration::from_secs(5),
        on_abort: "idle or slow senders; nothing unacknowledged is lost",
        per_host: state.config.max_connections_per_host,
        // MLLP has no way to refuse before a message arrives.
        refusal: None,
    };
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    crate::listen::serve(listener, listening, shutdown, |socket, peer| {
        let ip = peer.ip().to_canonical();
        let config = state.current();
        let allowed = &config.allowed_hosts;
        if !allowed.is_empty() && !allowed.iter().any(|h| h.to_canonical() == ip) {
            warn!(%peer, "HL7 connection refused: address not in hl7.allowed_hosts");
            return None;
        }
        let Ok(permit) = state.slots.clone().try_acquire_owned() else {
            warn!(%peer, limit = max, "HL7 connection refused: too many connections");
            return None;
        };
        let state = state.clone();
        let acceptor = acceptor.clone();
        Some(Box::pin(async move {
            match acceptor {
                None => connection(socket, peer, state).await,
                Some(acceptor) => {
                    let idle = Duration::from_secs(state.current().idle_timeout_secs);
                    match tokio::time::timeout(idle, acceptor.accept(socket)).await {
                        Ok(Ok(tls)) => connection(tls, peer, state).await,
                        Ok(Err(e)) => warn!(%peer, error = %e, "HL7 TLS handshake failed"),
                        Err(_) => warn!(%peer, "HL7 TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        }))
    })
    .await;
}

async fn connection<S: crate::tls::Wire>(mut socket: S, peer: SocketAddr, state: Arc<Listener>) {
    debug!(%peer, "HL7 connection opened");
    let config = state.current();
    let idle = Duration::from_secs(config.idle_timeout_secs);
    let mut decoder = Decoder::new(config.max_frame_bytes);
    let hl7_config = Listener::hl7_config(&config);
    let (mut messages, mut failed) = (0u64, 0u64);
    loop {
        let item =
            match tokio::time::timeout(idle, mllp::read_frame(&mut socket, &mut decoder)).await {
                Err(_) => {
                    debug!(%peer, "HL7 connection idle: closed");
                    break;
                }
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "HL7 connection lost");
                    break;
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(item))) => item,
            };
        let frame = match item {
            Ok(frame) => frame,
            Err(e @ FrameError::TooLarge { .. }) => {
                warn!(%peer, error = %e, "HL7 frame refused");
                failed += 1;
                let ack = reject_without_message(&state, &e.to_string());
                if mllp::write_frame(&mut socket, &ack).await.is_err() {
                    break;
                }
                continue;
            }
            Err(e) => {
                warn!(%peer, error = %e, "HL7 framing problem");
                continue;
            }
        };
        let now = std::time::SystemTime::now();
        let control_id = state.next_control_id();
        // Parsing is CPU work that grows with hostile input (a 1 MiB frame of delimiters
        // takes most of a second): large frames go to the blocking pool so they cannot
        // stall the async workers that serve DICOM too; ordinary ones (tens of µs) not.
        let (frame, outcome) = if frame.len() <= INLINE_PARSE_MAX {
            let outcome = hl7::process(&frame, &hl7_config, &control_id, &ack::timestamp(now));
            (frame, outcome)
        } else {
            let config = hl7_config.clone();
            match tokio::task::spawn_blocking(move || {
                let outcome = hl7::process(&frame, &config, &control_id, &ack::timestamp(now));
                (frame, outcome)
            })
            .await
            {
                Ok(x) => x,
                Err(e) => {
                    warn!(%peer, error = %e, "HL7 processing task failed");
                    break;
                }
            }
        };
        let header = outcome.header.clone();
        let message_type = header
            .as_ref()
            .map(|h| format!("{}^{}", h.message_type.code, h.message_type.trigger))
            .unwrap_or_default();
        let sender = header
            .as_ref()
            .map(|h| {
                format!(
                    "{}|{}",
                    h.sending_application.namespace_id.as_deref().unwrap_or(""),
                    h.sending_facility.namespace_id.as_deref().unwrap_or("")
                )
            })
            .unwrap_or_default();
        let ack_text = match &outcome.result {
            Err(e) => e.to_string(),
            Ok(hl7::Parsed::Order(order)) if !order.warnings.is_empty() => {
                for w in &order.warnings {
                    warn!(%peer, message_type = %message_type, setting = "hl7.expected_images_field", "{}", w.reason);
                }
                order
                    .warnings
                    .iter()
                    .map(|w| w.reason.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            }
            Ok(_) => String::new(),
        };
        let reply_wanted = outcome.should_reply();
        let ack_code = outcome.ack_code;
        crate::metrics::hl7_message(&message_type, ack_code.as_str());
        let message = IncomingMessage {
            received_at: crate::store::now_ms(),
            peer: peer.to_string(),
            sender,
            control_id: header
                .as_ref()
                .map(|h| h.control_id.clone())
                .unwrap_or_default(),
            message_type: message_type.clone(),
            charset: outcome
                .detection
                .as_ref()
                .map(|d| format!("{:?}", d.charset)),
            raw: frame,
            parsed: outcome.result.ok(),
            ack_code: ack_code.as_str().to_string(),
            ack_text,
            ack: outcome.ack_bytes,
        };
        let ack = match state.intake.record(message).await {
            Ok(recorded) => {
                messages += 1;
                if recorded.duplicate {
                    info!(%peer, message_type = %message_type, "repeated HL7 message (same sender and MSH-10): acknowledged again, not applied twice");
                }
                if ack_code != AckCode::Accept {
                    failed += 1;
                    warn!(%peer, message_type = %message_type, ack = ack_code.as_str(), "HL7 message not accepted");
                }
                recorded.ack
            }
            Err(why) => {
                failed += 1;
                warn!(%peer, error = %why, "HL7 message could not be stored: answered AE");
                let error = AckError {
                    code: ErrorCode::ApplicationInternalError,
                    location: None,
                    message: why.to_string(),
                };
                let options = ack_options(&state);
                let text = ack::build(header.as_ref(), AckCode::Error, Some(&error), &options);
                text.into_bytes()
            }
        };
        if reply_wanted && mllp::write_frame(&mut socket, &ack).await.is_err() {
            break;
        }
    }
    debug!(%peer, messages, failed, "HL7 connection closed");
}

fn ack_options(state: &Listener) -> AckOptions {
    AckOptions {
        control_id: state.next_control_id(),
        timestamp: ack::timestamp(std::time::SystemTime::now()),
        application: Some(state.current().application.clone()),
        facility: None,
    }
}

/// AR for a frame that was not read at all (too large): no MSH to answer to.
fn reject_without_message(state: &Listener, why: &str) -> Vec<u8> {
    let error = AckError {
        code: ErrorCode::ApplicationInternalError,
        location: None,
        message: why.to_string(),
    };
    ack::build(None, AckCode::Reject, Some(&error), &ack_options(state)).into_bytes()
}
