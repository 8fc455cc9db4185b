//! The hospital PACS of `readgate demo`, in the same process: a Study Root C-FIND SCP
//! (STUDY, SERIES and IMAGE level) and C-MOVE SCP over the files of one folder
//! (`sample-dicom/prior-ct`, a prior CT of the demo's chest patient), so a new user sees
//! priors found in the PACS, moved and sent with the study. Only for the demo: the tests
//! use Orthanc and DCMTK `dcmqrscp` as the PACS. It matches exactly (Patient ID, UIDs)
//! and on a Study Date range `YYYYMMDD-`, which is what readgate asks.

use crate::config::{Destination, ForwardConfig};
use crate::dicom::dataset::{tags as t, Header};
use crate::dicom::dimse::{self, status, Command, CommandBuilder};
use crate::dicom::{part10, trim_uid};
use crate::forward::{Scu, StoreOutcome};
use crate::priors::find::STUDY_ROOT_FIND;
use crate::priors::move_scu::STUDY_ROOT_MOVE;
use anyhow::Context;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_ul::association::Association as _;
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextNegotiated};
use dicom_ul::{Pdu, ServerAssociationOptions};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::{info, warn};

const C_FIND_RSP: u16 = 0x8020;
const C_MOVE_RSP: u16 = 0x8021;
const TAG_MOVE_DESTINATION: u16 = 0x0600;
const TAG_COMPLETED: u16 = 0x1021;
const TAG_FAILED: u16 = 0x1022;

/// One instance the demo PACS holds.
struct Held {
    path: PathBuf,
    header: Header,
    sop_class: String,
    sop_instance: String,
    transfer_syntax: String,
}

impl Held {
    fn get(&self, tag: u32) -> &str {
        self.header.get(tag).unwrap_or("")
    }
}

/// The running demo PACS.
pub struct DemoPacs {
    pub addr: SocketAddr,
    pub ae_title: String,
    task: tokio::task::JoinHandle<()>,
}

impl DemoPacs {
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Serves the Part 10 files of `folder` as AE `ae_title` on an ephemeral port of
/// 127.0.0.1; C-MOVEs go to `readgate` (AE title, address), the only node it knows.
pub async fn start(
    folder: &Path,
    ae_title: &str,
    readgate: (String, SocketAddr),
) -> anyhow::Result<DemoPacs> {
    let folder = folder.to_path_buf();
    let held = tokio::task::spawn_blocking(move || load(&folder)).await??;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let held = Arc::new(held);
    let node = Arc::new(readgate);
    let ae = ae_title.to_string();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (held, node, ae) = (held.clone(), node.clone(), ae.clone());
            tokio::spawn(async move {
                if let Err(e) = serve(socket, &held, &node, &ae).await {
                    warn!(error = %e, "demo PACS: association ended");
                }
            });
        }
    });
    Ok(DemoPacs {
        addr,
        ae_title: ae_title.to_string(),
        task,
    })
}

