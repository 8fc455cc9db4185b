//! What an SCU sends: a forwarded instance's tagged copy — in memory when the instance
//! is small, so that forwarding does not create and delete a file per instance; in the
//! spool's `tmp/` when it is large, so that memory does not grow with the instance — or a
//! stored file sent as it is (the demo PACS's C-MOVE).

use crate::spool::Spool;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::path::PathBuf;

/// Instances up to this size are tagged in memory (one at a time per destination).
pub(super) const IN_MEMORY_MAX: u64 = 16 << 20;

/// A Part 10 instance ready to send.
pub enum Outgoing {
    /// A tagged copy in memory.
    Memory(Vec<u8>),
    /// A tagged copy in the spool's `tmp/`, removed when this is dropped.
    Scratch(PathBuf),
    /// A file that stays where it is.
    Kept(PathBuf),
}

impl Outgoing {
    /// Where the copy of the spool file `source` (of `size` bytes) goes: memory with room
    /// for the tags, or a fresh file in the spool's `tmp/`.
    pub(super) fn for_source(spool: &Spool, size: u64) -> Outgoing {
        if size <= IN_MEMORY_MAX {
            Outgoing::Memory(Vec::with_capacity(size as usize + 8192))
        } else {
            Outgoing::Scratch(spool.scratch_path("tagged"))
        }
    }

    /// The copy's bytes from the start, for reading its file meta and sending it.
    pub(super) fn open(&self) -> io::Result<Source<'_>> {
        Ok(match self {
            Outgoing::Memory(bytes) => Source::Memory(Cursor::new(bytes)),
            Outgoing::Scratch(path) | Outgoing::Kept(path) => {
                Source::File(std::fs::File::open(path)?)
            }
        })
    }

    /// How the copy is named in errors.
    pub(super) fn describe(&self) -> String {
        match self {
            Outgoing::Memory(bytes) => format!("tagged copy in memory ({} bytes)", bytes.len()),
            Outgoing::Scratch(path) | Outgoing::Kept(path) => path.display().to_string(),
        }
    }

    /// The copy as a DICOM object, for re-encoding it in another transfer syntax.
    pub(super) fn object(
        &self,
    ) -> Result<dicom_object::DefaultDicomObject, dicom_object::ReadError> {
        match self {
            // `from_reader` starts at the "DICM" magic, after the 128-byte preamble.
            Outgoing::Memory(bytes) => dicom_object::from_reader(bytes.get(128..).unwrap_or(&[])),
            Outgoing::Scratch(path) | Outgoing::Kept(path) => dicom_object::open_file(path),
        }
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        if let Outgoing::Scratch(path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Reading an [`Outgoing`] instance.
pub(super) enum Source<'a> {
    Memory(Cursor<&'a Vec<u8>>),
    File(std::fs::File),
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Memory(c) => c.read(buf),
            Source::File(f) => f.read(buf),
        }
    }
}

impl Seek for Source<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match self {
            Source::Memory(c) => c.seek(to),
            Source::File(f) => f.seek(to),
        }
    }
}
