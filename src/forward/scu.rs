//! The C-STORE SCU towards a reading facility: one association carries a batch; every
//! instance goes out as a command PDU followed by data PDUs read straight from the spool
//! file, so the bytes readgate did not change leave exactly as they came in.

use super::outgoing::Outgoing;
use crate::config::{Destination, ForwardConfig};
use crate::dicom::dimse::{self, Command};
use crate::dicom::{is_native, part10, EXPLICIT_VR_LE, IMPLICIT_VR_LE};
use dicom_ul::association::client::AsyncClientAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use dicom_ul::{ClientAssociationOptions, Pdu};
use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum ScuError {
    #[error("cannot associate with {ae}@{addr}: {reason}")]
    Associate {
        ae: String,
        addr: String,
        reason: String,
    },
    #[error("association lost: {0}")]
    Transport(String),
    #[error("no C-STORE response within {0} s")]
    Timeout(u64),
    #[error("spool file {path}: {reason}")]
    LocalFile { path: String, reason: String },
}

/// The peer's answer to one C-STORE.
#[derive(Debug, Clone)]
pub struct StoreOutcome {
    pub status: u16,
    pub comment: Option<String>,
}

struct Context {
    id: u8,
    abstract_syntax: String,
    transfer_syntax: String,
}

/// An association to a destination over plain TCP or TLS.
pub enum Scu {
    // Boxed: the association (and the TLS session state) is large.
    Plain(Box<StoreScu<TcpStream>>),
    Tls(Box<StoreScu<dicom_ul::association::client::AsyncTlsStream>>),
}

impl Scu {
    /// Associates (over TLS when the destination has `tls = true`), proposing one
    /// presentation context per (SOP class, stored transfer syntax) pair in `kinds`.
    pub async fn connect(
        destination: &Destination,
        calling_ae: &str,
        kinds: &[(String, String)],
        config: &ForwardConfig,
    ) -> Result<Scu, ScuError> {
        let addr = format!("{}:{}", destination.host, destination.port);
        let assoc_err = |reason: String| ScuError::Associate {
            ae: destination.ae_title.clone(),
            addr: addr.clone(),
            reason,
        };
        let options = StoreScu::<TcpStream>::options(destination, calling_ae, kinds, config);
        let limit = Duration::from_secs(config.connect_timeout_secs * 2);
        match destination.tls_client().map_err(assoc_err)? {
            None => {
                let mut association =
                    tokio::time::timeout(limit, options.establish_async(addr.as_str()))
                        .await
                        .map_err(|_| assoc_err("timed out".into()))?
                        .map_err(|e| assoc_err(crate::dicom::error_chain(&e)))?;
                // Without TCP_NODELAY each small command PDU waits for a delayed ACK.
                let _ = association.inner_stream().set_nodelay(true);
                StoreScu::negotiated(association, config, assoc_err)
                    .await
                    .map(|s| Scu::Plain(Box::new(s)))
            }
            Some(tls) => {
                let options = options.tls_config(tls).server_name(destination.tls_name());
                let mut association =
                    tokio::time::timeout(limit, options.establish_tls_async(addr.as_str()))
                        .await
                        .map_err(|_| assoc_err("timed out".into()))?
                        .map_err(|e| assoc_err(crate::dicom::error_chain(&e)))?;
                let _ = association.inner_stream().get_ref().0.set_nodelay(true);
                StoreScu::negotiated(association, config, assoc_err)
                    .await
                    .map(|s| Scu::Tls(Box::new(s)))
            }
        }
    }

    /// Marks the stores as sub-operations of the C-MOVE `message_id` asked by
    /// `originator` (what a PACS does when it moves a study).
    pub fn for_move(mut self, originator: &str, message_id: u16) -> Self {
        let o = Some((originator.to_string(), message_id));
        match &mut self {
            Scu::Plain(s) => s.move_originator = o,
            Scu::Tls(s) => s.move_originator = o,
        }
        self
    }

