//! A one-pass walk over a stored data set: checks that its element structure is complete
//! (a truncated instance must never be acknowledged) and picks out the attributes readgate
//! indexes and the clinical context a reader needs, without loading pixel data.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Seek};

/// The attributes the walk reads, as its `u32` tags (`group << 16 | element`, the form
/// they have on the wire). Numbers come from `dicom-dictionary-std`; the names are the
/// ones readgate's code has always used (some shorter than the standard keyword).
pub mod tags {
    use dicom_core::Tag;
    use dicom_dictionary_std::tags as std;

    /// A dictionary tag as the walk's `u32`.
    pub const fn u32_of(t: Tag) -> u32 {
        ((t.0 as u32) << 16) | t.1 as u32
    }

    pub const SPECIFIC_CHARACTER_SET: u32 = u32_of(std::SPECIFIC_CHARACTER_SET);
    pub const SOP_CLASS_UID: u32 = u32_of(std::SOP_CLASS_UID);
    pub const SOP_INSTANCE_UID: u32 = u32_of(std::SOP_INSTANCE_UID);
    pub const STUDY_DATE: u32 = u32_of(std::STUDY_DATE);
    pub const ACCESSION_NUMBER: u32 = u32_of(std::ACCESSION_NUMBER);
    pub const MODALITY: u32 = u32_of(std::MODALITY);
    pub const PATIENT_ID: u32 = u32_of(std::PATIENT_ID);
    pub const STUDY_INSTANCE_UID: u32 = u32_of(std::STUDY_INSTANCE_UID);
    pub const SERIES_INSTANCE_UID: u32 = u32_of(std::SERIES_INSTANCE_UID);
    pub const STUDY_TIME: u32 = u32_of(std::STUDY_TIME);
    pub const REFERRING_PHYSICIAN_NAME: u32 = u32_of(std::REFERRING_PHYSICIAN_NAME);
    pub const REFERRING_PHYSICIAN_PHONE: u32 = u32_of(std::REFERRING_PHYSICIAN_TELEPHONE_NUMBERS);
    pub const STUDY_DESCRIPTION: u32 = u32_of(std::STUDY_DESCRIPTION);
    pub const ADMITTING_DIAGNOSES_DESCRIPTION: u32 = u32_of(std::ADMITTING_DIAGNOSES_DESCRIPTION);
    pub const CODE_VALUE: u32 = u32_of(std::CODE_VALUE);
    pub const CODING_SCHEME: u32 = u32_of(std::CODING_SCHEME_DESIGNATOR);
    pub const CODE_MEANING: u32 = u32_of(std::CODE_MEANING);
    pub const PATIENT_NAME: u32 = u32_of(std::PATIENT_NAME);
    pub const ISSUER_OF_PATIENT_ID: u32 = u32_of(std::ISSUER_OF_PATIENT_ID);
    pub const ADDITIONAL_PATIENT_HISTORY: u32 = u32_of(std::ADDITIONAL_PATIENT_HISTORY);
    pub const CONTRAST_BOLUS_AGENT: u32 = u32_of(std::CONTRAST_BOLUS_AGENT);
    #[allow(deprecated)] // retired in PS3.6, still written by modalities: clinical context
    pub const REASON_FOR_STUDY: u32 = u32_of(std::REASON_FOR_STUDY);
    pub const REQUESTING_PHYSICIAN: u32 = u32_of(std::REQUESTING_PHYSICIAN);
    pub const REQUESTED_PROCEDURE_DESCRIPTION: u32 = u32_of(std::REQUESTED_PROCEDURE_DESCRIPTION);
    pub const REQUESTED_PROCEDURE_CODE_SEQUENCE: u32 =
        u32_of(std::REQUESTED_PROCEDURE_CODE_SEQUENCE);
    pub const REQUEST_ATTRIBUTES_SEQUENCE: u32 = u32_of(std::REQUEST_ATTRIBUTES_SEQUENCE);
    pub const REQUESTED_PROCEDURE_ID: u32 = u32_of(std::REQUESTED_PROCEDURE_ID);
    pub const REASON_FOR_REQUESTED_PROCEDURE: u32 = u32_of(std::REASON_FOR_THE_REQUESTED_PROCEDURE);
    pub const REASON_FOR_REQUESTED_PROCEDURE_CODES: u32 =
        u32_of(std::REASON_FOR_REQUESTED_PROCEDURE_CODE_SEQUENCE);
    pub const ORDER_CALLBACK_PHONE: u32 = u32_of(std::ORDER_CALLBACK_PHONE_NUMBER);
    pub const PLACER_ORDER_NUMBER: u32 = u32_of(std::PLACER_ORDER_NUMBER_IMAGING_SERVICE_REQUEST);
    pub const FILLER_ORDER_NUMBER: u32 = u32_of(std::FILLER_ORDER_NUMBER_IMAGING_SERVICE_REQUEST);
    pub const SCHEDULED_PROCEDURE_STEP_ID: u32 = u32_of(std::SCHEDULED_PROCEDURE_STEP_ID);
    pub const BODY_PART_EXAMINED: u32 = u32_of(std::BODY_PART_EXAMINED);
    pub const PIXEL_DATA: u32 = u32_of(std::PIXEL_DATA);
}

