//! Parsing of the Specific Character Set (0008,0005) value into code elements.
//!
//! DICOM (PS3.3 C.12.1.1.2, PS3.5 §6.1) describes text either with one whole
//! encoding (UTF-8, GB18030, GBK) or with ISO 2022 code elements: a 94-character
//! set in G0 (bytes 0x21–0x7E, ASCII or JIS) and a set in G1 invoked into the
//! upper half (bytes 0xA0–0xFF). Each defined term below names such an element
//! and the escape sequence that designates it.

use std::fmt;

use encoding_rs::Encoding;

use super::CharsetError;

/// A set that can be designated to G0 and is used with bytes 0x21–0x7E.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum G0Set {
    /// ISO 646 IRV (ASCII), `ESC ( B`: ISO 2022 IR 6.
    Ascii,
    /// JIS X 0201 Roman, `ESC ( J`: the G0 half of ISO 2022 IR 13.
    JisRoman,
    /// JIS X 0208 (two bytes), `ESC $ B`: ISO 2022 IR 87.
    JisX0208,
    /// JIS X 0212 (two bytes), `ESC $ ( D`: ISO 2022 IR 159.
    JisX0212,
}

impl G0Set {
    /// Whether characters of this set take two bytes.
    pub(crate) fn is_two_byte(self) -> bool {
        matches!(self, G0Set::JisX0208 | G0Set::JisX0212)
    }

    /// The escape sequence that designates this set to G0.
    pub(crate) fn escape(self) -> &'static [u8] {
        match self {
            G0Set::Ascii => b"\x1b(B",
            G0Set::JisRoman => b"\x1b(J",
            G0Set::JisX0208 => b"\x1b$B",
            G0Set::JisX0212 => b"\x1b$(D",
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            G0Set::Ascii => "ISO 646 (ASCII)",
            G0Set::JisRoman => "JIS X 0201 Roman",
            G0Set::JisX0208 => "JIS X 0208",
            G0Set::JisX0212 => "JIS X 0212",
        }
    }
}

/// A 96-character single-byte set used in G1 (bytes 0xA0–0xFF).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SingleByte {
    Latin1,
    Latin2,
    Latin3,
    Latin4,
    Cyrillic,
    Arabic,
    Greek,
    Hebrew,
    Latin5,
    Latin9,
    Thai,
}

impl SingleByte {
    /// An encoding_rs encoding whose upper half (0xA0–0xFF) is this set.
    ///
    /// encoding_rs follows the WHATWG Encoding Standard, which has no
    /// ISO-8859-1, -9 or TIS-620 of its own; windows-1252, -1254 and -874 are
    /// identical to them in 0xA0–0xFF, and only that range is ever passed in
    /// (0x80–0x9F are C1 controls in DICOM and rejected before we get here).
    pub(crate) fn encoding(self) -> &'static Encoding {
        match self {
            SingleByte::Latin1 => encoding_rs::WINDOWS_1252,
            SingleByte::Latin2 => encoding_rs::ISO_8859_2,
            SingleByte::Latin3 => encoding_rs::ISO_8859_3,
            SingleByte::Latin4 => encoding_rs::ISO_8859_4,
            SingleByte::Cyrillic => encoding_rs::ISO_8859_5,
            SingleByte::Arabic => encoding_rs::ISO_8859_6,
            SingleByte::Greek => encoding_rs::ISO_8859_7,
            SingleByte::Hebrew => encoding_rs::ISO_8859_8,
            SingleByte::Latin5 => encoding_rs::WINDOWS_1254,
            SingleByte::Latin9 => encoding_rs::ISO_8859_15,
            SingleByte::Thai => encoding_rs::WINDOWS_874,
        }
    }

    /// Final byte of the `ESC - F` designation (PS3.3 Table C.12-3).
    fn final_byte(self) -> u8 {
        match self {
            SingleByte::Latin1 => b'A',
            SingleByte::Latin2 => b'B',
            SingleByte::Latin3 => b'C',
            SingleByte::Latin4 => b'D',
            SingleByte::Cyrillic => b'L',
            SingleByte::Arabic => b'G',
            SingleByte::Greek => b'F',
            SingleByte::Hebrew => b'H',
            SingleByte::Latin5 => b'M',
            SingleByte::Latin9 => b'b',
            SingleByte::Thai => b'T',
        }
    }

    fn from_final_byte(b: u8) -> Option<Self> {
        ALL_SINGLE_BYTE
            .iter()
            .copied()
            .find(|s| s.final_byte() == b)
    }

    fn name(self) -> &'static str {
        match self {
            SingleByte::Latin1 => "ISO 8859-1",
            SingleByte::Latin2 => "ISO 8859-2",
            SingleByte::Latin3 => "ISO 8859-3",
            SingleByte::Latin4 => "ISO 8859-4",
            SingleByte::Cyrillic => "ISO 8859-5",
            SingleByte::Arabic => "ISO 8859-6",
            SingleByte::Greek => "ISO 8859-7",
            SingleByte::Hebrew => "ISO 8859-8",
            SingleByte::Latin5 => "ISO 8859-9",
            SingleByte::Latin9 => "ISO 8859-15",
            SingleByte::Thai => "TIS 620-2533",
        }
    }
}