    pub fn can_carry(&self, sop_class: &str, stored_ts: &str) -> bool {
        match self {
            Scu::Plain(s) => s.can_carry(sop_class, stored_ts),
            Scu::Tls(s) => s.can_carry(sop_class, stored_ts),
        }
    }

    pub async fn store(
        &mut self,
        tagged: &Outgoing,
        sop_class: &str,
        sop_instance: &str,
        stored_ts: &str,
    ) -> Result<StoreOutcome, ScuError> {
        match self {
            Scu::Plain(s) => s.store(tagged, sop_class, sop_instance, stored_ts).await,
            Scu::Tls(s) => s.store(tagged, sop_class, sop_instance, stored_ts).await,
        }
    }

    pub async fn release(self) {
        match self {
            Scu::Plain(s) => s.release().await,
            Scu::Tls(s) => s.release().await,
        }
    }
}

pub struct StoreScu<S> {
    association: AsyncClientAssociation<S>,
    contexts: Vec<Context>,
    peer_max_pdu: usize,
    message_id: u16,
    response_timeout: Duration,
    buffer: Vec<u8>,
    /// Set when the stores are the sub-operations of a C-MOVE: its originator's AE title
    /// and message ID, named in each C-STORE-RQ (PS3.7 9.1.1.1).
    move_originator: Option<(String, u16)>,
}

/// The presentation contexts proposed for instances stored in `stored_ts`: one with the
/// stored syntax alone, so an acceptor that prefers another one cannot make readgate
/// re-encode data it could have sent as it is; for native data a second one with the
/// little endian syntaxes as a fallback.
fn proposals(stored_ts: &str) -> Vec<Vec<String>> {
    let mut v = vec![vec![stored_ts.to_string()]];
    if is_native(stored_ts) {
        let fallback: Vec<String> = [EXPLICIT_VR_LE, IMPLICIT_VR_LE]
            .into_iter()
            .filter(|ts| *ts != stored_ts)
            .map(str::to_string)
            .collect();
        v.push(fallback);
    }
    v
}

/// At most 128 presentation contexts fit in one association (odd ids 1–255).
const MAX_CONTEXTS: usize = 128;

impl<S> StoreScu<S> {
    /// The association request: AE titles, PDU size, and one presentation context per
    /// (SOP class, stored transfer syntax) pair in `kinds` (as many as fit).
    fn options<'a>(
        destination: &Destination,
        calling_ae: &str,
        kinds: &[(String, String)],
        config: &ForwardConfig,
    ) -> ClientAssociationOptions<'a> {
        let mut options = ClientAssociationOptions::new()
            .calling_ae_title(calling_ae.to_string())
            .called_ae_title(destination.ae_title.clone())
            .max_pdu_length(config.max_pdu_length)
            .connection_timeout(Duration::from_secs(config.connect_timeout_secs));
        let mut proposed = 0;
        for (class, ts) in kinds {
            let contexts = proposals(ts);
            if proposed + contexts.len() > MAX_CONTEXTS {
                break; // the rest goes in the next association
            }
            proposed += contexts.len();
            for list in contexts {
                options = options.with_presentation_context(class.clone(), list);
            }
        }
        options
    }
}

impl<S: crate::tls::Wire> StoreScu<S> {
    /// The store SCU over an established association: the accepted contexts and the
    /// peer's PDU size.
    async fn negotiated(
        association: AsyncClientAssociation<S>,
        config: &ForwardConfig,
        assoc_err: impl Fn(String) -> ScuError,
    ) -> Result<StoreScu<S>, ScuError> {
        let contexts = association
            .presentation_contexts()
            .iter()
            .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
            .map(|pc| Context {
                id: pc.id,
                abstract_syntax: crate::dicom::trim_uid(&pc.abstract_syntax).to_string(),
                transfer_syntax: crate::dicom::trim_uid(&pc.transfer_syntax).to_string(),
            })
            .collect::<Vec<_>>();
        if contexts.is_empty() {
            let _ = association.abort().await;
            return Err(assoc_err("no presentation context accepted".into()));
        }
        let peer_max = association.acceptor_max_pdu_length() as usize;
        Ok(StoreScu {
            association,
            contexts,
            peer_max_pdu: if peer_max == 0 {
                1 << 20
            } else {
                peer_max.clamp(1024, 16 << 20)
            },
            message_id: 0,
            response_timeout: Duration::from_secs(config.response_timeout_secs),
            buffer: Vec::new(),
            move_originator: None,
        })
    }

