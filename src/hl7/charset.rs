//! Character sets of HL7 v2 messages: find MSH-18 in the raw bytes, decode the message
//! to a `String` before any parsing, encode replies in the sender's charset.
//!
//! Why before parsing: ISO-2022-JP and Shift_JIS text contains the bytes of `|`, `^`,
//! `~` and `\` inside kanji, so splitting raw bytes on delimiters corrupts Japanese
//! text. MSH-18 itself is ASCII, so it is found by scanning the MSH segment's bytes
//! while skipping what can only be multi-byte text (ISO 2022 shifted runs; Shift_JIS
//! double bytes when that is the configured default).
//!
//! MSH-18 values understood (case, spaces, `-` and `_` ignored; HL7 table 0211 names
//! first):
//!
//! | MSH-18 | [`Charset`] |
//! |---|---|
//! | empty (all repetitions) | the configured default |
//! | `ASCII`, `ISO IR6`, `US-ASCII` | `Ascii` |
//! | `UNICODE UTF-8`, `UTF-8` | `Utf8` |
//! | `ISO IR87`, `~ISO IR87`, `ISO 2022-1994`, `ISO-2022-JP`, `JIS` | `Iso2022Jp` |
//! | `SHIFT_JIS`, `SJIS`, `MS_KANJI`, `CP932`, `WINDOWS-31J`, `ISO IR13` | `ShiftJis` |
//!
//! With several repetitions (`ISO IR6~ISO IR87`, `~ISO IR87~ISO IR159`), the first one
//! names the default set of an ISO 2022 message and the others the sets it switches
//! to, so any ISO 2022 Japanese repetition makes the message `Iso2022Jp`; otherwise the
//! first known repetition wins and unknown extra repetitions are ignored.

use std::fmt;
use std::str::FromStr;

use encoding_rs::{DecoderResult, EncoderResult, Encoding, ISO_2022_JP, SHIFT_JIS};
use serde::{Deserialize, Serialize};

/// The character sets readgate decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Charset {
    /// 7-bit ASCII (ISO IR6). Bytes >= 0x80 and ESC are errors.
    Ascii,
    /// UTF-8 (a leading BOM is dropped).
    Utf8,
    /// ISO-2022-JP (JIS X 0208 via ISO 2022 escapes, as JAHIS messages send it).
    Iso2022Jp,
    /// Shift_JIS as Windows systems write it (CP932 / Windows-31J, which includes the
    /// NEC and IBM extensions).
    ShiftJis,
}

impl Charset {
    /// Map an MSH-18 repetition (or a configuration string) to a charset.
    pub fn from_hl7_name(name: &str) -> Option<Charset> {
        let key: String = name
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '_' | '/'))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        match key.as_str() {
            "ASCII" | "ISOIR6" | "USASCII" => Some(Charset::Ascii),
            "UNICODEUTF8" | "UTF8" => Some(Charset::Utf8),
            "ISOIR87" | "ISO2022JP" | "ISO20221994" | "JIS" | "ISO2022IR87" | "CSISO2022JP" => {
                Some(Charset::Iso2022Jp)
            }
            // ISO IR13 alone is 8-bit JIS X 0201 (half-width katakana at 0xA1-0xDF),
            // which is exactly the single-byte half of Shift_JIS.
            "SHIFTJIS" | "SJIS" | "MSKANJI" | "CP932" | "WINDOWS31J" | "ISOIR13" => {
                Some(Charset::ShiftJis)
            }
            _ => None,
        }
    }

    fn encoding(self) -> Option<&'static Encoding> {
        match self {
            Charset::Ascii | Charset::Utf8 => None,
            Charset::Iso2022Jp => Some(ISO_2022_JP),
            Charset::ShiftJis => Some(SHIFT_JIS),
        }
    }
}

impl fmt::Display for Charset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Charset::Ascii => "ASCII",
            Charset::Utf8 => "UTF-8",
            Charset::Iso2022Jp => "ISO-2022-JP",
            Charset::ShiftJis => "Shift_JIS",
        })
    }
}

impl FromStr for Charset {
    type Err = CharsetError;

    /// Accepts the MSH-18 names above and the serde names (`shift_jis`, `iso2022_jp`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Charset::from_hl7_name(s).ok_or_else(|| CharsetError::Unsupported {
            value: s.to_string(),
        })
    }
}

/// Why a message could not be turned into text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CharsetError {
    /// MSH-18 names no character set readgate knows.
    #[error("unsupported character set in MSH-18: {value:?}")]
    Unsupported {
        /// MSH-18 as received (non-ASCII bytes replaced).
        value: String,
    },
    /// The bytes are not valid in the charset the message declares (or the default).
    #[error("message is not valid {charset}: malformed byte sequence at offset {offset}")]
    Malformed {
        /// The charset that failed.
        charset: Charset,
        /// Offset of the first bad byte in the message.
        offset: usize,
    },
}