const ALL_SINGLE_BYTE: [SingleByte; 11] = [
    SingleByte::Latin1,
    SingleByte::Latin2,
    SingleByte::Latin3,
    SingleByte::Latin4,
    SingleByte::Cyrillic,
    SingleByte::Arabic,
    SingleByte::Greek,
    SingleByte::Hebrew,
    SingleByte::Latin5,
    SingleByte::Latin9,
    SingleByte::Thai,
];

/// A set that can be designated to G1 and is used with bytes 0xA0–0xFF.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum G1Set {
    /// JIS X 0201 Katakana (0xA1–0xDF), `ESC ) I`: the G1 half of ISO 2022 IR 13.
    JisKatakana,
    /// One of the ISO 8859 / TIS 620 upper halves, `ESC - F`.
    Single(SingleByte),
    /// KS X 1001 (two bytes, both 0xA1–0xFE), `ESC $ ) C`: ISO 2022 IR 149.
    KsX1001,
    /// GB 2312 (two bytes, both 0xA1–0xFE), `ESC $ ) A`: ISO 2022 IR 58.
    Gb2312,
}

impl G1Set {
    /// The escape sequence that designates this set to G1.
    pub(crate) fn escape(self) -> Vec<u8> {
        match self {
            G1Set::JisKatakana => b"\x1b)I".to_vec(),
            G1Set::Single(s) => vec![0x1b, b'-', s.final_byte()],
            G1Set::KsX1001 => b"\x1b$)C".to_vec(),
            G1Set::Gb2312 => b"\x1b$)A".to_vec(),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            G1Set::JisKatakana => "JIS X 0201 Katakana",
            G1Set::Single(s) => s.name(),
            G1Set::KsX1001 => "KS X 1001",
            G1Set::Gb2312 => "GB 2312",
        }
    }
}

/// One code element a defined term brings in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Element {
    G0(G0Set),
    G1(G1Set),
}

/// What an escape sequence designates (see [`parse_escape`]).
pub(crate) type Designation = Element;

/// Recognise an ISO 2022 designation escape sequence at the start of `bytes`
/// (which begins with ESC). Returns what it designates and its length, or
/// `None` for anything DICOM does not define (including a truncated one).
pub(crate) fn parse_escape(bytes: &[u8]) -> Option<(Designation, usize)> {
    match bytes.get(1..)? {
        [b'(', b'B', ..] => Some((Element::G0(G0Set::Ascii), 3)),
        [b'(', b'J', ..] => Some((Element::G0(G0Set::JisRoman), 3)),
        [b'$', b'B', ..] => Some((Element::G0(G0Set::JisX0208), 3)),
        [b'$', b'(', b'D', ..] => Some((Element::G0(G0Set::JisX0212), 4)),
        [b')', b'I', ..] => Some((Element::G1(G1Set::JisKatakana), 3)),
        [b'$', b')', b'C', ..] => Some((Element::G1(G1Set::KsX1001), 4)),
        [b'$', b')', b'A', ..] => Some((Element::G1(G1Set::Gb2312), 4)),
        [b'-', f, ..] => {
            SingleByte::from_final_byte(*f).map(|s| (Element::G1(G1Set::Single(s)), 3))
        }
        _ => None,
    }
}

/// Character sets that encode the whole value without ISO 2022 code extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Whole {
    Utf8,
    Gb18030,
    Gbk,
}

impl Whole {
    pub(crate) fn encoding(self) -> &'static Encoding {
        match self {
            Whole::Utf8 => encoding_rs::UTF_8,
            Whole::Gb18030 => encoding_rs::GB18030,
            Whole::Gbk => encoding_rs::GBK,
        }
    }
}

/// What one defined term of (0008,0005) means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TermMeaning {
    /// ISO 2022 code elements; `extension` is true for the "ISO 2022 IR …" form.
    Elements {
        g0: Option<G0Set>,
        g1: Option<G1Set>,
        extension: bool,
    },
    Whole(Whole),
}

