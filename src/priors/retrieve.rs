//! The C-GET SCU: a prior study's instances from a `[[pacs]]`, stored in a spool of
//! readgate's (the priors cache, `<data_dir>/priors/cache`, or `readgate pacs get --out`),
//! over plain TCP or DICOM TLS.
//!
//! C-GET needs no reverse configuration in the PACS (C-MOVE would have it send to
//! readgate's AE): the PACS answers with C-STORE sub-operations on the same association,
//! for the storage SOP classes readgate proposed in the SCP role. Each instance's data
//! is written to its file as it arrives (memory bounded by one PDU) and renamed into the
//! spool before its C-STORE-RSP; the whole study is made durable with one `syncfs` at the
//! end (a prior lost in a crash is simply retrieved again). The spool's free-space floor
//! is checked before each instance, and a full disk refuses the sub-operation with A700.

use super::find::FindError;
use crate::config::pacs::Pacs;
use crate::dicom::dimse::{self, Command, CommandBuilder};
use crate::dicom::{trim_uid, ACCEPTED_TRANSFER_SYNTAXES};
use crate::spool::Spool;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_ul::association::client::AsyncClientAssociation;
use dicom_ul::pdu::{PDataValueType, PresentationContextResultReason};
use dicom_ul::ClientAssociationOptions;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Study Root Query/Retrieve Information Model — GET.
pub const STUDY_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";
const C_GET_RQ: u16 = 0x0010;
const C_GET_RSP: u16 = 0x8010;
/// PDUs readgate accepts from the PACS (the largest PS3.8 allows readers to announce
/// sensibly; bounds memory per PDU).
const MAX_PDU: u32 = 1 << 20;

/// The storage SOP classes proposed for retrieval (SCP role): what prior studies are
/// made of — images of every common modality, structured reports, key objects,
/// presentation states and encapsulated documents. A C-GET association carries at most
/// 128 presentation contexts, so this is a choice, not the whole registry.
pub const RETRIEVED_SOP_CLASSES: [&str; 40] = [
    uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
    uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
    uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
    uids::BREAST_TOMOSYNTHESIS_IMAGE_STORAGE,
    uids::CT_IMAGE_STORAGE,
    uids::ENHANCED_CT_IMAGE_STORAGE,
    uids::ULTRASOUND_MULTI_FRAME_IMAGE_STORAGE,
    uids::MR_IMAGE_STORAGE,
    uids::ENHANCED_MR_IMAGE_STORAGE,
    uids::ULTRASOUND_IMAGE_STORAGE,
    uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_SINGLE_BIT_SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_GRAYSCALE_BYTE_SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_GRAYSCALE_WORD_SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_TRUE_COLOR_SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::X_RAY_ANGIOGRAPHIC_IMAGE_STORAGE,
    uids::ENHANCED_XA_IMAGE_STORAGE,
    uids::X_RAY_RADIOFLUOROSCOPIC_IMAGE_STORAGE,
    uids::NUCLEAR_MEDICINE_IMAGE_STORAGE,
    uids::POSITRON_EMISSION_TOMOGRAPHY_IMAGE_STORAGE,
    uids::ENHANCED_PET_IMAGE_STORAGE,
    uids::VL_PHOTOGRAPHIC_IMAGE_STORAGE,
    uids::VL_ENDOSCOPIC_IMAGE_STORAGE,
    uids::OPHTHALMIC_PHOTOGRAPHY8_BIT_IMAGE_STORAGE,
    uids::SEGMENTATION_STORAGE,
    uids::BASIC_TEXT_SR_STORAGE,
    uids::ENHANCED_SR_STORAGE,
    uids::COMPREHENSIVE_SR_STORAGE,
    uids::COMPREHENSIVE3_DSR_STORAGE,
    uids::EXTENSIBLE_SR_STORAGE,
    uids::MAMMOGRAPHY_CADSR_STORAGE,
    uids::KEY_OBJECT_SELECTION_DOCUMENT_STORAGE,
    uids::X_RAY_RADIATION_DOSE_SR_STORAGE,
    uids::GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    uids::COLOR_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    uids::ENCAPSULATED_PDF_STORAGE,
    uids::ENCAPSULATED_CDA_STORAGE,
    uids::RAW_DATA_STORAGE,
];

