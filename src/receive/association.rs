//! One inbound association: every PDV of every P-DATA PDU is routed here by hand, because
//! SCUs fragment command sets over several PDVs and put small data sets in the same PDU as
//! their command. Data PDVs go straight to the spool file, so memory stays bounded by one
//! PDU whatever the instance size.

use super::access::PeerAccess;
use super::moves::Claim;
use super::Receiver;
use crate::dicom::dataset::{self, tags, Encoding};
use crate::dicom::dimse::{self, status, Command};
use crate::dicom::{part10, trim_uid, ACCEPTED_TRANSFER_SYNTAXES, VERIFICATION_SOP_CLASS};
use crate::spool::PartialInstance;
use crate::store::{Indexed, NewInstance};
use crate::time::now_ms;
use dicom_ul::association::server::AsyncServerAssociation;
use dicom_ul::association::Association as _;
use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, PDataValue, PDataValueType,
    PresentationContextNegotiated, PresentationContextResultReason,
};
use dicom_ul::{Pdu, ServerAssociationOptions};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use crate::tls::Wire;

type Association<S> = AsyncServerAssociation<S>;

mod instance;
mod step;

use instance::io_failure;
pub(crate) use instance::spooled_instance;

/// A C-STORE whose data set is still arriving.
struct Incoming {
    request: Command,
    message_id: u16,
    context_id: u8,
    sop_class: String,
    sop_instance: String,
    transfer_syntax: String,
    sink: Sink,
}

enum Sink {
    /// Streaming into the spool.
    File(PartialInstance),
    /// A sub-operation of readgate's own C-MOVE (a prior), streaming into the move's spool.
    Prior {
        partial: PartialInstance,
        spool: Arc<crate::spool::Spool>,
        move_id: u16,
    },
    /// Already failed (or not a C-STORE): read the rest of the data set, then answer this.
    Discard { status: u16, comment: String },
    /// An MPPS N-CREATE or N-SET: its data set, read whole (at most
    /// `dicom.max_mpps_bytes`), then recorded.
    Step {
        operation: super::mpps::Operation,
        data: Vec<u8>,
    },
}

/// Why an association ends, for the log.
enum End {
    Released,
    AbortedByPeer,
    Closed(String),
    ProtocolError(String),
    Idle,
}

/// Runs one connection: the association's negotiation (after a TLS handshake when `tls`
/// is given), then the association.
///
/// Before its A-ASSOCIATE-RQ a connection holds only its source address's place (see
/// [`crate::listen`]) and has `dicom.association_timeout_secs` to send it; an association
/// slot is taken when the request names readgate and a known peer ([`PeerAccess`]).
pub async fn run(
    socket: TcpStream,
    peer: SocketAddr,
    receiver: Arc<Receiver>,
    tls: Option<Arc<crate::tls::ServerTls>>,
) {
    let config = receiver.config.current();
    let refusal = Arc::new(Mutex::new(None));
    let slot = Arc::new(Mutex::new(None));
    let client_cert = tls.as_ref().map(|_| crate::tls::SeenClientCert::default());
    let access = PeerAccess {
        allow_any: config.dicom.allow_any_calling_ae,
        peers: Arc::new(config.dicom.peers.clone()),
        peer_ip: peer.ip().to_canonical(),
        refusal: refusal.clone(),
        slots: receiver.slots.clone(),
        slot: slot.clone(),
        client_cert: client_cert.clone(),
    };
    let artim = Duration::from_secs(config.dicom.association_timeout_secs);
    if tls.is_none() {
        match tokio::time::timeout(artim, requested(&socket)).await {
            Ok(Some((calling, called))) => {
                let known = access
                    .identify(&config.dicom.ae_title, &calling, &called)
                    .is_ok();
                if known && receiver.slots.available_permits() == 0 {
                    warn!(%peer, calling_ae = %calling,
                        limit = config.dicom.max_associations,
                        "association rejected: too many concurrent associations (transient)");
                    super::reject_busy(socket, 64 * 1024).await;
                    return;
                }
            }
            Ok(None) => {}
            Err(_) => {
                warn!(%peer, timeout_secs = artim.as_secs(), "no A-ASSOCIATE-RQ in time; connection closed");
                return;
            }
        }
    }
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(access)
        .ae_title(config.dicom.ae_title.clone())
        .max_pdu_length(config.dicom.max_pdu_length)
        .strict(true)
        .with_abstract_syntax(VERIFICATION_SOP_CLASS)
        .with_abstract_syntax(super::mpps::MPPS_SOP_CLASS);
    for uid in crate::dicom::sop_classes::STORAGE_SOP_CLASSES {
        options = options.with_abstract_syntax(*uid);
    }
    for ts in ACCEPTED_TRANSFER_SYNTAXES {
        options = options.with_transfer_syntax(*ts);
    }
    // The slot taken by the access check is held until the association ends.
    let held = || slot.lock().ok().and_then(|mut s| s.take());
    let outcome = match tls {
        None => match tokio::time::timeout(artim, options.establish_async(socket)).await {
            Ok(Ok(association)) => {
                let _slot = held();
                return serve_association(association, peer, receiver).await;
            }
            Ok(Err(e)) => Ok(e),
            Err(_) => Err(()),
        },
        Some(tls) => {
            let server = match tls.config(client_cert) {
                Ok(server) => server,
                Err(e) => {
                    warn!(%peer, error = %e, "DICOM TLS configuration failed");
                    return;
                }
            };
            let options = options.tls_config(server);
            match tokio::time::timeout(artim, options.establish_tls_async(socket)).await {
                Ok(Ok(association)) => {
                    let _slot = held();
                    return serve_association(association, peer, receiver).await;
                }
                Ok(Err(e)) => Ok(e),
                Err(_) => Err(()),
            }
        }
    };
    drop(held());
    match outcome {
        Ok(e) => {
            let why = refusal
                .lock()
                .ok()
                .and_then(|mut r| r.take())
                .unwrap_or_else(|| crate::dicom::error_chain(&e));
            warn!(%peer, reason = %why, "association rejected");
        }
        Err(()) => {
            warn!(%peer, timeout_secs = artim.as_secs(), "no A-ASSOCIATE-RQ in time; connection closed");
        }
    }
}