/// Top-level attributes the walk keeps: what the index needs and the clinical context
/// (exam purpose, clinical information, requester and callback, contrast) checks need,
/// and the body part the priors are chosen by.
const TOP_LEVEL: [u32; 29] = [
    tags::SPECIFIC_CHARACTER_SET,
    tags::SOP_CLASS_UID,
    tags::SOP_INSTANCE_UID,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::ACCESSION_NUMBER,
    tags::MODALITY,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::REFERRING_PHYSICIAN_PHONE,
    tags::STUDY_DESCRIPTION,
    tags::ADMITTING_DIAGNOSES_DESCRIPTION,
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::ISSUER_OF_PATIENT_ID,
    tags::ADDITIONAL_PATIENT_HISTORY,
    tags::CONTRAST_BOLUS_AGENT,
    tags::STUDY_INSTANCE_UID,
    tags::SERIES_INSTANCE_UID,
    tags::REASON_FOR_STUDY,
    tags::REQUESTING_PHYSICIAN,
    tags::REQUESTED_PROCEDURE_DESCRIPTION,
    tags::REQUESTED_PROCEDURE_ID,
    tags::REASON_FOR_REQUESTED_PROCEDURE,
    tags::ORDER_CALLBACK_PHONE,
    tags::PLACER_ORDER_NUMBER,
    tags::FILLER_ORDER_NUMBER,
    tags::BODY_PART_EXAMINED,
    // sequences are never captured as values; listed for completeness of the context
    tags::REQUEST_ATTRIBUTES_SEQUENCE,
    tags::REQUESTED_PROCEDURE_CODE_SEQUENCE,
];

/// Attributes kept inside the items of these sequences (parent, attribute).
const NESTED: [(u32, u32); 9] = [
    (
        tags::REQUEST_ATTRIBUTES_SEQUENCE,
        tags::REASON_FOR_REQUESTED_PROCEDURE,
    ),
    (
        tags::REQUEST_ATTRIBUTES_SEQUENCE,
        tags::REQUESTED_PROCEDURE_ID,
    ),
    (
        tags::REQUEST_ATTRIBUTES_SEQUENCE,
        tags::REQUESTED_PROCEDURE_DESCRIPTION,
    ),
    (tags::REASON_FOR_REQUESTED_PROCEDURE_CODES, tags::CODE_VALUE),
    (
        tags::REASON_FOR_REQUESTED_PROCEDURE_CODES,
        tags::CODE_MEANING,
    ),
    (tags::REQUESTED_PROCEDURE_CODE_SEQUENCE, tags::CODE_VALUE),
    (tags::REQUESTED_PROCEDURE_CODE_SEQUENCE, tags::CODING_SCHEME),
    (tags::REQUESTED_PROCEDURE_CODE_SEQUENCE, tags::CODE_MEANING),
    (
        tags::REQUEST_ATTRIBUTES_SEQUENCE,
        tags::SCHEDULED_PROCEDURE_STEP_ID,
    ),
];

/// Kept for the index, not part of the clinical context.
const CONTEXT_SKIP: [u32; 5] = [
    tags::SPECIFIC_CHARACTER_SET,
    tags::SOP_CLASS_UID,
    tags::SOP_INSTANCE_UID,
    tags::SERIES_INSTANCE_UID,
    tags::STUDY_INSTANCE_UID,
];

