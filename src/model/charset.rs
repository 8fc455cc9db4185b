//! The character sets of HL7 v2 messages (MSH-18) and of `[hl7] default_charset`. The
//! decoding and encoding live with the HL7 parser (`hl7::charset`); the names are here so
//! the configuration can speak of them without importing the parser.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The character sets readgate decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Charset {
    /// 7-bit ASCII (ISO IR6). Bytes >= 0x80 and ESC are errors.
    Ascii,
    /// UTF-8 (a leading BOM is dropped).
    Utf8,
    /// ISO-2022-JP (JIS X 0208 via ISO 2022 escapes, as JAHIS messages send it).
    #[serde(alias = "iso2022jp", alias = "iso-2022-jp")]
    Iso2022Jp,
    /// Shift_JIS as Windows systems write it (CP932 / Windows-31J, which includes the
    /// NEC and IBM extensions).
    #[serde(
        alias = "shiftjis",
        alias = "shift-jis",
        alias = "sjis",
        alias = "cp932"
    )]
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
