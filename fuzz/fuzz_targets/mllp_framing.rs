//! MLLP framing: bytes cut into the pieces the input describes, through the decoder
//! with a small frame limit. Every frame it yields fits the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use readgate::hl7::mllp::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, wire)) = data.split_first() else {
        return;
    };
    let limit = 64 + usize::from(cut) * 8;
    let mut decoder = Decoder::new(limit);
    let piece = 1 + usize::from(cut % 37);
    for chunk in wire.chunks(piece) {
        decoder.push(chunk);
        while let Some(item) = decoder.next_frame() {
            if let Ok(frame) = item {
                assert!(frame.len() <= limit);
            }
        }
    }
    decoder.finish();
    while decoder.next_frame().is_some() {}
});
