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

use std::str::FromStr;

use encoding_rs::{DecoderResult, EncoderResult, Encoding, ISO_2022_JP, SHIFT_JIS};
use serde::Serialize;

pub use crate::model::Charset;

impl Charset {
    fn encoding(self) -> Option<&'static Encoding> {
        match self {
            Charset::Ascii | Charset::Utf8 => None,
            Charset::Iso2022Jp => Some(ISO_2022_JP),
            Charset::ShiftJis => Some(SHIFT_JIS),
        }
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
    let plain = scan_msh(raw, false).map(|msh| resolve(&msh, default));
    if default == Charset::ShiftJis {
        // A Shift_JIS MSH may hold trail bytes equal to `|` (e.g. "ポ" = 83 7C), which
        // add a field to a plain scan; a Shift_JIS-aware scan of a UTF-8 MSH may
        // swallow one. An explicit, known MSH-18 from the plain scan is trusted (a
        // misaligned plain scan lands on MSH-17, a country code); otherwise the
        // Shift_JIS-aware scan decides.
        let explicit = matches!(&plain, Some(Ok(d)) if !d.defaulted);
        if !explicit {
            if let Some(Ok(d)) = scan_msh(raw, true).map(|msh| resolve(&msh, default)) {
                return Ok(d);
            }
        }
    }
    plain.unwrap_or(Ok(Detection {
        charset: default,
        declared: String::new(),
        defaulted: true,
    }))
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
                let (content, terminator) = match line.split_last() {
                    Some((&last, content)) if last == b'\r' || last == b'\n' => {
                        (content, Some(char::from(last)))
                    }
                    _ => (line, None),
                };
                decode_with(ISO_2022_JP, content, offset, charset, &mut out)?;
                out.extend(terminator);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn msh18(value: &str) -> Vec<u8> {
        format!("MSH|^~\\&|S|F|R|RF|20240101||ADT^A08|1|P|2.5||||||{value}\rPID|||1").into_bytes()
    }

    #[test]
    fn msh18_values() {
        let cases = [
            ("~ISO IR87", Charset::Iso2022Jp),
            ("ISO IR87", Charset::Iso2022Jp),
            ("ISO 2022-1994", Charset::Iso2022Jp),
            ("ISO IR6~ISO IR87", Charset::Iso2022Jp),
            ("~ISO IR87~ISO IR159", Charset::Iso2022Jp),
            ("UNICODE UTF-8", Charset::Utf8),
            ("UTF-8", Charset::Utf8),
            ("ISO IR6", Charset::Ascii),
            ("ASCII", Charset::Ascii),
            ("SHIFT_JIS", Charset::ShiftJis),
            ("ISO IR13", Charset::ShiftJis),
        ];
        for (value, expected) in cases {
            let d = detect(&msh18(value), Charset::Utf8).unwrap();
            assert_eq!(d.charset, expected, "{value}");
            assert_eq!(d.declared, value);
            assert!(!d.defaulted);
        }
        for value in ["", "~", " "] {
            let d = detect(&msh18(value), Charset::ShiftJis).unwrap();
            assert_eq!(d.charset, Charset::ShiftJis, "{value:?}");
            assert!(d.defaulted);
        }
        assert_eq!(
            detect(&msh18("8859/1"), Charset::Ascii),
            Err(CharsetError::Unsupported {
                value: "8859/1".into()
            })
        );
        // No MSH18 field at all, and no MSH at all: the default.
        let d = detect(b"MSH|^~\\&|S|F\rPID|1", Charset::Utf8).unwrap();
        assert_eq!((d.charset, d.defaulted), (Charset::Utf8, true));
        let d = detect(b"not hl7", Charset::Ascii).unwrap();
        assert_eq!((d.charset, d.defaulted), (Charset::Ascii, true));
    }

    #[test]
    fn config_names() {
        assert_eq!("shift_jis".parse::<Charset>(), Ok(Charset::ShiftJis));
        assert_eq!("iso-2022-jp".parse::<Charset>(), Ok(Charset::Iso2022Jp));
        assert_eq!("utf8".parse::<Charset>(), Ok(Charset::Utf8));
        assert!("latin1".parse::<Charset>().is_err());
        let c: Charset = serde_json::from_str("\"iso2022_jp\"").unwrap();
        assert_eq!(c, Charset::Iso2022Jp);
    }

    #[test]
    fn iso2022_kanji_with_delimiter_bytes_in_msh() {
        // 放 is 4A 7C in JIS X 0208: a '|' byte inside MSH-6.
        let mut raw = b"MSH|^~\\&|S|F|R|".to_vec();
        raw.extend_from_slice(&encode("放射線科", Charset::Iso2022Jp));
        raw.extend_from_slice(b"|20240101||ADT^A08|1|P|2.5||||||~ISO IR87\rPID|||1");
        assert!(raw.windows(2).any(|w| w == b"J|"));
        let decoded = decode(&raw, Charset::Ascii).unwrap();
        assert_eq!(decoded.detection.charset, Charset::Iso2022Jp);
        assert!(decoded.text.contains("|R|放射線科|20240101|"));
    }