/// Values longer than this are not kept (clinical text fits; pixel data never does).
const MAX_KEPT_VALUE: u32 = 16 * 1024;

// Item and delimitation tags (PS3.5 §7.5): dicom-dictionary-std's `tags` has no
// constants for them.
const ITEM: u32 = 0xFFFE_E000;
const ITEM_END: u32 = 0xFFFE_E00D;
const SEQUENCE_END: u32 = 0xFFFE_E0DD;
const UNDEFINED: u32 = 0xFFFF_FFFF;
/// Nesting deeper than this is treated as malformed (protects the stack).
const MAX_DEPTH: usize = 64;
/// A real instance has a few thousand top-level elements at most (the per-frame data of
/// a multi-frame image is nested in one sequence). Receiving refuses more, because the
/// tag rewrite, which keeps a list of them, would refuse the instance later: it would be
/// acknowledged yet never forwardable (finding L2).
pub const MAX_TOP_LEVEL_ELEMENTS: usize = 1 << 18;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("data set truncated at byte {offset} (inside {context})")]
    Truncated { offset: u64, context: String },
    #[error("data set malformed at byte {offset}: {reason}")]
    Malformed { offset: u64, reason: String },
    #[error("transfer syntax {0} is not supported")]
    UnsupportedTransferSyntax(String),
    #[error(transparent)]
    Io(io::Error),
}

/// How the data set's element headers are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    ImplicitLittle,
    ExplicitLittle,
    ExplicitBig,
    /// Deflated explicit little endian: the walk inflates as it reads.
    Deflated,
}

impl Encoding {
    pub fn for_transfer_syntax(ts: &str) -> Result<Encoding, DatasetError> {
        match ts {
            super::IMPLICIT_VR_LE => Ok(Encoding::ImplicitLittle),
            super::EXPLICIT_VR_BE => Ok(Encoding::ExplicitBig),
            super::DEFLATED_EXPLICIT_VR_LE => Ok(Encoding::Deflated),
            // Every other standard transfer syntax (native explicit LE and all the
            // encapsulated ones) encodes the data set as explicit VR little endian.
            t if t.starts_with("1.2.840.10008.1.2") => Ok(Encoding::ExplicitLittle),
            other => Err(DatasetError::UnsupportedTransferSyntax(other.to_string())),
        }
    }
}

/// Kept attributes of an instance: (parent sequence or 0, attribute) → raw value bytes.
#[derive(Debug, Clone, Default)]
pub struct Header {
    raw: HashMap<(u32, u32), Vec<u8>>,
    text: HashMap<u32, String>,
}

