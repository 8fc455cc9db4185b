//! The tagging stage: every instance readgate forwards carries who decided what about it
//! (ATS-4: audit-proof records, the responsible receiving facility named), and the
//! clinical context the reader needs (JRS-7.3.1, JRS-7.3.3) when the image lacks it but
//! the order has it.
//!
//! [`tag_dataset`] rewrites a stored data set in one streaming pass after a header scan:
//!
//! - a private block with creator [`PRIVATE_CREATOR`] in group [`PRIVATE_GROUP`]
//!   (see there for the element numbers) holds the [`Accountability`] values;
//! - each [`ContextCopy`] value the image lacks (absent, or empty once padding is
//!   removed) is written at the top level, encoded for the data set's Specific Character
//!   Set, and recorded in a new item of Original Attributes Sequence (0400,0561) as
//!   PS3.3 C.12.1 requires;
//! - every other byte is copied as it was: element values are never decoded or
//!   re-encoded, pixel data (native or encapsulated) included. Only top-level element
//!   headers, Specific Character Set, the copy targets, the private creators of our
//!   group and the items of Request Attributes Sequence (0040,0275) are parsed; the
//!   rest is seeked over in the scan and, in the copy, read straight into 64 KiB output
//!   blocks.
//!
//! Memory does not grow with the instance: tagging a 1 GB instance peaks at about 4 MiB
//! of RSS for the whole process (`tests/tag.rs` checks a 200 MB one in a child process).
//! Elements are kept in ascending tag order; a Group Length (gggg,0000) of a group that
//! changed is recomputed.
//!
//! # Private block
//!
//! | tag | VR | value |
//! |---|---|---|
//! | (0099,00xx) | LO | `READGATE ACCOUNTABILITY` (xx: first free slot from 10) |
//! | (0099,xx01) | LO | gateway id |
//! | (0099,xx02) | LO | sending facility |
//! | (0099,xx03) | LO | receiving facility |
//! | (0099,xx04) | LO | policy id |
//! | (0099,xx05) | LO | policy version |
//! | (0099,xx06) | LO | verdict: `PASS`, `FORWARDED_INCOMPLETE`, `RELEASED_OVERRIDE` |
//! | (0099,xx07) | LO | reason codes, multi-valued |
//! | (0099,xx08) | DT | evaluation time, UTC, `YYYYMMDDHHMMSS.FFFFFF+0000` |
//! | (0099,xx09) | LO | audit record reference |
//! | (0099,xx0A) | LO | on a prior sent with a study: that study's accession (or UID) |
//!
//! A slot is free when it has no creator and its block (0099,xx00–xxFF) holds no orphan
//! elements. If our creator is already there (a re-forward), its block is emptied and
//! written again: one decision per instance, never a mix of two.
//!
//! # Character sets
//! Text is encoded with [`crate::dicom::text::encode`] for the top-level (0008,0005).
//! A data set with no Specific Character Set (default repertoire) that needs non-ASCII
//! text gets `\ISO 2022 IR 87`: it keeps ASCII as the initial G0 set, so every existing
//! (ASCII) value reads the same, and it is the form Japanese systems expect. The change is
//! recorded in the Original Attributes item like the copies. A copy the declared set
//! cannot hold (kanji under `ISO_IR 100`, say) is skipped and reported in
//! [`TagReport::skipped`]: readgate never writes bytes that decode to something else.
//! Accountability values must be representable; otherwise tagging fails
//! ([`TagError::InvalidAccountability`]) rather than stamping a wrong record.
//!
//! # Transfer syntaxes
//! Implicit VR little endian, explicit VR little endian (and every encapsulated syntax,
//! whose data set is explicit VR little endian), explicit VR big endian, and deflated
//! explicit VR little endian, which is inflated while scanning and inflated again and
//! re-deflated while copying (the deflated bytes change; the inflated data set keeps
//! every untouched byte).

mod encode;
mod plan;
mod scan;
mod source;
#[cfg(test)]
mod tests;