fn lookup_term(term: &str) -> Option<TermMeaning> {
    use G0Set::*;
    let elements = |g0, g1, extension| Some(TermMeaning::Elements { g0, g1, extension });
    let single = |s| Some(G1Set::Single(s));
    match term {
        // "ISO_IR 6" is not a defined term, but it is what many writers put
        // for "default repertoire"; it cannot mean anything else.
        "ISO_IR 6" => elements(Some(Ascii), None, false),
        "ISO 2022 IR 6" => elements(Some(Ascii), None, true),
        "ISO_IR 100" => elements(Some(Ascii), single(SingleByte::Latin1), false),
        "ISO 2022 IR 100" => elements(Some(Ascii), single(SingleByte::Latin1), true),
        "ISO_IR 101" => elements(Some(Ascii), single(SingleByte::Latin2), false),
        "ISO 2022 IR 101" => elements(Some(Ascii), single(SingleByte::Latin2), true),
        "ISO_IR 109" => elements(Some(Ascii), single(SingleByte::Latin3), false),
        "ISO 2022 IR 109" => elements(Some(Ascii), single(SingleByte::Latin3), true),
        "ISO_IR 110" => elements(Some(Ascii), single(SingleByte::Latin4), false),
        "ISO 2022 IR 110" => elements(Some(Ascii), single(SingleByte::Latin4), true),
        "ISO_IR 144" => elements(Some(Ascii), single(SingleByte::Cyrillic), false),
        "ISO 2022 IR 144" => elements(Some(Ascii), single(SingleByte::Cyrillic), true),
        "ISO_IR 127" => elements(Some(Ascii), single(SingleByte::Arabic), false),
        "ISO 2022 IR 127" => elements(Some(Ascii), single(SingleByte::Arabic), true),
        "ISO_IR 126" => elements(Some(Ascii), single(SingleByte::Greek), false),
        "ISO 2022 IR 126" => elements(Some(Ascii), single(SingleByte::Greek), true),
        "ISO_IR 138" => elements(Some(Ascii), single(SingleByte::Hebrew), false),
        "ISO 2022 IR 138" => elements(Some(Ascii), single(SingleByte::Hebrew), true),
        "ISO_IR 148" => elements(Some(Ascii), single(SingleByte::Latin5), false),
        "ISO 2022 IR 148" => elements(Some(Ascii), single(SingleByte::Latin5), true),
        "ISO_IR 203" => elements(Some(Ascii), single(SingleByte::Latin9), false),
        "ISO 2022 IR 203" => elements(Some(Ascii), single(SingleByte::Latin9), true),
        "ISO_IR 166" => elements(Some(Ascii), single(SingleByte::Thai), false),
        "ISO 2022 IR 166" => elements(Some(Ascii), single(SingleByte::Thai), true),
        "ISO_IR 13" => elements(Some(JisRoman), Some(G1Set::JisKatakana), false),
        "ISO 2022 IR 13" => elements(Some(JisRoman), Some(G1Set::JisKatakana), true),
        "ISO 2022 IR 87" => elements(Some(JisX0208), None, true),
        "ISO 2022 IR 159" => elements(Some(JisX0212), None, true),
        "ISO 2022 IR 149" => elements(None, Some(G1Set::KsX1001), true),
        "ISO 2022 IR 58" => elements(None, Some(G1Set::Gb2312), true),
        "ISO_IR 192" => Some(TermMeaning::Whole(Whole::Utf8)),
        "GB18030" => Some(TermMeaning::Whole(Whole::Gb18030)),
        "GBK" => Some(TermMeaning::Whole(Whole::Gbk)),
        _ => None,
    }
}

/// The ISO 2022 state: which sets are designated to G0 and G1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct State {
    pub(crate) g0: G0Set,
    pub(crate) g1: Option<G1Set>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Repr {
    Whole(Whole),
    Iso2022 {
        /// Sets active at the start of a value and after every delimiter
        /// (those of value 1, PS3.5 §6.1.2.5.3).
        initial: State,
        /// Every element declared, in the order of (0008,0005): the encoder
        /// tries them in this order.
        elements: Vec<Element>,
        /// Whether escape sequences may be written (an "ISO 2022" term or more
        /// than one value). Without it only the initial sets can be used.
        extensions: bool,
    },
}

/// A parsed Specific Character Set (0008,0005).
///
/// Build it with [`SpecificCharacterSet::parse`]; [`Default`] is the default
/// character repertoire (ASCII). `Display` gives back the normalised
/// (0008,0005) value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpecificCharacterSet {
    /// The values as declared (trimmed; value 1 may be empty).
    values: Vec<String>,
    pub(crate) repr: Repr,
}

