//! From the scan to the output: which elements are added, replaced or removed, encoded
//! how, and where they go. The result is a list of pieces — byte ranges of the source to
//! copy and new bytes — in output order, so the copy pass is a single forward stream.

use std::collections::{BTreeMap, BTreeSet};

use crate::dicom::text::{self, CharsetError, SpecificCharacterSet, TextKind};

use super::encode::{pad_text, Encoder};
use super::scan::{is_blank, Scan, Syntax, TopElement};
use super::{
    elements, Accountability, ContextCopy, TagError, TagReport, ADDED_CHARACTER_SET,
    MODIFYING_SYSTEM_PREFIX, PRIVATE_CREATOR, PRIVATE_GROUP,
};
use crate::time::format_dicom_dt_utc;

pub(crate) const SPECIFIC_CHARACTER_SET: u32 = 0x0008_0005;
pub(crate) const ADDITIONAL_PATIENT_HISTORY: u32 = 0x0010_21B0;
pub(crate) const REQUESTING_PHYSICIAN: u32 = 0x0032_1032;
pub(crate) const REASON_FOR_THE_REQUESTED_PROCEDURE: u32 = 0x0040_1002;
pub(crate) const ORDER_CALLBACK_PHONE_NUMBER: u32 = 0x0040_2010;
pub(crate) const MODIFIED_ATTRIBUTES_SEQUENCE: u32 = 0x0400_0550;
pub(crate) const ORIGINAL_ATTRIBUTES_SEQUENCE: u32 = 0x0400_0561;
pub(crate) const ATTRIBUTE_MODIFICATION_DATETIME: u32 = 0x0400_0562;
pub(crate) const MODIFYING_SYSTEM: u32 = 0x0400_0563;
pub(crate) const SOURCE_OF_PREVIOUS_VALUES: u32 = 0x0400_0564;
pub(crate) const REASON_FOR_THE_ATTRIBUTE_MODIFICATION: u32 = 0x0400_0565;

/// Value representations of the text readgate writes, with the limits PS3.5 Table 6.2-1
/// sets (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextVr {
    Lo,
    Lt,
    Pn,
    Sh,
}

impl TextVr {
    fn code(self) -> &'static [u8; 2] {
        match self {
            TextVr::Lo => b"LO",
            TextVr::Lt => b"LT",
            TextVr::Pn => b"PN",
            TextVr::Sh => b"SH",
        }
    }

    fn kind(self) -> TextKind {
        match self {
            TextVr::Pn => TextKind::PersonName,
            _ => TextKind::Text,
        }
    }

    /// Why `value` (one value, no `\`) is not a valid value of this VR, if it is not: the
    /// text is the skip reason the tag report carries.
    fn check(self, value: &str) -> Result<(), String> {
        let controls_ok = |c: char| self == TextVr::Lt && matches!(c, '\r' | '\n' | '\t' | '\x0c');
        if let Some(c) = value.chars().find(|&c| c.is_control() && !controls_ok(c)) {
            return Err(format!("contains control character {c:?}"));
        }
        if self != TextVr::Lt && value.contains('\\') {
            return Err("contains a backslash, the DICOM value delimiter".into());
        }
        let too_long = |max: usize, what: &str| {
            let n = what.chars().count();
            if n > max {
                Err(format!("{n} characters, more than {max}"))
            } else {
                Ok(())
            }
        };
        match self {
            TextVr::Lo => too_long(64, value),
            TextVr::Sh => too_long(16, value),
            TextVr::Lt => too_long(10240, value),
            TextVr::Pn => {
                let groups: Vec<&str> = value.split('=').collect();
                if groups.len() > 3 {
                    return Err(format!("{} component groups, more than 3", groups.len()));
                }
                for g in groups {
                    too_long(64, g)?;
                    let components = g.split('^').count();
                    if components > 5 {
                        return Err(format!("{components} name components, more than 5"));
                    }
                }
                Ok(())
            }
        }
    }
}

/// The attributes a [`ContextCopy`] fills in, in tag order.
struct CopyTarget {
    tag: u32,
    keyword: &'static str,
    vr: TextVr,
}

