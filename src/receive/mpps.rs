//! The MPPS SCP (Modality Performed Procedure Step, PS3.4 Annex F): a modality reports
//! the step it performs — N-CREATE when it starts, N-SET when it is COMPLETED or
//! DISCONTINUED — with the Study Instance UID it belongs to and, when done, every
//! instance it made. A study whose step is COMPLETED is complete as soon as those
//! instances are in, without waiting `dicom.stable_after_secs` (`Store::studies_complete`);
//! a DISCONTINUED one is recorded and shown, and its study waits as before.
//!
//! Each message is answered with the DIMSE status PS3.4 F.7.2 gives: `0106` for a status
//! value not allowed there, `0111` for a step created twice, `0112` for an N-SET of an
//! unknown step, `0110` for an N-SET of a step already COMPLETED or DISCONTINUED, `0120`
//! for a missing required attribute, `0213` for a data set over `dicom.max_mpps_bytes`
//! or when the disk is below `storage.min_free_mb`.

use crate::dicom::dimse::status;
use crate::model::StepStatus;
use crate::store::{StepRefused, StepUpdate, Store};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

pub use dicom_dictionary_std::uids::MODALITY_PERFORMED_PROCEDURE_STEP as MPPS_SOP_CLASS;

/// Which DIMSE-N operation a step message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Set,
}

/// The answer to one step message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub comment: Option<String>,
    /// The step's status after the message, when it was accepted.
    pub step: Option<StepStatus>,
    /// The study it belongs to, when known (to wake the study stage).
    pub study_uid: Option<String>,
}

impl Answer {
    fn refused(status: u16, comment: impl Into<String>) -> Answer {
        Answer {
            status,
            comment: Some(comment.into()),
            step: None,
            study_uid: None,
        }
    }
}

/// Reads one N-CREATE or N-SET data set and records it. Blocking (SQLite).
pub fn apply(
    store: &Store,
    operation: Operation,
    mpps_uid: &str,
    data: &[u8],
    transfer_syntax: &str,
    calling_ae: &str,
    now: i64,
) -> Answer {
    let update = match parse(operation, data, transfer_syntax) {
        Ok(u) => u,
        Err(refused) => return refused,
    };
    let outcome = match operation {
        Operation::Create => store
            .create_step(mpps_uid, &update, calling_ae, now)
            .map(|r| r.map(|()| update.status.unwrap_or(StepStatus::InProgress))),
        Operation::Set => store.update_step(mpps_uid, &update, now),
    };
    match outcome {
        Ok(Ok(step)) => Answer {
            status: status::SUCCESS,
            comment: None,
            step: Some(step),
            study_uid: match update.study_uid {
                Some(uid) => Some(uid),
                None => store.step_study(mpps_uid).ok().flatten(),
            },
        },
        Ok(Err(refused)) => {
            let code = match refused {
                StepRefused::Duplicate => status::DUPLICATE_SOP_INSTANCE,
                StepRefused::NoSuchStep => status::NO_SUCH_SOP_INSTANCE,
                StepRefused::Final(_) => status::PROCESSING_FAILURE,
            };
            Answer::refused(code, refused.to_string())
        }
        Err(e) => Answer::refused(status::PROCESSING_FAILURE, format!("not recorded: {e}")),
    }
}

/// What the data set says of the step.
fn parse(operation: Operation, data: &[u8], syntax: &str) -> Result<StepUpdate, Answer> {
    let obj = crate::dicom::decode_dataset(data, syntax).map_err(|e| {
        Answer::refused(
            status::PROCESSING_FAILURE,
            format!("unreadable data set: {e}"),
        )
    })?;
    let text = |o: &InMemDicomObject, tag| {
        o.element(tag)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let items = |o: &InMemDicomObject, tag| -> Vec<InMemDicomObject> {
        o.element(tag)
            .ok()
            .and_then(|e| e.items().map(|i| i.to_vec()))
            .unwrap_or_default()
    };
    let status = match text(&obj, tags::PERFORMED_PROCEDURE_STEP_STATUS) {
        Some(s) => Some(s.parse::<StepStatus>().map_err(|_| {
            Answer::refused(
                status::INVALID_ATTRIBUTE_VALUE,
                format!("(0040,0252) {s:?} is not a step status"),
            )
        })?),
        None => None,
    };
    if operation == Operation::Create {
        match status {
            None => {
                return Err(Answer::refused(
                    status::MISSING_ATTRIBUTE,
                    "(0040,0252) Performed Procedure Step Status missing",
                ))
            }
            Some(StepStatus::InProgress) => {}
            Some(other) => {
                return Err(Answer::refused(
                    status::INVALID_ATTRIBUTE_VALUE,
                    format!("(0040,0252) must be IN PROGRESS at N-CREATE, not {other}"),
                ))
            }
        }
    }
    let scheduled = items(&obj, tags::SCHEDULED_STEP_ATTRIBUTES_SEQUENCE);
    let study_uid = scheduled
        .iter()
        .find_map(|i| text(i, tags::STUDY_INSTANCE_UID))
        .map(|u| crate::dicom::trim_uid(&u).to_string());
    if operation == Operation::Create && study_uid.is_none() {
        return Err(Answer::refused(
            status::MISSING_ATTRIBUTE,
            "(0040,0270) Scheduled Step Attributes without a Study UID",
        ));
    }
    let accession = scheduled
        .iter()
        .find_map(|i| text(i, tags::ACCESSION_NUMBER));
    let instances = obj
        .element(tags::PERFORMED_SERIES_SEQUENCE)
        .is_ok()
        .then(|| {
            let mut out = Vec::new();
            for series in items(&obj, tags::PERFORMED_SERIES_SEQUENCE) {
                let series_uid = text(&series, tags::SERIES_INSTANCE_UID);
                for list in [
                    tags::REFERENCED_IMAGE_SEQUENCE,
                    tags::REFERENCED_NON_IMAGE_COMPOSITE_SOP_INSTANCE_SEQUENCE,
                ] {
                    for item in items(&series, list) {
                        if let Some(sop) = text(&item, tags::REFERENCED_SOP_INSTANCE_UID) {
                            out.push((
                                series_uid.clone(),
                                crate::dicom::trim_uid(&sop).to_string(),
                            ));
                        }
                    }
                }
            }
            out
        });
    if status == Some(StepStatus::Completed) && instances.as_ref().is_some_and(|i| i.is_empty()) {
        return Err(Answer::refused(
            status::MISSING_ATTRIBUTE,
            "COMPLETED without any instance in (0040,0340)",
        ));
    }
    Ok(StepUpdate {
        status,
        study_uid,
        accession,
        instances,
    })
}