impl Default for SpecificCharacterSet {
    fn default() -> Self {
        SpecificCharacterSet {
            values: Vec::new(),
            repr: Repr::Iso2022 {
                initial: State {
                    g0: G0Set::Ascii,
                    g1: None,
                },
                elements: vec![Element::G0(G0Set::Ascii)],
                extensions: false,
            },
        }
    }
}

impl fmt::Display for SpecificCharacterSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.values.join("\\"))
    }
}

impl SpecificCharacterSet {
    /// Parse the value of Specific Character Set (0008,0005).
    ///
    /// `raw` is the whole value with its values separated by `\`, as it
    /// appears in the data set (e.g. `\ISO 2022 IR 87` or
    /// `ISO 2022 IR 13\ISO 2022 IR 87`). Padding spaces and NULs around each
    /// value are ignored. An empty value, or an empty value 1, means the
    /// default repertoire.
    ///
    /// Supported defined terms: `ISO_IR 6` / `ISO 2022 IR 6` (default),
    /// `ISO_IR 100/101/109/110/126/127/138/144/148/166/203` and their
    /// `ISO 2022 IR …` forms, `ISO_IR 13` / `ISO 2022 IR 13`,
    /// `ISO 2022 IR 87`, `ISO 2022 IR 159`, `ISO 2022 IR 149`,
    /// `ISO 2022 IR 58`, `ISO_IR 192` (UTF-8), `GB18030`, `GBK`.
    ///
    /// Leniencies, each matching what real writers produce:
    /// - a single-byte `ISO_IR …` term in a multi-valued set is read as its
    ///   `ISO 2022 IR …` form;
    /// - when value 1 is `ISO 2022 IR 87` or `159` (a two-byte set cannot
    ///   sensibly be the initial G0), the initial G0 is ASCII.
    ///
    /// # Errors
    /// [`CharsetError::UnknownTerm`] naming the first term that is not a
    /// defined term; [`CharsetError::InvalidCombination`] when `ISO_IR 192`,
    /// `GB18030` or `GBK` is combined with other terms (they do not allow
    /// code extensions).
    pub fn parse(raw: &str) -> Result<Self, CharsetError> {
        let values: Vec<String> = raw
            .split('\\')
            .map(|v| v.trim_matches(|c| c == ' ' || c == '\0').to_string())
            .collect();
        if values.iter().all(|v| v.is_empty()) {
            return Ok(SpecificCharacterSet::default());
        }
        let multi = values.len() > 1;

        let mut meanings = Vec::with_capacity(values.len());
        for v in &values {
            if v.is_empty() {
                // Only value 1 may be empty (default repertoire); an empty
                // later value adds nothing, so we skip it rather than fail.
                meanings.push(None);
                continue;
            }
            let meaning = lookup_term(v).ok_or_else(|| CharsetError::UnknownTerm(v.clone()))?;
            if let TermMeaning::Whole(w) = meaning {
                if multi {
                    return Err(CharsetError::InvalidCombination {
                        term: v.clone(),
                        value: raw.to_string(),
                    });
                }
                return Ok(SpecificCharacterSet {
                    values,
                    repr: Repr::Whole(w),
                });
            }
            meanings.push(Some(meaning));
        }

        // Initial state from value 1 (default repertoire when empty).
        let mut initial = State {
            g0: G0Set::Ascii,
            g1: None,
        };
        if let Some(Some(TermMeaning::Elements { g0, g1, .. })) = meanings.first() {
            if let Some(g0) = g0 {
                if !g0.is_two_byte() {
                    initial.g0 = *g0;
                }
            }
            initial.g1 = *g1;
        }

        let mut elements = vec![Element::G0(initial.g0)];
        if let Some(g1) = initial.g1 {
            elements.push(Element::G1(g1));
        }
        let mut extensions = multi;
        for m in meanings.iter().flatten() {
            if let TermMeaning::Elements { g0, g1, extension } = m {
                extensions |= *extension;
                for e in [g0.map(Element::G0), g1.map(Element::G1)]
                    .into_iter()
                    .flatten()
                {
                    if !elements.contains(&e) {
                        elements.push(e);
                    }
                }
            }
        }

        Ok(SpecificCharacterSet {
            values,
            repr: Repr::Iso2022 {
                initial,
                elements,
                extensions,
            },
        })
    }

    /// Whether this set allows ISO 2022 escape sequences (code extensions).
    pub fn uses_code_extensions(&self) -> bool {
        matches!(
            self.repr,
            Repr::Iso2022 {
                extensions: true,
                ..
            }
        )
    }
}