const CLINICAL_INFORMATION: CopyTarget = CopyTarget {
    tag: ADDITIONAL_PATIENT_HISTORY,
    keyword: "AdditionalPatientHistory",
    vr: TextVr::Lt,
};
const REQUESTER: CopyTarget = CopyTarget {
    tag: REQUESTING_PHYSICIAN,
    keyword: "RequestingPhysician",
    vr: TextVr::Pn,
};
const EXAM_PURPOSE: CopyTarget = CopyTarget {
    tag: REASON_FOR_THE_REQUESTED_PROCEDURE,
    keyword: "ReasonForTheRequestedProcedure",
    vr: TextVr::Lo,
};
const CALLBACK_PHONE: CopyTarget = CopyTarget {
    tag: ORDER_CALLBACK_PHONE_NUMBER,
    keyword: "OrderCallbackPhoneNumber",
    vr: TextVr::Sh,
};

fn private_tag(element: u16) -> u32 {
    (u32::from(PRIVATE_GROUP) << 16) | u32::from(element)
}

/// Top-level values the scan reads.
pub(crate) fn wanted(tag: u32) -> bool {
    let group = (tag >> 16) as u16;
    let element = (tag & 0xFFFF) as u16;
    matches!(
        tag,
        SPECIFIC_CHARACTER_SET
            | ADDITIONAL_PATIENT_HISTORY
            | REQUESTING_PHYSICIAN
            | REASON_FOR_THE_REQUESTED_PROCEDURE
            | ORDER_CALLBACK_PHONE_NUMBER
    ) || (group == PRIVATE_GROUP && (0x0010..=0x00FF).contains(&element))
}

/// One step of the copy pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Copy { start: u64, end: u64 },
    Bytes(Vec<u8>),
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Copy { start, end } => end - start,
            Piece::Bytes(b) => b.len() as u64,
        }
    }
}

pub(crate) struct Plan {
    pub pieces: Vec<Piece>,
    pub report: TagReport,
}

/// The data set's declared character set, as far as tagging is concerned.
enum Declared {
    /// No (0008,0005), or an empty one: the default repertoire.
    Default,
    Known(SpecificCharacterSet),
    /// A value readgate cannot interpret: only ASCII may be written.
    Unknown(String),
}

/// A value to write as text: accountability values must be written, copies may be
/// skipped.
struct Text<'a> {
    text: &'a str,
    vr: TextVr,
}

fn encode_text(t: &Text, cs: &SpecificCharacterSet) -> Result<Vec<u8>, CharsetError> {
    text::encode(t.text, cs, t.vr.kind()).map(pad_text)
}

/// Short-length VRs have a 16-bit length field.
fn fits(bytes: &[u8]) -> bool {
    bytes.len() <= 0xFFFE
}

