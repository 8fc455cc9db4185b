//! The C-FIND SCU: a patient's studies in a PACS (Study Root Query/Retrieve Information
//! Model — FIND, STUDY level), over plain TCP or DICOM TLS.
//!
//! Bounded like every link readgate opens: a timeout to connect and for each answer, and
//! at most `max_results` studies (a broader answer is cancelled with C-CANCEL and
//! reported, never truncated silently).

use crate::config::pacs::Pacs;
use crate::dicom::dimse::{self, Command, CommandBuilder};
use crate::dicom::{trim_uid, EXPLICIT_VR_LE, IMPLICIT_VR_LE};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_ul::association::client::AsyncClientAssociation;
use dicom_ul::pdu::{PDataValueType, PresentationContextResultReason};
use dicom_ul::ClientAssociationOptions;
use serde::Serialize;

/// Study Root Query/Retrieve Information Model — FIND.
pub const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
const C_FIND_RQ: u16 = 0x0020;
const C_CANCEL_RQ: u16 = 0x0FFF;

/// Whose studies to look for.
#[derive(Debug, Clone, Default)]
pub struct StudyQuery {
    pub patient_id: String,
    /// Issuer of Patient ID (0010,0021), when the hospital has several ID domains.
    pub issuer: Option<String>,
    /// Only studies on or after this date (DICOM DA, `YYYYMMDD`).
    pub since: Option<String>,
}

pub use crate::model::PacsStudy;

#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error("PACS {pacs}: {reason}")]
    Settings { pacs: String, reason: String },
    #[error("cannot associate with PACS {pacs} ({ae}@{addr}): {reason}")]
    Associate {
        pacs: String,
        ae: String,
        addr: String,
        reason: String,
    },
    #[error("PACS {pacs} did not accept {service}")]
    NotSupported { pacs: String, service: &'static str },
    #[error("PACS {pacs}: no answer within {secs} s")]
    Timeout { pacs: String, secs: u64 },
    #[error("PACS {pacs}: association lost: {reason}")]
    Transport { pacs: String, reason: String },
    #[error("PACS {pacs} refused the request: status {status:04X}{}", comment.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Refused {
        pacs: String,
        status: u16,
        comment: Option<String>,
    },
    #[error("PACS {pacs} found more than {max} studies (pacs.max_results): query cancelled")]
    TooMany { pacs: String, max: usize },
}

/// The patient's studies in `pacs`, as `calling_ae` (one association).
pub async fn find_studies(
    pacs: &Pacs,
    calling_ae: &str,
    query: &StudyQuery,
) -> Result<Vec<PacsStudy>, FindError> {
    let mut session = Session::open(pacs, calling_ae).await?;
    let result = session.studies(query).await;
    session.close(&result).await;
    result
}

/// A report document in a prior study: a structured report or an encapsulated document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportDocument {
    pub series_uid: String,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
}

/// Structured reports and encapsulated documents that hold a report for a human reader.
/// Dose reports (X-Ray, Radiopharmaceutical, Patient Radiation Dose SR) and other
/// machine-made SR series that a CT study carries are not reports.
pub const REPORT_SOP_CLASSES: [&str; 7] = [
    "1.2.840.10008.5.1.4.1.1.88.11", // Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22", // Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33", // Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34", // Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.88.35", // Extensible SR
    "1.2.840.10008.5.1.4.1.1.104.1", // Encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.104.2", // Encapsulated CDA
];