fn load(folder: &Path) -> anyhow::Result<Vec<Held>> {
    let mut held = Vec::new();
    let entries =
        std::fs::read_dir(folder).with_context(|| format!("reading {}", folder.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let mut file = std::fs::File::open(&path)?;
        let meta = part10::read_file_meta(&mut file)
            .with_context(|| format!("{} is not a DICOM file", path.display()))?;
        let header = crate::dicom::dataset::walk_file(&path).map_err(anyhow::Error::msg)?;
        held.push(Held {
            path,
            header,
            sop_class: meta.sop_class_uid,
            sop_instance: meta.sop_instance_uid,
            transfer_syntax: meta.transfer_syntax,
        });
    }
    Ok(held)
}

async fn serve(
    socket: tokio::net::TcpStream,
    held: &[Held],
    node: &(String, SocketAddr),
    ae_title: &str,
) -> anyhow::Result<()> {
    let mut association = ServerAssociationOptions::new()
        .accept_any()
        .ae_title(ae_title.to_string())
        .with_abstract_syntax(STUDY_ROOT_FIND)
        .with_abstract_syntax(STUDY_ROOT_MOVE)
        .establish_async(socket)
        .await?;
    let contexts = association.presentation_contexts().to_vec();
    // Who asks: the Move Originator of the sub-operations.
    let caller = association.peer_ae_title().trim().to_string();
    let mut command = Vec::new();
    let mut data = Vec::new();
    let mut request: Option<(Command, u8)> = None;
    loop {
        let pdvs = match association.receive().await? {
            Pdu::PData { data } => data,
            Pdu::ReleaseRQ => {
                association.send(&Pdu::ReleaseRP).await?;
                return Ok(());
            }
            _ => return Ok(()),
        };
        for pdv in pdvs {
            let buffer = match pdv.value_type {
                PDataValueType::Command => &mut command,
                PDataValueType::Data => &mut data,
            };
            if buffer.len() + pdv.data.len() > 1 << 20 {
                anyhow::bail!("a message larger than 1 MiB");
            }
            buffer.extend_from_slice(&pdv.data);
            if !pdv.is_last {
                continue;
            }
            if pdv.value_type == PDataValueType::Command {
                request = Some((Command::decode(&command)?, pdv.presentation_context_id));
                command.clear();
                continue;
            }
            let Some((rq, context)) = request.take() else {
                anyhow::bail!("a data set without a command");
            };
            let identifier = decode(&data, &contexts, context)?;
            data.clear();
            let answers = match rq.command_field()? {
                0x0020 => find(&rq, &identifier, held),
                0x0021 => move_study(&rq, &identifier, held, node, (ae_title, &caller)).await,
                other => vec![(
                    dimse::response(other | 0x8000, &rq, rq.message_id()?, 0x0211, None),
                    None,
                )],
            };
            for (response, dataset) in answers {
                send(&mut association, context, PDataValueType::Command, response).await?;
                if let Some(ds) = dataset {
                    let bytes = encode(&ds, &contexts, context)?;
                    send(&mut association, context, PDataValueType::Data, bytes).await?;
                }
            }
        }
    }
}

type Answer = (Vec<u8>, Option<InMemDicomObject>);

fn syntax(contexts: &[PresentationContextNegotiated], id: u8) -> String {
    contexts
        .iter()
        .find(|pc| pc.id == id)
        .map(|pc| trim_uid(&pc.transfer_syntax).to_string())
        .unwrap_or_else(|| crate::dicom::IMPLICIT_VR_LE.to_string())
}

fn decode(
    bytes: &[u8],
    contexts: &[PresentationContextNegotiated],
    id: u8,
) -> anyhow::Result<InMemDicomObject> {
    use dicom_encoding::TransferSyntaxIndex;
    let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(&syntax(contexts, id))
        .context("unknown transfer syntax")?;
    Ok(InMemDicomObject::read_dataset_with_ts(bytes, ts)?)
}

fn encode(
    obj: &InMemDicomObject,
    contexts: &[PresentationContextNegotiated],
    id: u8,
) -> anyhow::Result<Vec<u8>> {
    crate::priors::find::encode(obj, &syntax(contexts, id)).map_err(anyhow::Error::msg)
}

async fn send<S: crate::tls::Wire>(
    association: &mut dicom_ul::association::server::AsyncServerAssociation<S>,
    context: u8,
    value_type: PDataValueType,
    data: Vec<u8>,
) -> anyhow::Result<()> {
    association
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: context,
                value_type,
                is_last: true,
                data,
            }],
        })
        .await?;
    Ok(())
}

fn key(identifier: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    identifier
        .element(tag)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_matches(|c: char| c == ' ' || c == '\0').to_string())
        .unwrap_or_default()
}

fn put(obj: &mut InMemDicomObject, tag: dicom_core::Tag, vr: VR, value: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
}