/// The calling and called AE titles of the A-ASSOCIATE-RQ waiting on `socket`, read
/// without taking it off the socket (dicom-ul negotiates it next); None when the first
/// bytes are not an A-ASSOCIATE-RQ or the peer closed (dicom-ul then answers or gives
/// up as for any bad request). The caller bounds the wait.
async fn requested(socket: &TcpStream) -> Option<(String, String)> {
    // PDU type, reserved, length (4), protocol version (2), reserved (2), called AE (16),
    // calling AE (16).
    let mut head = [0u8; 42];
    loop {
        let n = socket.peek(&mut head).await.ok()?;
        if n == 0 || head[0] != 0x01 {
            return None;
        }
        if n == head.len() {
            break;
        }
        // Part of the request is in: wait for the rest (peek does not wait for more).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ae = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    Some((ae(&head[26..42]), ae(&head[10..26])))
}

/// Runs an established association (over TCP or TLS) to its end.
async fn serve_association<S: Wire>(
    mut association: Association<S>,
    peer: SocketAddr,
    receiver: Arc<Receiver>,
) {
    let calling_ae = association.peer_ae_title().trim().to_string();
    let accepted = association
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .count();
    info!(%peer, calling_ae = %calling_ae, contexts = accepted, "association accepted");
    let started = Instant::now();
    let mut session = Session {
        receiver: receiver.clone(),
        calling_ae: calling_ae.clone(),
        contexts: association.presentation_contexts().to_vec(),
        command: Vec::new(),
        command_context: None,
        incoming: None,
        stored: 0,
        failed: 0,
        received: std::collections::BTreeMap::new(),
        max_mpps_bytes: receiver.config.current().dicom.max_mpps_bytes,
    };
    let end = session.serve(&mut association).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match &end {
        End::Released => {
            info!(calling_ae = %calling_ae, stored = session.stored, failed = session.failed, elapsed_ms, "association released")
        }
        other => {
            if session.incoming.is_some() {
                warn!(calling_ae = %calling_ae, "association ended during a transfer: that instance was not acknowledged and is discarded");
            }
            warn!(calling_ae = %calling_ae, stored = session.stored, failed = session.failed, elapsed_ms, end = %other, "association ended")
        }
    }
    record_received(
        &receiver,
        &calling_ae,
        peer,
        std::mem::take(&mut session.received),
    )
    .await;
    match end {
        End::ProtocolError(_) | End::Idle => {
            let _ = association
                .send(&Pdu::AbortRQ {
                    source: AbortRQSource::ServiceProvider(
                        AbortRQServiceProviderReason::UnexpectedPdu,
                    ),
                })
                .await;
        }
        _ => {}
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Released => f.write_str("released"),
            End::AbortedByPeer => f.write_str("aborted by the peer"),
            End::Closed(why) => write!(f, "connection lost: {why}"),
            End::ProtocolError(why) => write!(f, "protocol error, association aborted: {why}"),
            End::Idle => f.write_str("idle timeout, association aborted"),
        }
    }
}