impl Header {
    /// A top-level value as ASCII-compatible text, padding removed (UIDs, codes, dates).
    pub fn get(&self, tag: u32) -> Option<&str> {
        self.text
            .get(&tag)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The raw bytes of a top-level value (text in the data set's character set).
    pub fn raw(&self, tag: u32) -> Option<&[u8]> {
        self.raw.get(&(0, tag)).map(Vec::as_slice)
    }

    /// The raw bytes of an attribute inside an item of sequence `parent` (first found).
    pub fn nested_raw(&self, parent: u32, tag: u32) -> Option<&[u8]> {
        self.raw.get(&(parent, tag)).map(Vec::as_slice)
    }

    /// Every kept value: ((parent or 0, tag), raw bytes).
    pub fn entries(&self) -> impl Iterator<Item = (&(u32, u32), &Vec<u8>)> {
        self.raw.iter()
    }

    /// The kept clinical context as text, decoded with the data set's Specific Character
    /// Set (readgate's own ISO 2022 decoder: dicom-rs gets Japanese wrong). Keys are
    /// `"gggg,eeee"` or `"pppp,pppp/gggg,eeee"` for attributes inside a sequence item.
    /// Values that do not decode are kept lossily with a marker, never dropped.
    pub fn context_text(&self) -> std::collections::BTreeMap<String, String> {
        use crate::dicom::text::{decode, SpecificCharacterSet, TextKind};
        let charset = self
            .get(tags::SPECIFIC_CHARACTER_SET)
            .and_then(|c| SpecificCharacterSet::parse(c).ok())
            .unwrap_or_default();
        let person_names = [
            tags::PATIENT_NAME,
            tags::REFERRING_PHYSICIAN_NAME,
            tags::REQUESTING_PHYSICIAN,
        ];
        let mut out = std::collections::BTreeMap::new();
        for ((parent, tag), raw) in &self.raw {
            if CONTEXT_SKIP.contains(tag) {
                continue;
            }
            let kind = if person_names.contains(tag) {
                TextKind::PersonName
            } else {
                TextKind::Text
            };
            let text = match decode(raw, &charset, kind) {
                Ok(t) => t,
                Err(_) => format!("{} (undecodable)", String::from_utf8_lossy(raw)),
            };
            let text = text
                .trim_matches(|c: char| c == '\0' || c == ' ')
                .to_string();
            if text.is_empty() {
                continue;
            }
            let key = if *parent == 0 {
                format!("{:04X},{:04X}", tag >> 16, tag & 0xFFFF)
            } else {
                format!(
                    "{:04X},{:04X}/{:04X},{:04X}",
                    parent >> 16,
                    parent & 0xFFFF,
                    tag >> 16,
                    tag & 0xFFFF
                )
            };
            out.insert(key, text);
        }
        out
    }

    fn keep(&mut self, parent: u32, tag: u32, value: Vec<u8>) {
        if parent == 0 {
            let text = String::from_utf8_lossy(&value)
                .trim_matches(|c: char| c == '\0' || c == ' ')
                .to_string();
            self.text.entry(tag).or_insert(text);
        }
        self.raw.entry((parent, tag)).or_insert(value);
    }
}

/// The kept header of a Part 10 file: its meta group read, then its data set walked.
pub fn walk_file(path: &std::path::Path) -> Result<Header, String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let meta = super::part10::read_file_meta(&mut file).map_err(|e| e.to_string())?;
    let encoding =
        Encoding::for_transfer_syntax(&meta.transfer_syntax).map_err(|e| e.to_string())?;
    walk(&file, encoding).map_err(|e| e.to_string())
}

/// Walks the whole data set from `reader` (positioned at its first byte).
pub fn walk<R: Read + Seek>(reader: R, encoding: Encoding) -> Result<Header, DatasetError> {
    let mut header = Header::default();
    match encoding {
        Encoding::Deflated => {
            let inflated = flate2::read::DeflateDecoder::new(BufReader::new(reader));
            let mut w = Walker::new(
                NoSeek(BufReader::with_capacity(64 * 1024, inflated)),
                false,
                true,
            );
            w.dataset(None, 0, 0, &mut header)?;
        }
        _ => {
            let mut w = Walker::new(
                BufReader::with_capacity(64 * 1024, reader),
                encoding == Encoding::ExplicitBig,
                encoding != Encoding::ImplicitLittle,
            );
            w.dataset(None, 0, 0, &mut header)?;
        }
    }
    Ok(header)
}

/// Skipping for readers that can only go forward (the inflating one).
trait Skip: BufRead {
    fn skip(&mut self, n: u64) -> io::Result<u64>;
}

impl<R: Read + Seek> Skip for BufReader<R> {
    fn skip(&mut self, n: u64) -> io::Result<u64> {
        // Seek past the value but report how much really exists, so truncation shows.
        let here = self.stream_position()?;
        let end = self.seek(io::SeekFrom::End(0))?;
        let target = here.saturating_add(n).min(end);
        self.seek(io::SeekFrom::Start(target))?;
        Ok(target - here)
    }
}

struct NoSeek<R>(R);

impl<R: Read> Read for NoSeek<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}
impl<R: BufRead> BufRead for NoSeek<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.0.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.0.consume(amt)
    }
}
impl<R: BufRead> Skip for NoSeek<R> {
    fn skip(&mut self, n: u64) -> io::Result<u64> {
        io::copy(&mut (&mut self.0).take(n), &mut io::sink())
    }
}

/// What the items of an undefined-length element hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Items {
    DataSets,
    /// UN of undefined length: items encoded in implicit VR little endian (PS3.5 §6.2.2).
    ImplicitDataSets,
    /// Encapsulated pixel data: offset table and fragments.
    Fragments,
}

struct Walker<R> {
    r: R,
    big: bool,
    explicit: bool,
    offset: u64,
    top_level_elements: usize,
}

