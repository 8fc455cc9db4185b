//! The spool: where received instances live until they reach their destination.
//!
//! An instance is streamed into `tmp/` as its PDUs arrive (into a file made ready ahead
//! of need, `ready.rs`; its header is checked from the first bytes kept in memory),
//! fsync'd, renamed into `objects/xx/` and the directory fsync'd. Its index entry is
//! read and written meanwhile, under the name it is going to have
//! ([`Spool::next_name`]), but committed only after the directory's fsync
//! (`store::PendingSync`), and only after the index commit is the C-STORE answered.
//! Anything left in `tmp/` after a crash was never acknowledged and is deleted at
//! start-up; anything in `objects/` is complete and durable, so the spool, not the
//! index, is the last word on what was received.
//!
//! Nodes sharing one database share one spool ([`Spool::open_for`]): each node then has
//! its own `tmp/<node>/` and names its objects `<node>.<n>.dcm`, so that a node starting
//! clears only its own partial files and re-indexes only its own objects (another node's
//! object not yet indexed is one that node is still receiving).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

mod ready;

/// Start write-back every this many bytes so the final fsync has little left to do.
const WRITEBACK_CHUNK: u64 = 128 << 10;
const FANOUT: u32 = 256;

pub struct Spool {
    root: PathBuf,
    tmp: PathBuf,
    objects: PathBuf,
    min_free_bytes: u64,
    counter: Arc<AtomicU64>,
    /// Empty files made ahead of need for [`Spool::begin`].
    ready: ready::Ready,
    /// This node's name when several nodes share the spool.
    node: Option<String>,
}

/// An instance being received: a temp file holding the Part 10 header and the data so far.
pub struct PartialInstance {
    file: File,
    tmp_path: PathBuf,
    written: u64,
    writeback_from: u64,
    dataset_offset: u64,
    /// The data set's first bytes (up to [`HEAD_KEPT`]), kept as they stream in so that
    /// checking the instance walks its header from memory instead of reading it back.
    head: Vec<u8>,
}

/// How much of each data set's beginning is kept in memory while it is received: the
/// elements before the pixel data of every usual image fit in it (one per association).
const HEAD_KEPT: usize = 64 << 10;

impl Spool {
    pub fn open(root: &Path, min_free_bytes: u64) -> io::Result<Spool> {
        Spool::open_for(root, min_free_bytes, None)
    }

    /// As [`Spool::open`], for `node` when several nodes share the spool.
    pub fn open_for(root: &Path, min_free_bytes: u64, node: Option<&str>) -> io::Result<Spool> {
        let objects = root.join("objects");
        private_dir(root)?;
        private_dir(&root.join("tmp"))?;
        let tmp = match node {
            Some(node) => root.join("tmp").join(node),
            None => root.join("tmp"),
        };
        private_dir(&tmp)?;
        private_dir(&objects)?;
        for i in 0..FANOUT {
            private_dir(&objects.join(format!("{i:02x}")))?;
        }
        sync_dir(root)?;
        sync_dir(&objects)?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let counter = Arc::new(AtomicU64::new(seed));
        Ok(Spool {
            ready: ready::Ready::new(&tmp, counter.clone()),
            root: root.to_path_buf(),
            tmp,
            objects,
            min_free_bytes,
            counter,
            node: node.map(str::to_string),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Deletes what an earlier run left in `tmp/`: partial instances (never acknowledged)
    /// and empty files made ready ahead of need. Returns how many partial ones there were.
    pub fn clear_partials(&self) -> io::Result<usize> {
        let mut n = 0;
        for entry in fs::read_dir(&self.tmp)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                continue; // another node's tmp/ (a shared spool)
            }
            if entry.metadata().map(|m| m.len() > 0).unwrap_or(true) {
                n += 1;
            }
            fs::remove_file(entry.path())?;
        }
        Ok(n)
    }

    /// Spooled files the index does not know (relative paths). They are complete: only
    /// fsync'd files are renamed into `objects/`. After a crash between the rename and
    /// the index commit (or an OS crash losing recent index commits) they are re-indexed.
    /// In a shared spool, this node's files only.
    pub fn unindexed(&self, indexed: &HashSet<String>) -> io::Result<Vec<String>> {
        let prefix = self.node.as_ref().map(|n| format!("{n}."));
        let mut found = Vec::new();
        for i in 0..FANOUT {
            let sub = format!("{i:02x}");
            let Ok(entries) = fs::read_dir(self.objects.join(&sub)) else {
                continue;
            };
            for entry in entries {
                let name = entry?.file_name().to_string_lossy().into_owned();
                if prefix
                    .as_ref()
                    .is_some_and(|p| !name.starts_with(p.as_str()))
                {
                    continue;
                }
                let rel = format!("objects/{sub}/{name}");
                if !indexed.contains(&rel) {
                    found.push(rel);
                }
            }
        }
        Ok(found)
    }

    /// Moves a spooled file that cannot be read back aside (never deletes it) for a person
    /// to look at. Returns the new relative path.
    pub fn quarantine(&self, rel: &str) -> io::Result<String> {
        let dir = self.root.join("quarantine");
        private_dir(&dir)?;
        let name = rel.replace('/', "_");
        fs::rename(self.absolute(rel), dir.join(&name))?;
        sync_dir(&dir)?;
        Ok(format!("quarantine/{name}"))
    }

    /// Free bytes on the spool's file system, for the A700 refusal before disk is full.
    pub fn free_bytes(&self) -> io::Result<u64> {
        let path = std::ffi::CString::new(self.root.as_os_str().as_encoded_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: statvfs writes into the zeroed struct we own; path is NUL-terminated.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.f_bavail as u64 * st.f_frsize as u64)
    }

    pub fn has_room(&self) -> io::Result<bool> {
        Ok(self.free_bytes()? >= self.min_free_bytes)
    }

    /// Starts a new instance file with `header` (preamble + file meta) already written.
    /// The file comes from those made ready ahead of need (see `ready.rs`).
    pub fn begin(&self, header: &[u8]) -> io::Result<PartialInstance> {
        let (mut file, tmp_path) = self.ready.take()?;
        if let Err(e) = file.write_all(header) {
            let _ = fs::remove_file(&tmp_path);
            return Err(e);
        }
        Ok(PartialInstance {
            file,
            tmp_path,
            written: header.len() as u64,
            writeback_from: 0,
            dataset_offset: header.len() as u64,
            head: Vec::new(),
        })
    }

    /// A fresh path in `tmp/` for a working copy (e.g. a tagged instance being sent);
    /// whatever is left there is removed at the next start.
    pub fn scratch_path(&self, suffix: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("{n:016x}.{suffix}"))
    }

