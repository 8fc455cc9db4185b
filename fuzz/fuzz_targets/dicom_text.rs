//! DICOM text with ISO 2022 code extensions: decoding under every Japanese, Korean and
//! Chinese Specific Character Set readgate reads, and encoding what decoded back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use readgate::dicom::text::{self, SpecificCharacterSet, TextKind};

const CHARSETS: [&str; 10] = [
    "",
    "\\ISO 2022 IR 87",
    "ISO 2022 IR 13\\ISO 2022 IR 87",
    "\\ISO 2022 IR 87\\ISO 2022 IR 159",
    "\\ISO 2022 IR 149",
    "ISO 2022 IR 100\\ISO 2022 IR 126",
    "ISO_IR 192",
    "GB18030",
    "ISO_IR 13",
    "\\ISO 2022 IR 58",
];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, bytes)) = data.split_first() else {
        return;
    };
    let Ok(cs) = SpecificCharacterSet::parse(CHARSETS[usize::from(choice) % CHARSETS.len()]) else {
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
