//! Byte sources for the two passes over a data set: the stored bytes (seekable, so
//! values readgate does not look at are skipped without reading them) or the inflated
//! stream of a deflated data set (forward only: skipping means reading and discarding).
//!
//! Both keep their own position, counted from the first byte of the data set, so the
//! scan and the copy pass agree on offsets whatever the encoding.

use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};

/// Size of the output blocks, and read buffer of the deflated copy pass.
pub(crate) const BLOCK: usize = 64 * 1024;
/// Read buffer of the scan, which reads only headers and seeks over values; a typical
/// image header fits in it.
pub(crate) const SCAN_BUFFER: usize = 16 * 1024;
/// Read buffer of the stored copy pass: values are read straight into the output block,
/// so it only serves the odd short read.
pub(crate) const COPY_BUFFER: usize = 8 * 1024;

/// `Read` counts what it returns into [`Source::position`].
pub(crate) trait Source: Read {
    /// Bytes from the start of the data set up to the read position.
    fn position(&self) -> u64;
    /// Moves `n` bytes forward; returns how many bytes really existed (fewer at the end).
    fn skip(&mut self, n: u64) -> io::Result<u64>;
    /// Whether the end is known to be reached (saves a read that would return nothing).
    fn exhausted(&self) -> bool {
        false
    }
}

/// Reads into `buf` and counts what was read into `pos`. Short reads (the scan's
/// headers) go through the buffer, long ones (copies) around it when the buffer is empty:
/// BufReader keeps no position of its own beyond its buffer, so reading the inner reader
/// then keeps both in step.
fn read_counted<R: Read>(r: &mut BufReader<R>, buf: &mut [u8], pos: &mut u64) -> io::Result<usize> {
    let n = if buf.len() >= r.capacity() && r.buffer().is_empty() {
        r.get_mut().read(buf)?
    } else {
        r.read(buf)?
    };
    *pos += n as u64;
    Ok(n)
}

/// The output in whole blocks: every write the destination sees is one full `BLOCK`
/// (except the last), at offsets that are multiples of it. A file then gets page-aligned
/// writes; inserted elements would otherwise shift every later write off the page grid,
/// which costs the kernel a partial page at both ends of each write.
pub(crate) struct BlockWriter<'a> {
    out: &'a mut dyn Write,
    buf: Vec<u8>,
    fill: usize,
}

impl<'a> BlockWriter<'a> {
    pub(crate) fn new(out: &'a mut dyn Write) -> Self {
        BlockWriter {
            out,
            buf: vec![0; BLOCK],
            fill: 0,
        }
    }

    fn advance(&mut self, n: usize) -> io::Result<()> {
        self.fill += n;
        if self.fill == self.buf.len() {
            self.out.write_all(&self.buf)?;
            self.fill = 0;
        }
        Ok(())
    }

    /// Copies the next `n` bytes of `src` into the output, reading them straight into
    /// the block; returns how many existed.
    pub(crate) fn copy_from<S: Source>(&mut self, src: &mut S, n: u64) -> io::Result<u64> {
        let mut left = n;
        while left > 0 {
            let spare = &mut self.buf[self.fill..];
            let k = spare.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let got = match src.read(&mut spare[..k]) {
                Ok(0) => break,
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.advance(got)?;
            left -= got as u64;
        }
        Ok(n - left)
    }

    /// Writes what is left (the destination is not flushed).
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf[..self.fill])?;
        self.fill = 0;
        Ok(())
    }
}

impl Write for BlockWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let spare = &mut self.buf[self.fill..];
        let k = spare.len().min(data.len());
        spare[..k].copy_from_slice(&data[..k]);
        self.advance(k)?;
        Ok(k)
    }

    /// Blocks are only written when full; [`BlockWriter::finish`] writes the rest.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A stored data set: `Read + Seek`, bounded by the length it had when tagging began.
pub(crate) struct Stored<R> {
    inner: BufReader<R>,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Stored<R> {
    /// Wraps `r`, positioned at the first byte of the data set; also returns that
    /// position and the data set's length, for [`Stored::resume`].
    pub(crate) fn new(mut r: R, capacity: usize) -> io::Result<(Self, u64, u64)> {
        let base = r.stream_position()?;
        let end = r.seek(SeekFrom::End(0))?;
        let len = end.saturating_sub(base);
        Ok((Self::resume(r, base, len, capacity)?, base, len))
    }

    /// Wraps `r` again for a later pass over the same data set.
    pub(crate) fn resume(mut r: R, base: u64, len: u64, capacity: usize) -> io::Result<Self> {
        r.seek(SeekFrom::Start(base))?;
        Ok(Stored {
            inner: BufReader::with_capacity(capacity, r),
            pos: 0,
            len,
        })
    }

    pub(crate) fn into_inner(self) -> R {
        self.inner.into_inner()
    }
}

impl<R: Read> Read for Stored<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_counted(&mut self.inner, buf, &mut self.pos)
    }
}

impl<R: Read + Seek> Source for Stored<R> {
    fn position(&self) -> u64 {
        self.pos
    }

    fn exhausted(&self) -> bool {
        self.pos >= self.len
    }

    fn skip(&mut self, n: u64) -> io::Result<u64> {
        // Seeking past the end succeeds silently; clamp so truncation shows.
        let n = n.min(self.len.saturating_sub(self.pos));
        // seek_relative keeps the buffer when the target is inside it, which is the
        // common case for the many short values of a header.
        let step = i64::try_from(n).map_err(|_| io::Error::other("skip too long"))?;
        self.inner.seek_relative(step)?;
        self.pos += n;
        Ok(n)
    }
}

/// The inflated stream of a deflated data set (PS3.5 §A.5: raw deflate, no zlib header).
pub(crate) struct Inflated<R> {
    inner: BufReader<flate2::read::DeflateDecoder<BufReader<R>>>,
    pos: u64,
}

impl<R: Read> Inflated<R> {
    pub(crate) fn new(r: R) -> Self {
        Inflated {
            inner: BufReader::with_capacity(
                BLOCK,
                flate2::read::DeflateDecoder::new(BufReader::with_capacity(BLOCK, r)),
            ),
            pos: 0,
        }
    }

    pub(crate) fn into_inner(self) -> R {
        self.inner.into_inner().into_inner().into_inner()
    }
}

impl<R: Read> Read for Inflated<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_counted(&mut self.inner, buf, &mut self.pos)
    }
}

impl<R: Read> Source for Inflated<R> {
    fn position(&self) -> u64 {
        self.pos
    }

    fn skip(&mut self, n: u64) -> io::Result<u64> {
        let done = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
        self.pos += done;
        Ok(done)
    }
}
