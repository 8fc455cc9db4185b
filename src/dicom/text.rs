//! DICOM text decoding and encoding with ISO 2022 code extensions.
//!
//! dicom-rs 0.10 picks one codec from the *first* value of Specific Character
//! Set (0008,0005) and splits multi-valued text at every 0x5C byte before
//! decoding. For the Japanese forms `\ISO 2022 IR 87` and
//! `ISO 2022 IR 13\ISO 2022 IR 87` this yields wrong text without an error
//! (escape sequences left in, kana and kanji mixed up), and a 0x5C that is the
//! second byte of a kanji (ぼ is `$\`) splits a value in two. readgate shows
//! these names to radiologists and matches on them, so it decodes text itself:
//!
//! - [`SpecificCharacterSet::parse`] reads (0008,0005);
//! - [`decode`] / [`encode`] convert one element value (all its values, with
//!   the `\` delimiters kept) between bytes and `String`, per PS3.5 §6.1 and
//!   the examples of PS3.5 Annex H (Japanese) and I (Korean);
//! - [`decode_element_str`] / [`decode_element_str_at`] get the correct text
//!   of an element of an [`InMemDicomObject`](dicom_object::InMemDicomObject)
//!   that dicom-rs has already (mis)decoded, by recovering the original bytes.
//!
//! # Padding
//! [`decode`] returns every byte it was given as text: trailing padding (a
//! space, or NUL for some writers) is the caller's to strip, as are leading
//! spaces where the VR makes them insignificant. [`encode`] does not pad
//! either: a DICOM value must have even length, so append one space (0x20)
//! when the result is odd — after the final escape sequence, which is where
//! Annex H puts it.
//!
//! # Supported character sets
//! Default repertoire, ISO-IR 100/101/109/110/126/127/138/144/148/166/203
//! (with and without code extensions), ISO-IR 13 (JIS X 0201), ISO 2022 IR 87
//! (JIS X 0208), ISO 2022 IR 159 (JIS X 0212, through encoding_rs' EUC-JP
//! decoder and an inverted table for encoding), ISO 2022 IR 149 (KS X 1001),
//! ISO 2022 IR 58 (GB 2312), ISO_IR 192 (UTF-8), GB18030 and GBK.

mod charset;
mod codec;
mod element;
#[cfg(test)]
mod tests;

pub use charset::SpecificCharacterSet;

/// One Specific Character Set (0008,0005) value for each way of encoding text readgate
/// decodes: the default repertoire, ISO 2022 with JIS X 0208, JIS X 0201 + 0208, JIS X
/// 0212, KS X 1001 and GB 2312, ISO 2022 between Latin-1 and Greek, UTF-8, GB18030, JIS X
/// 0201 alone and Thai. Tests and the fuzzer draw from it.
pub const CHARSET_EXAMPLES: [&str; 11] = [
    "",
    "\\ISO 2022 IR 87",
    "ISO 2022 IR 13\\ISO 2022 IR 87",
    "\\ISO 2022 IR 87\\ISO 2022 IR 159",
    "\\ISO 2022 IR 149",
    "\\ISO 2022 IR 58",
    "ISO 2022 IR 100\\ISO 2022 IR 126",
    "ISO_IR 192",
    "GB18030",
    "ISO_IR 13",
    "ISO_IR 166",
];
pub use element::{decode_element_str, decode_element_str_at};

use dicom_core::VR;

/// How delimiters reset the ISO 2022 state (PS3.5 §6.1.2.5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextKind {
    /// PN: the state also resets at the component (`^`) and group (`=`)
    /// delimiters, besides those of [`TextKind::Text`].
    PersonName,
    /// SH, LO, UC, ST, LT, UT: the state resets at the value delimiter `\`
    /// and at CR, LF, FF and TAB. (For ST/LT/UT `\` is not a delimiter; the
    /// reset there is harmless, since `\` is itself written in the initial G0
    /// set.)
    Text,
}

