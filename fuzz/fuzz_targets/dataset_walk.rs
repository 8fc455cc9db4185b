//! The structural walk of a received data set (what decides 0000 or A900), in each of
//! the three encodings.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use readgate::dicom::dataset::{walk, Encoding};

fuzz_target!(|data: &[u8]| {
    let Some((&choice, bytes)) = data.split_first() else {
        return;
    };
    let encoding = match choice % 3 {
        0 => Encoding::ImplicitLittle,
        1 => Encoding::ExplicitLittle,
        _ => Encoding::ExplicitBig,
    };
    let _ = walk(Cursor::new(bytes), encoding);
});