    pub fn absolute(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn remove(&self, rel: &str) -> io::Result<()> {
        match fs::remove_file(self.absolute(rel)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Makes a finished instance durable under a new name in `objects/`; returns its
    /// spool-relative path and size.
    pub fn commit(&self, partial: PartialInstance) -> io::Result<(String, u64)> {
        let rel = self.next_name();
        self.commit_as(partial, &rel).map(|size| (rel, size))
    }

    /// The spool-relative path the next instance gets in `objects/`, chosen before it is
    /// made durable ([`Spool::commit_as`]) so that its index entry can be prepared
    /// meanwhile.
    pub fn next_name(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let sub = format!("{:02x}", (n % FANOUT as u64) as u8);
        match &self.node {
            Some(node) => format!("objects/{sub}/{node}.{n:016x}.dcm"),
            None => format!("objects/{sub}/{n:016x}.dcm"),
        }
    }

    /// As [`Spool::commit`], under a name from [`Spool::next_name`]; returns its size.
    pub fn commit_as(&self, partial: PartialInstance, rel: &str) -> io::Result<u64> {
        partial.file.sync_data()?;
        self.place(partial, rel, true)
    }

    /// As [`Spool::commit`] without making it durable yet: for copies that can be made
    /// again (priors retrieved from the PACS), made durable together by [`Spool::sync`]
    /// before anything records them.
    pub fn commit_unsynced(&self, partial: PartialInstance) -> io::Result<(String, u64)> {
        let rel = self.next_name();
        self.place(partial, &rel, false).map(|size| (rel, size))
    }

    /// Makes everything written to the spool's file system durable (one `syncfs`).
    pub fn sync(&self) -> io::Result<()> {
        let dir = File::open(&self.root)?;
        // SAFETY: a plain syscall on a file descriptor we own.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Renames a finished file to `rel` in `objects/` (fsyncing the directory when
    /// `durable`); returns its size.
    fn place(&self, mut partial: PartialInstance, rel: &str, durable: bool) -> io::Result<u64> {
        let path = self.absolute(rel);
        let size = partial.written;
        if let Err(e) = fs::rename(&partial.tmp_path, &path) {
            let _ = fs::remove_file(&partial.tmp_path);
            return Err(e);
        }
        partial.tmp_path = PathBuf::new(); // renamed: nothing left to clean up
        if durable {
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
        }
        Ok(size)
    }
}

impl PartialInstance {
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        if self.head.len() < HEAD_KEPT {
            let keep = (HEAD_KEPT - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..keep]);
        }
        self.written += data.len() as u64;
        if self.written - self.writeback_from >= WRITEBACK_CHUNK {
            // Ask the kernel to start writing this range now (it does not wait), so that
            // the fsync before the acknowledgement only waits for the tail.
            // SAFETY: a plain syscall on a file descriptor we own.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.writeback_from as i64,
                    (self.written - self.writeback_from) as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.writeback_from = self.written;
        }
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// A reader over the data set received so far, for checking it before committing:
    /// its first bytes from memory, the rest (pixel data, usually skipped) from the file.
    pub fn dataset(&self) -> DatasetReader<'_> {
        DatasetReader {
            head: &self.head,
            file: &self.file,
            start: self.dataset_offset,
            len: self.written - self.dataset_offset,
            pos: 0,
        }
    }
}

/// See [`PartialInstance::dataset`].
pub struct DatasetReader<'a> {
    head: &'a [u8],
    file: &'a File,
    /// Where the data set starts in the file, and how long it is so far.
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for DatasetReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = if let Some(kept) = self.head.get(self.pos as usize..).filter(|k| !k.is_empty()) {
            let n = kept.len().min(buf.len());
            buf[..n].copy_from_slice(&kept[..n]);
            n
        } else if self.pos >= self.len {
            0
        } else {
            let want = ((self.len - self.pos) as usize).min(buf.len());
            self.file.read_at(&mut buf[..want], self.start + self.pos)?
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for DatasetReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before the data set")
        })?;
        Ok(self.pos)
    }
}