pub use crate::receive::moves::Fetched;

/// What one C-GET or C-MOVE brought.
#[derive(Debug, Clone, Serialize)]
pub struct Retrieved {
    pub study_uid: String,
    pub instances: Vec<Fetched>,
    /// Sub-operations the PACS reported failed or refused by readgate.
    pub failed: u32,
    /// Sub-operations with a warning status.
    pub warnings: u32,
    pub millis: u64,
}

impl Retrieved {
    pub fn bytes(&self) -> u64 {
        self.instances.iter().map(|i| i.bytes).sum()
    }
}

/// Retrieves every instance of `study_uid` from `pacs` into `spool`, as `calling_ae`.
pub async fn get_study(
    pacs: &Pacs,
    calling_ae: &str,
    study_uid: &str,
    spool: &Arc<Spool>,
) -> Result<Retrieved, FindError> {
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title(calling_ae.to_string())
        .max_pdu_length(MAX_PDU)
        .with_presentation_context(
            STUDY_ROOT_GET,
            vec![crate::dicom::EXPLICIT_VR_LE, crate::dicom::IMPLICIT_VR_LE],
        );
    for class in RETRIEVED_SOP_CLASSES {
        options = options
            .with_presentation_context(class, ACCEPTED_TRANSFER_SYNTAXES.to_vec())
            .with_role_selection(class, false, true);
    }
    let started = Instant::now();
    let mut retrieved = match super::link::establish(pacs, options).await? {
        super::link::Link::Plain(a) => Getter::new(pacs, *a, spool)?.run(study_uid).await?,
        super::link::Link::Tls(a) => Getter::new(pacs, *a, spool)?.run(study_uid).await?,
    };
    make_durable(pacs, spool).await?;
    retrieved.millis = started.elapsed().as_millis() as u64;
    Ok(retrieved)
}

/// One syncfs for the whole study rather than an fsync per instance: a prior lost in a
/// crash is retrieved again, so nothing waits on each file's durability.
pub(super) async fn make_durable(pacs: &Pacs, spool: &Arc<Spool>) -> Result<(), FindError> {
    let spool = spool.clone();
    tokio::task::spawn_blocking(move || spool.sync())
        .await
        .map_err(|e| super::link::transport(pacs, format!("internal error: {e}")))?
        .map_err(|e| {
            super::link::transport(
                pacs,
                format!("cannot make the retrieved files durable: {e}"),
            )
        })
}

/// The identifier of a retrieval (C-GET or C-MOVE) of one whole study.
pub(super) fn study_identifier(study_uid: &str) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from("STUDY"),
    ));
    obj.put(DataElement::new(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(study_uid.trim()),
    ));
    obj
}

/// The C-STORE sub-operation being received.
struct Incoming {
    request: Command,
    message_id: u16,
    context: u8,
    /// None when refused (no room, unknown context): its data is read and dropped.
    file: Option<crate::spool::PartialInstance>,
    refusal: Option<(u16, String)>,
}

struct Getter<'a, S> {
    pacs: &'a Pacs,
    association: AsyncClientAssociation<S>,
    spool: Arc<Spool>,
    get_context: u8,
    /// Accepted storage contexts: id → (SOP class, transfer syntax).
    storage: HashMap<u8, (String, String)>,
}

impl<'a, S: crate::tls::Wire> Getter<'a, S> {
    fn new(
        pacs: &'a Pacs,
        association: AsyncClientAssociation<S>,
        spool: &Arc<Spool>,
    ) -> Result<Self, FindError> {
        let mut get_context = None;
        let mut storage = HashMap::new();
        for pc in association.presentation_contexts() {
            if pc.reason != PresentationContextResultReason::Acceptance {
                continue;
            }
            let syntax = trim_uid(&pc.abstract_syntax);
            if syntax == STUDY_ROOT_GET {
                get_context = Some(pc.id);
            } else {
                storage.insert(
                    pc.id,
                    (
                        syntax.to_string(),
                        trim_uid(&pc.transfer_syntax).to_string(),
                    ),
                );
            }
        }
        let Some(get_context) = get_context else {
            return Err(FindError::NotSupported {
                pacs: pacs.id.clone(),
                service: "Study Root C-GET",
            });
        };
        Ok(Getter {
            pacs,
            association,
            spool: spool.clone(),
            get_context,
            storage,
        })
    }

