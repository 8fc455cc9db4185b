//! Fetches each study's priors ahead of its decision (`priors.prefetch`), so that a
//! study that passes leaves at once: as soon as the PACS has answered for a patient
//! ([`super::lookup`]), for each study being received or held and each order of the
//! last day whose images have not arrived, the priors [`super::choose`] picks for its
//! destination are retrieved into the [`PriorCache`].
//!
//! Driven by the store, like the lookup: it wakes when the lookup has answers, when an
//! instance or HL7 message is stored, and every `priors.retry_secs`. A study or order
//! whose priors are all here (and whose every PACS has answered) is not looked at again;
//! a prior that failed is tried again after `retry_secs`, and while it fails the study is
//! held with PRIORS_UNAVAILABLE naming it (`policy.priors.on_pacs_unreachable`). Orders
//! are prefetched for when a route matches them by modality alone (an order names no
//! calling AE).
//!
//! Bounded: 64 studies and 64 orders not done yet per pass; nothing is prefetched while the cache is
//! at `priors.cache_max_mb`.

use super::cache::{PriorCache, Purpose};
use super::choose::{self, Pending};
use crate::config::{Config, Live};
use crate::decide::context::{PacsAnswer, StudyContext};
use crate::store::Store;
use crate::time::now_ms;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

/// Studies and orders looked at in one pass, each.
const PASS_LIMIT: usize = 64;
/// Studies and orders listed in one pass, each (most are done and skipped).
const SCAN_LIMIT: usize = 10_000;
/// Orders of this long ago still have their priors fetched (as `lookup`).
const ORDER_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// The cache is swept at most this often (a sweep asks the store about every prior it
/// holds); sooner only when it is full.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// Past this many remembered keys the memory is cleared (a pass then looks again).
const REMEMBER_MAX: usize = 10_000;

pub struct Prefetch {
    pub config: Live,
    pub store: Arc<Store>,
    pub cache: Arc<PriorCache>,
    /// Woken when an instance or HL7 message is stored, or the lookup has answers.
    pub wanted: Arc<Notify>,
}

/// What one study or order wants fetched.
struct Want {
    /// `study:UID` or `order:ID`.
    key: String,
    for_study: String,
    priors: Vec<Pending>,
    /// Every PACS has answered for the patient: nothing more will be chosen.
    settled: bool,
}

impl Prefetch {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let retry = Duration::from_secs(self.config.current().priors.retry_secs);
        let mut done: HashSet<String> = HashSet::new();
        let mut failed: HashMap<String, Instant> = HashMap::new();
        let mut full_logged = false;
        let mut swept = Instant::now();
        loop {
            if self.config.current().priors.prefetch {
                self.pass(&mut done, &mut failed, &mut full_logged, &shutdown)
                    .await;
            }
            if swept.elapsed() >= SWEEP_INTERVAL {
                self.cache.sweep().await;
                swept = Instant::now();
            }
            if !super::next_pass(&self.wanted, retry, &mut shutdown).await {
                return;
            }
        }
    }

    async fn pass(
        &self,
        done: &mut HashSet<String>,
        failed: &mut HashMap<String, Instant>,
        full_logged: &mut bool,
        shutdown: &watch::Receiver<bool>,
    ) {
        if done.len() > REMEMBER_MAX {
            done.clear();
        }
        let retry = Duration::from_secs(self.config.current().priors.retry_secs);
        failed.retain(|_, at| at.elapsed() < retry);
        let (store, config, skip) = (self.store.clone(), self.config.current(), done.clone());
        let wants = match tokio::task::spawn_blocking(move || wants(&store, &config, &skip)).await {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => {
                warn!(error = %e, "priors: cannot read which priors to fetch");
                return;
            }
            Err(e) => {
                warn!(error = %e, "priors: prefetch task failed");
                return;
            }
        };
        let limit = self.cache.limit();
        for want in wants {
            let mut complete = want.settled;
            for prior in &want.priors {
                if *shutdown.borrow() {
                    return;
                }
                if self.cache.has(&prior.uid) {
                    continue;
                }
                complete = false;
                if failed.contains_key(&prior.uid) {
                    continue;
                }
                if self.cache.bytes() >= limit {
                    self.cache.sweep().await;
                    if self.cache.bytes() >= limit {
                        if !*full_logged {
                            info!(cache_max_mb = self.config.current().priors.cache_max_mb,
                                "priors: the cache is full; prefetching waits (priors are retrieved when their study leaves)");
                            *full_logged = true;
                        }
                        return;
                    }
                }
                *full_logged = false;
                if self
                    .cache
                    .fetch(&prior.pacs, &prior.uid, &want.for_study, Purpose::Prefetch)
                    .await
                    .is_err()
                {
                    failed.insert(prior.uid.clone(), Instant::now());
                }
            }
            if complete {
                done.insert(want.key);
            }
        }
    }
}

/// The studies and orders whose priors to fetch now (blocking: reads the store).
fn wants(
    store: &Store,
    config: &Config,
    done: &HashSet<String>,
) -> crate::store::Result<Vec<Want>> {
    let pacs_ids: Vec<String> = config.pacs.iter().map(|p| p.id.clone()).collect();
    let offset = config.policy.utc_offset_minutes;
    let now = now_ms();
    let mut contexts: Vec<(String, StudyContext)> = Vec::new();
    // Those already done are skipped before the limit, so a long list of held studies
    // cannot hide a new one.
    let mut studies = 0;
    for uid in store.open_studies_with_pacs_history(SCAN_LIMIT)? {
        let key = format!("study:{uid}");
        if done.contains(&key) {
            continue;
        }
        studies += 1;
        if studies > PASS_LIMIT {
            break;
        }
        let snapshot = store.snapshot(&uid)?;
        let ctx = crate::decide::assemble::from_store(store, &snapshot, offset, &pacs_ids)?;
        contexts.push((key, ctx));
    }
    let mut orders = 0;
    for order in store.recent_orders_with_pacs_history(now - ORDER_WINDOW_MS, SCAN_LIMIT)? {
        let key = format!("order:{}", order.id);
        if done.contains(&key) {
            continue;
        }
        orders += 1;
        if orders > PASS_LIMIT {
            break;
        }
        let ctx = crate::decide::assemble::for_order(store, &order, offset, &pacs_ids)?;
        contexts.push((key, ctx));
    }
    let mut out = Vec::new();
    for (key, ctx) in contexts {
        let settled = ctx
            .pacs
            .iter()
            .all(|a| matches!(a, PacsAnswer::Answered { .. }));
        let Some((_, _, destination)) =
            crate::decide::first_route(config, &ctx.modalities, &ctx.calling_aes)
        else {
            continue; // no route (yet): the decision will say so
        };
        let priors = if choose::takes_priors(config, &ctx, &destination.id) {
            choose::to_send(store, config, &ctx, &destination.id, now)?
        } else {
            Vec::new()
        };
        out.push(Want {
            key,
            for_study: ctx.study_uid.clone(),
            priors,
            settled,
        });
    }
    Ok(out)
}
