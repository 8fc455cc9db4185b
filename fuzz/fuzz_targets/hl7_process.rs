//! HL7 from an MLLP frame to its ACK: charset detection and decoding (ISO-2022-JP,
//! Shift_JIS, UTF-8), the structure bounds, parsing, extraction of orders, reports and
//! merges, and the ACK. The first byte picks the listener's default charset.
#![no_main]

use libfuzzer_sys::fuzz_target;
use readgate::hl7::{self, Charset};

fuzz_target!(|data: &[u8]| {
    let Some((&choice, frame)) = data.split_first() else {
        return;
    };
    let charsets = [
        Charset::Ascii,
        Charset::Utf8,
        Charset::Iso2022Jp,
        Charset::ShiftJis,
    ];
    let config = hl7::Config {
        default_charset: charsets[usize::from(choice) % charsets.len()],
        accept_unsupported_types: choice & 0x80 != 0,
        ..hl7::Config::default()
    };
    let outcome = hl7::process(frame, &config, "FUZZ", "20240601120000+0900");
    if let Err(hl7::Error::Parse(hl7::ParseError::Panicked(m))) = &outcome.result {
        panic!("contained panic: {m}");
    }
    assert!(outcome.ack.starts_with("MSH"));
    assert!(outcome.result.is_ok() || outcome.ack_code != hl7::AckCode::Accept);
});