/// A pending response with its identifier.
fn pending(rq: &Command, obj: InMemDicomObject) -> Answer {
    let command = CommandBuilder::new()
        .uid(dimse::TAG_AFFECTED_SOP_CLASS, STUDY_ROOT_FIND)
        .u16(dimse::TAG_COMMAND_FIELD, C_FIND_RSP)
        .u16(
            dimse::TAG_MESSAGE_ID_RESPONDED,
            rq.message_id().unwrap_or(0),
        )
        .u16(dimse::TAG_DATA_SET_TYPE, 0x0001)
        .u16(dimse::TAG_STATUS, 0xFF00)
        .encode();
    (command, Some(obj))
}

/// C-FIND: one answer per matching study, series or instance, then success.
fn find(rq: &Command, identifier: &InMemDicomObject, held: &[Held]) -> Vec<Answer> {
    let level = key(identifier, tags::QUERY_RETRIEVE_LEVEL);
    let study = key(identifier, tags::STUDY_INSTANCE_UID);
    let series = key(identifier, tags::SERIES_INSTANCE_UID);
    let mut answers = Vec::new();
    let mut seen = BTreeSet::new();
    for h in held {
        let mut obj = InMemDicomObject::new_empty();
        put(&mut obj, tags::QUERY_RETRIEVE_LEVEL, VR::CS, &level);
        match level.as_str() {
            "STUDY" => {
                let patient = key(identifier, tags::PATIENT_ID);
                let since = key(identifier, tags::STUDY_DATE);
                let since = since.trim_end_matches('-');
                if h.get(t::PATIENT_ID) != patient
                    || (!since.is_empty() && h.get(t::STUDY_DATE) < since)
                    || !seen.insert(h.get(t::STUDY_INSTANCE_UID).to_string())
                {
                    continue;
                }
                let uid = h.get(t::STUDY_INSTANCE_UID);
                let of_study: Vec<&Held> = held
                    .iter()
                    .filter(|o| o.get(t::STUDY_INSTANCE_UID) == uid)
                    .collect();
                let modalities: BTreeSet<&str> =
                    of_study.iter().map(|o| o.get(t::MODALITY)).collect();
                put(&mut obj, tags::PATIENT_ID, VR::LO, &patient);
                put(&mut obj, tags::STUDY_INSTANCE_UID, VR::UI, uid);
                put(&mut obj, tags::STUDY_DATE, VR::DA, h.get(t::STUDY_DATE));
                put(&mut obj, tags::STUDY_TIME, VR::TM, h.get(t::STUDY_TIME));
                put(
                    &mut obj,
                    tags::ACCESSION_NUMBER,
                    VR::SH,
                    h.get(t::ACCESSION_NUMBER),
                );
                let modalities: Vec<&str> = modalities.into_iter().collect();
                put(
                    &mut obj,
                    tags::MODALITIES_IN_STUDY,
                    VR::CS,
                    &modalities.join("\\"),
                );
                let count = of_study.len().to_string();
                put(
                    &mut obj,
                    tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
                    VR::IS,
                    &count,
                );
            }
            "SERIES" => {
                if h.get(t::STUDY_INSTANCE_UID) != study
                    || !seen.insert(h.get(t::SERIES_INSTANCE_UID).to_string())
                {
                    continue;
                }
                put(&mut obj, tags::STUDY_INSTANCE_UID, VR::UI, &study);
                put(
                    &mut obj,
                    tags::SERIES_INSTANCE_UID,
                    VR::UI,
                    h.get(t::SERIES_INSTANCE_UID),
                );
                put(&mut obj, tags::MODALITY, VR::CS, h.get(t::MODALITY));
            }
            "IMAGE" => {
                if h.get(t::STUDY_INSTANCE_UID) != study || h.get(t::SERIES_INSTANCE_UID) != series
                {
                    continue;
                }
                put(&mut obj, tags::STUDY_INSTANCE_UID, VR::UI, &study);
                put(&mut obj, tags::SERIES_INSTANCE_UID, VR::UI, &series);
                put(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, &h.sop_instance);
                put(&mut obj, tags::SOP_CLASS_UID, VR::UI, &h.sop_class);
            }
            _ => break,
        }
        answers.push(pending(rq, obj));
    }
    let done = CommandBuilder::new()
        .uid(dimse::TAG_AFFECTED_SOP_CLASS, STUDY_ROOT_FIND)
        .u16(dimse::TAG_COMMAND_FIELD, C_FIND_RSP)
        .u16(
            dimse::TAG_MESSAGE_ID_RESPONDED,
            rq.message_id().unwrap_or(0),
        )
        .u16(dimse::TAG_DATA_SET_TYPE, dimse::NO_DATA_SET)
        .u16(dimse::TAG_STATUS, status::SUCCESS)
        .encode();
    answers.push((done, None));
    answers
}