/// One audit entry per study for what this association delivered (PS3.15 110104).
async fn record_received(
    receiver: &Arc<Receiver>,
    calling_ae: &str,
    peer: SocketAddr,
    received: std::collections::BTreeMap<String, Vec<String>>,
) {
    if received.is_empty() {
        return;
    }
    let entries: Vec<crate::audit::NewEntry> = received
        .into_iter()
        .map(|(study, sops)| {
            crate::audit::NewEntry::new(crate::audit::kind::INSTANCE_RECEIVED, calling_ae)
                .study(&study)
                .detail(serde_json::json!({
                    "peer": peer.to_string(),
                    "instances": sops.len(),
                    "sop_instance_uids": sops,
                }))
        })
        .collect();
    let audit = receiver.audit.clone();
    let result = tokio::task::spawn_blocking(move || audit.append_batch(&entries)).await;
    if !matches!(result, Ok(Ok(_))) {
        warn!("could not record received instances in the audit trail");
    }
}

struct Session {
    receiver: Arc<Receiver>,
    calling_ae: String,
    contexts: Vec<PresentationContextNegotiated>,
    /// Command PDV fragments collected until the last one.
    command: Vec<u8>,
    command_context: Option<u8>,
    incoming: Option<Incoming>,
    stored: u64,
    failed: u64,
    /// SOP Instance UIDs acknowledged on this association, by study (for the audit trail).
    received: std::collections::BTreeMap<String, Vec<String>>,
    /// `dicom.max_mpps_bytes` when the association began.
    max_mpps_bytes: usize,
}

impl Session {
    async fn serve<S: Wire>(&mut self, association: &mut Association<S>) -> End {
        let idle = Duration::from_secs(self.receiver.config.current().dicom.idle_timeout_secs);
        loop {
            let pdu = match tokio::time::timeout(idle, association.receive()).await {
                Err(_) => return End::Idle,
                // The peer went away: nothing to answer.
                Ok(Err(e @ dicom_ul::association::Error::ConnectionClosed { .. })) => {
                    return End::Closed(e.to_string())
                }
                // An unreadable PDU (e.g. a length beyond the negotiated maximum): the
                // association is aborted with an A-ABORT, as PS3.8 §9.1.6 asks.
                Ok(Err(e)) => return End::ProtocolError(crate::dicom::error_chain(&e)),
                Ok(Ok(pdu)) => pdu,
            };
            match pdu {
                Pdu::PData { data } => {
                    for pdv in data {
                        if let Err(end) = self.on_pdv(association, pdv).await {
                            return end;
                        }
                    }
                }
                Pdu::ReleaseRQ => {
                    let _ = association.send(&Pdu::ReleaseRP).await;
                    return End::Released;
                }
                Pdu::AbortRQ { .. } => return End::AbortedByPeer,
                other => return End::ProtocolError(format!("unexpected PDU {other:?}")),
            }
        }
    }

    /// The abstract and transfer syntax of an accepted context; a `what` (C-STORE,
    /// N-service) on any other is a protocol error.
    fn syntaxes(&self, id: u8, what: &str) -> Result<(String, String), End> {
        match self.context(id) {
            Some(pc) => Ok((
                trim_uid(&pc.abstract_syntax).to_string(),
                trim_uid(&pc.transfer_syntax).to_string(),
            )),
            None => Err(End::ProtocolError(format!(
                "{what} on an unaccepted context"
            ))),
        }
    }

    fn context(&self, id: u8) -> Option<&PresentationContextNegotiated> {
        self.contexts
            .iter()
            .find(|pc| pc.id == id && pc.reason == PresentationContextResultReason::Acceptance)
    }

