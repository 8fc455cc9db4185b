//! Correct text for elements of an `InMemDicomObject` read by dicom-rs.
//!
//! dicom-object 0.10 keeps no original bytes for text: when it reads a PN,
//! SH, LO, UC (split at every 0x5C first) or ST, LT, UT value it decodes it at
//! once with the codec named by the first value of the (0008,0005) it last
//! met in the stream, and stores `String`s. Its reader has a raw-bytes mode
//! (`ValueReadStrategy::Raw` in dicom-parser), but `open_file`/`from_reader`
//! do not expose it.
//!
//! What makes recovery possible is that the codec dicom-rs picks for the
//! Japanese and Korean forms that it gets wrong is a byte-for-byte one:
//! - value 1 empty (`\ISO 2022 IR 87`, `\ISO 2022 IR 149`) or `ISO_IR 100`:
//!   ISO 8859-1, which maps each of the 256 bytes to its own character;
//! - value 1 `ISO 2022 IR 13`: windows-31j, which maps 0x00–0x7F and
//!   0xA1–0xDF — every byte valid in IR 13 + IR 87/159 text — one to one.
//!
//! So encoding its strings again with the same codec gives back the bytes of
//! the file, which [`decode`](super::decode) then reads correctly. Where
//! dicom-rs could not decode a byte it wrote `\ooo` (octal) instead; those
//! values are refused with [`CharsetError::RawBytesLost`], never guessed.

use dicom_core::header::Header;
use dicom_core::ops::{AttributeSelector, AttributeSelectorStep};
use dicom_core::value::PrimitiveValue;
use dicom_core::{Tag, VR};
use dicom_encoding::text::{SpecificCharacterSet as DicomRsCharset, TextCodec};
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;

use super::{decode, CharsetError, SpecificCharacterSet, TextKind};

const SPECIFIC_CHARACTER_SET: Tag = Tag(0x0008, 0x0005);

/// The correct text of the top-level text element `tag` of `obj`.
///
/// Shorthand for [`decode_element_str_at`] with a one-step selector; see
/// there for the assumptions.
pub fn decode_element_str(
    obj: &InMemDicomObject,
    tag: Tag,
) -> Option<Result<String, CharsetError>> {
    decode_element_str_at(obj, tag)
}

/// The correct text of the element at `selector` (e.g.
/// `(tags::REQUEST_ATTRIBUTES_SEQUENCE, 0, tags::REASON_FOR_THE_REQUESTED_PROCEDURE)`),
/// decoded with the full Specific Character Set that applies to it (the
/// nearest (0008,0005) of its item or of the enclosing data sets).
///
/// Returns `None` when there is no such element. Values are `\`-joined and
/// keep their padding, as with [`decode`](super::decode).
///
/// `root` must be the data set as dicom-object read it from the start of a
/// stream (`open_file`, `from_reader`, `read_dataset_with_ts`): to undo
/// dicom-rs' decoding we replay which (0008,0005) its reader had seen before
/// the element — including ones in earlier sequence items, which in
/// dicom-parser 0.10 stay in force after the item ends. Text an application
/// put into the object itself is not dicom-rs-decoded and must not be passed
/// here. Elements whose value holds bytes (`PrimitiveValue::U8`, e.g. VR UN)
/// are decoded from those bytes directly.
///
/// # Errors
/// [`CharsetError::RawBytesLost`] when dicom-rs' strings cannot be turned
/// back into the original bytes, [`CharsetError::InvalidByte`] etc. from
/// decoding, [`CharsetError::UnknownTerm`] for the (0008,0005) value.
pub fn decode_element_str_at(
    root: &InMemDicomObject,
    selector: impl Into<AttributeSelector>,
) -> Option<Result<String, CharsetError>> {
    let selector = selector.into();
    let steps: Vec<AttributeSelectorStep> = selector.iter().cloned().collect();
    let mut seen = DicomRsCharset::default();
    let mut declared = None;
    let element = locate(root, &steps, &mut seen, &mut declared)?;
    Some(decode_found(
        element,
        &seen,
        declared,
        &selector.to_string(),
    ))
}

/// Find the element, replaying dicom-parser's character set changes on the way.
fn locate<'a>(
    obj: &'a InMemDicomObject,
    steps: &[AttributeSelectorStep],
    seen: &mut DicomRsCharset,
    declared: &mut Option<String>,
) -> Option<&'a InMemElement> {
    let (first, rest) = steps.split_first()?;
    let target = match first {
        AttributeSelectorStep::Tag(tag) | AttributeSelectorStep::Nested { tag, .. } => *tag,
    };
    // An item's own (0008,0005) replaces the inherited one (PS3.3
    // C.12.1.1.2): the nearest declaration wins.
    if let Some(e) = obj.get(SPECIFIC_CHARACTER_SET) {
        *declared = Some(multi_value(e));
    }
    // InMemDicomObject iterates in tag order, which is stream order.
    for e in obj.iter() {
        if e.tag() == target {
            return match first {
                AttributeSelectorStep::Tag(_) => rest.is_empty().then_some(e),
                AttributeSelectorStep::Nested { item, .. } => {
                    let items = e.items()?;
                    let index = usize::try_from(*item).ok()?;
                    for earlier in items.get(..index)? {
                        replay_all(earlier, seen);
                    }
                    locate(items.get(index)?, rest, seen, declared)
                }
            };
        }
        if e.tag() > target {
            return None;
        }
        replay(e, seen);
    }
    None
}