impl<R: Skip> Walker<R> {
    fn new(r: R, big: bool, explicit: bool) -> Self {
        Walker {
            r,
            big,
            explicit,
            offset: 0,
            top_level_elements: 0,
        }
    }

    fn truncated(&self, context: &str) -> DatasetError {
        DatasetError::Truncated {
            offset: self.offset,
            context: context.to_string(),
        }
    }

    fn malformed(&self, reason: String) -> DatasetError {
        DatasetError::Malformed {
            offset: self.offset,
            reason,
        }
    }

    /// Reads exactly `buf.len()` bytes; Ok(false) on a clean end of input before any byte.
    fn read_exact_or_end(&mut self, buf: &mut [u8], context: &str) -> Result<bool, DatasetError> {
        match super::fill(&mut self.r, buf) {
            Ok(super::Filled::All) => {
                self.offset += buf.len() as u64;
                Ok(true)
            }
            Ok(super::Filled::Nothing) => Ok(false),
            Ok(super::Filled::Part) => Err(self.truncated(context)),
            Err(e)
                if e.kind() == io::ErrorKind::InvalidInput
                    || e.kind() == io::ErrorKind::InvalidData =>
            {
                Err(self.malformed(format!("{e}")))
            }
            Err(e) => Err(DatasetError::Io(e)),
        }
    }

