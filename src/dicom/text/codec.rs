//! The ISO 2022 escape-sequence splitter and the per-element codecs.
//!
//! Decoding walks the bytes once, keeping the ISO 2022 state (which sets are
//! designated to G0 and G1). Escape sequences change the state; runs of
//! characters are decoded with the table of the active set; delimiters reset
//! the state to the one of value 1 (PS3.5 §6.1.2.5.3). Encoding does the
//! inverse and writes the escape sequences PS3.5 Annex H/I show.

use std::collections::HashMap;
use std::sync::OnceLock;

use encoding_rs::{DecoderResult, EncoderResult, Encoding};

use super::charset::{parse_escape, Element, G0Set, G1Set, Repr, State, Whole};
use super::{CharsetError, SpecificCharacterSet, TextKind};

const ESC: u8 = 0x1b;

/// Bytes at which the ISO 2022 state returns to the initial one: the value
/// delimiter, the line/page controls, and for PN the component and group
/// delimiters (PS3.5 §6.1.2.5.3; TAB as in pydicom's `TEXT_VR_DELIMS`).
///
/// They only count where a single-byte set is active in G0: inside a JIS X
/// 0208 run `^`, `=` and `\` are ordinary bytes of two-byte characters
/// (e.g. ま is `$^`, そ is `$=`, ぼ is `$\`).
fn is_reset_byte(b: u8, kind: TextKind) -> bool {
    match b {
        b'\\' | b'\r' | b'\n' | 0x0c | b'\t' => true,
        b'^' | b'=' => kind == TextKind::PersonName,
        _ => false,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A two-byte (94×94) set, in G0 (bytes 0x21–0x7E) or G1 (0xA1–0xFE).
///
/// We decode and encode them through the EUC form of the same table rather
/// than through encoding_rs' ISO-2022-JP codec: EUC maps one byte pair to one
/// character with no state, so a run we have already split out needs no
/// re-wrapping in escape sequences, an unmapped pair can be reported at its
/// exact offset, and EUC-JP also reaches JIS X 0212 (lead byte 0x8F), which
/// encoding_rs' ISO-2022-JP does not support. The EUC-JP and ISO-2022-JP
/// decoders of encoding_rs share the same JIS X 0208 index, so the characters
/// are the same either way.
#[derive(Clone, Copy, Debug)]
enum TwoByte {
    JisX0208,
    JisX0212,
    KsX1001,
    Gb2312,
}

impl TwoByte {
    fn name(self) -> &'static str {
        match self {
            TwoByte::JisX0208 => G0Set::JisX0208.name(),
            TwoByte::JisX0212 => G0Set::JisX0212.name(),
            TwoByte::KsX1001 => G1Set::KsX1001.name(),
            TwoByte::Gb2312 => G1Set::Gb2312.name(),
        }
    }

    /// The byte range of both bytes of a character as they appear in DICOM.
    fn contains(self, b: u8) -> bool {
        match self {
            TwoByte::JisX0208 | TwoByte::JisX0212 => (0x21..=0x7e).contains(&b),
            TwoByte::KsX1001 | TwoByte::Gb2312 => (0xa1..=0xfe).contains(&b),
        }
    }

    fn encoding(self) -> &'static Encoding {
        match self {
            TwoByte::JisX0208 | TwoByte::JisX0212 => encoding_rs::EUC_JP,
            // EUC-KR in encoding_rs is windows-949; with both bytes in
            // 0xA1–0xFE it is exactly KS X 1001. Same for GBK and GB 2312.
            TwoByte::KsX1001 => encoding_rs::EUC_KR,
            TwoByte::Gb2312 => encoding_rs::GBK,
        }
    }

    /// Append the EUC form of one DICOM byte pair.
    fn push_euc(self, b1: u8, b2: u8, buf: &mut Vec<u8>) {
        match self {
            TwoByte::JisX0208 => buf.extend([b1 | 0x80, b2 | 0x80]),
            TwoByte::JisX0212 => buf.extend([0x8f, b1 | 0x80, b2 | 0x80]),
            TwoByte::KsX1001 | TwoByte::Gb2312 => buf.extend([b1, b2]),
        }
    }

    /// The DICOM byte pair for `ch`, if this set has it.
    fn encode(self, ch: char) -> Option<[u8; 2]> {
        match self {
            TwoByte::JisX0208 => {
                let euc = encode_char(encoding_rs::EUC_JP, ch)?;
                match euc[..] {
                    [b1 @ 0xa1..=0xfe, b2 @ 0xa1..=0xfe]
                        if is_standard_jis_x0208_row(b1 - 0xa0) =>
                    {
                        Some([b1 & 0x7f, b2 & 0x7f])
                    }
                    _ => None,
                }
            }
            TwoByte::JisX0212 => jis_x0212_table().get(&ch).copied(),
            TwoByte::KsX1001 | TwoByte::Gb2312 => {
                let code = encode_char(self.encoding(), ch)?;
                match code[..] {
                    [b1 @ 0xa1..=0xfe, b2 @ 0xa1..=0xfe] => Some([b1, b2]),
                    _ => None,
                }
            }
        }
    }
}