    fn transport(&self, reason: impl std::fmt::Display) -> FindError {
        super::link::transport(self.pacs, reason)
    }

    async fn run(mut self, study_uid: &str) -> Result<Retrieved, FindError> {
        let result = self.get(study_uid).await;
        super::link::close(self.association, &result).await;
        result
    }

    async fn send(
        &mut self,
        context: u8,
        value_type: PDataValueType,
        data: Vec<u8>,
    ) -> Result<(), FindError> {
        super::link::send(&mut self.association, self.pacs, context, value_type, data).await
    }

    async fn get(&mut self, study_uid: &str) -> Result<Retrieved, FindError> {
        let message_id = 1;
        let command = CommandBuilder::new()
            .uid(dimse::TAG_AFFECTED_SOP_CLASS, STUDY_ROOT_GET)
            .u16(dimse::TAG_COMMAND_FIELD, C_GET_RQ)
            .u16(dimse::TAG_MESSAGE_ID, message_id)
            .u16(dimse::TAG_PRIORITY, 0)
            .u16(dimse::TAG_DATA_SET_TYPE, 0x0001)
            .encode();
        let obj = study_identifier(study_uid);
        let get_syntax = self
            .association
            .presentation_contexts()
            .iter()
            .find(|pc| pc.id == self.get_context)
            .map(|pc| trim_uid(&pc.transfer_syntax).to_string())
            .unwrap_or_else(|| crate::dicom::IMPLICIT_VR_LE.to_string());
        let identifier = super::find::encode(&obj, &get_syntax).map_err(|e| self.transport(e))?;
        let get_context = self.get_context;
        self.send(get_context, PDataValueType::Command, command)
            .await?;
        self.send(get_context, PDataValueType::Data, identifier)
            .await?;

        let mut retrieved = Retrieved {
            study_uid: study_uid.trim().to_string(),
            instances: Vec::new(),
            failed: 0,
            warnings: 0,
            millis: 0,
        };
        let mut command = Vec::new();
        let mut incoming: Option<Incoming> = None;
        loop {
            let pdvs = super::link::receive(&mut self.association, self.pacs).await?;
            for pdv in pdvs {
                if pdv.value_type == PDataValueType::Data {
                    let Some(inc) = incoming.as_mut() else {
                        return Err(self.transport("data without a C-STORE request"));
                    };
                    if let Some(file) = inc.file.as_mut() {
                        if let Err(e) = file.write(&pdv.data) {
                            inc.file = None;
                            inc.refusal = Some((
                                dimse::status::REFUSED_OUT_OF_RESOURCES,
                                format!("cannot write: {e}"),
                            ));
                        }
                    }
                    if pdv.is_last {
                        if let Some(inc) = incoming.take() {
                            self.finish_store(inc, &mut retrieved).await?;
                        }
                    }
                    continue;
                }
                if command.len() + pdv.data.len() > super::link::MAX_MESSAGE {
                    return Err(self.transport("a command set larger than 1 MiB"));
                }
                command.extend_from_slice(&pdv.data);
                if !pdv.is_last {
                    continue;
                }
                let rq = Command::decode(&command).map_err(|e| self.transport(e))?;
                command.clear();
                let field = rq.command_field().map_err(|e| self.transport(e))?;
                if field == dimse::C_STORE_RQ {
                    incoming = Some(self.begin_store(rq, pdv.presentation_context_id));
                } else if field == C_GET_RSP {
                    let status = rq.status().map_err(|e| self.transport(e))?;
                    match status {
                        0xFF00 | 0xFF01 => {}
                        0x0000 => return Ok(retrieved),
                        s if s & 0xF000 == 0xB000 => {
                            retrieved.failed = retrieved
                                .failed
                                .max(u32::from(rq.u16(0x1022).ok().flatten().unwrap_or(0)));
                            return Ok(retrieved);
                        }
                        _ => {
                            return Err(FindError::Refused {
                                pacs: self.pacs.id.clone(),
                                status,
                                comment: rq.text(dimse::TAG_ERROR_COMMENT),
                            })
                        }
                    }
                } else {
                    return Err(self.transport(format!("unexpected command {field:04X}")));
                }
            }
        }
    }