/// Which charset applies to a message and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detection {
    /// The charset to decode with.
    pub charset: Charset,
    /// MSH-18 as received (empty when absent; non-ASCII bytes replaced by `?`).
    pub declared: String,
    /// True when MSH-18 was empty (or there was no MSH) and the default was used.
    pub defaulted: bool,
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decoded {
    /// The message text.
    pub text: String,
    /// How the charset was chosen.
    pub detection: Detection,
}

/// MSH fields as raw bytes, numbered like HL7 (`field(1)` is the field separator,
/// `field(2)` the encoding characters).
#[derive(Debug, Clone)]
pub(crate) struct RawMsh<'a> {
    fields: Vec<&'a [u8]>,
}

impl<'a> RawMsh<'a> {
    pub(crate) fn field(&self, n: usize) -> &'a [u8] {
        n.checked_sub(1)
            .and_then(|i| self.fields.get(i))
            .copied()
            .unwrap_or(&[])
    }

    /// Number of fields (MSH-1 included).
    pub(crate) fn len(&self) -> usize {
        self.fields.len()
    }

    /// The repetition separator (second encoding character), `~` by default.
    pub(crate) fn repetition_separator(&self) -> u8 {
        self.field(2).get(1).copied().unwrap_or(b'~')
    }
}

/// Skip what may precede MSH in a frame: a UTF-8 BOM and blank lines.
fn skip_preamble(raw: &[u8]) -> &[u8] {
    let raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
    let start = raw
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
        .unwrap_or(raw.len());
    &raw[start..]
}

fn is_sjis_lead(b: u8) -> bool {
    matches!(b, 0x81..=0x9F | 0xE0..=0xFC)
}

/// Split the MSH segment of `raw` into fields without decoding it. Bytes inside ISO
/// 2022 shifted runs are never delimiters; with `sjis`, neither is the byte after a
/// Shift_JIS lead byte. Returns `None` when the message does not start with MSH and a
/// usable field separator.
pub(crate) fn scan_msh(raw: &[u8], sjis: bool) -> Option<RawMsh<'_>> {
    let seg = skip_preamble(raw);
    if !seg.starts_with(b"MSH") {
        return None;
    }
    let sep = *seg.get(3)?;
    if !sep.is_ascii_graphic() || sep.is_ascii_alphanumeric() {
        return None;
    }
    let mut fields: Vec<&[u8]> = vec![&seg[3..4]];
    let mut start = 4;
    let mut i = 4;
    let mut shifted = false;
    while i < seg.len() {
        let b = seg[i];
        if b == b'\r' || b == b'\n' {
            break;
        }
        if b == 0x1B {
            // ESC ( B / ESC ( J return to a Roman set; ESC ( I (katakana) and every
            // ESC $ ... (kanji sets) shift to bytes that may look like delimiters.
            shifted = match (seg.get(i + 1), seg.get(i + 2)) {
                (Some(b'('), Some(b'B' | b'J')) => false,
                (Some(b'(' | b'$'), _) => true,
                _ => shifted,
            };
            i += 1;
            continue;
        }
        if shifted {
            i += 1;
            continue;
        }
        if sjis && is_sjis_lead(b) {
            i += 2;
            continue;
        }
        if b == sep {
            fields.push(&seg[start..i]);
            start = i + 1;
        }
        i += 1;
    }
    let end = i.min(seg.len());
    fields.push(seg.get(start..end).unwrap_or(&[]));
    Some(RawMsh { fields })
}

