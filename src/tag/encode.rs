//! Encoding of the few elements readgate writes, in the data set's own syntax.

use super::scan::{has_long_length, Syntax, ITEM};

/// Writes elements, items and sequences in one syntax (explicit/implicit, byte order).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Encoder {
    pub syntax: Syntax,
}

impl Encoder {
    fn u16(&self, v: u16, out: &mut Vec<u8>) {
        if self.syntax.big {
            out.extend_from_slice(&v.to_be_bytes());
        } else {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn u32(&self, v: u32, out: &mut Vec<u8>) {
        if self.syntax.big {
            out.extend_from_slice(&v.to_be_bytes());
        } else {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn tag(&self, tag: u32, out: &mut Vec<u8>) {
        self.u16((tag >> 16) as u16, out);
        self.u16((tag & 0xFFFF) as u16, out);
    }

    /// The header of an element with a value of `len` bytes.
    ///
    /// Callers keep short-length VRs under 64 KiB (their values are validated first);
    /// the length is clamped rather than wrapped so a bug can never desynchronise the
    /// output.
    pub fn header(&self, tag: u32, vr: &[u8; 2], len: u32, out: &mut Vec<u8>) {
        self.tag(tag, out);
        if !self.syntax.explicit {
            self.u32(len, out);
        } else if has_long_length(vr) {
            out.extend_from_slice(vr);
            out.extend_from_slice(&[0, 0]);
            self.u32(len, out);
        } else {
            out.extend_from_slice(vr);
            self.u16(u16::try_from(len).unwrap_or(u16::MAX), out);
        }
    }

    /// A whole element; `value` must already have even length.
    pub fn element(&self, tag: u32, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + value.len());
        self.header(tag, vr, value.len() as u32, &mut out);
        out.extend_from_slice(value);
        out
    }

    /// A defined-length item holding `content` (encoded elements).
    pub fn item(&self, content: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + content.len());
        self.tag(ITEM, &mut out);
        self.u32(content.len() as u32, &mut out);
        out.extend_from_slice(content);
        out
    }

    /// A defined-length sequence of defined-length items.
    pub fn sequence(&self, tag: u32, items: &[Vec<u8>]) -> Vec<u8> {
        let value: Vec<u8> = items.iter().flat_map(|c| self.item(c)).collect();
        self.element(tag, b"SQ", &value)
    }

    /// The value of a 32-bit length field (group length) in this byte order.
    pub fn ul(&self, v: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(4);
        self.u32(v, &mut out);
        out
    }

    /// Length field of a long-form header, for rewriting a defined-length sequence.
    pub fn long_header(&self, tag: u32, vr: Option<[u8; 2]>, len: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(12);
        self.header(tag, &vr.unwrap_or(*b"SQ"), len, &mut out);
        out
    }
}

/// Pads text (and DT, CS) to even length with a space: after the final escape sequence,
/// where PS3.5 Annex H puts it.
pub(crate) fn pad_text(mut v: Vec<u8>) -> Vec<u8> {
    if v.len() % 2 == 1 {
        v.push(b' ');
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder(explicit: bool, big: bool) -> Encoder {
        Encoder {
            syntax: Syntax { explicit, big },
        }
    }

    #[test]
    fn headers_follow_the_syntax() {
        let le = encoder(true, false);
        assert_eq!(
            le.element(0x0099_0010, b"LO", b"AB"),
            [0x99, 0, 0x10, 0, b'L', b'O', 2, 0, b'A', b'B']
        );
        let be = encoder(true, true);
        assert_eq!(
            be.element(0x0099_0010, b"LO", b"AB"),
            [0, 0x99, 0, 0x10, b'L', b'O', 0, 2, b'A', b'B']
        );
        let implicit = encoder(false, false);
        assert_eq!(
            implicit.element(0x0099_0010, b"LO", b"AB"),
            [0x99, 0, 0x10, 0, 2, 0, 0, 0, b'A', b'B']
        );
        assert_eq!(
            le.sequence(0x0400_0561, &[vec![]]),
            [
                0x00, 0x04, 0x61, 0x05, b'S', b'Q', 0, 0, 8, 0, 0, 0, 0xFE, 0xFF, 0x00, 0xE0, 0, 0,
                0, 0
            ]
        );
    }
}