/// JIS X 0208 assigns rows 1–8 and 16–84. The WHATWG table also fills rows
/// 9–15 and 85–94 with vendor (NEC/IBM) extensions such as ① or 髙; we read
/// them but never write them, because a conformant reader may reject them.
fn is_standard_jis_x0208_row(row: u8) -> bool {
    (1..=8).contains(&row) || (16..=84).contains(&row)
}

/// encoding_rs has JIS X 0212 only for decoding (EUC-JP lead 0x8F). To encode
/// we invert that table once: 94×94 decodes, done on first use.
fn jis_x0212_table() -> &'static HashMap<char, [u8; 2]> {
    static TABLE: OnceLock<HashMap<char, [u8; 2]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = HashMap::new();
        for b1 in 0x21u8..=0x7e {
            for b2 in 0x21u8..=0x7e {
                let euc = [0x8f, b1 | 0x80, b2 | 0x80];
                if let Some(s) =
                    encoding_rs::EUC_JP.decode_without_bom_handling_and_without_replacement(&euc)
                {
                    let mut chars = s.chars();
                    if let (Some(ch), None) = (chars.next(), chars.next()) {
                        table.entry(ch).or_insert([b1, b2]);
                    }
                }
            }
        }
        table
    })
}

/// Encode one character with an encoding_rs encoding; `None` if unmappable.
fn encode_char(encoding: &'static Encoding, ch: char) -> Option<Vec<u8>> {
    let mut buf = [0u8; 4];
    let (bytes, _, had_errors) = encoding.encode(ch.encode_utf8(&mut buf));
    if had_errors {
        None
    } else {
        Some(bytes.into_owned())
    }
}

/// Decode a run of two-byte characters starting at `start`; returns the
/// offset just past the run.
fn decode_two_byte_run(
    bytes: &[u8],
    start: usize,
    set: TwoByte,
    out: &mut String,
) -> Result<usize, CharsetError> {
    let mut euc = Vec::new();
    let mut i = start;
    while let Some(&b1) = bytes.get(i) {
        if !set.contains(b1) {
            break;
        }
        match bytes.get(i + 1) {
            Some(&b2) if set.contains(b2) => set.push_euc(b1, b2, &mut euc),
            _ => {
                return Err(CharsetError::TruncatedCharacter {
                    offset: i,
                    set: set.name(),
                })
            }
        }
        i += 2;
    }
    if let Some(s) = set
        .encoding()
        .decode_without_bom_handling_and_without_replacement(&euc)
    {
        out.push_str(&s);
        return Ok(i);
    }
    // Some pair has no character: find it so the error names its offset.
    let mut k = start;
    while k + 1 < i {
        let mut one = Vec::new();
        set.push_euc(bytes[k], bytes[k + 1], &mut one);
        if set
            .encoding()
            .decode_without_bom_handling_and_without_replacement(&one)
            .is_none()
        {
            return Err(CharsetError::UnmappedCharacter {
                offset: k,
                bytes: hex(&bytes[k..k + 2]),
                set: set.name(),
            });
        }
        k += 2;
    }
    Err(CharsetError::UnmappedCharacter {
        offset: start,
        bytes: hex(&bytes[start..i]),
        set: set.name(),
    })
}

pub(crate) fn decode(
    bytes: &[u8],
    cs: &SpecificCharacterSet,
    kind: TextKind,
) -> Result<String, CharsetError> {
    match &cs.repr {
        Repr::Whole(w) => decode_whole(bytes, *w),
        Repr::Iso2022 { initial, .. } => decode_iso2022(bytes, *initial, kind),
    }
}

fn decode_whole(bytes: &[u8], whole: Whole) -> Result<String, CharsetError> {
    let encoding = whole.encoding();
    let mut decoder = encoding.new_decoder_without_bom_handling();
    let mut out = String::with_capacity(bytes.len() * 2);
    let mut read_total = 0;
    loop {
        let rest = bytes.get(read_total..).unwrap_or_default();
        let (result, read) = decoder.decode_to_string_without_replacement(rest, &mut out, true);
        read_total += read;
        match result {
            DecoderResult::InputEmpty => return Ok(out),
            DecoderResult::OutputFull => out.reserve(rest.len().max(16) * 3),
            DecoderResult::Malformed(bad, extra) => {
                let end = read_total.saturating_sub(usize::from(extra));
                let offset = end.saturating_sub(usize::from(bad));
                return Err(CharsetError::UnmappedCharacter {
                    offset,
                    bytes: hex(bytes.get(offset..end).unwrap_or_default()),
                    set: encoding.name(),
                });
            }
        }
    }
}

