//! Merges (ADT^A40): PID/MRG pairs.

use super::{Extractor, SegRef, Segments};
use crate::hl7::error::ContentError;
use crate::hl7::types::PatientMerge;

impl Extractor {
    pub(crate) fn merge(&self, segs: &Segments<'_, '_>) -> Result<Vec<PatientMerge>, ContentError> {
        let mut pairs: Vec<(SegRef, Option<SegRef>)> = Vec::new();
        for &(seg, n) in &segs.items {
            match seg.name {
                "PID" => pairs.push(((seg, n), None)),
                "MRG" => {
                    if let Some(last) = pairs.last_mut() {
                        last.1.get_or_insert((seg, n));
                    }
                }
                _ => {}
            }
        }
        if pairs.is_empty() {
            return Err(ContentError::missing_segment(
                "PID",
                "PID segment is missing",
            ));
        }
        pairs
            .iter()
            .map(|&((pid, pid_n), mrg)| {
                let surviving = self.patient(pid);
                if surviving.identifiers.is_empty() {
                    return Err(ContentError::missing_field(
                        "PID",
                        pid_n,
                        3,
                        "surviving patient identifier list (PID-3) is empty",
                    ));
                }
                let Some((mrg, mrg_n)) = mrg else {
                    return Err(ContentError::missing_segment(
                        "MRG",
                        "PID without its MRG segment",
                    ));
                };
                let prior_identifiers = self.patient_ids(mrg, 1);
                if prior_identifiers.is_empty() {
                    return Err(ContentError::missing_field(
                        "MRG",
                        mrg_n,
                        1,
                        "prior patient identifier list (MRG-1) is empty",
                    ));
                }
                Ok(PatientMerge {
                    surviving,
                    prior_identifiers,
                    prior_names: self.person_names(mrg, 7),
                })
            })
            .collect()
    }
}