pub(crate) fn plan(
    scan: &Scan,
    syntax: Syntax,
    acc: &Accountability,
    copy: &ContextCopy,
) -> Result<Plan, TagError> {
    let enc = Encoder { syntax };
    let mut report = TagReport::default();
    let accountability = accountability_values(acc)?;
    let evaluated_at =
        format_dicom_dt_utc(acc.evaluated_at).ok_or(TagError::InvalidAccountability {
            field: "evaluated_at",
            reason: "outside 1970–9999".into(),
        })?;
    // LO allows 64 characters; the gateway id alone is checked against that.
    let modifying_system: String = format!("{MODIFYING_SYSTEM_PREFIX} {}", acc.gateway_id)
        .chars()
        .take(64)
        .collect();
    let candidates = copy_candidates(scan, copy, &mut report);
    let texts: Vec<Text> = accountability
        .iter()
        .map(|(_, _, v)| Text {
            text: v,
            vr: TextVr::Lo,
        })
        .chain(candidates.iter().map(|(t, v)| Text { text: v, vr: t.vr }))
        .chain(std::iter::once(Text {
            text: &modifying_system,
            vr: TextVr::Lo,
        }))
        .collect();
    let charset = Charset::choose(scan, &texts);

    // New and replaced top-level elements by tag, and the previous values of the
    // standard attributes changed, for the Original Attributes item.
    let mut new: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut changed: Vec<(u32, &[u8; 2], Vec<u8>)> = Vec::new();
    if charset.added {
        new.insert(
            SPECIFIC_CHARACTER_SET,
            enc.element(
                SPECIFIC_CHARACTER_SET,
                b"CS",
                &pad_text(ADDED_CHARACTER_SET.as_bytes().to_vec()),
            ),
        );
        changed.push((
            SPECIFIC_CHARACTER_SET,
            b"CS",
            previous(scan, SPECIFIC_CHARACTER_SET),
        ));
        report.character_set_added = Some(ADDED_CHARACTER_SET.to_string());
    }
    for (target, value) in &candidates {
        let t = Text {
            text: value,
            vr: target.vr,
        };
        match encode_text(&t, &charset.cs) {
            Ok(bytes) if fits(&bytes) => {
                new.insert(
                    target.tag,
                    enc.element(target.tag, target.vr.code(), &bytes),
                );
                changed.push((target.tag, target.vr.code(), previous(scan, target.tag)));
                report.copied.push(target.keyword.to_string());
            }
            Ok(_) => report.skipped.push((
                target.keyword.to_string(),
                "encoded value longer than 65534 bytes".into(),
            )),
            Err(e) => report
                .skipped
                .push((target.keyword.to_string(), charset.unrepresentable(e))),
        }
    }

    // The private block.
    let slot = choose_slot(scan)?;
    report.private_creator_tag = private_tag(u16::from(slot.number));
    report.private_block_reused = slot.reused;
    if !slot.reused {
        let creator = private_tag(u16::from(slot.number));
        new.insert(
            creator,
            enc.element(
                creator,
                b"LO",
                &pad_text(PRIVATE_CREATOR.as_bytes().to_vec()),
            ),
        );
    }
    let block_tag = |n: u8| private_tag((u16::from(slot.number) << 8) | u16::from(n));
    for (field, n, value) in &accountability {
        let t = Text {
            text: value,
            vr: TextVr::Lo,
        };
        let bytes = encode_text(&t, &charset.cs).map_err(|e| TagError::InvalidAccountability {
            field,
            reason: charset.unrepresentable(e),
        })?;
        new.insert(block_tag(*n), enc.element(block_tag(*n), b"LO", &bytes));
    }
    let evaluated = block_tag(elements::EVALUATED_AT);
    let dt = pad_text(evaluated_at.clone().into_bytes());
    new.insert(evaluated, enc.element(evaluated, b"DT", &dt));
    // A re-forward replaces the whole block: values of an earlier decision must not mix
    // with this one's.
    let removed: BTreeSet<u32> = if slot.reused {
        scan.elements
            .iter()
            .filter(|e| e.group() == PRIVATE_GROUP && ((e.tag & 0xFFFF) >> 8) as u8 == slot.number)
            .map(|e| e.tag)
            .collect()
    } else {
        BTreeSet::new()
    };

    // Original Attributes Sequence: one item for everything changed.
    let mut oas_edit = None;
    if !changed.is_empty() {
        changed.sort_by_key(|(tag, _, _)| *tag);
        let modifying_system = encode_text(
            &Text {
                text: &modifying_system,
                vr: TextVr::Lo,
            },
            &charset.cs,
        )
        .map_err(|e| TagError::InvalidAccountability {
            field: "gateway_id",
            reason: charset.unrepresentable(e),
        })?;
        let provenance = Provenance {
            previous: &changed,
            modified_at: &dt,
            modifying_system: &modifying_system,
        };
        let existing = scan
            .elements
            .iter()
            .find(|e| e.tag == ORIGINAL_ATTRIBUTES_SEQUENCE);
        match existing {
            None => {
                let item = provenance.item(&enc);
                let mut seq = Vec::new();
                enc.header(
                    ORIGINAL_ATTRIBUTES_SEQUENCE,
                    b"SQ",
                    item.len() as u32,
                    &mut seq,
                );
                seq.extend(item);
                new.insert(ORIGINAL_ATTRIBUTES_SEQUENCE, seq);
            }
            Some(e) => oas_edit = Some(append_item(e, &provenance, &enc)?),
        }
    }

    let pieces = merge(scan, new, &removed, oas_edit, &enc);
    Ok(Plan { pieces, report })
}