fn decode_iso2022(bytes: &[u8], initial: State, kind: TextKind) -> Result<String, CharsetError> {
    let mut out = String::with_capacity(bytes.len());
    let mut st = initial;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == ESC {
            let (designation, len) =
                parse_escape(&bytes[i..]).ok_or_else(|| CharsetError::InvalidEscape {
                    offset: i,
                    sequence: hex(&bytes[i..bytes.len().min(i + 4)]),
                })?;
            // We honour every escape sequence DICOM defines, even for a set
            // the value did not declare: its meaning is unambiguous, and
            // writers commonly use ESC ( B with value 1 = ISO 2022 IR 13.
            match designation {
                Element::G0(g0) => st.g0 = g0,
                Element::G1(g1) => st.g1 = Some(g1),
            }
            i += len;
            continue;
        }
        if st.g0.is_two_byte() && (0x21..=0x7e).contains(&b) {
            let set = if st.g0 == G0Set::JisX0212 {
                TwoByte::JisX0212
            } else {
                TwoByte::JisX0208
            };
            i = decode_two_byte_run(bytes, i, set, &mut out)?;
            continue;
        }
        if b < 0x80 {
            // Controls and space, or a G0 single-byte set. JIS X 0201 Roman
            // differs from ASCII only at 0x5C (¥) and 0x7E (‾); like pydicom
            // (Python's shift_jis) and dicom-rs (windows-31j) we read them as
            // `\` and `~`, since 0x5C is the DICOM value delimiter whatever
            // the character set.
            if is_reset_byte(b, kind) {
                st = initial;
            }
            out.push(char::from(b));
            i += 1;
            continue;
        }
        // Upper half: the G1 set.
        match st.g1 {
            Some(G1Set::JisKatakana) if (0xa1..=0xdf).contains(&b) => {
                // JIS X 0201 Katakana maps linearly onto U+FF61–U+FF9F.
                out.extend(char::from_u32(0xff61 + u32::from(b - 0xa1)));
                i += 1;
            }
            Some(G1Set::Single(set)) if b >= 0xa0 => {
                let byte = [b];
                let decoded = set
                    .encoding()
                    .decode_without_bom_handling_and_without_replacement(&byte)
                    .ok_or(CharsetError::InvalidByte {
                        offset: i,
                        byte: b,
                        set: G1Set::Single(set).name(),
                    })?;
                out.push_str(&decoded);
                i += 1;
            }
            Some(g1 @ (G1Set::KsX1001 | G1Set::Gb2312)) if (0xa1..=0xfe).contains(&b) => {
                let set = if g1 == G1Set::KsX1001 {
                    TwoByte::KsX1001
                } else {
                    TwoByte::Gb2312
                };
                i = decode_two_byte_run(bytes, i, set, &mut out)?;
            }
            g1 => {
                return Err(CharsetError::InvalidByte {
                    offset: i,
                    byte: b,
                    set: g1.map_or("the default repertoire (no G1 set)", G1Set::name),
                })
            }
        }
    }
    Ok(out)
}

pub(crate) fn encode(
    text: &str,
    cs: &SpecificCharacterSet,
    kind: TextKind,
) -> Result<Vec<u8>, CharsetError> {
    match &cs.repr {
        Repr::Whole(w) => encode_whole(text, *w, cs),
        Repr::Iso2022 {
            initial, elements, ..
        } => encode_iso2022(text, *initial, elements, kind, cs),
    }
}

fn unrepresentable(ch: char, cs: &SpecificCharacterSet) -> CharsetError {
    CharsetError::Unrepresentable {
        ch,
        charset: cs.to_string(),
    }
}

fn encode_whole(
    text: &str,
    whole: Whole,
    cs: &SpecificCharacterSet,
) -> Result<Vec<u8>, CharsetError> {
    if whole == Whole::Utf8 {
        return Ok(text.as_bytes().to_vec());
    }
    let mut encoder = whole.encoding().new_encoder();
    let mut out = Vec::with_capacity(text.len() * 2);
    let mut read_total = 0;
    loop {
        let rest = text.get(read_total..).unwrap_or_default();
        let (result, read) =
            encoder.encode_from_utf8_to_vec_without_replacement(rest, &mut out, true);
        read_total += read;
        match result {
            EncoderResult::InputEmpty => return Ok(out),
            EncoderResult::OutputFull => out.reserve(rest.len().max(16) * 4),
            EncoderResult::Unmappable(ch) => return Err(unrepresentable(ch, cs)),
        }
    }
}

