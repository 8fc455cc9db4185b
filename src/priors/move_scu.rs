//! The C-MOVE SCU (`retrieve = "move"`): most hospital PACS retrieve only this way. The
//! PACS is asked to move a prior study to readgate's own AE (`dicom.ae_title`, which
//! the PACS must know with readgate's host and DICOM port); it opens an association to
//! readgate's listener and stores the instances there. The listener recognises them as
//! this move's sub-operations (`receive::moves`) and writes them into the priors spool;
//! they never become studies.
//!
//! A PACS may send no pending C-MOVE-RSP while it moves (PS3.4 C.4.2.1.4: optional), so
//! the wait for the final response is not bounded by `timeout_secs` while instances
//! keep arriving: only `timeout_secs` without a response *and* without an instance ends
//! it.

use super::find::FindError;
use super::retrieve::Retrieved;
use crate::config::pacs::Pacs;
use crate::dicom::dimse::{self, Command, CommandBuilder};
use crate::dicom::trim_uid;
use crate::receive::moves::{Moves, Ticket};
use crate::spool::Spool;
use dicom_ul::association::client::AsyncClientAssociation;
use dicom_ul::pdu::{PDataValueType, PresentationContextResultReason};
use dicom_ul::ClientAssociationOptions;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Study Root Query/Retrieve Information Model — MOVE.
pub const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
const C_MOVE_RQ: u16 = 0x0021;
const C_MOVE_RSP: u16 = 0x8021;
const TAG_MOVE_DESTINATION: u16 = 0x0600;
const TAG_FAILED_SUBOPERATIONS: u16 = 0x1022;

/// Moves every instance of `study_uid` from `pacs` to readgate's AE `destination`,
/// calling as `calling_ae`; the instances land in `spool` through `moves`.
pub async fn move_study(
    pacs: &Pacs,
    calling_ae: &str,
    destination: &str,
    study_uid: &str,
    spool: &Arc<Spool>,
    moves: &Arc<Moves>,
) -> Result<Retrieved, FindError> {
    let ticket = moves
        .open(calling_ae, &pacs.ae_title, spool.clone())
        .ok_or_else(|| super::link::transport(pacs, "too many moves pending"))?;
    let options = ClientAssociationOptions::new()
        .calling_ae_title(calling_ae.to_string())
        .with_presentation_context(
            STUDY_ROOT_MOVE,
            vec![crate::dicom::EXPLICIT_VR_LE, crate::dicom::IMPLICIT_VR_LE],
        );
    let started = Instant::now();
    let request = Request {
        pacs,
        destination,
        study_uid: study_uid.trim(),
        ticket: &ticket,
    };
    let failed = match super::link::establish(pacs, options).await? {
        super::link::Link::Plain(a) => request.run(*a).await?,
        super::link::Link::Tls(a) => request.run(*a).await?,
    };
    let instances = ticket.take();
    drop(ticket);
    super::retrieve::make_durable(pacs, spool).await?;
    Ok(Retrieved {
        study_uid: study_uid.trim().to_string(),
        instances,
        failed,
        warnings: 0,
        millis: started.elapsed().as_millis() as u64,
    })
}

struct Request<'a> {
    pacs: &'a Pacs,
    destination: &'a str,
    study_uid: &'a str,
    ticket: &'a Ticket,
}

