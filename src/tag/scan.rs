//! The first pass: where every top-level element of the data set starts and ends, and
//! the few values the tagging depends on. Only element headers are parsed; values are
//! skipped (seeked over) except those few. Undefined-length values (sequences,
//! encapsulated pixel data, UN) are walked item by item to find their end, skipping every
//! defined-length item or element inside them whole.

use crate::dicom::Filled;
use std::collections::HashMap;
use std::io;

use super::source::Source;
use super::TagError;

pub(crate) const ITEM: u32 = 0xFFFE_E000;
pub(crate) const ITEM_END: u32 = 0xFFFE_E00D;
pub(crate) const SEQUENCE_END: u32 = 0xFFFE_E0DD;
pub(crate) const UNDEFINED: u32 = 0xFFFF_FFFF;

/// Nesting deeper than this is malformed (protects the stack), as in `dicom::dataset`.
const MAX_DEPTH: usize = 64;
/// The element list is capped as receiving caps it (a hostile data set of millions of
/// empty elements must not grow it without bound).
pub(crate) use crate::dicom::dataset::MAX_TOP_LEVEL_ELEMENTS;
/// Largest value read for a looked-at element; a longer one is noted as present but
/// not read (no text readgate copies can be that long).
pub(crate) const MAX_READ_VALUE: u32 = 64 * 1024;

pub(crate) const REQUEST_ATTRIBUTES_SEQUENCE: u32 = 0x0040_0275;
pub(crate) const REASON_FOR_THE_REQUESTED_PROCEDURE: u32 = 0x0040_1002;

/// How element headers are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Syntax {
    pub explicit: bool,
    pub big: bool,
}

/// One top-level element: its byte range in the data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopElement {
    pub tag: u32,
    /// VR as written (explicit VR syntaxes only).
    pub vr: Option<[u8; 2]>,
    pub start: u64,
    pub value_start: u64,
    pub end: u64,
    pub undefined_length: bool,
}

impl TopElement {
    pub fn group(&self) -> u16 {
        (self.tag >> 16) as u16
    }
    pub fn value_len(&self) -> u64 {
        self.end - self.value_start
    }
}

/// A looked-at value: its bytes, or `None` when it was too long to read.
pub(crate) type Value = Option<Vec<u8>>;

/// What the first pass learnt.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub elements: Vec<TopElement>,
    /// Values of the top-level elements `wanted` asked for.
    pub values: HashMap<u32, Value>,
    /// Whether an item of Request Attributes Sequence (0040,0275) has a non-empty
    /// Reason for the Requested Procedure (0040,1002): the usual home of the exam purpose.
    pub nested_exam_purpose: bool,
}

/// Value text that is empty once DICOM padding (spaces, NULs) is removed.
pub(crate) fn is_blank(value: &[u8]) -> bool {
    value.iter().all(|&b| b == b' ' || b == 0)
}

pub(crate) struct Scanner<'a, S> {
    src: &'a mut S,
    syntax: Syntax,
}

impl<'a, S: Source> Scanner<'a, S> {
    pub fn new(src: &'a mut S, syntax: Syntax) -> Self {
        Scanner { src, syntax }
    }

    fn pos(&self) -> u64 {
        self.src.position()
    }

    fn truncated(&self, context: &str) -> TagError {
        TagError::Truncated {
            offset: self.pos(),
            context: context.to_string(),
        }
    }

    fn malformed(&self, reason: impl Into<String>) -> TagError {
        TagError::Malformed {
            offset: self.pos(),
            reason: reason.into(),
        }
    }

