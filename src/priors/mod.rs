//! Priors from the hospital's PACS (JRS-7.3.2: the remote reader must be able to refer to
//! the prior images and reports the reading needs).
//!
//! [`find`] asks a `[[pacs]]` entry for a patient's studies (C-FIND, Study Root, STUDY
//! level) and for the report documents in a study (SERIES and IMAGE level); [`lookup`]
//! keeps every patient with a study or order in progress asked, and stores the answers
//! that the prior-report check reads; [`choose`] picks the priors that go with a study,
//! [`prefetch`] retrieves them into the [`cache`] ahead of its decision (C-GET by
//! [`retrieve`], or C-MOVE by [`move_scu`]), and [`report_sr`] turns a prior's HL7-only
//! report into a Basic Text SR, for `forward::priors`, which sends them with the study.

pub mod cache;
pub mod choose;
pub mod find;
mod link;
pub mod lookup;
pub mod move_scu;
pub mod prefetch;
pub mod report_sr;
pub mod retrieve;
pub mod view;

pub use find::{find_studies, FindError, PacsStudy, StudyQuery};

use std::time::Duration;
use tokio::sync::{watch, Notify};

/// The shortest time between two passes of a store-driven task (lookup, prefetch): a
/// pass reads the store, which the receivers write to.
const PASS_INTERVAL: Duration = Duration::from_millis(250);

/// Waits for a store-driven task's next pass: at least [`PASS_INTERVAL`], then until
/// `wanted` is notified or `retry` has passed. `false` when readgate is stopping.
async fn next_pass(wanted: &Notify, retry: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(PASS_INTERVAL) => {}
        _ = shutdown.changed() => return false,
    }
    tokio::select! {
        _ = wanted.notified() => true,
        _ = tokio::time::sleep(retry) => true,
        _ = shutdown.changed() => false,
    }
}
