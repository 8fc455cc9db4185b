//! DICOM text with ISO 2022 code extensions: decoding under every Japanese, Korean and
//! Chinese Specific Character Set readgate reads, and encoding what decoded back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use readgate::dicom::text::{self, SpecificCharacterSet, TextKind};

fuzz_target!(|data: &[u8]| {
    let Some((&choice, bytes)) = data.split_first() else {
        return;
    };
    let Ok(cs) = SpecificCharacterSet::parse(
        text::CHARSET_EXAMPLES[usize::from(choice) % text::CHARSET_EXAMPLES.len()],
    ) else {
        return;
    };
    let kind = if choice & 0x80 != 0 {
        TextKind::PersonName
    } else {
        TextKind::Text
    };
    if let Ok(decoded) = text::decode(bytes, &cs, kind) {
        // Whatever decodes is either encodable again or named as unrepresentable.
        let _ = text::encode(&decoded, &cs, kind);
    }
});