/// The accountability values as (field, element, LO text), each checked against LO.
fn accountability_values(
    acc: &Accountability,
) -> Result<Vec<(&'static str, u8, String)>, TagError> {
    let single: [(&'static str, u8, &str); 7] = [
        ("gateway_id", elements::GATEWAY_ID, &acc.gateway_id),
        (
            "sending_facility",
            elements::SENDING_FACILITY,
            &acc.sending_facility,
        ),
        (
            "receiving_facility",
            elements::RECEIVING_FACILITY,
            &acc.receiving_facility,
        ),
        ("policy_id", elements::POLICY_ID, &acc.policy_id),
        (
            "policy_version",
            elements::POLICY_VERSION,
            &acc.policy_version,
        ),
        ("verdict", elements::VERDICT, acc.verdict.as_str()),
        ("audit_ref", elements::AUDIT_REF, &acc.audit_ref),
    ];
    let mut values = Vec::with_capacity(single.len() + 1);
    for (field, element, value) in single {
        TextVr::Lo
            .check(value)
            .map_err(|reason| TagError::InvalidAccountability { field, reason })?;
        values.push((field, element, value.to_string()));
    }
    for code in &acc.reason_codes {
        TextVr::Lo
            .check(code)
            .map_err(|reason| TagError::InvalidAccountability {
                field: "reason_codes",
                reason: format!("{code:?}: {reason}"),
            })?;
    }
    values.push((
        "reason_codes",
        elements::REASON_CODES,
        acc.reason_codes.join("\\"),
    ));
    if let Some(study) = &acc.prior_of {
        TextVr::Lo
            .check(study)
            .map_err(|reason| TagError::InvalidAccountability {
                field: "prior_of",
                reason,
            })?;
        values.push(("prior_of", elements::PRIOR_OF, study.clone()));
    }
    Ok(values)
}

/// The order values to copy: offered, lacking in the image, and valid for their VR.
/// The others are reported as already present or skipped.
fn copy_candidates<'a>(
    scan: &Scan,
    copy: &'a ContextCopy,
    report: &mut TagReport,
) -> Vec<(&'static CopyTarget, &'a str)> {
    let offers = [
        (&CLINICAL_INFORMATION, &copy.clinical_information),
        (&REQUESTER, &copy.requesting_physician),
        (&EXAM_PURPOSE, &copy.exam_purpose),
        (&CALLBACK_PHONE, &copy.callback_phone),
    ];
    let mut candidates = Vec::new();
    for (target, offered) in offers {
        let Some(value) = offered.as_deref() else {
            continue;
        };
        if value.trim_matches(|c| c == ' ' || c == '\0').is_empty() {
            continue;
        }
        let in_image = match scan.values.get(&target.tag) {
            Some(Some(bytes)) => !is_blank(bytes),
            Some(None) => true, // too long to read: certainly not empty
            None => false,
        } || (target.tag == REASON_FOR_THE_REQUESTED_PROCEDURE
            && scan.nested_exam_purpose);
        if in_image {
            report.already_present.push(target.keyword.to_string());
            continue;
        }
        if let Err(why) = target.vr.check(value) {
            report
                .skipped
                .push((target.keyword.to_string(), format!("order value {why}")));
            continue;
        }
        candidates.push((target, value));
    }
    candidates
}

/// The character set new text is written in.
struct Charset {
    declared: Declared,
    cs: SpecificCharacterSet,
    /// Whether readgate adds [`ADDED_CHARACTER_SET`] to the data set.
    added: bool,
}

impl Charset {
    fn choose(scan: &Scan, texts: &[Text]) -> Charset {
        let declared = match scan.values.get(&SPECIFIC_CHARACTER_SET) {
            None => Declared::Default,
            Some(None) => Declared::Unknown("(value too long to read)".into()),
            Some(Some(bytes)) if is_blank(bytes) => Declared::Default,
            Some(Some(bytes)) => {
                let raw = String::from_utf8_lossy(bytes).into_owned();
                match SpecificCharacterSet::parse(&raw) {
                    Ok(cs) => Declared::Known(cs),
                    Err(_) => Declared::Unknown(raw.trim_end_matches([' ', '\0']).to_string()),
                }
            }
        };
        let default = SpecificCharacterSet::default();
        let (cs, added) = match &declared {
            Declared::Known(cs) => (cs.clone(), false),
            // Only ASCII, which every defined term shares, can be written safely.
            Declared::Unknown(_) => (default, false),
            Declared::Default => match SpecificCharacterSet::parse(ADDED_CHARACTER_SET) {
                // Switch only when some text needs it and the extended set holds it.
                Ok(ext)
                    if texts.iter().any(|t| {
                        encode_text(t, &default).is_err() && encode_text(t, &ext).is_ok()
                    }) =>
                {
                    (ext, true)
                }
                _ => (default, false),
            },
        };
        Charset {
            declared,
            cs,
            added,
        }
    }

    /// Why a text cannot be written, for [`TagReport::skipped`] and errors.
    fn unrepresentable(&self, e: CharsetError) -> String {
        match &self.declared {
            Declared::Unknown(raw) => format!(
                "text is not ASCII and the data set's Specific Character Set {raw:?} is not one readgate can encode ({e})"
            ),
            Declared::Default => format!(
                "text not representable in the default repertoire or {ADDED_CHARACTER_SET:?} ({e})"
            ),
            Declared::Known(_) => {
                format!("text not representable in the data set's character set ({e})")
            }
        }
    }
}