    async fn on_pdv<S: Wire>(
        &mut self,
        association: &mut Association<S>,
        pdv: PDataValue,
    ) -> Result<(), End> {
        if self.context(pdv.presentation_context_id).is_none() {
            return Err(End::ProtocolError(format!(
                "PDV on presentation context {} which was not accepted",
                pdv.presentation_context_id
            )));
        }
        match pdv.value_type {
            PDataValueType::Command => {
                if self.incoming.is_some() {
                    return Err(End::ProtocolError(
                        "command PDV while a data set was still arriving".into(),
                    ));
                }
                if let Some(ctx) = self.command_context {
                    if ctx != pdv.presentation_context_id {
                        return Err(End::ProtocolError(
                            "command fragments on different presentation contexts".into(),
                        ));
                    }
                }
                if self.command.len() + pdv.data.len() > 64 * 1024 {
                    return Err(End::ProtocolError("command set larger than 64 KiB".into()));
                }
                self.command_context = Some(pdv.presentation_context_id);
                self.command.extend_from_slice(&pdv.data);
                if pdv.is_last {
                    let bytes = std::mem::take(&mut self.command);
                    self.command_context = None;
                    self.on_command(association, pdv.presentation_context_id, &bytes)
                        .await?;
                }
                Ok(())
            }
            PDataValueType::Data => {
                let Some(incoming) = self.incoming.as_mut() else {
                    return Err(End::ProtocolError("data PDV without a command".into()));
                };
                if incoming.context_id != pdv.presentation_context_id {
                    return Err(End::ProtocolError(
                        "data set PDV on another presentation context than its command".into(),
                    ));
                }
                if let Sink::Step { data, .. } = &mut incoming.sink {
                    if data.len() + pdv.data.len() > self.max_mpps_bytes {
                        incoming.sink = Sink::Discard {
                            status: status::RESOURCE_LIMITATION,
                            comment: "step data set too large".into(),
                        };
                    } else {
                        data.extend_from_slice(&pdv.data);
                    }
                }
                if let Sink::File(partial) | Sink::Prior { partial, .. } = &mut incoming.sink {
                    if let Err(e) = partial.write(&pdv.data) {
                        let (code, comment) = io_failure(&e);
                        warn!(sop_instance = %incoming.sop_instance, error = %e, "writing to the spool failed");
                        incoming.sink = Sink::Discard {
                            status: code,
                            comment,
                        };
                    }
                }
                if pdv.is_last {
                    if let Some(incoming) = self.incoming.take() {
                        let step = matches!(incoming.sink, Sink::Step { .. })
                            || matches!(
                                incoming.request.command_field(),
                                Ok(dimse::N_CREATE_RQ | dimse::N_SET_RQ)
                            );
                        if step {
                            self.finish_step(association, incoming).await?;
                        } else {
                            self.finish_store(association, incoming).await?;
                        }
                    }
                }
                Ok(())
            }
        }
    }

    async fn on_command<S: Wire>(
        &mut self,
        association: &mut Association<S>,
        context_id: u8,
        bytes: &[u8],
    ) -> Result<(), End> {
        let command = match Command::decode(bytes) {
            Ok(c) => c,
            Err(e) => return Err(End::ProtocolError(format!("undecodable command set: {e}"))),
        };
        let field = command
            .command_field()
            .map_err(|e| End::ProtocolError(e.to_string()))?;
        let message_id = command.message_id().unwrap_or(0);
        let has_data = command.has_data_set().unwrap_or(false);
        match field {
            dimse::C_ECHO_RQ => {
                debug!(calling_ae = %self.calling_ae, "C-ECHO");
                let rsp = dimse::response(
                    dimse::C_ECHO_RSP,
                    &command,
                    message_id,
                    status::SUCCESS,
                    None,
                );
                send_command(association, context_id, rsp).await
            }
            dimse::C_STORE_RQ => {
                self.begin_store(association, context_id, command, message_id, has_data)
                    .await
            }
            dimse::N_CREATE_RQ | dimse::N_SET_RQ => {
                self.begin_step(association, context_id, command, message_id, has_data)
                    .await
            }
            0x0FFF => Ok(()), // C-CANCEL: nothing of ours to cancel
            other => {
                let rsp_field = other | 0x8000;
                if has_data {
                    self.incoming = Some(Incoming {
                        request: command,
                        message_id,
                        context_id,
                        sop_class: String::new(),
                        sop_instance: String::new(),
                        transfer_syntax: String::new(),
                        sink: Sink::Discard {
                            status: status::UNRECOGNIZED_OPERATION,
                            comment: format!("readgate does not provide command {other:#06x}"),
                        },
                    });
                    // the response is sent when the data set has been read (finish_store)
                    Ok(())
                } else {
                    let rsp = dimse::response(
                        rsp_field,
                        &command,
                        message_id,
                        status::UNRECOGNIZED_OPERATION,
                        Some(&format!("readgate does not provide command {other:#06x}")),
                    );
                    send_command(association, context_id, rsp).await
                }
            }
        }
    }
}

/// A UID as PS3.5 §9.1 allows: digits and dots, at most 64 characters.
pub(crate) fn valid_uid(uid: &str) -> bool {
    !uid.is_empty() && uid.len() <= 64 && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

async fn send_command<S: Wire>(
    association: &mut Association<S>,
    context_id: u8,
    bytes: Vec<u8>,
) -> Result<(), End> {
    association
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: context_id,
                value_type: PDataValueType::Command,
                is_last: true,
                data: bytes,
            }],
        })
        .await
        .map_err(|e| End::Closed(format!("sending a response failed: {e}")))
}