/// The G1 byte(s) for `ch` in `set`, if it has it.
fn encode_g1(set: G1Set, ch: char) -> Option<Vec<u8>> {
    match set {
        G1Set::JisKatakana => {
            let offset = u32::from(ch).checked_sub(0xff61)?;
            (offset <= 0xff9f - 0xff61).then(|| vec![0xa1 + offset as u8])
        }
        G1Set::Single(s) => {
            let code = encode_char(s.encoding(), ch)?;
            matches!(code[..], [0xa0..=0xff]).then_some(code)
        }
        G1Set::KsX1001 => TwoByte::KsX1001.encode(ch).map(Vec::from),
        G1Set::Gb2312 => TwoByte::Gb2312.encode(ch).map(Vec::from),
    }
}

/// The G0 byte pair for a non-ASCII `ch` in a two-byte G0 set.
fn encode_g0(set: G0Set, ch: char) -> Option<[u8; 2]> {
    match set {
        G0Set::JisX0208 => TwoByte::JisX0208.encode(ch),
        G0Set::JisX0212 => TwoByte::JisX0212.encode(ch),
        G0Set::Ascii | G0Set::JisRoman => None,
    }
}

fn encode_iso2022(
    text: &str,
    initial: State,
    elements: &[Element],
    kind: TextKind,
    cs: &SpecificCharacterSet,
) -> Result<Vec<u8>, CharsetError> {
    let mut out = Vec::with_capacity(text.len() + 8);
    let mut st = initial;
    for ch in text.chars() {
        if ch.is_ascii() {
            // A literal ESC would be read back as an escape sequence.
            if ch == '\x1b' {
                return Err(unrepresentable(ch, cs));
            }
            let b = ch as u8;
            if is_reset_byte(b, kind) {
                // PS3.5 §6.1.2.5.3: the sets of value 1 must be active again
                // before each delimiter (Annex H: ESC ( B before ^ and =).
                if st.g0 != initial.g0 {
                    out.extend_from_slice(initial.g0.escape());
                }
                if st.g1 != initial.g1 {
                    // With no initial G1 (value 1 empty) there is nothing to
                    // designate: readers drop G1 at the delimiter themselves,
                    // as Annex I shows.
                    if let Some(g1) = initial.g1 {
                        out.extend(g1.escape());
                    }
                }
                out.push(b);
                st = initial;
                continue;
            }
            if st.g0.is_two_byte() {
                out.extend_from_slice(initial.g0.escape());
                st.g0 = initial.g0;
            }
            out.push(b);
            continue;
        }

        // Prefer the sets already designated: that needs no escape sequence.
        if st.g0.is_two_byte() {
            if let Some(code) = encode_g0(st.g0, ch) {
                out.extend(code);
                continue;
            }
        }
        let current_g1 = st
            .g1
            .and_then(|g1| encode_g1(g1, ch).map(|code| (g1, code)));
        let (element, code) = match current_g1 {
            Some((g1, code)) => (Element::G1(g1), code),
            None => elements
                .iter()
                .find_map(|&e| match e {
                    Element::G0(g0) => encode_g0(g0, ch).map(|code| (e, code.to_vec())),
                    Element::G1(g1) => encode_g1(g1, ch).map(|code| (e, code)),
                })
                .ok_or_else(|| unrepresentable(ch, cs))?,
        };
        match element {
            Element::G0(g0) => {
                if st.g0 != g0 {
                    out.extend_from_slice(g0.escape());
                    st.g0 = g0;
                }
            }
            Element::G1(g1) => {
                // G1 bytes could follow a JIS X 0208 run directly, but readers
                // that convert each escape-delimited segment with a single
                // converter (iconv-style ISO-2022-JP) fail on that; return G0
                // to its initial set first.
                if st.g0.is_two_byte() {
                    out.extend_from_slice(initial.g0.escape());
                    st.g0 = initial.g0;
                }
                if st.g1 != Some(g1) {
                    out.extend(g1.escape());
                    st.g1 = Some(g1);
                }
            }
        }
        out.extend(code);
    }
    // The value must end with the G0 set of value 1 (Annex H ends in ESC ( B).
    if st.g0 != initial.g0 {
        out.extend_from_slice(initial.g0.escape());
    }
    Ok(out)
}
