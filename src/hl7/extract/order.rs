//! Orders (ORM^O01, OMI^O23): ORC/OBR/TQ1/IPC groups, with the patient, allergies
//! and notes around them.

use super::{comp_raw, field_reps, sub_raw, Extractor, Group, SegRef, Segments};
use crate::hl7::error::ContentError;
use crate::hl7::types::{
    Allergy, Diagnosis, Observation, OrderControl, OrderRequest, Patient, Priority, ValueWarning,
};

/// An order's parts: the patient, allergies, patient-level notes, one request per
/// ORC/OBR group, and the values it is accepted without.
type OrderParts = (
    Patient,
    Vec<Allergy>,
    Vec<String>,
    Vec<OrderRequest>,
    Vec<ValueWarning>,
);

impl Extractor {
    pub(crate) fn order(
        &self,
        segs: &Segments<'_, '_>,
        is_omi: bool,
    ) -> Result<OrderParts, ContentError> {
        let patient = self.required_patient(segs)?;
        let mut allergies = Vec::new();
        let mut patient_nte = Vec::new();
        let mut pre_dg1 = Vec::new();
        let mut pre_obx = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        // Segments before the first ORC/OBR (PID, PV1, a visit's Z-segment).
        let mut before: Vec<SegRef> = Vec::new();
        for &(seg, n) in &segs.items {
            if seg.name != "ORC" && seg.name != "OBR" {
                match groups.last_mut() {
                    Some(g) => g.all.push((seg, n)),
                    None => before.push((seg, n)),
                }
            }
            match seg.name {
                "ORC" => groups.push(Group {
                    orc: Some((seg, n)),
                    all: vec![(seg, n)],
                    ..Group::default()
                }),
                "OBR" => match groups.last_mut() {
                    Some(g) if g.obr.is_none() => {
                        g.obr = Some((seg, n));
                        g.all.push((seg, n));
                    }
                    // ORM/OMI allow one OBR per ORC; a second one starts a new group.
                    _ => groups.push(Group {
                        obr: Some((seg, n)),
                        all: vec![(seg, n)],
                        ..Group::default()
                    }),
                },
                "AL1" => allergies.push(self.allergy(seg)),
                _ => match groups.last_mut() {
                    None => match seg.name {
                        "NTE" => patient_nte.push(seg),
                        "DG1" => pre_dg1.push(seg),
                        "OBX" => pre_obx.push(seg),
                        _ => {}
                    },
                    Some(g) => match seg.name {
                        "TQ1" if g.tq1.is_none() => g.tq1 = Some(seg),
                        "IPC" => g.ipc.push((seg, n)),
                        "ZDS" if g.zds.is_none() => g.zds = Some(seg),
                        "NTE" => g.nte.push(seg),
                        "DG1" => g.dg1.push(seg),
                        "OBX" => g.obx.push(seg),
                        _ => {}
                    },
                },
            }
        }
        if groups.is_empty() {
            return Err(ContentError::missing_segment(
                "ORC",
                "order message without ORC/OBR",
            ));
        }
        let mut requests = Vec::with_capacity(groups.len());
        let mut warnings = Vec::new();
        for g in &groups {
            let mut r = self.order_request(g, is_omi)?;
            r.expected_images = self.expected_images(g, &before, &mut warnings);
            let mut diagnoses: Vec<Diagnosis> = pre_dg1.iter().map(|s| self.diagnosis(s)).collect();
            diagnoses.append(&mut r.diagnoses);
            r.diagnoses = diagnoses;
            let mut observations: Vec<Observation> =
                pre_obx.iter().map(|s| self.observation(s)).collect();
            observations.append(&mut r.observations);
            r.observations = observations;
            requests.push(r);
        }
        Ok((
            patient,
            allergies,
            self.notes(&patient_nte),
            requests,
            warnings,
        ))
    }

    /// The group's expected number of images, from the configured field: in the group's
    /// own segments, else in those before the first ORC. Empty: `None`. Anything but a
    /// positive integer: `None` and a warning naming the field (the order is still
    /// accepted: a count is a hint, never a reason to refuse an order).
    fn expected_images(
        &self,
        g: &Group<'_, '_>,
        before: &[SegRef<'_, '_>],
        warnings: &mut Vec<ValueWarning>,
    ) -> Option<u32> {
        let path = self.expected_images.as_ref()?;
        let &(seg, n) = g
            .all
            .iter()
            .chain(before)
            .find(|(s, _)| s.name == path.segment)?;
        let rep = field_reps(seg, path.field).first()?;
        let raw = match (path.component, path.subcomponent) {
            (None, _) => rep.raw_value(),
            (Some(c), None) => comp_raw(rep, c),
            (Some(c), Some(s)) => sub_raw(rep, c, s),
        };
        let value = self.clean(raw)?;
        match value.parse::<u32>() {
            Ok(count) if count > 0 && value.bytes().all(|b| b.is_ascii_digit()) => Some(count),
            _ => {
                warnings.push(ValueWarning {
                    segment: seg.name.to_string(),
                    sequence: n,
                    field: u32::try_from(path.field).unwrap_or(u32::MAX),
                    // Short enough for MSA-3 (80 characters) with a short value.
                    reason: format!(
                        "expected image count {value:?} in {path} is not a positive integer; \
                         ignored"
                    ),
                });
                None
            }
        }
    }

