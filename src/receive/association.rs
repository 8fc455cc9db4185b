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
    let config = &receiver.config;
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
        .with_abstract_syntax(VERIFICATION_SOP_CLASS);
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
}

impl Session {
    async fn serve<S: Wire>(&mut self, association: &mut Association<S>) -> End {
        let idle = Duration::from_secs(self.receiver.config.dicom.idle_timeout_secs);
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
                        self.finish_store(association, incoming).await?;
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

    async fn begin_store<S: Wire>(
        &mut self,
        association: &mut Association<S>,
        context_id: u8,
        command: Command,
        message_id: u16,
        has_data: bool,
    ) -> Result<(), End> {
        let (abstract_syntax, transfer_syntax) = match self.context(context_id) {
            Some(pc) => (
                trim_uid(&pc.abstract_syntax).to_string(),
                trim_uid(&pc.transfer_syntax).to_string(),
            ),
            None => {
                return Err(End::ProtocolError(
                    "C-STORE on an unaccepted context".into(),
                ))
            }
        };
        let sop_class = command
            .text(dimse::TAG_AFFECTED_SOP_CLASS)
            .unwrap_or_default();
        let sop_instance = command
            .text(dimse::TAG_AFFECTED_SOP_INSTANCE)
            .unwrap_or_default();
        if !has_data {
            self.failed += 1;
            let rsp = dimse::response(
                dimse::C_STORE_RSP,
                &command,
                message_id,
                status::CANNOT_UNDERSTAND,
                Some("C-STORE-RQ announced no data set"),
            );
            return send_command(association, context_id, rsp).await;
        }
        let sink = if !valid_uid(&sop_instance) {
            Sink::Discard {
                status: status::CANNOT_UNDERSTAND,
                comment: "Affected SOP Instance UID missing or invalid".into(),
            }
        } else if sop_class != abstract_syntax {
            Sink::Discard {
                status: status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                comment: format!("SOP Class {sop_class} differs from context {abstract_syntax}"),
            }
        } else if let Some(sink) =
            self.move_sink(&command, &sop_class, &sop_instance, &transfer_syntax)
        {
            sink
        } else {
            match self.receiver.spool.has_room() {
                Ok(false) => {
                    warn!("spool below dicom min_free_mb: refusing C-STORE with A700");
                    Sink::Discard {
                        status: status::REFUSED_OUT_OF_RESOURCES,
                        comment: "readgate spool disk is full; retry later".into(),
                    }
                }
                _ => {
                    let header = part10::encode_file_meta(
                        &sop_class,
                        &sop_instance,
                        &transfer_syntax,
                        &self.calling_ae,
                    );
                    match self.receiver.spool.begin(&header) {
                        Ok(p) => Sink::File(p),
                        Err(e) => {
                            warn!(error = %e, "cannot create a spool file");
                            let (code, comment) = io_failure(&e);
                            Sink::Discard {
                                status: code,
                                comment,
                            }
                        }
                    }
                }
            }
        };
        self.incoming = Some(Incoming {
            request: command,
            message_id,
            context_id,
            sop_class,
            sop_instance,
            transfer_syntax,
            sink,
        });
        Ok(())
    }

    /// The sink of a C-STORE that names a move as its origin: readgate's own move (into
    /// the move's spool) or a refusal; `None` for an ordinary C-STORE.
    fn move_sink(
        &self,
        command: &Command,
        sop_class: &str,
        sop_instance: &str,
        transfer_syntax: &str,
    ) -> Option<Sink> {
        let originator = command.text(dimse::TAG_MOVE_ORIGINATOR_AE);
        let move_id = command.u16(dimse::TAG_MOVE_ORIGINATOR_ID).ok().flatten();
        let spool =
            match self
                .receiver
                .moves
                .claim(&self.calling_ae, originator.as_deref(), move_id)
            {
                Claim::NotOurs => return None,
                Claim::Refused(why) => {
                    return Some(Sink::Discard {
                        status: status::NOT_AUTHORIZED,
                        comment: why,
                    })
                }
                Claim::Prior(spool) => spool,
            };
        let refuse = |status: u16, comment: String| Some(Sink::Discard { status, comment });
        if !matches!(spool.has_room(), Ok(true)) {
            return refuse(
                status::REFUSED_OUT_OF_RESOURCES,
                "readgate's priors spool is below its free-space floor".into(),
            );
        }
        let header =
            part10::encode_file_meta(sop_class, sop_instance, transfer_syntax, &self.calling_ae);
        match spool.begin(&header) {
            Ok(partial) => Some(Sink::Prior {
                partial,
                spool,
                move_id: move_id.unwrap_or(0),
            }),
            Err(e) => {
                let (code, comment) = io_failure(&e);
                refuse(code, comment)
            }
        }
    }

    async fn finish_store<S: Wire>(
        &mut self,
        association: &mut Association<S>,
        incoming: Incoming,
    ) -> Result<(), End> {
        let Incoming {
            request,
            message_id,
            context_id,
            sop_class,
            sop_instance,
            transfer_syntax,
            sink,
        } = incoming;
        let field = request.command_field().unwrap_or(dimse::C_STORE_RQ) | 0x8000;
        let (code, comment) = match sink {
            Sink::Discard { status, comment } => (status, Some(comment)),
            Sink::Prior {
                partial,
                spool,
                move_id,
            } => {
                // Made durable with the whole move (one syncfs): a prior lost in a crash
                // is retrieved again.
                let commit =
                    tokio::task::spawn_blocking(move || spool.commit_unsynced(partial)).await;
                match commit {
                    Ok(Ok((path, bytes))) => {
                        let fetched = crate::receive::moves::Fetched {
                            sop_class_uid: sop_class.clone(),
                            sop_instance_uid: sop_instance.clone(),
                            transfer_syntax: transfer_syntax.clone(),
                            path,
                            bytes,
                        };
                        if self.receiver.moves.delivered(move_id, fetched) {
                            (status::SUCCESS, None)
                        } else {
                            (
                                status::NOT_AUTHORIZED,
                                Some("the move this instance belongs to has ended".into()),
                            )
                        }
                    }
                    Ok(Err(e)) => {
                        let (code, comment) = io_failure(&e);
                        (code, Some(comment))
                    }
                    Err(e) => (
                        status::PROCESSING_FAILURE,
                        Some(format!("internal error: {e}")),
                    ),
                }
            }
            Sink::File(partial) => {
                let receiver = self.receiver.clone();
                let calling_ae = self.calling_ae.clone();
                let (class, instance, ts) = (
                    sop_class.clone(),
                    sop_instance.clone(),
                    transfer_syntax.clone(),
                );
                let outcome = tokio::task::spawn_blocking(move || {
                    keep_instance(&receiver, partial, &class, &instance, &ts, &calling_ae)
                })
                .await;
                match outcome {
                    Ok(Ok(study_uid)) => {
                        self.receiver.stored.notify_one();
                        self.receiver.history.notify_one();
                        self.received
                            .entry(study_uid.clone())
                            .or_default()
                            .push(sop_instance.clone());
                        debug!(study_uid = %study_uid, sop_instance = %sop_instance, "instance stored");
                        (status::SUCCESS, None)
                    }
                    Ok(Err((code, comment))) => (code, Some(comment)),
                    Err(e) => (
                        status::PROCESSING_FAILURE,
                        Some(format!("internal error: {e}")),
                    ),
                }
            }
        };
        if code == status::SUCCESS {
            self.stored += 1;
        } else {
            self.failed += 1;
            warn!(
                calling_ae = %self.calling_ae,
                sop_instance = %sop_instance,
                status = format!("{code:04X}"),
                comment = comment.as_deref().unwrap_or(""),
                "C-STORE failed"
            );
        }
        let rsp = dimse::response(field, &request, message_id, code, comment.as_deref());
        send_command(association, context_id, rsp).await
    }
}

/// Checks, commits and indexes a fully received instance. Blocking (fsync); returns the
/// study UID, or the status and comment to answer.
fn keep_instance(
    receiver: &Receiver,
    mut partial: PartialInstance,
    sop_class: &str,
    sop_instance: &str,
    transfer_syntax: &str,
    calling_ae: &str,
) -> Result<String, (u16, String)> {
    let encoding = Encoding::for_transfer_syntax(transfer_syntax)
        .map_err(|e| (status::CANNOT_UNDERSTAND, e.to_string()))?;
    let file = partial
        .dataset()
        .map_err(|e| (status::PROCESSING_FAILURE, format!("spool read: {e}")))?;
    let header = dataset::walk(file, encoding).map_err(|e| match e {
        dataset::DatasetError::Io(e) => (status::PROCESSING_FAILURE, format!("spool read: {e}")),
        other => (status::CANNOT_UNDERSTAND, other.to_string()),
    })?;
    let ds_class = header.get(tags::SOP_CLASS_UID).unwrap_or_default();
    if ds_class != sop_class {
        return Err((
            status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            format!("data set SOP Class {ds_class} differs from {sop_class}"),
        ));
    }
    let ds_instance = header.get(tags::SOP_INSTANCE_UID).unwrap_or_default();
    if ds_instance != sop_instance {
        return Err((
            status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            "data set SOP Instance UID differs from the command's".into(),
        ));
    }
    let study_uid = header
        .get(tags::STUDY_INSTANCE_UID)
        .filter(|u| valid_uid(u))
        .ok_or((
            status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            "Study Instance UID (0020,000D) missing or invalid".to_string(),
        ))?
        .to_string();
    let (path, size) = receiver.spool.commit(partial).map_err(|e| io_failure(&e))?;
    let instance = spooled_instance(
        &header,
        sop_class,
        transfer_syntax,
        &path,
        size,
        calling_ae,
        now_ms(),
    );
    let replace = receiver.config.dicom.duplicate_policy == crate::config::DuplicatePolicy::Replace;
    match receiver.store.index_instance(&instance, replace) {
        Ok(Indexed::New) => crate::metrics::instance_received(size),
        Ok(Indexed::Replaced { old_path }) => {
            info!(study_uid = %study_uid, sop_instance, "duplicate SOP Instance UID: replaced the earlier copy");
            let _ = receiver.spool.remove(&old_path);
        }
        Ok(Indexed::KeptFirst) => {
            info!(study_uid = %study_uid, sop_instance, "duplicate SOP Instance UID: kept the earlier copy");
            let _ = receiver.spool.remove(&path);
        }
        Err(e) => {
            let _ = receiver.spool.remove(&path);
            warn!(error = %e, "indexing a received instance failed");
            return Err((status::PROCESSING_FAILURE, "readgate database error".into()));
        }
    }
    Ok(study_uid)
}

/// The index row for an instance whose data set `header` was walked and whose file is
/// at `path` in the spool (also used when re-indexing after a crash).
pub(crate) fn spooled_instance(
    header: &dataset::Header,
    sop_class: &str,
    transfer_syntax: &str,
    path: &str,
    size: u64,
    calling_ae: &str,
    received_at: i64,
) -> NewInstance {
    let text = |tag| header.get(tag).map(str::to_string);
    NewInstance {
        sop_uid: header
            .get(tags::SOP_INSTANCE_UID)
            .unwrap_or_default()
            .to_string(),
        study_uid: header
            .get(tags::STUDY_INSTANCE_UID)
            .unwrap_or_default()
            .to_string(),
        series_uid: text(tags::SERIES_INSTANCE_UID),
        sop_class_uid: sop_class.to_string(),
        transfer_syntax: transfer_syntax.to_string(),
        modality: text(tags::MODALITY),
        accession: text(tags::ACCESSION_NUMBER),
        patient_id: text(tags::PATIENT_ID),
        path: path.to_string(),
        size,
        calling_ae: calling_ae.to_string(),
        received_at,
        context: serde_json::to_string(&header.context_text()).unwrap_or_else(|_| "{}".into()),
    }
}

fn io_failure(e: &std::io::Error) -> (u16, String) {
    if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::ENOSPC) {
        (
            status::REFUSED_OUT_OF_RESOURCES,
            "readgate spool disk is full; retry later".into(),
        )
    } else {
        (
            status::PROCESSING_FAILURE,
            format!("readgate spool I/O error: {}", e.kind()),
        )
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
