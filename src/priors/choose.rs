//! Which priors go with a study: those the prior-report check compares it with
//! (look-back, comparable modality; `decide::policy::comparable_priors`), the newest
//! `priors.send_max` (at most `priors.max_studies`), held by a `[[pacs]]`, that the
//! destination does not have from readgate yet. One definition for the prefetcher and
//! the forwarder, so what is fetched ahead is what is sent.

use crate::config::Config;
use crate::decide::context::StudyContext;
use crate::store::Store;

/// A chosen prior the destination does not have, and the PACS that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub uid: String,
    pub accession: Option<String>,
    pub pacs: String,
}

/// Whether a study (as `ctx` describes it) takes priors to `destination`: the first
/// route that matches it says (`[[routes]] send_priors`), else the destination does.
pub fn takes_priors(config: &Config, ctx: &StudyContext, destination: &str) -> bool {
    crate::decide::takes_priors(config, &ctx.modalities, &ctx.calling_aes, destination)
}

/// The priors of the study `ctx` describes to send to `destination`, newest first.
pub fn to_send(
    store: &Store,
    config: &Config,
    ctx: &StudyContext,
    destination: &str,
    now_ms: i64,
) -> crate::store::Result<Vec<Pending>> {
    let pacs_ids: Vec<String> = config.pacs.iter().map(|p| p.id.clone()).collect();
    let most = config.priors.max_studies.min(config.priors.send_max);
    let mut out = Vec::new();
    let chosen = crate::decide::policy::comparable_priors(ctx, &config.policy, now_ms);
    for prior in chosen.into_iter().take(most) {
        let Some(pacs) = store
            .pacs_holding(&prior.study_uid, &pacs_ids)?
            .into_iter()
            .next()
        else {
            continue; // readgate knows it only from its own traffic
        };
        if !store.destination_has(destination, &prior.study_uid)? {
            out.push(Pending {
                uid: prior.study_uid,
                accession: prior.accession,
                pacs,
            });
        }
    }
    Ok(out)
}