    fn order_request(&self, g: &Group<'_, '_>, is_omi: bool) -> Result<OrderRequest, ContentError> {
        let orc = g.orc.map(|(s, _)| s);
        let obr = g.obr.map(|(s, _)| s);
        let ipc = g.ipc.first().map(|(s, _)| *s);
        let control_code = orc.and_then(|s| self.first(s, 1, 1));
        let Some(control_code) = control_code else {
            return Err(match g.orc {
                Some((_, n)) => {
                    ContentError::missing_field("ORC", n, 1, "order control (ORC-1) is empty")
                }
                None => ContentError::missing_segment("ORC", "OBR without a preceding ORC"),
            });
        };
        let control = OrderControl::from_code(&control_code);
        let either = |f_orc: usize, f_obr: usize| {
            orc.and_then(|s| self.entity_id(s, f_orc))
                .or_else(|| obr.and_then(|s| self.entity_id(s, f_obr)))
        };
        let from_obr = |f: usize| obr.and_then(|s| self.first(s, f, 1));
        let from_ipc = |f: usize| ipc.and_then(|s| self.first(s, f, 1));

        let mut providers = orc.map(|s| self.providers(s, 12)).unwrap_or_default();
        if providers.is_empty() {
            providers = obr.map(|s| self.providers(s, 16)).unwrap_or_default();
        }
        let mut phones = orc.map(|s| self.phones(s, 14)).unwrap_or_default();
        if phones.is_empty() {
            phones = obr.map(|s| self.phones(s, 17)).unwrap_or_default();
        }
        let priority_code = g
            .tq1
            .and_then(|s| self.first(s, 9, 1))
            .or_else(|| orc.and_then(|s| self.first(s, 7, 6)))
            .or_else(|| obr.and_then(|s| self.first(s, 27, 6)));
        let scheduled_time = g
            .tq1
            .and_then(|s| self.timestamp(s, 7, 1))
            .or_else(|| orc.and_then(|s| self.timestamp(s, 7, 4)))
            .or_else(|| obr.and_then(|s| self.timestamp(s, 36, 1)));

        let request = OrderRequest {
            control,
            control_code,
            placer_order_number: either(2, 2),
            filler_order_number: either(3, 3),
            accession_number: from_ipc(1).or_else(|| from_obr(18)),
            study_instance_uid: from_ipc(3).or_else(|| g.zds.and_then(|s| self.first(s, 1, 1))),
            requested_procedure_id: from_ipc(2).or_else(|| from_obr(19)),
            scheduled_procedure_step_id: from_ipc(4).or_else(|| from_obr(20)),
            requested_procedure: obr.and_then(|s| self.coded_first(s, 4)),
            procedure_code: obr.and_then(|s| self.coded_first(s, 44)),
            protocol_codes: g
                .ipc
                .iter()
                .flat_map(|(s, _)| self.coded_all(s, 6))
                .collect(),
            modality: from_ipc(5).or_else(|| from_obr(24)),
            ordering_provider: providers,
            callback_phones: phones,
            clinical_information: obr.and_then(|s| self.text(s, 13)),
            exam_purpose: obr.map(|s| self.coded_all(s, 31)).unwrap_or_default(),
            priority: priority_code.as_deref().map(Priority::from_code),
            priority_code,
            scheduled_time,
            notes: self.notes(&g.nte),
            diagnoses: g.dg1.iter().map(|s| self.diagnosis(s)).collect(),
            observations: g.obx.iter().map(|s| self.observation(s)).collect(),
            expected_images: None,
        };

        // Matching a new order to a study needs the accession number or the study
        // UID. Changes, cancels and other controls refer to an order readgate already
        // has, so its placer/filler number is enough.
        let has_study_key =
            request.accession_number.is_some() || request.study_instance_uid.is_some();
        let has_order_key =
            request.placer_order_number.is_some() || request.filler_order_number.is_some();
        let ok = match request.control {
            OrderControl::New => has_study_key,
            _ => has_study_key || has_order_key,
        };
        if !ok {
            let reason = "order has neither an accession number nor a study instance UID";
            return Err(match (g.ipc.first(), g.obr, is_omi) {
                (Some(&(_, n)), _, _) => ContentError::missing_field("IPC", n, 1, reason),
                (None, _, true) => ContentError::missing_segment("IPC", reason),
                (None, Some((_, n)), false) => ContentError::missing_field("OBR", n, 18, reason),
                (None, None, false) => ContentError::missing_segment("OBR", reason),
            });
        }
        Ok(request)
    }
}
