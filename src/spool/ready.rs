//! Empty files made ahead of need in the spool's `tmp/`, so that receiving an instance
//! does not wait for the file system to allocate one.
//!
//! Creating a file is the costliest metadata step of a receive on some file systems
//! (ext4 without a journal scans for an inode that was not deleted in the last half
//! minute, which on a busy spool that forwards and deletes all day is most of them).
//! A background thread keeps up to [`TARGET`] files created and open; [`Ready::take`]
//! hands one out, or creates one on the spot when none is left. Nothing about
//! durability changes: these files live in `tmp/`, are never acknowledged as they are,
//! and any left over are removed at the next start like every other file there.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// How many files are kept ready.
pub(super) const TARGET: usize = 16;
/// The refill starts when fewer than this many are left.
pub(super) const LOW: usize = TARGET / 2;

/// The ready files of one spool.
pub(super) struct Ready {
    shared: Arc<Shared>,
    /// The refilling thread, started at the first `take` (never for a spool that is only
    /// read, and never before `clear_partials` has emptied `tmp/` at start); `None` when
    /// it could not be started. Joined when the spool is dropped, so that no ready file
    /// outlives it.
    thread: std::sync::OnceLock<Option<std::thread::JoinHandle<()>>>,
}

struct Shared {
    tmp: PathBuf,
    counter: Arc<AtomicU64>,
    files: Mutex<Vec<(File, PathBuf)>>,
    wanted: Condvar,
    closing: std::sync::atomic::AtomicBool,
}

impl Ready {
    pub(super) fn new(tmp: &Path, counter: Arc<AtomicU64>) -> Ready {
        Ready {
            shared: Arc::new(Shared {
                tmp: tmp.to_path_buf(),
                counter,
                files: Mutex::new(Vec::with_capacity(TARGET)),
                wanted: Condvar::new(),
                closing: Default::default(),
            }),
            thread: std::sync::OnceLock::new(),
        }
    }

    /// An empty file in `tmp/`, open for reading and writing, and its path.
    pub(super) fn take(&self) -> io::Result<(File, PathBuf)> {
        self.thread.get_or_init(|| {
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name("spool-ready".into())
                .spawn(move || shared.refill());
            // Receiving still works without it: every file is then created on the spot.
            spawned
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "cannot start the spool's file-preparing thread")
                })
                .ok()
        });
        let taken = {
            let mut files = self.shared.lock();
            let taken = files.pop();
            if files.len() < LOW {
                self.shared.wanted.notify_one();
            }
            taken
        };
        match taken {
            Some(ready) => Ok(ready),
            None => self.shared.create(),
        }
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        {
            // Under the lock, so that the thread cannot miss it between its check and its
            // wait.
            let mut files = self.shared.lock();
            self.shared.closing.store(true, Ordering::Relaxed);
            self.shared.wanted.notify_one();
            for (_, path) in files.drain(..) {
                let _ = std::fs::remove_file(path);
            }
        }
        // A file the thread was making meanwhile is removed by the thread itself before
        // it ends.
        if let Some(thread) = self.thread.take().flatten() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<(File, PathBuf)>> {
        // The vector is always whole: a panic elsewhere cannot leave it half-changed.
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn create(&self) -> io::Result<(File, PathBuf)> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = self.tmp.join(format!("{n:016x}.part"));
        // Patient data: readable by readgate's user only, whatever the umask.
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok((file, path))
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// The thread: tops the files up to `TARGET` whenever fewer than `LOW` are left.
    fn refill(self: Arc<Self>) {
        loop {
            {
                let mut files = self.lock();
                while files.len() >= LOW && !self.closing() {
                    files = self.wanted.wait(files).unwrap_or_else(|p| p.into_inner());
                }
            }
            if self.closing() {
                return;
            }
            while self.lock().len() < TARGET && !self.closing() {
                match self.create() {
                    Ok(ready) => self.lock().push(ready),
                    Err(e) => {
                        // The disk is full or tmp/ is gone: `take` creates on the spot
                        // and answers the error to the sender. Try again later.
                        tracing::debug!(error = %e, "cannot prepare a spool file");
                        let files = self.lock();
                        if !self.closing() {
                            let wait = std::time::Duration::from_secs(1);
                            let _ = self.wanted.wait_timeout(files, wait);
                        }
                        break;
                    }
                }
            }
            if self.closing() {
                // Made after Drop emptied the list: remove what this pass added.
                for (_, path) in self.lock().drain(..) {
                    let _ = std::fs::remove_file(path);
                }
                return;
            }
        }
    }
}