fn replay_all(obj: &InMemDicomObject, seen: &mut DicomRsCharset) {
    for e in obj.iter() {
        replay(e, seen);
    }
}

/// What dicom-parser 0.10 does on reading an element: on (0008,0005) it
/// switches to the codec of value 1 if it knows it, else keeps the current.
fn replay(e: &InMemElement, seen: &mut DicomRsCharset) {
    if e.tag() == SPECIFIC_CHARACTER_SET {
        if let Ok(values) = e.value().to_multi_str() {
            if let Some(cs) = values.first().and_then(|v| DicomRsCharset::from_code(v)) {
                *seen = cs;
            }
        }
    }
    if let Some(items) = e.items() {
        for item in items {
            replay_all(item, seen);
        }
    }
}

fn multi_value(e: &InMemElement) -> String {
    e.value()
        .to_multi_str()
        .map(|v| v.join("\\"))
        .unwrap_or_default()
}

fn decode_found(
    e: &InMemElement,
    seen: &DicomRsCharset,
    declared: Option<String>,
    name: &str,
) -> Result<String, CharsetError> {
    let value = e.value().primitive();
    let kind = match (TextKind::from_vr(e.vr()), e.vr()) {
        (Some(kind), _) => kind,
        // UN keeps its bytes; reading them as text is what the caller asked.
        (None, VR::UN) => TextKind::Text,
        // These always use the default repertoire, which dicom-rs decodes
        // right.
        (
            None,
            VR::AE | VR::AS | VR::CS | VR::DA | VR::DS | VR::DT | VR::IS | VR::TM | VR::UI | VR::UR,
        ) => {
            return Ok(multi_value(e));
        }
        (None, vr) => {
            return Err(CharsetError::NotText {
                element: name.to_string(),
                vr: vr.to_string(),
            });
        }
    };
    let cs = match declared {
        Some(v) => SpecificCharacterSet::parse(&v)?,
        None => SpecificCharacterSet::default(),
    };
    let lost = |reason: String| CharsetError::RawBytesLost {
        element: name.to_string(),
        reason,
    };
    match value {
        Some(PrimitiveValue::Empty) => Ok(String::new()),
        Some(PrimitiveValue::U8(bytes)) => decode(bytes, &cs, kind),
        Some(PrimitiveValue::Str(s)) => {
            recover(std::slice::from_ref(s), false, seen, &cs, kind, &lost)
        }
        Some(PrimitiveValue::Strs(parts)) => recover(parts, true, seen, &cs, kind, &lost),
        _ => Err(lost("the value is not a string".to_string())),
    }
}

/// Whether `s` holds what dicom-rs' decode trap writes for an undecodable
/// byte: `\` and three octal digits.
fn has_trap_output(s: &str) -> bool {
    let b = s.as_bytes();
    b.windows(4).any(|w| {
        w[0] == b'\\'
            && (b'0'..=b'3').contains(&w[1])
            && (b'0'..=b'7').contains(&w[2])
            && (b'0'..=b'7').contains(&w[3])
    })
}

fn recover(
    parts: &[String],
    multi_valued: bool,
    seen: &DicomRsCharset,
    cs: &SpecificCharacterSet,
    kind: TextKind,
    lost: &dyn Fn(String) -> CharsetError,
) -> Result<String, CharsetError> {
    let codec = seen.name();
    // ISO 8859-1 maps every byte, so dicom-rs never had to substitute.
    let never_substitutes = matches!(codec.as_ref(), "ISO_IR 6" | "ISO_IR 100");
    if !never_substitutes {
        for p in parts {
            // A multi-valued part cannot hold a real `\` (dicom-rs split
            // there), so any `\` is a substitution; in ST/LT/UT only the
            // `\ooo` pattern is.
            if (multi_valued && p.contains('\\')) || has_trap_output(p) {
                return Err(lost(format!(
                    "dicom-rs ({codec}) replaced undecodable bytes in {p:?}"
                )));
            }
        }
    }
    let mut encoded = Vec::with_capacity(parts.len());
    for p in parts {
        encoded.push(seen.encode(p).map_err(|e| lost(format!("{codec}: {e}")))?);
    }
    if codec == "ISO_IR 87" {
        // dicom-rs' ISO-2022-JP codec (value 1 = ISO 2022 IR 87, not the
        // standard form) is stateful: its bytes are equivalent, not equal,
        // to the original, and each part may end in JIS X 0208 mode. Decode
        // the parts one by one so a following `\` is not taken for a kanji
        // byte.
        let texts = encoded
            .iter()
            .map(|bytes| decode(bytes, cs, kind))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(texts.join("\\"));
    }
    // Rejoining at the 0x5C bytes dicom-rs split at restores the value, and
    // undoes splits inside two-byte characters.
    decode(&encoded.join(&b'\\'), cs, kind)
}
