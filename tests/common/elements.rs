//! An element splitter independent of readgate's, for checking what readgate wrote.
#![allow(dead_code)]

use std::io::Read;

const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";

#[derive(Debug, Clone, Copy)]
pub struct Syntax {
    pub explicit: bool,
    pub big: bool,
}

pub fn syntax(ts: &str) -> Syntax {
    Syntax {
        explicit: ts != IMPLICIT_LE,
        big: ts == EXPLICIT_BE,
    }
}

#[derive(Debug, Clone, Copy)]
pub struct El {
    pub tag: u32,
    pub start: usize,
    pub value_start: usize,
    pub end: usize,
}

fn rd16(b: &[u8], at: usize, big: bool) -> u16 {
    let x = [b[at], b[at + 1]];
    if big {
        u16::from_be_bytes(x)
    } else {
        u16::from_le_bytes(x)
    }
}

fn rd32(b: &[u8], at: usize, big: bool) -> u32 {
    let x = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big {
        u32::from_be_bytes(x)
    } else {
        u32::from_le_bytes(x)
    }
}

/// One element header at `at`: (tag, VR, value start, length).
fn header(b: &[u8], at: usize, s: Syntax) -> (u32, [u8; 2], usize, u32) {
    let tag = (u32::from(rd16(b, at, s.big)) << 16) | u32::from(rd16(b, at + 2, s.big));
    if tag >> 16 == 0xFFFE || !s.explicit {
        return (tag, *b"--", at + 8, rd32(b, at + 4, s.big));
    }
    let vr = [b[at + 4], b[at + 5]];
    let long = [
        "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV",
    ]
    .iter()
    .any(|v| v.as_bytes() == vr);
    if long {
        (tag, vr, at + 12, rd32(b, at + 8, s.big))
    } else {
        (tag, vr, at + 8, u32::from(rd16(b, at + 6, s.big)))
    }
}

/// End of the value of an element of VR `vr` starting at `value`, `len` bytes long or of
/// undefined length (0xFFFFFFFF); an undefined-length UN is implicit VR LE inside.
fn value_end(b: &[u8], vr: [u8; 2], value: usize, len: u32, s: Syntax) -> usize {
    if len != 0xFFFF_FFFF {
        return value + len as usize;
    }
    let inner = if &vr == b"UN" {
        Syntax {
            explicit: false,
            big: false,
        }
    } else {
        s
    };
    undefined_end(b, value, inner)
}

/// End of an undefined-length value starting at `at` (items up to the delimiter).
fn undefined_end(b: &[u8], mut at: usize, s: Syntax) -> usize {
    loop {
        let (tag, _, value, len) = header(b, at, s);
        match (tag, len) {
            (0xFFFE_E0DD, _) => return value,
            (0xFFFE_E000, 0xFFFF_FFFF) => {
                // elements until the item delimiter
                at = value;
                loop {
                    let (tag, vr, value, len) = header(b, at, s);
                    if tag == 0xFFFE_E00D {
                        at = value;
                        break;
                    }
                    at = value_end(b, vr, value, len, s);
                }
            }
            (0xFFFE_E000, len) => at = value + len as usize,
            _ => panic!("splitter: unexpected ({tag:08X}) at {at}"),
        }
    }
}

pub fn split(ds: &[u8], s: Syntax) -> Vec<El> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < ds.len() {
        let (tag, vr, value, len) = header(ds, at, s);
        let end = value_end(ds, vr, value, len, s);
        out.push(El {
            tag,
            start: at,
            value_start: value,
            end,
        });
        at = end;
    }
    assert_eq!(at, ds.len(), "splitter overran the data set");
    out
}

pub fn inflate(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(b)
        .read_to_end(&mut out)
        .expect("inflate");
    out
}

/// Tags readgate's tagging may add or change: its private group, Original Attributes,
/// Specific Character Set, the four context attributes copied from the order, and group
/// lengths. Everything else must reach the destination byte for byte.
pub fn may_change(tag: u32) -> bool {
    tag >> 16 == 0x0099
        || tag & 0xFFFF == 0
        || matches!(
            tag,
            0x0400_0561 | 0x0008_0005 | 0x0040_1002 | 0x0010_21B0 | 0x0032_1032 | 0x0040_2010
        )
}

/// The (tag, bytes) of every top-level element readgate must not change.
pub fn unchanged_elements(ds: &[u8], ts: &str) -> Vec<(u32, Vec<u8>)> {
    let plain;
    let (ds, ts) = if ts == "1.2.840.10008.1.2.1.99" {
        plain = inflate(ds);
        (&plain[..], "1.2.840.10008.1.2.1")
    } else {
        (ds, ts)
    };
    split(ds, syntax(ts))
        .into_iter()
        .filter(|e| !may_change(e.tag))
        .map(|e| (e.tag, ds[e.start..e.end].to_vec()))
        .collect()
}
