//! Keeps each patient's history in the hospital's PACS at hand, so that the prior-report
//! check (JRS-7.3.2) sees the real history, not only what readgate received itself.
//!
//! Driven by the store, not by a queue of events: it wakes when an instance or an HL7
//! message is stored (and every `priors.retry_secs`), asks the store which patients of
//! studies being received or held, or of orders of the last day, have no fresh answer
//! from every `[[pacs]]`, and asks the PACS for them one by one. A burst of instances
//! for one patient therefore causes one query, a restart loses nothing (the next pass
//! finds the same patients), and a PACS that was down is asked again after
//! `retry_secs`. Each answer is stored; held studies of the patient then go back to the
//! decision stage, which releases those the answer satisfies.
//!
//! No patient identifier is logged: log lines name the PACS and counts.

use super::find::{Session, StudyQuery};
use crate::config::Live;
use crate::model::PacsStudy;
use crate::store::{ContextKeys, Store};
use crate::time::now_ms;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

/// Orders of this long ago still bring their patient's history in (the images of an
/// order usually follow within hours).
const ORDER_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// Patients asked for in one pass; the rest wait for the next.
const PASS_LIMIT: usize = 64;

pub struct Lookup {
    pub config: Live,
    pub store: Arc<Store>,
    /// Each lookup is audited (`query`, actor `system`) before it is made.
    pub audit: Arc<crate::audit::AuditLog>,
    /// Woken when an instance or HL7 message is stored.
    pub wanted: Arc<Notify>,
    /// Wakes the study stage after held studies were re-opened.
    pub reconsider: Arc<Notify>,
    /// Woken after each pass (the prefetcher: answers may choose priors to fetch).
    pub answered: Arc<Notify>,
}

impl Lookup {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let retry = Duration::from_secs(self.config.current().priors.retry_secs);
        loop {
            let due = self.due().await;
            // A PACS that cannot be reached is not tried again for every patient of the
            // pass (a silent host would cost `timeout_secs` each): they share its error.
            let mut down = HashMap::new();
            for patient in due.iter() {
                if *shutdown.borrow() {
                    return;
                }
                self.look_up(patient, &mut down).await;
            }
            self.answered.notify_one();
            if due.len() >= PASS_LIMIT {
                continue;
            }
            if !super::next_pass(&self.wanted, retry, &mut shutdown).await {
                return;
            }
        }
    }

    /// The patients to ask for now.
    async fn due(&self) -> Vec<String> {
        let store = self.store.clone();
        let pacs: Vec<String> = self
            .config
            .current()
            .pacs
            .iter()
            .map(|p| p.id.clone())
            .collect();
        let now = now_ms();
        let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let fresh = now.saturating_sub(ms(self.config.current().priors.refresh_secs));
        let retry = now.saturating_sub(ms(self.config.current().priors.retry_secs));
        let due = tokio::task::spawn_blocking(move || {
            store.patients_to_look_up(&pacs, now - ORDER_WINDOW_MS, fresh, retry, PASS_LIMIT)
        })
        .await;
        match due {
            Ok(Ok(due)) => due,
            Ok(Err(e)) => {
                warn!(error = %e, "priors: cannot read which patients to look up");
                Vec::new()
            }
            Err(e) => {
                warn!(error = %e, "priors: lookup task failed");
                Vec::new()
            }
        }
    }

    /// Asks every `[[pacs]]` for one patient's history (and the IDs of the same domain
    /// merged with theirs), stores the answers, and re-opens the patient's held studies.
    async fn look_up(&self, patient: &str, down: &mut HashMap<String, String>) {
        let store = self.store.clone();
        let id = patient.to_string();
        let (linked, earliest) = tokio::task::spawn_blocking(move || {
            let linked = store
                .same_domain_patient_ids(&id)
                .unwrap_or_else(|_| vec![id.clone()]);
            let earliest = store.earliest_open_study_date(&linked).ok().flatten();
            (linked, earliest)
        })
        .await
        .unwrap_or_else(|_| (vec![patient.to_string()], None));
        // Back from today, or from the earliest study in progress when it is older.
        let offset = i64::from(self.config.current().policy.utc_offset_minutes) * 60;
        let today = crate::time::local_day(now_ms(), offset);
        let from = earliest
            .and_then(|d| crate::time::parse_dicom_da(&d).ok())
            .map_or(today, |d| d.min(today));
        let since = crate::time::format_dicom_da(
            from - i64::from(self.config.current().policy.priors.lookback_days),
        );
        for pacs in &self.config.current().pacs {
            let calling = pacs.calling_ae(&self.config.current());
            for id in &linked {
                let query = StudyQuery {
                    patient_id: id.clone(),
                    issuer: None,
                    since: since.clone(),
                };
                if let Some(error) = down.get(&pacs.id) {
                    self.save(id, &pacs.id, Err(error.clone())).await;
                    continue;
                }
                let audit = self.audit.clone();
                let (pacs_id, ae, pid, since) = (
                    pacs.id.clone(),
                    pacs.ae_title.clone(),
                    id.clone(),
                    since.clone(),
                );
                let audited = tokio::task::spawn_blocking(move || {
                    audit.record_pacs_query(
                        "system",
                        serde_json::json!({"pacs": pacs_id, "ae_title": ae, "operation": "C-FIND",
                            "patient_id": pid, "since": since}),
                    )
                })
                .await;
                let started = std::time::Instant::now();
                let outcome = match audited {
                    Ok(Ok(_)) => {
                        match history(
                            pacs,
                            &calling,
                            &query,
                            self.config.current().priors.max_studies,
                        )
                        .await
                        {
                            Ok(found) => Ok(found),
                            Err(e) => {
                                let unreachable = matches!(
                                    e,
                                    super::FindError::Associate { .. }
                                        | super::FindError::Timeout { .. }
                                );
                                if unreachable {
                                    down.insert(pacs.id.clone(), e.to_string());
                                }
                                Err(e.to_string())
                            }
                        }
                    }
                    Ok(Err(e)) => Err(format!(
                        "not asked: its audit entry could not be written ({e})"
                    )),
                    Err(e) => Err(format!("not asked: internal error ({e})")),
                };
                crate::metrics::pacs_lookup(
                    &pacs.id,
                    outcome.is_ok(),
                    started.elapsed().as_secs_f64(),
                );
                match &outcome {
                    Ok(studies) => info!(
                        pacs = %pacs.id,
                        studies = studies.len(),
                        with_reports = studies.iter().filter(|(_, d)| *d > 0).count(),
                        ms = started.elapsed().as_millis() as u64,
                        "priors: PACS answered"
                    ),
                    Err(e) => warn!(pacs = %pacs.id, error = %e, "priors: PACS could not be asked"),
                }
                self.save(id, &pacs.id, outcome).await;
            }
        }
        let store = self.store.clone();
        let keys = ContextKeys {
            patient_ids: linked,
            ..Default::default()
        };
        let reopened = tokio::task::spawn_blocking(move || {
            store.reconsider_held(&keys, "prior studies from the PACS", now_ms())
        })
        .await;
        if let Ok(Ok(uids)) = reopened {
            if !uids.is_empty() {
                self.reconsider.notify_one();
            }
        }
    }
}