use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::time::SystemTime;

use crate::dicom::dataset::Encoding;
use crate::dicom::part10::{self, FileMeta, MetaError};

use plan::Piece;
use scan::{Scanner, Syntax};
use source::{BlockWriter, Inflated, Source, Stored, COPY_BUFFER, SCAN_BUFFER};

/// The odd group of readgate's private block. No vendor private dictionary we know of
/// (DCMTK's, pydicom's, GDCM's) uses group 0099, and the block is found by its creator
/// string anyway, never by a fixed element number: a foreign block in this group costs
/// us only a slot.
pub const PRIVATE_GROUP: u16 = 0x0099;
/// Private Creator of readgate's block, (0099,00xx) with xx the first free slot.
pub const PRIVATE_CREATOR: &str = "READGATE ACCOUNTABILITY";

/// Element numbers inside the block: the tag is `(0099, xx<<8 | n)`, e.g. (0099,1001)
/// for the gateway id when the creator sits at (0099,0010).
///
/// All values are LO. The issue proposed CS for the verdict, but CS allows 16
/// characters and `FORWARDED_INCOMPLETE` has 20 (pydicom warns on reading it), and CS
/// allows neither `-` nor `.`, which every clause-id reason code (`JRS-7.3.1`) has.
pub mod elements {
    pub const GATEWAY_ID: u8 = 0x01;
    pub const SENDING_FACILITY: u8 = 0x02;
    pub const RECEIVING_FACILITY: u8 = 0x03;
    pub const POLICY_ID: u8 = 0x04;
    pub const POLICY_VERSION: u8 = 0x05;
    /// `PASS`, `FORWARDED_INCOMPLETE` or `RELEASED_OVERRIDE`.
    pub const VERDICT: u8 = 0x06;
    /// Multi-valued (`\`-separated) codes of overrides and flags.
    pub const REASON_CODES: u8 = 0x07;
    /// DT, UTC with explicit `+0000`.
    pub const EVALUATED_AT: u8 = 0x08;
    pub const AUDIT_REF: u8 = 0x09;
    /// Only on a prior sent with a study: the accession number (else the Study Instance
    /// UID) of the study it was sent for. The reading facility's viewer can tell it from
    /// the study to read; it is not a reading assignment.
    pub const PRIOR_OF: u8 = 0x0A;
}

/// The Modifying System (0400,0563) readgate writes is this prefix and the gateway id.
pub const MODIFYING_SYSTEM_PREFIX: &str = "READGATE";

/// Specific Character Set readgate adds to a data set that has none when it must write
/// non-ASCII text.
pub const ADDED_CHARACTER_SET: &str = "\\ISO 2022 IR 87";

/// Who forwarded the instance, under which policy, with what verdict (ATS-4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accountability {
    pub gateway_id: String,
    pub sending_facility: String,
    pub receiving_facility: String,
    pub policy_id: String,
    pub policy_version: String,
    /// What the decision stage concluded (never `Held`: held studies are not forwarded).
    pub verdict: crate::model::Disposition,
    /// Codes of any override or flag (multi-valued).
    pub reason_codes: Vec<String>,
    /// When the decision was made. Also the Attribute Modification DateTime of the
    /// Original Attributes item: the copies are part of that decision, and taking the
    /// time from the caller keeps tagging a pure function of its inputs.
    pub evaluated_at: SystemTime,
    /// Reference to the audit record of the decision.
    pub audit_ref: String,
    /// Set when the instance is a prior sent with a study: that study's accession (or
    /// UID). The other values are those of that study's decision.
    pub prior_of: Option<String>,
}