/// The content of readgate's Original Attributes item (PS3.3 C.12.1).
struct Provenance<'a> {
    /// (tag, VR, value before) of each changed attribute, in tag order.
    previous: &'a [(u32, &'a [u8; 2], Vec<u8>)],
    modified_at: &'a [u8],
    modifying_system: &'a [u8],
}

impl Provenance<'_> {
    fn item(&self, enc: &Encoder) -> Vec<u8> {
        let mut previous_values = Vec::new();
        for (tag, vr, value) in self.previous {
            previous_values.extend(enc.element(*tag, vr, value));
        }
        let mut content = enc.sequence(MODIFIED_ATTRIBUTES_SEQUENCE, &[previous_values]);
        content.extend(enc.element(ATTRIBUTE_MODIFICATION_DATETIME, b"DT", self.modified_at));
        content.extend(enc.element(MODIFYING_SYSTEM, b"LO", self.modifying_system));
        // The previous values were in this data set itself: no other source to name.
        content.extend(enc.element(SOURCE_OF_PREVIOUS_VALUES, b"LO", &[]));
        // COERCE: values replaced on import from the order, not corrections of errors.
        content.extend(enc.element(REASON_FOR_THE_ATTRIBUTE_MODIFICATION, b"CS", b"COERCE"));
        enc.item(&content)
    }
}

/// Source elements and new ones in tag order, as pieces for the copy pass.
fn merge(
    scan: &Scan,
    new: BTreeMap<u32, Vec<u8>>,
    removed: &BTreeSet<u32>,
    mut oas_edit: Option<Vec<Piece>>,
    enc: &Encoder,
) -> Vec<Piece> {
    let touched_groups: BTreeSet<u16> = new
        .keys()
        .chain(removed.iter())
        .map(|t| (t >> 16) as u16)
        .chain(
            oas_edit
                .as_ref()
                .map(|_| (ORIGINAL_ATTRIBUTES_SEQUENCE >> 16) as u16),
        )
        .collect();
    let mut out: Vec<OutElement> = Vec::with_capacity(scan.elements.len() + new.len());
    let mut pending = new.into_iter().peekable();
    for e in &scan.elements {
        while let Some((tag, bytes)) = pending.next_if(|(t, _)| *t < e.tag) {
            out.push(OutElement::new(tag, bytes));
        }
        if let Some((tag, bytes)) = pending.next_if(|(t, _)| *t == e.tag) {
            out.push(OutElement::new(tag, bytes)); // replaces the empty source element
            continue;
        }
        if removed.contains(&e.tag) {
            continue;
        }
        if e.tag == ORIGINAL_ATTRIBUTES_SEQUENCE {
            if let Some(pieces) = oas_edit.take() {
                out.push(OutElement {
                    tag: e.tag,
                    pieces,
                    source: None,
                });
                continue;
            }
        }
        out.push(OutElement {
            tag: e.tag,
            pieces: vec![Piece::Copy {
                start: e.start,
                end: e.end,
            }],
            source: Some(*e),
        });
    }
    out.extend(pending.map(|(tag, bytes)| OutElement::new(tag, bytes)));
    fix_group_lengths(&mut out, &touched_groups, enc);

    // Adjacent source ranges become one copy, adjacent new bytes one write.
    let mut pieces: Vec<Piece> = Vec::new();
    for piece in out.into_iter().flat_map(|o| o.pieces) {
        match (pieces.last_mut(), piece) {
            (Some(Piece::Copy { end, .. }), Piece::Copy { start, end: e }) if *end == start => {
                *end = e;
            }
            (Some(Piece::Bytes(b)), Piece::Bytes(more)) => b.extend(more),
            (_, p) => pieces.push(p),
        }
    }
    pieces
}

/// The value an attribute had before readgate changed it, for the Modified Attributes
/// item: zero length for an absent one (PS3.3 C.12.1.1.9.2), else its bytes (only
/// padding, since readgate changes only empty attributes).
fn previous(scan: &Scan, tag: u32) -> Vec<u8> {
    match scan.values.get(&tag) {
        // Must fit the 16-bit length of the VR it is written with.
        Some(Some(bytes)) if bytes.len() % 2 == 0 && fits(bytes) => bytes.clone(),
        _ => Vec::new(),
    }
}

struct Slot {
    number: u8,
    reused: bool,
}