fn lossy_ascii(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii() && !b.is_ascii_control() {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

fn resolve(msh: &RawMsh<'_>, default: Charset) -> Result<Detection, CharsetError> {
    let value = msh.field(18);
    let declared = lossy_ascii(value);
    let rep_sep = msh.repetition_separator();
    let names: Vec<String> = value
        .split(|&b| b == rep_sep)
        .map(|rep| lossy_ascii(rep).trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(Detection {
            charset: default,
            declared,
            defaulted: true,
        });
    }
    let known: Vec<Charset> = names
        .iter()
        .filter_map(|n| Charset::from_hl7_name(n))
        .collect();
    let charset = if known.contains(&Charset::Iso2022Jp) {
        Charset::Iso2022Jp
    } else if let Some(&first) = known.first() {
        first
    } else {
        return Err(CharsetError::Unsupported { value: declared });
    };
    Ok(Detection {
        charset,
        declared,
        defaulted: false,
    })
}

/// Decide the charset of a raw message from MSH-18, falling back to `default` when
/// MSH-18 is empty or there is no MSH at all (the parser will reject the latter).
pub fn detect(raw: &[u8], default: Charset) -> Result<Detection, CharsetError> {
    if default == Charset::ShiftJis {
        // A Shift_JIS MSH may hold trail bytes equal to `|` (e.g. "ポ" = 83 7C), so scan
        // with Shift_JIS awareness first. Trust that scan only if it is self-consistent
        // (it concludes Shift_JIS): a UTF-8 MSH scanned that way can lose a separator.
        if let Some(msh) = scan_msh(raw, true) {
            if let Ok(d) = resolve(&msh, default) {
                if d.charset == Charset::ShiftJis {
                    return Ok(d);
                }
            }
        }
    }
    match scan_msh(raw, false) {
        Some(msh) => resolve(&msh, default),
        None => Ok(Detection {
            charset: default,
            declared: String::new(),
            defaulted: true,
        }),
    }
}

/// Decode a raw message per its MSH-18 (see the module table), or `default` when
/// MSH-18 is empty. Never panics; malformed bytes are an error naming the charset.
pub fn decode(raw: &[u8], default: Charset) -> Result<Decoded, CharsetError> {
    let detection = detect(raw, default)?;
    let text = decode_as(raw, detection.charset)?;
    Ok(Decoded { text, detection })
}

/// Decode bytes in a given charset, strictly.
pub fn decode_as(raw: &[u8], charset: Charset) -> Result<String, CharsetError> {
    match charset {
        Charset::Ascii => {
            let raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
            // ESC is ASCII but means ISO 2022 text in a message that claims plain ASCII.
            match raw.iter().position(|&b| b >= 0x80 || b == 0x1B) {
                Some(offset) => Err(CharsetError::Malformed { charset, offset }),
                None => Ok(raw.iter().map(|&b| b as char).collect()),
            }
        }
        Charset::Utf8 => {
            let (raw, base) = match raw.strip_prefix(b"\xEF\xBB\xBF") {
                Some(rest) => (rest, 3),
                None => (raw, 0),
            };
            std::str::from_utf8(raw)
                .map(str::to_owned)
                .map_err(|e| CharsetError::Malformed {
                    charset,
                    offset: base + e.valid_up_to(),
                })
        }
        Charset::Iso2022Jp => {
            // Decode line by line with a fresh decoder, so that a sender that forgets
            // ESC ( B before the segment's CR loses nothing: CR resets to ASCII, as the
            // DICOM and JAHIS rules for ISO 2022 text expect.
            let mut out = String::with_capacity(raw.len());
            let mut offset = 0;
            for line in raw.split_inclusive(|&b| b == b'\r' || b == b'\n') {
                decode_with(ISO_2022_JP, line, offset, charset, &mut out)?;
                offset += line.len();
            }
            Ok(out)
        }
        Charset::ShiftJis => {
            let mut out = String::with_capacity(raw.len() + raw.len() / 2);
            decode_with(SHIFT_JIS, raw, 0, charset, &mut out)?;
            Ok(out)
        }
    }
}

fn decode_with(
    encoding: &'static Encoding,
    bytes: &[u8],
    base: usize,
    charset: Charset,
    out: &mut String,
) -> Result<(), CharsetError> {
    let mut decoder = encoding.new_decoder_without_bom_handling();
    let mut src = bytes;
    let mut consumed = 0usize;
    loop {
        let need = decoder
            .max_utf8_buffer_length_without_replacement(src.len())
            .unwrap_or(src.len().saturating_mul(3));
        out.reserve(need.max(16));
        let (result, read) = decoder.decode_to_string_without_replacement(src, out, true);
        consumed = consumed.saturating_add(read);
        src = src.get(read..).unwrap_or(&[]);
        match result {
            DecoderResult::InputEmpty => return Ok(()),
            DecoderResult::OutputFull => continue,
            DecoderResult::Malformed(bad, extra) => {
                let offset = consumed
                    .saturating_sub(bad as usize)
                    .saturating_sub(extra as usize);
                return Err(CharsetError::Malformed {
                    charset,
                    offset: base + offset,
                });
            }
        }
    }
}

/// Encode text (an ACK) in the sender's charset. Characters the charset cannot
/// represent become `?`: a reply must always be sendable, and HTML-style numeric
/// references (what encoding_rs substitutes) would be wrong in HL7.
pub fn encode(text: &str, charset: Charset) -> Vec<u8> {
    let Some(encoding) = charset.encoding() else {
        return match charset {
            Charset::Ascii => text
                .chars()
                .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
                .collect(),
            _ => text.as_bytes().to_vec(),
        };
    };
    let mut encoder = encoding.new_encoder();
    let mut out = Vec::with_capacity(text.len() + 16);
    let mut src = text;
    let mut pending_mark = false;
    loop {
        if pending_mark {
            // Write the '?' through the same encoder so that it leaves any ISO 2022
            // kanji shift first.
            let need = encoder
                .max_buffer_length_from_utf8_without_replacement(1)
                .unwrap_or(8);
            out.reserve(need.max(8));
            let (result, _) =
                encoder.encode_from_utf8_to_vec_without_replacement("?", &mut out, false);
            if matches!(result, EncoderResult::OutputFull) {
                continue;
            }
            pending_mark = false;
        }
        let need = encoder
            .max_buffer_length_from_utf8_without_replacement(src.len())
            .unwrap_or(src.len().saturating_mul(4));
        out.reserve(need.max(16));
        let (result, read) =
            encoder.encode_from_utf8_to_vec_without_replacement(src, &mut out, true);
        src = src.get(read..).unwrap_or("");
        match result {
            EncoderResult::InputEmpty => return out,
            EncoderResult::OutputFull => {}
            EncoderResult::Unmappable(_) => pending_mark = true,
        }
    }
}