    fn read_error(&self, e: io::Error, context: &str) -> TagError {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => self.truncated(context),
            // The inflater reports corrupt deflate data this way.
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => {
                self.malformed(format!("{context}: {e}"))
            }
            _ => TagError::Io(e),
        }
    }

    /// Fills `buf`; `Ok(false)` at a clean end of input before its first byte.
    fn read_or_end(&mut self, buf: &mut [u8], context: &str) -> Result<bool, TagError> {
        match crate::dicom::fill(&mut self.src, buf) {
            Ok(Filled::All) => Ok(true),
            Ok(Filled::Nothing) => Ok(false),
            Ok(Filled::Part) => Err(self.truncated(context)),
            Err(e) => Err(self.read_error(e, context)),
        }
    }

    fn read(&mut self, buf: &mut [u8], context: &str) -> Result<(), TagError> {
        if buf.is_empty() || self.read_or_end(buf, context)? {
            Ok(())
        } else {
            Err(self.truncated(context))
        }
    }

    fn skip(&mut self, n: u64, context: &str) -> Result<(), TagError> {
        let done = self.src.skip(n).map_err(|e| self.read_error(e, context))?;
        if done < n {
            return Err(self.truncated(context));
        }
        Ok(())
    }

    fn u16(&self, b: [u8; 2]) -> u16 {
        if self.syntax.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32(&self, b: [u8; 4]) -> u32 {
        if self.syntax.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    fn tag_from(&self, b: [u8; 4]) -> u32 {
        let group = self.u16([b[0], b[1]]) as u32;
        let element = self.u16([b[2], b[3]]) as u32;
        (group << 16) | element
    }

    fn need_tag(&mut self, context: &str) -> Result<u32, TagError> {
        let mut b = [0u8; 4];
        self.read(&mut b, context)?;
        Ok(self.tag_from(b))
    }

    fn need_u32(&mut self, context: &str) -> Result<u32, TagError> {
        let mut b = [0u8; 4];
        self.read(&mut b, context)?;
        Ok(self.u32(b))
    }

    /// VR (explicit syntaxes) and value length, after the tag.
    fn vr_and_length(&mut self, tag: u32) -> Result<(Option<[u8; 2]>, u32), TagError> {
        if !self.syntax.explicit {
            return Ok((None, self.need_u32("element length")?));
        }
        let mut vr = [0u8; 2];
        self.read(&mut vr, "VR")?;
        crate::dicom::check_vr(&vr, tag).map_err(|m| self.malformed(m))?;
        if has_long_length(&vr) {
            let mut reserved = [0u8; 2];
            self.read(&mut reserved, "VR")?;
            Ok((Some(vr), self.need_u32("element length")?))
        } else {
            let mut l = [0u8; 2];
            self.read(&mut l, "element length")?;
            Ok((Some(vr), self.u16(l) as u32))
        }
    }

    /// Runs `f` with the items of an undefined-length UN, which PS3.5 §6.2.2 encodes as
    /// implicit VR little endian whatever the transfer syntax.
    fn with_syntax<T>(
        &mut self,
        syntax: Syntax,
        f: impl FnOnce(&mut Self) -> Result<T, TagError>,
    ) -> Result<T, TagError> {
        let saved = self.syntax;
        self.syntax = syntax;
        let r = f(self);
        self.syntax = saved;
        r
    }

    /// The whole top level. `wanted(tag)` says which values to read.
    pub fn scan(mut self, wanted: impl Fn(u32) -> bool) -> Result<Scan, TagError> {
        let mut scan = Scan::default();
        loop {
            let start = self.pos();
            let mut b = [0u8; 4];
            if self.src.exhausted() || !self.read_or_end(&mut b, "element tag")? {
                break;
            }
            let tag = self.tag_from(b);
            if matches!(tag, ITEM | ITEM_END | SEQUENCE_END) {
                return Err(self.malformed(format!(
                    "unexpected delimiter ({:08X}) at the top level",
                    tag
                )));
            }
            if scan.elements.len() >= MAX_TOP_LEVEL_ELEMENTS {
                return Err(TagError::Unsupported(format!(
                    "more than {MAX_TOP_LEVEL_ELEMENTS} top-level elements"
                )));
            }
            let (vr, len) = self.vr_and_length(tag)?;
            let value_start = self.pos();
            let context = format!("({:04X},{:04X})", tag >> 16, tag & 0xFFFF);
            let probe_request = tag == REQUEST_ATTRIBUTES_SEQUENCE
                && matches!(vr, None | Some([b'S', b'Q']) | Some([b'U', b'N']));
            let un = vr == Some(*b"UN");
            if len == UNDEFINED {
                let mut found = false;
                let probe = probe_request.then_some(&mut found);
                self.undefined_value(1, un, probe)?;
                scan.nested_exam_purpose |= found;
            } else if probe_request {
                let end = value_start + u64::from(len);
                let mut found = false;
                let inner = if un {
                    Syntax {
                        explicit: false,
                        big: false,
                    }
                } else {
                    self.syntax
                };
                self.with_syntax(inner, |s| s.defined_items(end, 1, Some(&mut found)))?;
                scan.nested_exam_purpose |= found;
            } else if wanted(tag) {
                if len <= MAX_READ_VALUE {
                    let mut value = vec![0u8; len as usize];
                    self.read(&mut value, &context)?;
                    scan.values.insert(tag, Some(value));
                } else {
                    self.skip(u64::from(len), &context)?;
                    scan.values.insert(tag, None);
                }
            } else {
                self.skip(u64::from(len), &context)?;
            }
            scan.elements.push(TopElement {
                tag,
                vr,
                start,
                value_start,
                end: self.pos(),
                undefined_length: len == UNDEFINED,
            });
        }
        Ok(scan)
    }

    /// After the header of an undefined-length element: items up to and including the
    /// sequence delimiter. With `probe`, the items are data sets whose (0040,1002) is
    /// looked at; otherwise defined-length items (pixel data fragments among them) are
    /// skipped whole.
    fn undefined_value(
        &mut self,
        depth: usize,
        implicit_items: bool,
        mut probe: Option<&mut bool>,
    ) -> Result<(), TagError> {
        if depth > MAX_DEPTH {
            return Err(self.malformed("sequences nested too deeply"));
        }
        let item_syntax = if implicit_items {
            Syntax {
                explicit: false,
                big: false,
            }
        } else {
            self.syntax
        };
        loop {
            let tag = self.need_tag("sequence")?;
            let len = self.need_u32("item length")?;
            match tag {
                SEQUENCE_END => return Ok(()),
                ITEM if len == UNDEFINED => self.with_syntax(item_syntax, |s| {
                    s.item_elements(None, depth, probe.as_deref_mut())
                })?,
                ITEM if probe.is_some() => {
                    let end = self.pos() + u64::from(len);
                    self.with_syntax(item_syntax, |s| {
                        s.item_elements(Some(end), depth, probe.as_deref_mut())
                    })?
                }
                ITEM => self.skip(u64::from(len), "sequence item")?,
                other => {
                    return Err(self.malformed(format!("expected an item, found ({other:08X})")))
                }
            }
        }
    }

    /// The items of a defined-length sequence value ending at `end`.
    fn defined_items(
        &mut self,
        end: u64,
        depth: usize,
        mut probe: Option<&mut bool>,
    ) -> Result<(), TagError> {
        while self.pos() < end {
            let tag = self.need_tag("sequence")?;
            let len = self.need_u32("item length")?;
            if tag != ITEM {
                return Err(self.malformed(format!("expected an item, found ({tag:08X})")));
            }
            let item_end = (len != UNDEFINED).then(|| self.pos() + u64::from(len));
            self.item_elements(item_end, depth, probe.as_deref_mut())?;
        }
        if self.pos() != end {
            return Err(self.malformed("sequence length does not end on an item"));
        }
        Ok(())
    }

    /// The elements of one item, up to `end` (defined length) or the item delimiter.
    /// `probe`: look at (0040,1002) among them (not deeper).
    fn item_elements(
        &mut self,
        end: Option<u64>,
        depth: usize,
        mut probe: Option<&mut bool>,
    ) -> Result<(), TagError> {
        if depth > MAX_DEPTH {
            return Err(self.malformed("sequences nested too deeply"));
        }
        loop {
            if let Some(end) = end {
                if self.pos() == end {
                    return Ok(());
                }
                if self.pos() > end {
                    return Err(self.malformed("element runs past the end of its item"));
                }
            }
            let tag = self.need_tag("sequence item")?;
            if tag == ITEM_END {
                self.need_u32("item delimiter")?;
                if end.is_some() {
                    return Err(self.malformed("item delimiter in a defined-length item"));
                }
                return Ok(());
            }
            if tag == ITEM || tag == SEQUENCE_END {
                return Err(self.malformed(format!("unexpected delimiter ({tag:08X})")));
            }
            let (vr, len) = self.vr_and_length(tag)?;
            if len == UNDEFINED {
                self.undefined_value(depth + 1, vr == Some(*b"UN"), None)?;
                continue;
            }
            match probe.as_deref_mut() {
                Some(found) if tag == REASON_FOR_THE_REQUESTED_PROCEDURE => {
                    if len <= 1024 {
                        let mut value = vec![0u8; len as usize];
                        self.read(&mut value, "(0040,1002)")?;
                        *found |= !is_blank(&value);
                    } else {
                        // Far longer than an LO; certainly not empty.
                        self.skip(u64::from(len), "(0040,1002)")?;
                        *found = true;
                    }
                }
                _ => self.skip(u64::from(len), "element value")?,
            }
        }
    }
}

pub(crate) use crate::dicom::has_long_length;