impl Drop for PartialInstance {
    fn drop(&mut self) {
        if !self.tmp_path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` (and its parents) if missing and makes it readable by readgate's user
/// only (0700): the spool holds patient images.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn commit_moves_file_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 0).unwrap();
        let mut p = spool.begin(b"HEAD").unwrap();
        p.write(b"data").unwrap();
        let mut back = String::new();
        p.dataset().read_to_string(&mut back).unwrap();
        assert_eq!(back, "data");
        let (rel, size) = spool.commit(p).unwrap();
        assert_eq!(size, 8);
        assert_eq!(fs::read(spool.absolute(&rel)).unwrap(), b"HEADdata");
        let dropped = spool.begin(b"x").unwrap();
        let left = dropped.tmp_path.clone();
        drop(dropped);
        assert!(!left.exists(), "a dropped partial instance is removed");
        let mut known = HashSet::new();
        assert_eq!(spool.unindexed(&known).unwrap(), vec![rel.clone()]);
        known.insert(rel.clone());
        assert!(spool.unindexed(&known).unwrap().is_empty());
        let moved = spool.quarantine(&rel).unwrap();
        assert!(spool.absolute(&moved).exists());
        assert!(spool.free_bytes().unwrap() > 0);
    }

    /// A data set longer than the kept head reads the same through the reader as from
    /// the file, at any position, and a skip past its end reports where it really ends.
    #[test]
    fn the_dataset_reader_joins_the_kept_head_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 0).unwrap();
        let mut p = spool.begin(b"PREAMBLE").unwrap();
        let data: Vec<u8> = (0..HEAD_KEPT as u32 + 5000)
            .map(|i| (i % 251) as u8)
            .collect();
        for chunk in data.chunks(7000) {
            p.write(chunk).unwrap();
        }
        assert_eq!(p.head.len(), HEAD_KEPT, "only the head is kept in memory");
        let mut all = Vec::new();
        let mut r = p.dataset();
        let mut buf = [0u8; 3000];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        assert_eq!(all, data);
        for at in [
            0,
            10,
            HEAD_KEPT as u64 - 1,
            HEAD_KEPT as u64,
            HEAD_KEPT as u64 + 4999,
        ] {
            r.seek(SeekFrom::Start(at)).unwrap();
            let mut one = [0u8; 1];
            r.read_exact(&mut one).unwrap();
            assert_eq!(one[0], data[at as usize], "byte {at}");
        }
        assert_eq!(r.seek(SeekFrom::End(0)).unwrap(), data.len() as u64);
        assert_eq!(r.read(&mut buf).unwrap(), 0);
        assert!(r.seek(SeekFrom::Current(-(data.len() as i64) - 1)).is_err());
    }

    /// Files are made ready ahead of need: each begin gets its own, a restart's clean-up
    /// counts only the partial ones, and the ready ones go when the spool is dropped.
    #[test]
    fn ready_files_are_distinct_and_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        let spool = Spool::open(dir.path(), 0).unwrap();
        let mut open = Vec::new();
        for i in 0..40u8 {
            let mut p = spool.begin(&[i]).unwrap();
            p.write(&[i; 10]).unwrap();
            open.push(p);
        }
        let paths: HashSet<_> = open.iter().map(|p| p.tmp_path.clone()).collect();
        assert_eq!(paths.len(), 40, "one file per instance");
        // Give the thread time to top the ready files up (it keeps between LOW and TARGET),
        // then count what a restart sees.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while fs::read_dir(&tmp).unwrap().count() < 40 + ready::LOW
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            spool.clear_partials().unwrap(),
            40,
            "empty ready files are not partials"
        );
        drop(open);
        let again = Spool::open(dir.path(), 0).unwrap();
        let p = again.begin(b"x").unwrap();
        drop(p);
        drop(again);
        drop(spool);
        assert_eq!(
            fs::read_dir(&tmp).unwrap().count(),
            0,
            "nothing left in tmp/"
        );
    }
}
