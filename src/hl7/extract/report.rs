//! Reports (ORU^R01): OBR groups with their OBX results and ZDS study UID.

use hl7_parser::message::Segment;

use super::{field_reps, is_uid, Extractor, Group, Segments};
use crate::hl7::error::ContentError;
use crate::hl7::types::{Patient, ReportResult, ReportStatus};

impl Extractor {
    pub(crate) fn report(
        &self,
        segs: &Segments<'_, '_>,
    ) -> Result<(Patient, Vec<ReportResult>), ContentError> {
        let patient = self.required_patient(segs)?;
        let mut pending_orc = None;
        let mut groups: Vec<Group> = Vec::new();
        for &(seg, n) in &segs.items {
            match seg.name {
                "ORC" => pending_orc = Some((seg, n)),
                "OBR" => groups.push(Group {
                    orc: pending_orc.take(),
                    obr: Some((seg, n)),
                    ..Group::default()
                }),
                _ => {
                    if let Some(g) = groups.last_mut() {
                        match seg.name {
                            "OBX" => g.obx.push(seg),
                            "NTE" => g.nte.push(seg),
                            "ZDS" if g.zds.is_none() => g.zds = Some(seg),
                            _ => {}
                        }
                    }
                }
            }
        }
        if groups.is_empty() {
            return Err(ContentError::missing_segment(
                "OBR",
                "result message without OBR",
            ));
        }
        groups
            .iter()
            .map(|g| self.report_result(g))
            .collect::<Result<Vec<_>, _>>()
            .map(|r| (patient, r))
    }

    fn study_uid_from_obx(&self, obx: &Segment<'_>) -> Option<String> {
        let id = self.first(obx, 3, 1).unwrap_or_default();
        let text = self
            .first(obx, 3, 2)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let names_uid = matches!(id.as_str(), "113014" | "0020000D" | "(0020,000D)")
            || id.to_ascii_lowercase().contains("study instance uid")
            || text.contains("study instance uid");
        if !names_uid {
            return None;
        }
        let rep = field_reps(obx, 5).first()?;
        [self.sub(rep, 1, 1), self.sub(rep, 2, 1)]
            .into_iter()
            .flatten()
            .find(|v| is_uid(v))
    }

    fn report_result(&self, g: &Group<'_, '_>) -> Result<ReportResult, ContentError> {
        let Some((obr, obr_n)) = g.obr else {
            return Err(ContentError::missing_segment("OBR", "result without OBR"));
        };
        let orc = g.orc.map(|(s, _)| s);
        let either = |f: usize| {
            orc.and_then(|s| self.entity_id(s, f))
                .or_else(|| self.entity_id(obr, f))
        };
        let mut study_uid = g.zds.and_then(|s| self.first(s, 1, 1));
        let mut lines = Vec::new();
        let mut observations = Vec::new();
        for obx in &g.obx {
            if let Some(uid) = self.study_uid_from_obx(obx) {
                study_uid.get_or_insert(uid);
                continue;
            }
            let value_type = self
                .first(obx, 2, 1)
                .unwrap_or_default()
                .to_ascii_uppercase();
            if matches!(value_type.as_str(), "TX" | "FT" | "ST" | "TEXT") {
                // Keep empty repetitions: they are blank lines of the report.
                for rep in field_reps(obx, 5) {
                    lines.push(self.d.unescape(rep.raw_value()).trim_end().to_string());
                }
            } else {
                observations.push(self.observation(obx));
            }
        }
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let Some(status_code) = self.first(obr, 25, 1) else {
            return Err(ContentError::missing_field(
                "OBR",
                obr_n,
                25,
                "result status (OBR-25) is empty",
            ));
        };
        let result = ReportResult {
            placer_order_number: either(2),
            filler_order_number: either(3),
            accession_number: self.first(obr, 18, 1),
            study_instance_uid: study_uid,
            procedure: self.coded_first(obr, 4),
            status: ReportStatus::from_code(&status_code),
            status_code,
            principal_interpreter: field_reps(obr, 32)
                .first()
                .and_then(|r| self.interpreter(r)),
            assistant_interpreters: self.interpreters(obr, 33),
            results_time: self.timestamp(obr, 22, 1),
            observation_time: self.timestamp(obr, 7, 1),
            text: lines.join("\n"),
            observations,
            notes: self.notes(&g.nte),
        };
        if result.accession_number.is_none()
            && result.study_instance_uid.is_none()
            && result.placer_order_number.is_none()
            && result.filler_order_number.is_none()
        {
            return Err(ContentError::missing_field(
                "OBR",
                obr_n,
                18,
                "report has no accession number, study instance UID or order number",
            ));
        }
        Ok(result)
    }
}