    /// The context to send an instance on: the stored transfer syntax if accepted, else
    /// a native one the data can be converted to. None: this association cannot carry it.
    fn context_for(&self, sop_class: &str, stored_ts: &str) -> Option<&Context> {
        let mut candidates = self
            .contexts
            .iter()
            .filter(|c| c.abstract_syntax == sop_class);
        let all: Vec<&Context> = candidates.by_ref().collect();
        all.iter()
            .find(|c| c.transfer_syntax == stored_ts)
            .or_else(|| {
                if is_native(stored_ts) {
                    all.iter().find(|c| is_native(&c.transfer_syntax))
                } else {
                    None
                }
            })
            .copied()
    }

    pub fn can_carry(&self, sop_class: &str, stored_ts: &str) -> bool {
        self.context_for(sop_class, stored_ts).is_some()
    }

    /// Sends one instance and waits for its response.
    pub async fn store(
        &mut self,
        tagged: &Outgoing,
        sop_class: &str,
        sop_instance: &str,
        stored_ts: &str,
    ) -> Result<StoreOutcome, ScuError> {
        let local = |reason: String| ScuError::LocalFile {
            path: tagged.describe(),
            reason,
        };
        let (context_id, target_ts) = match self.context_for(sop_class, stored_ts) {
            Some(c) => (c.id, c.transfer_syntax.clone()),
            None => return Err(local("no accepted presentation context".into())),
        };
        let mut file = tagged.open().map_err(|e| local(e.to_string()))?;
        let meta = part10::read_file_meta(&mut file).map_err(|e| local(e.to_string()))?;
        self.message_id = self.message_id.wrapping_add(1).max(1);
        let mut command = dimse::c_store_rq(self.message_id, sop_class, sop_instance);
        if let Some((ae, id)) = &self.move_originator {
            command = dimse::c_store_rq_moved(self.message_id, sop_class, sop_instance, ae, *id);
        }
        self.association
            .send(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: context_id,
                    value_type: PDataValueType::Command,
                    is_last: true,
                    data: command,
                }],
            })
            .await
            .map_err(|e| ScuError::Transport(e.to_string()))?;
        if target_ts == meta.transfer_syntax {
            file.seek(SeekFrom::Start(meta.dataset_offset))
                .map_err(|e| local(e.to_string()))?;
            self.send_data(context_id, &mut file).await?;
        } else {
            let converted = transcode(tagged, &target_ts).map_err(|e| local(e.to_string()))?;
            self.send_data(context_id, &mut &converted[..]).await?;
        }
        self.await_response(self.message_id).await
    }

    /// Data PDUs, each at most the peer's maximum length, written straight to the socket.
    async fn send_data<R: Read>(&mut self, context_id: u8, source: &mut R) -> Result<(), ScuError> {
        let chunk = self.peer_max_pdu - 6; // PDV item length (4) + context id + control header
        let mut data = vec![0u8; chunk];
        let mut filled = read_full(source, &mut data).map_err(|e| ScuError::LocalFile {
            path: String::new(),
            reason: e.to_string(),
        })?;
        let mut next = vec![0u8; chunk];
        loop {
            // Read one chunk ahead to know whether this one is the last.
            let next_filled = if filled == chunk {
                read_full(source, &mut next).map_err(|e| ScuError::LocalFile {
                    path: String::new(),
                    reason: e.to_string(),
                })?
            } else {
                0
            };
            let last = next_filled == 0;
            self.buffer.clear();
            self.buffer.push(0x04);
            self.buffer.push(0);
            self.buffer
                .extend_from_slice(&((filled + 6) as u32).to_be_bytes());
            self.buffer
                .extend_from_slice(&((filled + 2) as u32).to_be_bytes());
            self.buffer.push(context_id);
            self.buffer.push(if last { 0x02 } else { 0x00 });
            self.buffer.extend_from_slice(&data[..filled]);
            self.association
                .inner_stream()
                .write_all(&self.buffer)
                .await
                .map_err(|e| ScuError::Transport(e.to_string()))?;
            if last {
                return Ok(());
            }
            std::mem::swap(&mut data, &mut next);
            filled = next_filled;
        }
    }

    async fn await_response(&mut self, message_id: u16) -> Result<StoreOutcome, ScuError> {
        let mut command = Vec::new();
        loop {
            let pdu = tokio::time::timeout(self.response_timeout, self.association.receive())
                .await
                .map_err(|_| ScuError::Timeout(self.response_timeout.as_secs()))?
                .map_err(|e| ScuError::Transport(e.to_string()))?;
            match pdu {
                Pdu::PData { data } => {
                    for pdv in data {
                        if pdv.value_type != PDataValueType::Command {
                            continue;
                        }
                        command.extend_from_slice(&pdv.data);
                        if !pdv.is_last {
                            continue;
                        }
                        let rsp = Command::decode(&command)
                            .map_err(|e| ScuError::Transport(format!("bad response: {e}")))?;
                        command.clear();
                        if rsp.u16(dimse::TAG_MESSAGE_ID_RESPONDED).ok().flatten()
                            != Some(message_id)
                        {
                            continue;
                        }
                        let status = rsp
                            .status()
                            .map_err(|e| ScuError::Transport(format!("bad response: {e}")))?;
                        return Ok(StoreOutcome {
                            status,
                            comment: rsp.text(dimse::TAG_ERROR_COMMENT),
                        });
                    }
                }
                Pdu::AbortRQ { source } => {
                    return Err(ScuError::Transport(format!(
                        "aborted by the destination ({source:?})"
                    )))
                }
                other => return Err(ScuError::Transport(format!("unexpected PDU {other:?}"))),
            }
        }
    }

    pub async fn release(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.association.release()).await;
    }
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Re-encodes a native data set for a destination that accepted only another native
/// transfer syntax. Only then is the whole instance loaded into memory.
fn transcode(tagged: &Outgoing, target_ts: &str) -> Result<Vec<u8>, TranscodeError> {
    use dicom_encoding::TransferSyntaxIndex;
    let obj = tagged
        .object()
        .map_err(|e| TranscodeError::Read(Box::new(e)))?;
    let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(target_ts)
        .ok_or_else(|| TranscodeError::UnknownSyntax(target_ts.to_string()))?;
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| TranscodeError::Write(target_ts.to_string(), Box::new(e)))?;
    Ok(out)
}

/// Why an instance could not be re-encoded for its destination.
#[derive(Debug, thiserror::Error)]
enum TranscodeError {
    #[error("cannot re-read for transcoding: {0}")]
    Read(Box<dicom_object::ReadError>),
    #[error("unknown transfer syntax {0}")]
    UnknownSyntax(String),
    #[error("transcoding to {0} failed: {1}")]
    Write(String, Box<dicom_object::WriteError>),
}

#[cfg(test)]
mod tests {
    #[test]
    fn native_data_may_fall_back_to_implicit() {
        assert_eq!(
            super::proposals("1.2.840.10008.1.2.1"),
            vec![vec!["1.2.840.10008.1.2.1"], vec!["1.2.840.10008.1.2"]]
        );
        assert_eq!(
            super::proposals("1.2.840.10008.1.2"),
            vec![vec!["1.2.840.10008.1.2"], vec!["1.2.840.10008.1.2.1"]]
        );
        assert_eq!(
            super::proposals("1.2.840.10008.1.2.4.50"),
            vec![vec!["1.2.840.10008.1.2.4.50"]]
        );
    }
}
