//! What HTTP clients send readgate before anything is checked: query strings (the
//! API's percent-decoding) and the JSON body of a read event from a reading system.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = readgate::web::api::query_pairs(Some(text));
    }
    let _ = readgate::web::read_events::validate(data, 1_717_200_000_000);
});