/// C-MOVE of a study to the one node the demo PACS knows: C-STOREs on an association
/// of its own, naming the move, then the final response.
async fn move_study(
    rq: &Command,
    identifier: &InMemDicomObject,
    held: &[Held],
    node: &(String, SocketAddr),
    (ae_title, caller): (&str, &str),
) -> Vec<Answer> {
    let message_id = rq.message_id().unwrap_or(0);
    let final_rsp = |code: u16, completed: u16, failed: u16| {
        CommandBuilder::new()
            .uid(dimse::TAG_AFFECTED_SOP_CLASS, STUDY_ROOT_MOVE)
            .u16(dimse::TAG_COMMAND_FIELD, C_MOVE_RSP)
            .u16(dimse::TAG_MESSAGE_ID_RESPONDED, message_id)
            .u16(dimse::TAG_DATA_SET_TYPE, dimse::NO_DATA_SET)
            .u16(dimse::TAG_STATUS, code)
            .u16(TAG_COMPLETED, completed)
            .u16(TAG_FAILED, failed)
            .encode()
    };
    let destination = rq.text(TAG_MOVE_DESTINATION).unwrap_or_default();
    if destination.trim() != node.0 {
        // PS3.4 C.4.2.1.4.2: Move Destination unknown.
        return vec![(final_rsp(0xA801, 0, 0), None)];
    }
    let study = key(identifier, tags::STUDY_INSTANCE_UID);
    let of_study: Vec<&Held> = held
        .iter()
        .filter(|h| h.get(t::STUDY_INSTANCE_UID) == study)
        .collect();
    let kinds: Vec<(String, String)> = of_study
        .iter()
        .map(|h| (h.sop_class.clone(), h.transfer_syntax.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let target = Destination {
        id: "demo-move".into(),
        facility: String::new(),
        ae_title: node.0.clone(),
        host: node.1.ip().to_string(),
        port: node.1.port(),
        calling_ae_title: None,
        tls: false,
        tls_ca: None,
        tls_cert: None,
        tls_key: None,
        tls_server_name: None,
        send_priors: false,
    };
    let mut scu = match Scu::connect(&target, ae_title, &kinds, &ForwardConfig::default()).await {
        Ok(scu) => scu,
        Err(e) => {
            warn!(error = %e, "demo PACS: cannot reach the move destination");
            return vec![(final_rsp(0xA702, 0, of_study.len() as u16), None)];
        }
    };
    // The originator is whoever asked (readgate's AE): its listener sets the instances
    // apart by it and by the C-MOVE's message ID.
    scu = scu.for_move(caller, message_id);
    let (mut completed, mut failed) = (0u16, 0u16);
    for h in &of_study {
        match scu
            .store(
                &crate::forward::Outgoing::Kept(h.path.clone()),
                &h.sop_class,
                &h.sop_instance,
                &h.transfer_syntax,
            )
            .await
        {
            Ok(StoreOutcome { status: code, .. }) if status::is_success_or_warning(code) => {
                completed += 1
            }
            _ => failed += 1,
        }
    }
    scu.release().await;
    info!(study_uid = %study, completed, failed, "demo PACS: moved a study");
    let code = if failed == 0 { status::SUCCESS } else { 0xB000 };
    vec![(final_rsp(code, completed, failed), None)]
}