impl Lookup {
    /// Stores one lookup's outcome (off the async workers).
    async fn save(
        &self,
        patient: &str,
        pacs: &str,
        outcome: Result<Vec<(PacsStudy, u32)>, String>,
    ) {
        let store = self.store.clone();
        let (id, pacs_id) = (patient.to_string(), pacs.to_string());
        let saved = tokio::task::spawn_blocking(move || {
            let outcome = outcome.as_deref().map_err(|e| e.as_str());
            store.record_pacs_lookup(&id, &pacs_id, now_ms(), outcome)
        })
        .await;
        if !matches!(saved, Ok(Ok(()))) {
            warn!(pacs = %pacs, "priors: the PACS answer could not be stored");
        }
    }
}

/// The patient's studies in one PACS, each with its number of report documents (asked
/// for the newest `max_studies`; older ones count 0), over one association.
async fn history(
    pacs: &crate::config::pacs::Pacs,
    calling: &str,
    query: &StudyQuery,
    max_studies: usize,
) -> Result<Vec<(PacsStudy, u32)>, super::FindError> {
    let mut session = Session::open(pacs, calling).await?;
    let outcome = async {
        let mut studies = session.studies(query).await?;
        studies.sort_by(|a, b| (&b.date, &b.time).cmp(&(&a.date, &a.time)));
        let mut out = Vec::with_capacity(studies.len());
        for (i, mut study) in studies.into_iter().enumerate() {
            let documents = if i < max_studies {
                let facts = session.series_facts(&study.study_uid).await?;
                study.body_parts = facts.body_parts;
                facts.documents.len() as u32
            } else {
                0
            };
            out.push((study, documents));
        }
        Ok(out)
    }
    .await;
    session.close(&outcome).await;
    outcome
}
