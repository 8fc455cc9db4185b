//! Typed extraction: hl7-parser segments → the values of [`super::types`], with the
//! message's delimiters. Values are taken raw and unescaped by
//! [`Delimiters::unescape`] (hl7-parser's own escape decoding panics on Japanese
//! text); every text value is trimmed and empty values and the explicit null `""`
//! become `None`. This file holds the segment bookkeeping and the field-level
//! readers shared by all messages (PID, names, codes, providers, NTE, OBX, DG1,
//! AL1); one file per message family holds the rest: `order` (ORC/OBR/IPC/TQ1),
//! `report` (OBR/OBX/ZDS) and `merge` (MRG).

mod merge;
mod order;
mod report;

use std::collections::HashMap;

use hl7_parser::message::{Repeat, Segment};

use super::error::ContentError;
use super::escape::Delimiters;
use super::types::{
    Allergy, CodedElement, Diagnosis, EntityId, Interpreter, Observation, Patient, PatientId,
    PersonName, Provider, Timestamp,
};

/// A segment and its occurrence number (1-based, per segment id).
type SegRef<'a, 'm> = (&'a Segment<'m>, u32);

/// Segments with their occurrence number (1-based, per segment id), MSH excluded.
pub(crate) struct Segments<'a, 'm> {
    items: Vec<(&'a Segment<'m>, u32)>,
}

impl<'a, 'm> Segments<'a, 'm> {
    pub(crate) fn new(all: &'a [Segment<'m>]) -> Self {
        let mut counts: HashMap<&str, u32> = HashMap::new();
        let items = all
            .iter()
            .map(|s| {
                let n = counts.entry(s.name).or_insert(0);
                *n += 1;
                (s, *n)
            })
            .filter(|(s, _)| s.name != "MSH")
            .collect();
        Segments { items }
    }

    fn first(&self, name: &str) -> Option<(&'a Segment<'m>, u32)> {
        self.items.iter().find(|(s, _)| s.name == name).copied()
    }
}

fn field_reps<'a, 'm>(seg: &'a Segment<'m>, n: usize) -> &'a [Repeat<'m>] {
    n.checked_sub(1)
        .and_then(|i| seg.fields.get(i))
        .map(|f| f.repeats.as_slice())
        .unwrap_or(&[])
}

fn comp_raw<'m>(rep: &Repeat<'m>, c: usize) -> &'m str {
    c.checked_sub(1)
        .and_then(|i| rep.components.get(i))
        .map(|comp| comp.raw_value())
        .unwrap_or("")
}

fn sub_raw<'m>(rep: &Repeat<'m>, c: usize, s: usize) -> &'m str {
    c.checked_sub(1)
        .and_then(|i| rep.components.get(i))
        .and_then(|comp| s.checked_sub(1).and_then(|j| comp.subcomponents.get(j)))
        .map(|sub| sub.raw_value())
        .unwrap_or("")
}

fn has_subcomponents(rep: &Repeat<'_>, c: usize) -> bool {
    c.checked_sub(1)
        .and_then(|i| rep.components.get(i))
        .is_some_and(|comp| comp.subcomponents.len() > 1)
}