impl TextKind {
    /// The kind for a value representation whose text follows (0008,0005),
    /// or `None` for VRs that always use the default repertoire (CS, AE, UI,
    /// DA, …) or are not text.
    pub fn from_vr(vr: VR) -> Option<TextKind> {
        match vr {
            VR::PN => Some(TextKind::PersonName),
            VR::SH | VR::LO | VR::UC | VR::ST | VR::LT | VR::UT => Some(TextKind::Text),
            _ => None,
        }
    }
}

/// Errors of character set parsing, decoding and encoding. Offsets are
/// byte offsets into the value given to [`decode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CharsetError {
    /// A value of (0008,0005) that is not a supported defined term.
    #[error("unknown Specific Character Set term {0:?}")]
    UnknownTerm(String),
    /// A term that cannot be combined with the others (ISO_IR 192, GB18030
    /// and GBK allow no code extensions).
    #[error(
        "Specific Character Set term {term:?} cannot be combined with other terms in {value:?}"
    )]
    InvalidCombination { term: String, value: String },
    /// An escape sequence DICOM does not define, or one cut short.
    #[error("invalid escape sequence at offset {offset}: {sequence}")]
    InvalidEscape { offset: usize, sequence: String },
    /// A byte not allowed by the set active at that point.
    #[error("byte 0x{byte:02X} at offset {offset} is not valid in {set}")]
    InvalidByte {
        offset: usize,
        byte: u8,
        set: &'static str,
    },
    /// A two-byte character whose second byte is missing or out of range.
    #[error("incomplete two-byte {set} character at offset {offset}")]
    TruncatedCharacter { offset: usize, set: &'static str },
    /// A well-formed code with no character assigned (or malformed UTF-8,
    /// GB18030, GBK).
    #[error("bytes {bytes} at offset {offset} are not a character of {set}")]
    UnmappedCharacter {
        offset: usize,
        bytes: String,
        set: &'static str,
    },
    /// A character the declared character set cannot represent.
    #[error("character {ch:?} cannot be encoded with Specific Character Set {charset:?}")]
    Unrepresentable { ch: char, charset: String },
    /// [`decode_element_str`]: the original bytes of an element cannot be
    /// recovered from the strings dicom-rs decoded.
    #[error(
        "original bytes of {element} cannot be recovered from dicom-rs' decoded value: {reason}"
    )]
    RawBytesLost { element: String, reason: String },
    /// [`decode_element_str`]: the element is not text (binary VR or SQ).
    #[error("{element} has VR {vr}, which is not text")]
    NotText { element: String, vr: &'static str },
}

/// Decode one element value of a text VR.
///
/// `bytes` is the whole value field (all values, `\`-separated); the result
/// keeps the `\` delimiters, so split it afterwards — only after decoding is
/// a `\` surely a delimiter. Trailing padding is returned as is (see the
/// module docs).
///
/// # Errors
/// Unknown escape sequences, bytes outside the active set, truncated or
/// unassigned two-byte characters, malformed UTF-8/GB18030. Never panics.
pub fn decode(
    bytes: &[u8],
    cs: &SpecificCharacterSet,
    vr_kind: TextKind,
) -> Result<String, CharsetError> {
    codec::decode(bytes, cs, vr_kind)
}

/// Encode one element value of a text VR (`\` separates values).
///
/// With code extensions, each run of characters outside the initial sets is
/// introduced by its escape sequence, and the initial G0 set is designated
/// again before every delimiter and at the end of the value, as in PS3.5
/// Annex H. The result is not padded to even length (see the module docs).
///
/// # Errors
/// [`CharsetError::Unrepresentable`] naming the first character that none of
/// the declared sets has (JIS X 0208 vendor extensions such as ① or 髙
/// included, and a literal ESC).
pub fn encode(
    text: &str,
    cs: &SpecificCharacterSet,
    vr_kind: TextKind,
) -> Result<Vec<u8>, CharsetError> {
    codec::encode(text, cs, vr_kind)
}
