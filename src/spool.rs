//! The spool: where received instances live until they reach their destination.
//!
//! An instance is streamed into `tmp/` as its PDUs arrive, checked, fsync'd, renamed
//! into `objects/xx/` and the directory fsync'd. Only then is it indexed, and only after
//! the index commit is the C-STORE answered. Anything left in `tmp/` after a crash was
//! never acknowledged and is deleted at start-up; anything in `objects/` is complete and
//! durable, so the spool, not the index, is the last word on what was received.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Start write-back every this many bytes so the final fsync has little left to do.
const WRITEBACK_CHUNK: u64 = 128 << 10;
const FANOUT: u32 = 256;

pub struct Spool {
    root: PathBuf,
    tmp: PathBuf,
    objects: PathBuf,
    min_free_bytes: u64,
    counter: AtomicU64,
}

/// An instance being received: a temp file holding the Part 10 header and the data so far.
pub struct PartialInstance {
    file: File,
    tmp_path: PathBuf,
    written: u64,
    writeback_from: u64,
    dataset_offset: u64,
}

impl Spool {
    pub fn open(root: &Path, min_free_bytes: u64) -> io::Result<Spool> {
        let tmp = root.join("tmp");
        let objects = root.join("objects");
        private_dir(root)?;
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
        Ok(Spool {
            root: root.to_path_buf(),
            tmp,
            objects,
            min_free_bytes,
            counter: AtomicU64::new(seed),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Deletes partial files from an earlier run (never acknowledged). Returns how many.
    pub fn clear_partials(&self) -> io::Result<usize> {
        let mut n = 0;
        for entry in fs::read_dir(&self.tmp)? {
            let entry = entry?;
            fs::remove_file(entry.path())?;
            n += 1;
        }
        Ok(n)
    }

    /// Spooled files the index does not know (relative paths). They are complete: only
    /// fsync'd files are renamed into `objects/`. After a crash between the rename and
    /// the index commit (or an OS crash losing recent index commits) they are re-indexed.
    pub fn unindexed(&self, indexed: &HashSet<String>) -> io::Result<Vec<String>> {
        let mut found = Vec::new();
        for i in 0..FANOUT {
            let sub = format!("{i:02x}");
            let Ok(entries) = fs::read_dir(self.objects.join(&sub)) else {
                continue;
            };
            for entry in entries {
                let rel = format!("objects/{sub}/{}", entry?.file_name().to_string_lossy());
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
    pub fn begin(&self, header: &[u8]) -> io::Result<PartialInstance> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp_path = self.tmp.join(format!("{n:016x}.part"));
        // Patient data: readable by readgate's user only, whatever the umask.
        let mut file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp_path)?;
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
        partial.file.sync_data()?;
        self.place(partial, true)
    }

    /// As [`Spool::commit`] without making it durable yet: for copies that can be made
    /// again (priors retrieved from the PACS), made durable together by [`Spool::sync`]
    /// before anything records them.
    pub fn commit_unsynced(&self, partial: PartialInstance) -> io::Result<(String, u64)> {
        self.place(partial, false)
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

    /// Renames a finished file into `objects/` (fsyncing the directory when `durable`).
    fn place(&self, mut partial: PartialInstance, durable: bool) -> io::Result<(String, u64)> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let sub = format!("{:02x}", (n % FANOUT as u64) as u8);
        let name = format!("{n:016x}.dcm");
        let rel = format!("objects/{sub}/{name}");
        let dir = self.objects.join(&sub);
        let size = partial.written;
        if let Err(e) = fs::rename(&partial.tmp_path, dir.join(&name)) {
            let _ = fs::remove_file(&partial.tmp_path);
            return Err(e);
        }
        partial.tmp_path = PathBuf::new(); // renamed: nothing left to clean up
        if durable {
            sync_dir(&dir)?;
        }
        Ok((rel, size))
    }
}

impl PartialInstance {
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
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

    /// A reader over the data set part of the file, for checking it before committing.
    pub fn dataset(&mut self) -> io::Result<&File> {
        self.file.seek(SeekFrom::Start(self.dataset_offset))?;
        Ok(&self.file)
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
        p.dataset().unwrap().read_to_string(&mut back).unwrap();
        assert_eq!(back, "data");
        let (rel, size) = spool.commit(p).unwrap();
        assert_eq!(size, 8);
        assert_eq!(fs::read(spool.absolute(&rel)).unwrap(), b"HEADdata");
        let dropped = spool.begin(b"x").unwrap();
        drop(dropped);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        let mut known = HashSet::new();
        assert_eq!(spool.unindexed(&known).unwrap(), vec![rel.clone()]);
        known.insert(rel.clone());
        assert!(spool.unindexed(&known).unwrap().is_empty());
        let moved = spool.quarantine(&rel).unwrap();
        assert!(spool.absolute(&moved).exists());
        assert!(spool.free_bytes().unwrap() > 0);
    }
}
