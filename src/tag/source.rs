//! Byte sources for the two passes over a data set: the stored bytes (seekable, so
//! values readgate does not look at are skipped without reading them) or the inflated
//! stream of a deflated data set (forward only: skipping means reading and discarding).
//!
//! Both keep their own position, counted from the first byte of the data set, so the
//! scan and the copy pass agree on offsets whatever the encoding.

use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};

/// Read buffer of the copy pass: values copied unchanged stream through it (and through
/// the 64 KiB output buffer), which bounds the memory a tagging needs.
pub(crate) const COPY_BUFFER: usize = 64 * 1024;
/// Read buffer of the scan. Smaller: the scan reads only headers and seeks over values,
/// and a typical image header fits in it, so less is read twice.
pub(crate) const SCAN_BUFFER: usize = 16 * 1024;

/// `Read` counts what it returns into [`Source::position`].
pub(crate) trait Source: Read {
    /// Bytes from the start of the data set up to the read position.
    fn position(&self) -> u64;
    /// Moves `n` bytes forward; returns how many bytes really existed (fewer at the end).
    fn skip(&mut self, n: u64) -> io::Result<u64>;
    /// Copies the next `n` bytes to `out` straight from the read buffer; returns how many
    /// bytes really existed.
    fn copy_to(&mut self, n: u64, out: &mut dyn Write) -> io::Result<u64>;
    /// Whether the end is known to be reached (saves a read that would return nothing).
    fn exhausted(&self) -> bool {
        false
    }
}

/// Copies out of a `BufReader`'s own buffer, so each byte is copied once on its way.
fn copy_buffered<B: BufRead>(r: &mut B, n: u64, out: &mut dyn Write) -> io::Result<u64> {
    let mut left = n;
    while left > 0 {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            break;
        }
        let k = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        out.write_all(&buf[..k])?;
        r.consume(k);
        left -= k as u64;
    }
    Ok(n - left)
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
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
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

    fn copy_to(&mut self, n: u64, out: &mut dyn Write) -> io::Result<u64> {
        let done = copy_buffered(&mut self.inner, n, out)?;
        self.pos += done;
        Ok(done)
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
                COPY_BUFFER,
                flate2::read::DeflateDecoder::new(BufReader::with_capacity(COPY_BUFFER, r)),
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
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
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

    fn copy_to(&mut self, n: u64, out: &mut dyn Write) -> io::Result<u64> {
        let done = copy_buffered(&mut self.inner, n, out)?;
        self.pos += done;
        Ok(done)
    }
}