    #[test]
    fn shift_jis_default_with_trail_bytes_equal_to_delimiters() {
        // ポ is 83 7C in Shift_JIS: a '|' trail byte in MSH-4, MSH-18 empty.
        let mut raw = b"MSH|^~\\&|S|".to_vec();
        raw.extend_from_slice(&encode("ポート病院", Charset::ShiftJis));
        raw.extend_from_slice(b"|R|RF|20240101||ADT^A08|1|P|2.5||||||\rPID|||1");
        let decoded = decode(&raw, Charset::ShiftJis).unwrap();
        assert_eq!(decoded.detection.charset, Charset::ShiftJis);
        assert!(decoded.detection.defaulted);
        assert!(decoded.text.contains("|ポート病院|"));

        // With MSH-17 set, a plain scan would read the country code as MSH-18.
        let mut raw = b"MSH|^~\\&|S|".to_vec();
        raw.extend_from_slice(&encode("ポート病院", Charset::ShiftJis));
        raw.extend_from_slice(b"|R|RF|20240101||ADT^A08|1|P|2.5|||||JPN|\rPID|||1");
        let d = detect(&raw, Charset::ShiftJis).unwrap();
        assert_eq!((d.charset, d.defaulted), (Charset::ShiftJis, true));

        // Same default, but a UTF-8 message saying so: "あ" (E3 81 82) looks like
        // Shift_JIS lead bytes; the plain scan must win.
        let mut raw = b"MSH|^~\\&|S|".to_vec();
        raw.extend_from_slice("あ".as_bytes());
        raw.extend_from_slice(b"|R|RF|20240101||ADT^A08|1|P|2.5||||||UNICODE UTF-8\rPID|||1");
        let decoded = decode(&raw, Charset::ShiftJis).unwrap();
        assert_eq!(decoded.detection.charset, Charset::Utf8);
        assert!(decoded.text.contains("|あ|R|"));
    }

    #[test]
    fn malformed_bytes_name_the_charset_and_offset() {
        assert_eq!(
            decode_as(b"MSH|\x80", Charset::Ascii),
            Err(CharsetError::Malformed {
                charset: Charset::Ascii,
                offset: 4
            })
        );
        assert_eq!(
            decode_as(b"MSH|\x1b$B;3", Charset::Ascii),
            Err(CharsetError::Malformed {
                charset: Charset::Ascii,
                offset: 4
            })
        );
        assert_eq!(
            decode_as(b"MSH|ab\xE3\x81", Charset::Utf8),
            Err(CharsetError::Malformed {
                charset: Charset::Utf8,
                offset: 6
            })
        );
        let err = decode_as(b"MSH|a\rPID|\x1b$B\x80\x80\x1b(B", Charset::Iso2022Jp).unwrap_err();
        assert!(
            matches!(
                err,
                CharsetError::Malformed {
                    charset: Charset::Iso2022Jp,
                    offset: 13..=14
                }
            ),
            "{err:?}"
        );
        let err = decode_as(b"MSH|\x81\x20", Charset::ShiftJis).unwrap_err();
        assert!(
            matches!(
                err,
                CharsetError::Malformed {
                    charset: Charset::ShiftJis,
                    offset: 4..=5
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("Shift_JIS"));
    }

    #[test]
    fn iso2022_shift_left_open_before_cr_is_tolerated() {
        // 山田 then CR without ESC ( B: the next segment still decodes as ASCII.
        let raw = b"PID|||1||\x1b$B;3ED\rOBR|1";
        assert_eq!(
            decode_as(raw, Charset::Iso2022Jp).unwrap(),
            "PID|||1||山田\rOBR|1"
        );
    }

    #[test]
    fn utf8_bom_is_dropped() {
        assert_eq!(
            decode_as(b"\xEF\xBB\xBFMSH|", Charset::Utf8).unwrap(),
            "MSH|"
        );
        let d = detect(
            b"\xEF\xBB\xBFMSH|^~\\&||||||||||||||||UTF-8",
            Charset::Ascii,
        )
        .unwrap();
        assert_eq!(d.charset, Charset::Utf8);
    }

    #[test]
    fn encode_round_trips_and_replaces_unmappable() {
        let text = "MSH|^~\\&|山田^太郎|ｶﾅ\rMSA|AA|1\r";
        for cs in [Charset::Utf8, Charset::Iso2022Jp, Charset::ShiftJis] {
            let bytes = encode(text, cs);
            let back = decode_as(&bytes, cs).unwrap();
            // ISO-2022-JP has no half-width katakana: WHATWG maps it to full width.
            let expected = if cs == Charset::Iso2022Jp {
                text.replace("ｶﾅ", "カナ")
            } else {
                text.to_string()
            };
            assert_eq!(back, expected, "{cs}");
        }
        // ISO-2022-JP output is back in ASCII before every CR and at the end.
        let bytes = encode("山\r田", Charset::Iso2022Jp);
        assert_eq!(bytes, b"\x1b$B;3\x1b(B\r\x1b$BED\x1b(B");
        assert_eq!(encode("山田 ok", Charset::Ascii), b"?? ok");
        // Unmappable characters (emoji, many of them) become '?' without recursion.
        let many = "😀".repeat(10_000) + "山";
        let bytes = encode(&many, Charset::ShiftJis);
        assert_eq!(bytes.len(), 10_002);
        assert!(bytes.starts_with(b"???"));
        let bytes = encode("山😀田", Charset::Iso2022Jp);
        assert_eq!(decode_as(&bytes, Charset::Iso2022Jp).unwrap(), "山?田");
    }
}