    /// Starts receiving one sub-operation: its file in the spool, or why it is refused.
    fn begin_store(&self, request: Command, context: u8) -> Incoming {
        let message_id = request.message_id().unwrap_or(0);
        let class = request
            .text(dimse::TAG_AFFECTED_SOP_CLASS)
            .unwrap_or_default();
        let instance = request
            .text(dimse::TAG_AFFECTED_SOP_INSTANCE)
            .unwrap_or_default();
        let refuse = |status: u16, why: String| Incoming {
            request: request.clone(),
            message_id,
            context,
            file: None,
            refusal: Some((status, why)),
        };
        let Some((_, syntax)) = self.storage.get(&context) else {
            return refuse(
                dimse::status::SOP_CLASS_NOT_SUPPORTED,
                "no storage context".into(),
            );
        };
        match self.spool.has_room() {
            Ok(true) => {}
            _ => {
                return refuse(
                    dimse::status::REFUSED_OUT_OF_RESOURCES,
                    "readgate's priors spool is below its free-space floor".into(),
                )
            }
        }
        let header = crate::dicom::part10::encode_file_meta(
            trim_uid(&class),
            trim_uid(&instance),
            syntax,
            &self.pacs.ae_title,
        );
        match self.spool.begin(&header) {
            Ok(file) => Incoming {
                request,
                message_id,
                context,
                file: Some(file),
                refusal: None,
            },
            Err(e) => refuse(
                dimse::status::REFUSED_OUT_OF_RESOURCES,
                format!("cannot write: {e}"),
            ),
        }
    }

    /// Commits a received instance (fsync, rename) and answers its C-STORE-RSP.
    async fn finish_store(
        &mut self,
        inc: Incoming,
        retrieved: &mut Retrieved,
    ) -> Result<(), FindError> {
        let (status, comment) = match (inc.file, inc.refusal) {
            (Some(file), None) => {
                let spool = self.spool.clone();
                match tokio::task::spawn_blocking(move || spool.commit_unsynced(file)).await {
                    Ok(Ok((path, bytes))) => {
                        let syntax = self
                            .storage
                            .get(&inc.context)
                            .map(|(_, ts)| ts.clone())
                            .unwrap_or_default();
                        retrieved.instances.push(Fetched {
                            sop_class_uid: inc
                                .request
                                .text(dimse::TAG_AFFECTED_SOP_CLASS)
                                .map(|s| trim_uid(&s).to_string())
                                .unwrap_or_default(),
                            sop_instance_uid: inc
                                .request
                                .text(dimse::TAG_AFFECTED_SOP_INSTANCE)
                                .map(|s| trim_uid(&s).to_string())
                                .unwrap_or_default(),
                            transfer_syntax: syntax,
                            path,
                            bytes,
                        });
                        (dimse::status::SUCCESS, None)
                    }
                    Ok(Err(e)) => (
                        dimse::status::REFUSED_OUT_OF_RESOURCES,
                        Some(format!("cannot store: {e}")),
                    ),
                    Err(e) => (
                        dimse::status::PROCESSING_FAILURE,
                        Some(format!("internal error: {e}")),
                    ),
                }
            }
            (_, refusal) => {
                let (status, why) =
                    refusal.unwrap_or((dimse::status::PROCESSING_FAILURE, "refused".into()));
                (status, Some(why))
            }
        };
        if status != dimse::status::SUCCESS {
            retrieved.failed += 1;
        }
        let rsp = dimse::response(
            dimse::C_STORE_RSP,
            &inc.request,
            inc.message_id,
            status,
            comment.as_deref(),
        );
        self.send(inc.context, PDataValueType::Command, rsp).await
    }
}