    fn u16(&self, b: [u8; 2]) -> u16 {
        if self.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32(&self, b: [u8; 4]) -> u32 {
        if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    /// Reads a tag; None at a clean end of input.
    fn tag(&mut self, context: &str) -> Result<Option<u32>, DatasetError> {
        let mut b = [0u8; 4];
        if !self.read_exact_or_end(&mut b, context)? {
            return Ok(None);
        }
        let group = self.u16([b[0], b[1]]) as u32;
        let element = self.u16([b[2], b[3]]) as u32;
        Ok(Some((group << 16) | element))
    }

    fn need_u32(&mut self, context: &str) -> Result<u32, DatasetError> {
        let mut b = [0u8; 4];
        if !self.read_exact_or_end(&mut b, context)? {
            return Err(self.truncated(context));
        }
        Ok(self.u32(b))
    }

    fn skip(&mut self, len: u64, context: &str) -> Result<(), DatasetError> {
        let skipped = self.r.skip(len).map_err(DatasetError::Io)?;
        self.offset += skipped;
        if skipped < len {
            return Err(self.truncated(context));
        }
        Ok(())
    }

    /// Walks elements until `end` (a byte offset) or an item delimiter (for undefined-length
    /// items), or the end of input at top level (`end == None && depth == 0`).
    fn dataset(
        &mut self,
        end: Option<u64>,
        depth: usize,
        parent: u32,
        header: &mut Header,
    ) -> Result<(), DatasetError> {
        if depth > MAX_DEPTH {
            return Err(self.malformed("sequences nested too deeply".into()));
        }
        loop {
            if let Some(end) = end {
                if self.offset == end {
                    return Ok(());
                }
                if self.offset > end {
                    return Err(self.malformed("element runs past the end of its item".into()));
                }
            }
            let tag = match self.tag("element tag")? {
                Some(t) => t,
                None if depth == 0 && end.is_none() => return Ok(()),
                None => return Err(self.truncated("sequence item")),
            };
            if tag == ITEM_END {
                self.need_u32("item delimiter")?;
                if depth == 0 || end.is_some() {
                    return Err(self.malformed("unexpected item delimiter".into()));
                }
                return Ok(());
            }
            if tag == ITEM || tag == SEQUENCE_END {
                return Err(self.malformed(format!("unexpected delimiter ({:08X})", tag)));
            }
            if depth == 0 {
                self.top_level_elements += 1;
                if self.top_level_elements > MAX_TOP_LEVEL_ELEMENTS {
                    // Short: the Error Comment (LO) holds 64 characters.
                    return Err(
                        self.malformed(format!("> {MAX_TOP_LEVEL_ELEMENTS} top-level elements"))
                    );
                }
            }
            let (vr, len) = self.vr_and_length(tag)?;
            let context = format!("({:04X},{:04X})", tag >> 16, tag & 0xFFFF);
            if len == UNDEFINED {
                // Sequences, encapsulated pixel data and UN of undefined length (which
                // holds implicit VR little endian items, PS3.5 §6.2.2).
                let items = match vr {
                    Some(v) if &v == b"OB" || &v == b"OW" => Items::Fragments,
                    None if tag == tags::PIXEL_DATA => Items::Fragments,
                    Some(v) if &v == b"UN" => Items::ImplicitDataSets,
                    _ => Items::DataSets,
                };
                self.sequence(depth + 1, tag, header, items)?;
                continue;
            }
            let is_sq = vr == Some(*b"SQ") || (vr.is_none() && is_known_sequence(tag));
            if is_sq {
                let end = self.offset + len as u64;
                self.defined_sequence(end, depth + 1, tag, header)?;
                continue;
            }
            let wanted = if depth == 0 {
                TOP_LEVEL.contains(&tag)
            } else {
                NESTED.contains(&(parent, tag))
            };
            if wanted && len <= MAX_KEPT_VALUE {
                let mut value = vec![0u8; len as usize];
                if !self.read_exact_or_end(&mut value, &context)? && len > 0 {
                    return Err(self.truncated(&context));
                }
                header.keep(if depth == 0 { 0 } else { parent }, tag, value);
            } else {
                self.skip(len as u64, &context)?;
            }
        }
    }

    /// After the header of an undefined-length element: items until the sequence delimiter.
    fn sequence(
        &mut self,
        depth: usize,
        parent: u32,
        header: &mut Header,
        items: Items,
    ) -> Result<(), DatasetError> {
        if depth > MAX_DEPTH {
            return Err(self.malformed("sequences nested too deeply".into()));
        }
        loop {
            let tag = self
                .tag("sequence")?
                .ok_or_else(|| self.truncated("sequence"))?;
            let len = self.need_u32("item length")?;
            match tag {
                SEQUENCE_END => return Ok(()),
                ITEM if items == Items::Fragments => {
                    // pixel data fragments are opaque: bounds-checked and skipped
                    self.skip(len as u64, "pixel data fragment")?;
                }
                ITEM => {
                    let saved = self.explicit;
                    if items == Items::ImplicitDataSets {
                        self.explicit = false;
                    }
                    let item_end = (len != UNDEFINED).then(|| self.offset + len as u64);
                    let r = self.dataset(item_end, depth, parent, header);
                    self.explicit = saved;
                    r?;
                }
                other => {
                    return Err(self.malformed(format!("expected an item, found ({:08X})", other)))
                }
            }
        }
    }

    fn defined_sequence(
        &mut self,
        end: u64,
        depth: usize,
        parent: u32,
        header: &mut Header,
    ) -> Result<(), DatasetError> {
        while self.offset < end {
            let tag = self
                .tag("sequence")?
                .ok_or_else(|| self.truncated("sequence"))?;
            let len = self.need_u32("item length")?;
            if tag != ITEM {
                return Err(self.malformed(format!("expected an item, found ({:08X})", tag)));
            }
            if len == UNDEFINED {
                self.dataset(None, depth, parent, header)?;
            } else {
                let item_end = self.offset + len as u64;
                self.dataset(Some(item_end), depth, parent, header)?;
            }
        }
        if self.offset != end {
            return Err(self.malformed("sequence length does not end on an item".into()));
        }
        Ok(())
    }

    fn vr_and_length(&mut self, tag: u32) -> Result<(Option<[u8; 2]>, u32), DatasetError> {
        if !self.explicit {
            return Ok((None, self.need_u32("element length")?));
        }
        let mut vr = [0u8; 2];
        if !self.read_exact_or_end(&mut vr, "VR")? {
            return Err(self.truncated("VR"));
        }
        crate::dicom::check_vr(&vr, tag).map_err(|m| self.malformed(m))?;
        if crate::dicom::has_long_length(&vr) {
            let mut reserved = [0u8; 2];
            if !self.read_exact_or_end(&mut reserved, "VR")? {
                return Err(self.truncated("VR"));
            }
            Ok((Some(vr), self.need_u32("element length")?))
        } else {
            let mut l = [0u8; 2];
            if !self.read_exact_or_end(&mut l, "element length")? {
                return Err(self.truncated("element length"));
            }
            Ok((Some(vr), self.u16(l) as u32))
        }
    }
}

/// In implicit VR a defined-length sequence is only recognisable through the dictionary.
fn is_known_sequence(tag: u32) -> bool {
    use dicom_core::dictionary::DataDictionary;
    use dicom_core::Tag;
    let t = Tag((tag >> 16) as u16, (tag & 0xFFFF) as u16);
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(t)
        .map(|e| e.vr.relaxed() == dicom_core::VR::SQ)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn explicit(tag: u32, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((tag >> 16) as u16).to_le_bytes());
        v.extend_from_slice(&((tag & 0xFFFF) as u16).to_le_bytes());
        v.extend_from_slice(vr);
        if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
            v.extend_from_slice(&[0, 0]);
            v.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            v.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        v.extend_from_slice(value);
        v
    }

    /// The sample data set as its top-level elements.
    fn sample_parts() -> Vec<Vec<u8>> {
        let mut seq = Vec::new();
        // an undefined-length sequence with one undefined-length item
        seq.extend_from_slice(&[
            0x40, 0x00, 0x75, 0x02, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        seq.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        seq.extend(explicit(0x0040_1002, b"LO", b"rule out PE"));
        seq.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        seq.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        vec![
            explicit(tags::SOP_CLASS_UID, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0"),
            explicit(tags::SOP_INSTANCE_UID, b"UI", b"1.2.3.4\0"),
            explicit(tags::MODALITY, b"CS", b"CT"),
            seq,
            explicit(tags::STUDY_INSTANCE_UID, b"UI", b"1.2.3\0"),
            explicit(0x7FE0_0010, b"OW", &[0u8; 64]),
        ]
    }

    fn sample() -> Vec<u8> {
        sample_parts().concat()
    }

    #[test]
    fn walks_and_indexes() {
        let h = walk(Cursor::new(sample()), Encoding::ExplicitLittle).unwrap();
        assert_eq!(h.get(tags::MODALITY), Some("CT"));
        assert_eq!(h.get(tags::STUDY_INSTANCE_UID), Some("1.2.3"));
        assert_eq!(h.get(tags::SOP_INSTANCE_UID), Some("1.2.3.4"));
        // the exam purpose inside Request Attributes Sequence is kept too
        assert_eq!(
            h.nested_raw(
                tags::REQUEST_ATTRIBUTES_SEQUENCE,
                tags::REASON_FOR_REQUESTED_PROCEDURE
            ),
            Some(&b"rule out PE"[..])
        );
        assert!(h.raw(tags::REASON_FOR_REQUESTED_PROCEDURE).is_none());
    }

    #[test]
    fn every_truncation_inside_an_element_is_detected() {
        let parts = sample_parts();
        let boundaries: Vec<usize> = parts
            .iter()
            .scan(0, |acc, p| {
                *acc += p.len();
                Some(*acc)
            })
            .collect();
        let full = sample();
        for cut in 1..full.len() {
            let r = walk(Cursor::new(full[..cut].to_vec()), Encoding::ExplicitLittle);
            assert_eq!(r.is_ok(), boundaries.contains(&cut), "cut at {cut}: {r:?}");
        }
    }

    #[test]
    fn deflated_data_sets_are_walked_inflated() {
        use std::io::Write;
        let mut enc =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&sample()).unwrap();
        let deflated = enc.finish().unwrap();
        let h = walk(Cursor::new(deflated.clone()), Encoding::Deflated).unwrap();
        assert_eq!(h.get(tags::STUDY_INSTANCE_UID), Some("1.2.3"));
        let cut = walk(
            Cursor::new(deflated[..deflated.len() / 2].to_vec()),
            Encoding::Deflated,
        );
        assert!(cut.is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = fastrand::Rng::with_seed(0x9E37_79B9_7F4A_7C15);
        let (mut walked, mut refused) = (0, 0);
        for _ in 0..2000 {
            let mut data = sample();
            for _ in 0..4 {
                let i = rng.usize(..data.len());
                data[i] = rng.u8(..);
            }
            for enc in [
                Encoding::ExplicitLittle,
                Encoding::ImplicitLittle,
                Encoding::ExplicitBig,
                Encoding::Deflated,
            ] {
                match walk(Cursor::new(data.clone()), enc) {
                    Ok(_) => walked += 1,
                    Err(_) => refused += 1,
                }
            }
        }
        // Both outcomes occur: the mutations reach past the first error check.
        assert!(
            walked > 100 && refused > 100,
            "{walked} walked, {refused} refused"
        );
    }
}