/// One association to a PACS, over plain TCP or TLS, for several queries.
pub enum Session<'a> {
    Plain(Box<Finder<'a, tokio::net::TcpStream>>),
    Tls(Box<Finder<'a, dicom_ul::association::client::AsyncTlsStream>>),
}

impl<'a> Session<'a> {
    /// Associates with `pacs` as `calling_ae` for Study Root C-FIND.
    pub async fn open(pacs: &'a Pacs, calling_ae: &str) -> Result<Session<'a>, FindError> {
        let options = ClientAssociationOptions::new()
            .calling_ae_title(calling_ae.to_string())
            .with_presentation_context(STUDY_ROOT_FIND, vec![EXPLICIT_VR_LE, IMPLICIT_VR_LE]);
        Ok(match super::link::establish(pacs, options).await? {
            super::link::Link::Plain(a) => Session::Plain(Box::new(Finder::new(pacs, *a)?)),
            super::link::Link::Tls(a) => Session::Tls(Box::new(Finder::new(pacs, *a)?)),
        })
    }

    async fn find(
        &mut self,
        identifier: InMemDicomObject,
    ) -> Result<Vec<InMemDicomObject>, FindError> {
        match self {
            Session::Plain(f) => f.find(identifier).await,
            Session::Tls(f) => f.find(identifier).await,
        }
    }

    /// The patient's studies (STUDY level).
    pub async fn studies(&mut self, query: &StudyQuery) -> Result<Vec<PacsStudy>, FindError> {
        let answers = self.find(study_identifier(query)).await?;
        Ok(answers.iter().filter_map(study_of).collect())
    }

    /// The report documents of one study: its SR and DOC series (SERIES level), then the
    /// instances of those series whose SOP class is a report (IMAGE level).
    pub async fn report_documents(
        &mut self,
        study_uid: &str,
    ) -> Result<Vec<ReportDocument>, FindError> {
        Ok(self.series_facts(study_uid).await?.documents)
    }

    /// What a study's series say: its report documents (as [`Session::report_documents`])
    /// and the body parts (0018,0015) its series examined, from the same SERIES query.
    pub async fn series_facts(&mut self, study_uid: &str) -> Result<SeriesFacts, FindError> {
        let series = self.find(series_identifier(study_uid)).await?;
        let mut documents = Vec::new();
        let mut body_parts: Vec<String> = Vec::new();
        for s in &series {
            if let Some(part) = text(s, tags::BODY_PART_EXAMINED).map(|p| p.to_uppercase()) {
                if !body_parts.contains(&part) {
                    body_parts.push(part);
                }
            }
            let modality = text(s, tags::MODALITY).unwrap_or_default();
            let Some(series_uid) = text(s, tags::SERIES_INSTANCE_UID) else {
                continue;
            };
            if !matches!(modality.as_str(), "SR" | "DOC" | "OT") {
                continue;
            }
            for i in self.find(image_identifier(study_uid, &series_uid)).await? {
                let (Some(sop_class), Some(sop)) = (
                    text(&i, tags::SOP_CLASS_UID),
                    text(&i, tags::SOP_INSTANCE_UID),
                ) else {
                    continue;
                };
                if REPORT_SOP_CLASSES.contains(&trim_uid(&sop_class)) {
                    documents.push(ReportDocument {
                        series_uid: trim_uid(&series_uid).to_string(),
                        sop_instance_uid: trim_uid(&sop).to_string(),
                        sop_class_uid: trim_uid(&sop_class).to_string(),
                    });
                }
            }
        }
        Ok(SeriesFacts {
            documents,
            body_parts,
        })
    }

    /// Releases the association after a clean outcome (an answer, a refusal, a query
    /// cancelled as too broad); aborts it after a broken one.
    pub async fn close<T>(self, outcome: &Result<T, FindError>) {
        match self {
            Session::Plain(f) => f.close(outcome).await,
            Session::Tls(f) => f.close(outcome).await,
        }
    }
}

/// C-FIND over one association.
pub struct Finder<'a, S> {
    pacs: &'a Pacs,
    association: AsyncClientAssociation<S>,
    context: u8,
    syntax: String,
    message_id: u16,
}

impl<'a, S: crate::tls::Wire> Finder<'a, S> {
    fn new(pacs: &'a Pacs, association: AsyncClientAssociation<S>) -> Result<Self, FindError> {
        let accepted = association
            .presentation_contexts()
            .iter()
            .find(|pc| pc.reason == PresentationContextResultReason::Acceptance)
            .map(|pc| (pc.id, trim_uid(&pc.transfer_syntax).to_string()));
        let Some((context, syntax)) = accepted else {
            return Err(FindError::NotSupported {
                pacs: pacs.id.clone(),
                service: "Study Root C-FIND",
            });
        };
        Ok(Finder {
            pacs,
            association,
            context,
            syntax,
            message_id: 0,
        })
    }

    fn transport(&self, reason: impl std::fmt::Display) -> FindError {
        super::link::transport(self.pacs, reason)
    }

    async fn close<T>(self, outcome: &Result<T, FindError>) {
        super::link::close(self.association, outcome).await
    }

    async fn send(&mut self, value_type: PDataValueType, data: Vec<u8>) -> Result<(), FindError> {
        super::link::send(
            &mut self.association,
            self.pacs,
            self.context,
            value_type,
            data,
        )
        .await
    }

    /// One C-FIND: every pending answer's identifier, at most `max_results` of them.
    async fn find(
        &mut self,
        identifier: InMemDicomObject,
    ) -> Result<Vec<InMemDicomObject>, FindError> {
        self.message_id = self.message_id.wrapping_add(1);
        let message_id = self.message_id;
        let command = CommandBuilder::new()
            .uid(dimse::TAG_AFFECTED_SOP_CLASS, STUDY_ROOT_FIND)
            .u16(dimse::TAG_COMMAND_FIELD, C_FIND_RQ)
            .u16(dimse::TAG_MESSAGE_ID, message_id)
            .u16(dimse::TAG_PRIORITY, 0)
            .u16(dimse::TAG_DATA_SET_TYPE, 0x0001)
            .encode();
        let identifier = encode(&identifier, &self.syntax).map_err(|e| self.transport(e))?;
        self.send(PDataValueType::Command, command).await?;
        self.send(PDataValueType::Data, identifier).await?;

        let mut answers = Vec::new();
        let (mut command, mut data) = (Vec::new(), Vec::new());
        let mut pending: Option<Command> = None;
        loop {
            let pdvs = super::link::receive(&mut self.association, self.pacs).await?;
            for pdv in pdvs {
                let is_command = pdv.value_type == PDataValueType::Command;
                let buffer = if is_command { &mut command } else { &mut data };
                if buffer.len() + pdv.data.len() > super::link::MAX_MESSAGE {
                    return Err(self.transport("a command or identifier larger than 1 MiB"));
                }
                buffer.extend_from_slice(&pdv.data);
                if !pdv.is_last {
                    continue;
                }
                if is_command {
                    let rsp = Command::decode(&command).map_err(|e| self.transport(e))?;
                    command.clear();
                    let status = rsp.status().map_err(|e| self.transport(e))?;
                    match status {
                        0xFF00 | 0xFF01 if rsp.has_data_set().unwrap_or(false) => {
                            pending = Some(rsp);
                        }
                        0xFF00 | 0xFF01 => {}
                        0x0000 => return Ok(answers),
                        _ => {
                            return Err(FindError::Refused {
                                pacs: self.pacs.id.clone(),
                                status,
                                comment: rsp.text(dimse::TAG_ERROR_COMMENT),
                            })
                        }
                    }
                } else {
                    if pending.take().is_none() {
                        return Err(self.transport("an identifier without its response"));
                    }
                    answers.push(decode(&data, &self.syntax).map_err(|e| self.transport(e))?);
                    data.clear();
                    if answers.len() > self.pacs.max_results {
                        let cancel = CommandBuilder::new()
                            .u16(dimse::TAG_COMMAND_FIELD, C_CANCEL_RQ)
                            .u16(dimse::TAG_MESSAGE_ID_RESPONDED, message_id)
                            .u16(dimse::TAG_DATA_SET_TYPE, 0x0101)
                            .encode();
                        let _ = self.send(PDataValueType::Command, cancel).await;
                        return Err(FindError::TooMany {
                            pacs: self.pacs.id.clone(),
                            max: self.pacs.max_results,
                        });
                    }
                }
            }
        }
    }
}

fn put_text(obj: &mut InMemDicomObject, tag: dicom_core::Tag, vr: VR, value: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
}

/// The start of every identifier: UTF-8 text and the level; then keys to match, and
/// the attributes to return (empty).
fn identifier(
    level: &str,
    keys: &[(dicom_core::Tag, VR, &str)],
    returns: &[(dicom_core::Tag, VR)],
) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    put_text(&mut obj, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    put_text(&mut obj, tags::QUERY_RETRIEVE_LEVEL, VR::CS, level);
    for (tag, vr, value) in keys {
        put_text(&mut obj, *tag, *vr, value.trim());
    }
    for (tag, vr) in returns {
        // A matching key is returned too: it is not made universal again.
        if obj.element(*tag).is_err() {
            obj.put(DataElement::new(*tag, *vr, PrimitiveValue::Empty));
        }
    }
    obj
}

/// STUDY level: the patient's studies (since a date).
fn study_identifier(query: &StudyQuery) -> InMemDicomObject {
    let since = query.since.as_deref().map(|d| format!("{}-", d.trim()));
    let mut keys = vec![
        (tags::PATIENT_ID, VR::LO, query.patient_id.as_str()),
        (tags::STUDY_DATE, VR::DA, since.as_deref().unwrap_or("")),
    ];
    if let Some(issuer) = &query.issuer {
        keys.push((tags::ISSUER_OF_PATIENT_ID, VR::LO, issuer.as_str()));
    }
    identifier(
        "STUDY",
        &keys,
        &[
            (tags::STUDY_TIME, VR::TM),
            (tags::ACCESSION_NUMBER, VR::SH),
            (tags::STUDY_INSTANCE_UID, VR::UI),
            (tags::MODALITIES_IN_STUDY, VR::CS),
            (tags::STUDY_DESCRIPTION, VR::LO),
            (tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS),
            (tags::ISSUER_OF_PATIENT_ID, VR::LO),
        ],
    )
}

/// SERIES level: a study's series and their modalities.
fn series_identifier(study_uid: &str) -> InMemDicomObject {
    identifier(
        "SERIES",
        &[(tags::STUDY_INSTANCE_UID, VR::UI, study_uid)],
        &[
            (tags::SERIES_INSTANCE_UID, VR::UI),
            (tags::MODALITY, VR::CS),
            (tags::BODY_PART_EXAMINED, VR::CS),
        ],
    )
}

/// IMAGE level: a series' instances and their SOP classes.
fn image_identifier(study_uid: &str, series_uid: &str) -> InMemDicomObject {
    identifier(
        "IMAGE",
        &[
            (tags::STUDY_INSTANCE_UID, VR::UI, study_uid),
            (tags::SERIES_INSTANCE_UID, VR::UI, series_uid),
        ],
        &[
            (tags::SOP_INSTANCE_UID, VR::UI),
            (tags::SOP_CLASS_UID, VR::UI),
        ],
    )
}

/// A data set in `syntax` (a query or retrieve identifier).
pub(crate) fn encode(obj: &InMemDicomObject, syntax: &str) -> Result<Vec<u8>, String> {
    use dicom_encoding::TransferSyntaxIndex;
    let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(syntax)
        .ok_or_else(|| format!("unknown transfer syntax {syntax}"))?;
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| format!("cannot encode the query: {e}"))?;
    Ok(out)
}