fn is_uid(s: &str) -> bool {
    s.len() <= 64
        && !s.is_empty()
        && s.split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// A group of segments belonging to one ORC/OBR (orders) or OBR (reports).
#[derive(Default)]
struct Group<'a, 'm> {
    orc: Option<(&'a Segment<'m>, u32)>,
    obr: Option<(&'a Segment<'m>, u32)>,
    tq1: Option<&'a Segment<'m>>,
    ipc: Vec<(&'a Segment<'m>, u32)>,
    zds: Option<&'a Segment<'m>>,
    nte: Vec<&'a Segment<'m>>,
    dg1: Vec<&'a Segment<'m>>,
    obx: Vec<&'a Segment<'m>>,
    /// Every segment of the group, ORC/OBR included, in message order (orders only: for
    /// configured fields, which may be in any segment, Z-segments too).
    all: Vec<SegRef<'a, 'm>>,
}

/// Value extraction with the message's delimiters and the interface's configured fields.
pub(crate) struct Extractor {
    pub(crate) d: Delimiters,
    /// Where orders state their expected number of images (`hl7.expected_images_field`).
    pub(crate) expected_images: Option<crate::config::FieldPath>,
}

impl Extractor {
    /// Unescape and trim; empty and the explicit null `""` are None.
    pub(crate) fn clean(&self, raw: &str) -> Option<String> {
        let v = self.d.unescape(raw);
        let t = v.trim();
        if t.is_empty() || t == "\"\"" {
            None
        } else {
            Some(t.to_string())
        }
    }

    /// A whole component (subcomponent delimiters inside kept literally, since a
    /// stray `&` in text is common and losing text is worse).
    fn comp(&self, rep: &Repeat<'_>, c: usize) -> Option<String> {
        self.clean(comp_raw(rep, c))
    }

    /// One subcomponent, for components that are composite (FN, HD...).
    fn sub(&self, rep: &Repeat<'_>, c: usize, s: usize) -> Option<String> {
        self.clean(sub_raw(rep, c, s))
    }

    /// Component `c` of the first repetition of field `f`.
    fn first(&self, seg: &Segment<'_>, f: usize, c: usize) -> Option<String> {
        field_reps(seg, f).first().and_then(|r| self.comp(r, c))
    }

    /// Field `f` as text: repetitions unescaped whole, joined by newline.
    fn text(&self, seg: &Segment<'_>, f: usize) -> Option<String> {
        let parts: Vec<String> = field_reps(seg, f)
            .iter()
            .filter_map(|r| self.clean(r.raw_value()))
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n"))
    }

    fn timestamp(&self, seg: &Segment<'_>, f: usize, c: usize) -> Option<Timestamp> {
        self.first(seg, f, c).map(|t| Timestamp::new(&t))
    }

    fn coded(&self, rep: &Repeat<'_>) -> Option<CodedElement> {
        let ce = CodedElement {
            code: self.comp(rep, 1),
            text: self.comp(rep, 2),
            coding_system: self.comp(rep, 3),
            alt_code: self.comp(rep, 4),
            alt_text: self.comp(rep, 5),
            alt_coding_system: self.comp(rep, 6),
        };
        (!ce.is_empty()).then_some(ce)
    }

    fn coded_first(&self, seg: &Segment<'_>, f: usize) -> Option<CodedElement> {
        field_reps(seg, f).first().and_then(|r| self.coded(r))
    }

    fn coded_all(&self, seg: &Segment<'_>, f: usize) -> Vec<CodedElement> {
        field_reps(seg, f)
            .iter()
            .filter_map(|r| self.coded(r))
            .collect()
    }

    fn entity_id(&self, seg: &Segment<'_>, f: usize) -> Option<EntityId> {
        let rep = field_reps(seg, f).first()?;
        Some(EntityId {
            id: self.comp(rep, 1)?,
            namespace_id: self.comp(rep, 2),
            universal_id: self.comp(rep, 3),
        })
    }

    /// HD inside one component: namespace id, else universal id.
    fn authority(&self, rep: &Repeat<'_>, c: usize) -> Option<String> {
        self.sub(rep, c, 1).or_else(|| self.sub(rep, c, 2))
    }

    fn patient_ids(&self, seg: &Segment<'_>, f: usize) -> Vec<PatientId> {
        field_reps(seg, f)
            .iter()
            .filter_map(|rep| {
                Some(PatientId {
                    id: self.comp(rep, 1)?,
                    assigning_authority: self.authority(rep, 4),
                    identifier_type: self.comp(rep, 5),
                })
            })
            .collect()
    }

    fn person_names(&self, seg: &Segment<'_>, f: usize) -> Vec<PersonName> {
        field_reps(seg, f)
            .iter()
            .map(|rep| PersonName {
                // XPN.1 is FN (surname&prefix...) from 2.3 on: take the surname.
                family: self.sub(rep, 1, 1),
                given: self.comp(rep, 2),
                middle: self.comp(rep, 3),
                suffix: self.comp(rep, 4),
                prefix: self.comp(rep, 5),
                name_type: self.comp(rep, 7),
                representation: self.comp(rep, 8),
            })
            .filter(|n| !n.is_empty())
            .collect()
    }

    fn patient(&self, seg: &Segment<'_>) -> Patient {
        Patient {
            identifiers: self.patient_ids(seg, 3),
            names: self.person_names(seg, 5),
            birth_date: self.timestamp(seg, 7, 1),
            sex: self.first(seg, 8, 1),
        }
    }

    pub(crate) fn required_patient(
        &self,
        segs: &Segments<'_, '_>,
    ) -> Result<Patient, ContentError> {
        let (pid, n) = segs
            .first("PID")
            .ok_or_else(|| ContentError::missing_segment("PID", "PID segment is missing"))?;
        let patient = self.patient(pid);
        if patient.identifiers.is_empty() {
            return Err(ContentError::missing_field(
                "PID",
                n,
                3,
                "patient identifier list (PID-3) is empty",
            ));
        }
        Ok(patient)
    }

    fn providers(&self, seg: &Segment<'_>, f: usize) -> Vec<Provider> {
        field_reps(seg, f)
            .iter()
            .map(|rep| Provider {
                id: self.comp(rep, 1),
                name: PersonName {
                    family: self.sub(rep, 2, 1),
                    given: self.comp(rep, 3),
                    middle: self.comp(rep, 4),
                    suffix: self.comp(rep, 5),
                    prefix: self.comp(rep, 6),
                    name_type: self.comp(rep, 10),
                    representation: self.comp(rep, 15),
                },
                assigning_authority: self.authority(rep, 9),
            })
            .filter(|p| p.id.is_some() || !p.name.is_empty())
            .collect()
    }

    /// XTN repetitions as display strings.
    fn phones(&self, seg: &Segment<'_>, f: usize) -> Vec<String> {
        field_reps(seg, f)
            .iter()
            .filter_map(|rep| {
                if let Some(n) = self.comp(rep, 1).or_else(|| self.comp(rep, 12)) {
                    return Some(n);
                }
                let parts: Vec<String> = [5, 6, 7]
                    .iter()
                    .filter_map(|&c| self.comp(rep, c))
                    .collect();
                if !parts.is_empty() {
                    let mut s = parts.join("-");
                    if let Some(ext) = self.comp(rep, 8) {
                        s.push_str(" ext. ");
                        s.push_str(&ext);
                    }
                    return Some(s);
                }
                self.comp(rep, 4)
            })
            .collect()
    }

    fn notes(&self, ntes: &[&Segment<'_>]) -> Vec<String> {
        ntes.iter().filter_map(|nte| self.text(nte, 3)).collect()
    }

    fn observation(&self, obx: &Segment<'_>) -> Observation {
        Observation {
            value_type: self.first(obx, 2, 1),
            code: self.coded_first(obx, 3).unwrap_or_default(),
            sub_id: self.first(obx, 4, 1),
            value: self.text(obx, 5),
            units: self.first(obx, 6, 1).or_else(|| self.first(obx, 6, 2)),
            reference_range: self.first(obx, 7, 1),
            abnormal_flags: {
                let flags: Vec<String> = field_reps(obx, 8)
                    .iter()
                    .filter_map(|r| self.comp(r, 1))
                    .collect();
                (!flags.is_empty()).then(|| flags.join("~"))
            },
            status: self.first(obx, 11, 1),
            observation_time: self.timestamp(obx, 14, 1),
        }
    }

    fn diagnosis(&self, dg1: &Segment<'_>) -> Diagnosis {
        Diagnosis {
            coding_method: self.first(dg1, 2, 1),
            code: self.coded_first(dg1, 3),
            description: self.text(dg1, 4),
            diagnosis_type: self.first(dg1, 6, 1),
        }
    }

    fn allergy(&self, al1: &Segment<'_>) -> Allergy {
        Allergy {
            allergen_type: self.first(al1, 2, 1),
            allergen: self.coded_first(al1, 3).unwrap_or_default(),
            severity: self.first(al1, 4, 1),
            reaction: self.text(al1, 5),
        }
    }

    /// NDL (or an XCN-style `id^family^given` that some senders put there).
    fn interpreter(&self, rep: &Repeat<'_>) -> Option<Interpreter> {
        let comp2 = self.comp(rep, 2);
        let looks_like_time = |v: &Option<String>| {
            v.as_deref()
                .is_none_or(|s| s.chars().next().is_some_and(|c| c.is_ascii_digit()))
        };
        let i = if has_subcomponents(rep, 1) || looks_like_time(&comp2) {
            Interpreter {
                id: self.sub(rep, 1, 1),
                family: self.sub(rep, 1, 2),
                given: self.sub(rep, 1, 3),
                middle: self.sub(rep, 1, 4),
                prefix: self.sub(rep, 1, 6),
                start: comp2.map(|t| Timestamp::new(&t)),
                end: self.comp(rep, 3).map(|t| Timestamp::new(&t)),
                point_of_care: self.comp(rep, 4),
                facility: self.authority(rep, 7),
            }
        } else {
            Interpreter {
                id: self.comp(rep, 1),
                family: comp2,
                given: self.comp(rep, 3),
                middle: self.comp(rep, 4),
                prefix: self.comp(rep, 6),
                ..Interpreter::default()
            }
        };
        (i != Interpreter::default()).then_some(i)
    }

    fn interpreters(&self, seg: &Segment<'_>, f: usize) -> Vec<Interpreter> {
        field_reps(seg, f)
            .iter()
            .filter_map(|r| self.interpreter(r))
            .collect()
    }
}
