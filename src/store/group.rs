//! Group commit: work that arrives from several threads at once is done in one
//! transaction, so that concurrent associations share a commit instead of queueing for
//! one each.
//!
//! No thread of its own: the first caller to find nobody committing becomes the leader,
//! takes every request waiting (its own included), runs them together and hands each
//! caller its own result; the others wait on a condition variable meanwhile. A lone
//! caller leads at once and waits for nobody, so no answer is delayed past its own
//! commit.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

pub(super) struct Group<Req, Res> {
    state: Mutex<State<Req, Res>>,
    done: Condvar,
}

struct State<Req, Res> {
    next: u64,
    waiting: Vec<(u64, Req)>,
    results: HashMap<u64, Res>,
    leading: bool,
}

impl<Req, Res> Group<Req, Res> {
    pub(super) fn new() -> Self {
        Group {
            state: Mutex::new(State {
                next: 0,
                waiting: Vec::new(),
                results: HashMap::new(),
                leading: false,
            }),
            done: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<Req, Res>> {
        // Every change to the state is whole before the lock is released.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `req` together with whatever else is waiting. `run` gets the batch in arrival
    /// order and returns one result per request, in the same order; `lost` is the answer
    /// for a request whose leader failed to give one (it panicked).
    pub(super) fn submit(
        &self,
        req: Req,
        run: impl FnOnce(Vec<Req>) -> Vec<Res>,
        lost: impl Fn() -> Res,
    ) -> Res {
        let mut state = self.lock();
        let ticket = state.next;
        state.next += 1;
        state.waiting.push((ticket, req));
        let mut run = Some(run);
        loop {
            if let Some(res) = state.results.remove(&ticket) {
                return res;
            }
            if !state.leading {
                if !state.waiting.iter().any(|(t, _)| *t == ticket) {
                    // Taken by a leader that never answered.
                    return lost();
                }
                let Some(run) = run.take() else {
                    return lost();
                };
                state.leading = true;
                let batch: Vec<(u64, Req)> = std::mem::take(&mut state.waiting);
                drop(state);
                let leader = Leading { group: self };
                let (tickets, reqs): (Vec<u64>, Vec<Req>) = batch.into_iter().unzip();
                let results = run(reqs);
                state = self.lock();
                for (t, r) in tickets.into_iter().zip(results) {
                    state.results.insert(t, r);
                }
                drop(state);
                drop(leader);
                state = self.lock();
                continue;
            }
            state = self.done.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Ends a leader's turn, even when its work panicked: the next waiter can lead.
struct Leading<'a, Req, Res> {
    group: &'a Group<Req, Res>,
}

impl<Req, Res> Drop for Leading<'_, Req, Res> {
    fn drop(&mut self) {
        self.group.lock().leading = false;
        self.group.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Eight threads submitting at once all get their own answer, in fewer batches than
    /// requests once they overlap; a lone request is its own batch.
    #[test]
    fn concurrent_requests_share_batches_and_each_gets_its_own_answer() {
        let group = Arc::new(Group::<u32, u32>::new());
        let batches = Arc::new(AtomicUsize::new(0));
        let alone = group.submit(7, |b| b.iter().map(|x| x * 10).collect(), || 0);
        assert_eq!(alone, 70);
        let threads: Vec<_> = (0..8u32)
            .map(|i| {
                let (group, batches) = (group.clone(), batches.clone());
                std::thread::spawn(move || {
                    (0..50u32)
                        .map(|j| {
                            let n = i * 1000 + j;
                            let got = group.submit(
                                n,
                                |b| {
                                    batches.fetch_add(1, Ordering::Relaxed);
                                    // Long enough that others arrive meanwhile.
                                    std::thread::sleep(std::time::Duration::from_micros(200));
                                    b.iter().map(|x| x * 10).collect()
                                },
                                || 0,
                            );
                            assert_eq!(got, n * 10, "each caller gets its own result");
                            got
                        })
                        .count()
                })
            })
            .collect();
        let answered: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(answered, 400);
        let n = batches.load(Ordering::Relaxed);
        assert!(
            n < 400,
            "{n} batches for 400 overlapping requests: nothing was shared"
        );
    }

    /// A leader that panics does not leave the others waiting: its batch is answered
    /// `lost`, and the next request runs normally.
    #[test]
    fn a_panicking_leader_releases_the_others() {
        let group = Arc::new(Group::<u32, Option<u32>>::new());
        let g = group.clone();
        let panicked = std::thread::spawn(move || {
            g.submit(1, |_| panic!("the leader's work failed"), || None)
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(
            group.submit(2, |b| b.into_iter().map(Some).collect(), || None),
            Some(2)
        );
    }
}