/// Clinical context from the order, each copied only when the image lacks it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextCopy {
    /// → (0040,1002) Reason for the Requested Procedure, LO. The image "has" an exam
    /// purpose if (0040,1002) is non-empty at the top level or in an item of Request
    /// Attributes Sequence (0040,0275), where modalities usually put it.
    pub exam_purpose: Option<String>,
    /// → (0010,21B0) Additional Patient History, LT.
    pub clinical_information: Option<String>,
    /// → (0032,1032) Requesting Physician, PN (`Family^Given=漢字^名` style allowed).
    pub requesting_physician: Option<String>,
    /// → (0040,2010) Order Callback Phone Number, SH.
    pub callback_phone: Option<String>,
}

/// What tagging did besides the private block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagReport {
    /// Keywords of the attributes copied from the order.
    pub copied: Vec<String>,
    /// (keyword, why) of order values that were not copied although the image lacks
    /// them, e.g. text not representable in the data set's character set.
    pub skipped: Vec<(String, String)>,
    /// Keywords of order values not copied because the image already has them.
    pub already_present: Vec<String>,
    /// The Specific Character Set readgate added (the data set had none), if any.
    pub character_set_added: Option<String>,
    /// Tag of our private creator, e.g. 0x0099_0010: the block is (0099,1000–10FF).
    pub private_creator_tag: u32,
    /// Whether the block already existed (a re-forward) and was rewritten.
    pub private_block_reused: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TagError {
    #[error("data set truncated at byte {offset} (inside {context})")]
    Truncated { offset: u64, context: String },
    #[error("data set malformed at byte {offset}: {reason}")]
    Malformed { offset: u64, reason: String },
    #[error("transfer syntax {0} is not supported for tagging")]
    UnsupportedTransferSyntax(String),
    #[error("cannot tag this data set: {0}")]
    Unsupported(String),
    #[error(
        "no free private creator slot in group {:04X} (0010-00FF are all taken)",
        PRIVATE_GROUP
    )]
    NoFreePrivateBlock,
    #[error("accountability value {field} cannot be written: {reason}")]
    InvalidAccountability { field: &'static str, reason: String },
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Tags the data set read from `src` (positioned at its first byte, encoded in
/// `transfer_syntax`) and writes the result to `out`, in the same transfer syntax.
///
/// `src` is read twice (a header scan, then the copy), so it must not change meanwhile:
/// a spool file never does. `out` receives whole 64 KiB blocks (the last one shorter),
/// and is flushed at the end.
/// Counts what passes through, for the even-length padding of deflated output.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub fn tag_dataset<R: Read + Seek, W: Write>(
    src: R,
    transfer_syntax: &str,
    mut out: W,
    acc: &Accountability,
    copy: &ContextCopy,
) -> Result<TagReport, TagError> {
    let mut blocks = BlockWriter::new(&mut out);
    let report = tag_into(src, transfer_syntax, &mut blocks, acc, copy)?;
    blocks.finish()?;
    out.flush()?;
    Ok(report)
}

/// Reads a Part 10 file's meta group and writes only its tagged data set: what the
/// C-STORE SCU sends (the data set travels without meta on the wire).
pub fn tag_part10_dataset<R: Read + Seek, W: Write>(
    mut file: R,
    out: W,
    acc: &Accountability,
    copy: &ContextCopy,
) -> Result<(FileMeta, TagReport), TagError> {
    let meta = read_meta(&mut file)?;
    let report = tag_dataset(&mut file, &meta.transfer_syntax, out, acc, copy)?;
    Ok((meta, report))
}

/// Writes a complete Part 10 file: readgate's own file meta with the same SOP class,
/// instance and transfer syntax (and source AE), then the tagged data set.
pub fn tag_part10_file<R: Read + Seek, W: Write>(
    mut file: R,
    mut out: W,
    acc: &Accountability,
    copy: &ContextCopy,
) -> Result<TagReport, TagError> {
    let meta = read_meta(&mut file)?;
    let mut blocks = BlockWriter::new(&mut out);
    blocks.write_all(&part10::encode_file_meta(
        &meta.sop_class_uid,
        &meta.sop_instance_uid,
        &meta.transfer_syntax,
        meta.source_ae.as_deref().unwrap_or(""),
    ))?;
    let report = tag_into(&mut file, &meta.transfer_syntax, &mut blocks, acc, copy)?;
    blocks.finish()?;
    out.flush()?;
    Ok(report)
}

fn tag_into<R: Read + Seek>(
    src: R,
    transfer_syntax: &str,
    out: &mut BlockWriter,
    acc: &Accountability,
    copy: &ContextCopy,
) -> Result<TagReport, TagError> {
    let ts = crate::dicom::trim_uid(transfer_syntax);
    let encoding = Encoding::for_transfer_syntax(ts)
        .map_err(|_| TagError::UnsupportedTransferSyntax(ts.to_string()))?;
    let syntax = Syntax {
        explicit: encoding != Encoding::ImplicitLittle,
        big: encoding == Encoding::ExplicitBig,
    };
    if encoding == Encoding::Deflated {
        let mut src = src;
        let base = src.stream_position()?;
        let mut inflated = Inflated::new(src);
        let scan = Scanner::new(&mut inflated, syntax).scan(plan::wanted)?;
        let plan = plan::plan(&scan, syntax, acc, copy)?;
        let mut src = inflated.into_inner();
        src.seek(SeekFrom::Start(base))?;
        let mut inflated = Inflated::new(src);
        // Blocks of inflated data go into the deflater, whose output goes out in blocks.
        let counted = Counting {
            inner: out,
            written: 0,
        };
        let mut deflater =
            flate2::write::DeflateEncoder::new(counted, flate2::Compression::default());
        let mut plain = BlockWriter::new(&mut deflater);
        write_pieces(&plan.pieces, &mut inflated, &mut plain)?;
        plain.finish()?;
        let mut counted = deflater.finish()?;
        // PS3.5 §A.5: the deflated bit stream is padded to even length with one NUL;
        // peers refuse odd-length data (DCMTK: "Odd Fragment Length").
        if counted.written % 2 == 1 {
            counted.write_all(&[0])?;
        }
        Ok(plan.report)
    } else {
        let (mut stored, base, len) = Stored::new(src, SCAN_BUFFER)?;
        let scan = Scanner::new(&mut stored, syntax).scan(plan::wanted)?;
        let plan = plan::plan(&scan, syntax, acc, copy)?;
        let mut stored = Stored::resume(stored.into_inner(), base, len, COPY_BUFFER)?;
        write_pieces(&plan.pieces, &mut stored, out)?;
        Ok(plan.report)
    }
}

/// Reads the meta group through a buffer, then leaves `file` at the data set.
fn read_meta<R: Read + Seek>(file: &mut R) -> Result<FileMeta, TagError> {
    let base = file.stream_position()?;
    // The meta group is a few hundred bytes: a small buffer reads it in one go without
    // reading far into the data set, which the scan reads again.
    let meta = part10::read_file_meta(&mut BufReader::with_capacity(2048, &mut *file))?;
    file.seek(SeekFrom::Start(base + meta.dataset_offset))?;
    Ok(meta)
}

/// The copy pass: source ranges and new bytes in output order.
fn write_pieces<S: Source>(
    pieces: &[Piece],
    src: &mut S,
    out: &mut BlockWriter,
) -> Result<(), TagError> {
    for piece in pieces {
        match piece {
            Piece::Bytes(b) => out.write_all(b)?,
            Piece::Copy { start, end } => {
                let here = src.position();
                if *start < here {
                    // The plan is built in source order; this would be a readgate bug.
                    return Err(TagError::Unsupported(format!(
                        "internal: copy range at {start} is behind the read position {here}"
                    )));
                }
                let gap = start - here;
                let truncated = || TagError::Truncated {
                    offset: *start,
                    context: "the data set changed between scan and copy".into(),
                };
                if src.skip(gap)? < gap {
                    return Err(truncated());
                }
                let n = end - start;
                if out.copy_from(src, n)? < n {
                    return Err(truncated());
                }
            }
        }
    }
    Ok(())
}