impl Request<'_> {
    /// The number of failed sub-operations the PACS reported.
    async fn run<S: crate::tls::Wire>(
        &self,
        mut association: AsyncClientAssociation<S>,
    ) -> Result<u32, FindError> {
        let result = self.ask(&mut association).await;
        super::link::close(association, &result).await;
        result
    }

    async fn ask<S: crate::tls::Wire>(
        &self,
        association: &mut AsyncClientAssociation<S>,
    ) -> Result<u32, FindError> {
        let pacs = self.pacs;
        let Some(pc) = association
            .presentation_contexts()
            .iter()
            .find(|pc| {
                pc.reason == PresentationContextResultReason::Acceptance
                    && trim_uid(&pc.abstract_syntax) == STUDY_ROOT_MOVE
            })
            .cloned()
        else {
            return Err(FindError::NotSupported {
                pacs: pacs.id.clone(),
                service: "Study Root C-MOVE",
            });
        };
        let command = CommandBuilder::new()
            .uid(dimse::TAG_AFFECTED_SOP_CLASS, STUDY_ROOT_MOVE)
            .u16(dimse::TAG_COMMAND_FIELD, C_MOVE_RQ)
            .u16(dimse::TAG_MESSAGE_ID, self.ticket.message_id)
            .u16(dimse::TAG_PRIORITY, 0)
            .text(TAG_MOVE_DESTINATION, self.destination)
            .u16(dimse::TAG_DATA_SET_TYPE, 0x0001)
            .encode();
        let obj = super::retrieve::study_identifier(self.study_uid);
        let identifier = super::find::encode(&obj, trim_uid(&pc.transfer_syntax))
            .map_err(|e| super::link::transport(pacs, e))?;
        super::link::send(association, pacs, pc.id, PDataValueType::Command, command).await?;
        super::link::send(association, pacs, pc.id, PDataValueType::Data, identifier).await?;

        let mut command = Vec::new();
        loop {
            for pdv in self.receive(association).await? {
                if pdv.value_type == PDataValueType::Data {
                    // A C-MOVE-RSP may carry an identifier (failed instance UIDs): unused.
                    continue;
                }
                if command.len() + pdv.data.len() > super::link::MAX_MESSAGE {
                    return Err(super::link::transport(
                        pacs,
                        "a command set larger than 1 MiB",
                    ));
                }
                command.extend_from_slice(&pdv.data);
                if !pdv.is_last {
                    continue;
                }
                let rsp = Command::decode(&command).map_err(|e| super::link::transport(pacs, e))?;
                command.clear();
                let field = rsp
                    .command_field()
                    .map_err(|e| super::link::transport(pacs, e))?;
                if field != C_MOVE_RSP {
                    return Err(super::link::transport(
                        pacs,
                        format!("unexpected command {field:04X}"),
                    ));
                }
                let failed = || {
                    u32::from(
                        rsp.u16(TAG_FAILED_SUBOPERATIONS)
                            .ok()
                            .flatten()
                            .unwrap_or(0),
                    )
                };
                match rsp.status().map_err(|e| super::link::transport(pacs, e))? {
                    0xFF00 | 0xFF01 => {}
                    0x0000 => return Ok(failed()),
                    s if s & 0xF000 == 0xB000 => return Ok(failed()),
                    status => {
                        return Err(FindError::Refused {
                            pacs: pacs.id.clone(),
                            status,
                            comment: rsp.text(dimse::TAG_ERROR_COMMENT),
                        })
                    }
                }
            }
        }
    }

    /// The PDVs of the next P-DATA-TF. Waits `timeout_secs` at a time, as long as the
    /// move's instances keep arriving at readgate's listener meanwhile.
    async fn receive<S: crate::tls::Wire>(
        &self,
        association: &mut AsyncClientAssociation<S>,
    ) -> Result<Vec<dicom_ul::pdu::PDataValue>, FindError> {
        let pacs = self.pacs;
        let wait = Duration::from_secs(pacs.timeout_secs);
        let mut seen = self.ticket.delivered();
        let next = association.receive();
        tokio::pin!(next);
        let pdu = loop {
            tokio::select! {
                pdu = &mut next => break pdu.map_err(|e| super::link::transport(pacs, e))?,
                _ = tokio::time::sleep(wait) => {
                    let now = self.ticket.delivered();
                    if now == seen {
                        return Err(FindError::Timeout { pacs: pacs.id.clone(), secs: pacs.timeout_secs });
                    }
                    seen = now;
                }
            }
        };
        super::link::pdvs(pacs, pdu)
    }
}
