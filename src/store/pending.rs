//! An instance's file being made durable while its index entry is prepared: the receiver
//! starts the file's fsync and rename on another thread, asks for the index at once, and
//! the index's transaction reads and writes while the disk flushes. Its commit waits for
//! the file ([`PendingSync::wait`]), so an index entry is never durable before its file:
//! the order of the guarantee is unchanged, only the waiting overlaps.
//!
//! On SQLite the transaction holds the database's one write lock through the flush, so
//! an HL7 message arriving then waits up to one fsync longer for its commit. Waiting for
//! the file before `BEGIN` instead made the durable receive 1–12 % slower in two
//! alternating runs (`bench/relay.sh --only a,b`, 2026-12-04), so both backends overlap.

use std::sync::{Arc, Condvar, Mutex};

/// Whether a file became durable, once it is known.
pub struct PendingSync {
    state: Mutex<Option<bool>>,
    known: Condvar,
}

impl PendingSync {
    pub fn new() -> Arc<PendingSync> {
        Arc::new(PendingSync {
            state: Mutex::new(None),
            known: Condvar::new(),
        })
    }

    /// A file already durable (re-indexing, tests).
    pub fn done() -> Arc<PendingSync> {
        let p = PendingSync::new();
        p.finish(true);
        p
    }

    /// Says whether the file became durable. The first answer counts.
    pub fn finish(&self, durable: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.is_none() {
            *state = Some(durable);
            self.known.notify_all();
        }
    }

    /// Waits until it is known whether the file became durable.
    pub fn wait(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(durable) = *state {
                return durable;
            }
            state = self.known.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// A guard for the thread making the file durable: unless that thread says otherwise
    /// ([`SyncGuard::durable`]), the file counts as not durable when the guard goes,
    /// so a panic there cannot leave the index waiting for ever.
    pub fn guard(self: &Arc<Self>) -> SyncGuard {
        SyncGuard {
            pending: self.clone(),
            durable: false,
        }
    }
}

/// See [`PendingSync::guard`].
pub struct SyncGuard {
    pending: Arc<PendingSync>,
    durable: bool,
}

impl SyncGuard {
    pub fn durable(&mut self, durable: bool) {
        self.durable = durable;
    }
}

impl Drop for SyncGuard {
    fn drop(&mut self) {
        self.pending.finish(self.durable);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_answer_counts_and_a_dropped_guard_says_not_durable() {
        let p = PendingSync::new();
        let waiter = {
            let p = p.clone();
            std::thread::spawn(move || p.wait())
        };
        let mut g = p.guard();
        g.durable(true);
        drop(g);
        assert!(waiter.join().unwrap());
        p.finish(false);
        assert!(p.wait(), "the first answer counts");

        let p = PendingSync::new();
        let g = p.guard();
        let _ = std::thread::spawn(move || {
            let _g = g;
            panic!("the thread making the file durable failed");
        })
        .join();
        assert!(!p.wait());
        assert!(PendingSync::done().wait());
    }
}