/// Our creator's slot if it exists (re-forward), else the first slot with neither a
/// creator nor orphan elements in its block.
fn choose_slot(scan: &Scan) -> Result<Slot, TagError> {
    let mut taken = [false; 256];
    for e in scan.elements.iter().filter(|e| e.group() == PRIVATE_GROUP) {
        let element = (e.tag & 0xFFFF) as u16;
        if (0x0010..=0x00FF).contains(&element) {
            taken[usize::from(element)] = true;
            let ours = matches!(
                scan.values.get(&e.tag),
                Some(Some(v)) if trim_padding(v) == PRIVATE_CREATOR.as_bytes()
            );
            if ours {
                return Ok(Slot {
                    number: element as u8,
                    reused: true,
                });
            }
        } else if element >= 0x1000 {
            taken[usize::from(element >> 8)] = true;
        }
    }
    (0x10u8..=0xFF)
        .find(|&n| !taken[usize::from(n)])
        .map(|number| Slot {
            number,
            reused: false,
        })
        .ok_or(TagError::NoFreePrivateBlock)
}

fn trim_padding(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != 0)
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != 0)
        .map_or(start, |i| i + 1);
    &v[start..end]
}

/// The existing Original Attributes Sequence with our item appended; its items stay
/// byte-identical.
fn append_item(
    e: &TopElement,
    provenance: &Provenance,
    enc: &Encoder,
) -> Result<Vec<Piece>, TagError> {
    // Items of a UN sequence are implicit VR little endian (PS3.5 §6.2.2).
    let item_enc = match e.vr {
        Some(vr) if &vr == b"UN" => Encoder {
            syntax: Syntax {
                explicit: false,
                big: false,
            },
        },
        Some(vr) if &vr != b"SQ" => {
            return Err(TagError::Unsupported(format!(
                "Original Attributes Sequence (0400,0561) has VR {}",
                String::from_utf8_lossy(&vr)
            )))
        }
        _ => *enc,
    };
    let item = provenance.item(&item_enc);
    if e.undefined_length {
        // Items, then the 8-byte sequence delimiter the scan ended on.
        let delimiter = e.end - 8;
        return Ok(vec![
            Piece::Copy {
                start: e.start,
                end: delimiter,
            },
            Piece::Bytes(item),
            Piece::Copy {
                start: delimiter,
                end: e.end,
            },
        ]);
    }
    let len = e
        .value_len()
        .checked_add(item.len() as u64)
        .and_then(|l| u32::try_from(l).ok())
        .filter(|&l| l != u32::MAX)
        .ok_or_else(|| {
            TagError::Unsupported("Original Attributes Sequence would exceed 4 GiB".into())
        })?;
    Ok(vec![
        Piece::Bytes(enc.long_header(e.tag, e.vr, len)),
        Piece::Copy {
            start: e.value_start,
            end: e.end,
        },
        Piece::Bytes(item),
    ])
}

struct OutElement {
    tag: u32,
    pieces: Vec<Piece>,
    /// The source element when copied unchanged.
    source: Option<TopElement>,
}

impl OutElement {
    fn new(tag: u32, bytes: Vec<u8>) -> Self {
        OutElement {
            tag,
            pieces: vec![Piece::Bytes(bytes)],
            source: None,
        }
    }

    fn len(&self) -> u64 {
        self.pieces.iter().map(Piece::len).sum()
    }
}

/// Group Length (gggg,0000) is retired but still written by some systems; where a group
/// readgate changed has one, its value must match the new group, or readers that trust
/// it lose their place.
fn fix_group_lengths(out: &mut [OutElement], touched: &BTreeSet<u16>, enc: &Encoder) {
    // One pass for the totals, so a data set of many group length elements stays linear.
    let mut totals: BTreeMap<u16, u64> = BTreeMap::new();
    for o in out.iter() {
        let group = (o.tag >> 16) as u16;
        if touched.contains(&group) {
            *totals.entry(group).or_default() += o.len();
        }
    }
    for o in out.iter_mut() {
        let group = (o.tag >> 16) as u16;
        let is_group_length = o.tag & 0xFFFF == 0
            && touched.contains(&group)
            && matches!(o.source, Some(e) if !e.undefined_length && e.value_len() == 4);
        if !is_group_length {
            continue;
        }
        // The group length counts the elements after it, not itself.
        let total = totals
            .get(&group)
            .copied()
            .unwrap_or(0)
            .saturating_sub(o.len());
        if let Ok(total) = u32::try_from(total) {
            *o = OutElement::new(o.tag, enc.element(o.tag, b"UL", &enc.ul(total)));
        }
    }
}