/// An answer's identifier.
fn decode(bytes: &[u8], syntax: &str) -> Result<InMemDicomObject, String> {
    crate::dicom::decode_dataset(bytes, syntax).map_err(|e| format!("unreadable answer: {e}"))
}

/// An attribute of an answer as trimmed text, through readgate's own decoder: it reads
/// the ISO 2022 Japanese a PACS sends.
fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<String> {
    crate::dicom::text::decode_element_str(obj, tag)
        .and_then(Result::ok)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A study from a STUDY-level answer; None when it carries no Study Instance UID.
fn study_of(obj: &InMemDicomObject) -> Option<PacsStudy> {
    let study_uid = text(obj, tags::STUDY_INSTANCE_UID)?;
    Some(PacsStudy {
        study_uid: trim_uid(&study_uid).to_string(),
        accession: text(obj, tags::ACCESSION_NUMBER),
        date: text(obj, tags::STUDY_DATE),
        time: text(obj, tags::STUDY_TIME),
        modalities: text(obj, tags::MODALITIES_IN_STUDY)
            .map(|m| m.split('\\').map(|x| x.trim().to_string()).collect())
            .unwrap_or_default(),
        description: text(obj, tags::STUDY_DESCRIPTION),
        instances: text(obj, tags::NUMBER_OF_STUDY_RELATED_INSTANCES).and_then(|n| n.parse().ok()),
        issuer: text(obj, tags::ISSUER_OF_PATIENT_ID).filter(|i| !i.is_empty()),
        body_parts: Vec::new(),
    })
}

/// What a study's SERIES-level answers say (see [`Session::series_facts`]).
#[derive(Debug, Clone, Default)]
pub struct SeriesFacts {
    pub documents: Vec<ReportDocument>,
    /// Upper case, each once.
    pub body_parts: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identifier_round_trips_and_answers_are_read() {
        let query = StudyQuery {
            patient_id: "P-001".into(),
            issuer: Some("HOSP".into()),
            since: Some("20240101".into()),
        };
        let bytes = encode(&study_identifier(&query), EXPLICIT_VR_LE).unwrap();
        let back = InMemDicomObject::read_dataset_with_ts(
            &bytes[..],
            &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
        )
        .unwrap();
        assert_eq!(
            back.element(tags::STUDY_DATE).unwrap().to_str().unwrap(),
            "20240101-"
        );
        assert_eq!(
            back.element(tags::PATIENT_ID).unwrap().to_str().unwrap(),
            "P-001"
        );

        let mut answer = InMemDicomObject::new_empty();
        let put = |o: &mut InMemDicomObject, tag, vr, v: &str| {
            o.put(DataElement::new(tag, vr, PrimitiveValue::from(v)))
        };
        put(
            &mut answer,
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            "ISO_IR 192",
        );
        put(&mut answer, tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3");
        put(&mut answer, tags::ACCESSION_NUMBER, VR::SH, "A1");
        put(&mut answer, tags::MODALITIES_IN_STUDY, VR::CS, "CT\\SR");
        put(&mut answer, tags::STUDY_DESCRIPTION, VR::LO, "胸部CT");
        put(
            &mut answer,
            tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
            VR::IS,
            "12",
        );
        let bytes = encode(&answer, IMPLICIT_VR_LE).unwrap();
        let study = study_of(&decode(&bytes, IMPLICIT_VR_LE).unwrap()).unwrap();
        assert_eq!(study.study_uid, "1.2.3");
        assert_eq!(study.modalities, ["CT", "SR"]);
        assert_eq!(study.description.as_deref(), Some("胸部CT"));
        assert_eq!(study.instances, Some(12));
        let mut empty = InMemDicomObject::new_empty();
        put(&mut empty, tags::ACCESSION_NUMBER, VR::SH, "A1");
        assert_eq!(
            study_of(&decode(&encode(&empty, IMPLICIT_VR_LE).unwrap(), IMPLICIT_VR_LE).unwrap()),
            None
        );
    }
}
