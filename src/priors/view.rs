//! The priors a study's decision saw, for people: the study page, `GET
//! /api/v1/studies/{id}` and `readgate priors STUDY` show the same rows, read from the
//! context recorded with the decision (so they show what the check used, not what the
//! PACS says now).

use crate::decide::context::{PacsAnswer, Source, StudyContext};
use serde::Serialize;

/// One prior study of the patient, as the decision saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PriorRow {
    pub study_uid: String,
    pub accession: Option<String>,
    /// Local date `YYYY-MM-DD`, when known.
    pub date: Option<String>,
    pub modalities: Vec<String>,
    /// Body Part Examined (0018,0015) of its series, when known.
    pub body_parts: Vec<String>,
    /// Final or corrected HL7 reports on file.
    pub final_reports: u32,
    /// Report documents (SR, encapsulated PDF/CDA) in the PACS.
    pub report_documents: u32,
    /// Where readgate learnt of it: `readgate` (received here) or `pacs:<id>`.
    pub source: String,
    /// Among the priors that go with this study (comparable to it, the newest
    /// `priors.send_max`), when sent from a PACS.
    pub chosen: bool,
    /// Destinations readgate sent it to as a prior (with this study or an earlier one).
    pub sent_to: Vec<String>,
    /// Its last retrieval from the PACS (to send with a study), when there was one.
    pub retrieved: Option<crate::store::PriorRetrieval>,
    /// Why the PACS could not deliver it when readgate last tried, if that failed.
    pub not_retrieved: Option<String>,
}

/// How the priors that go with a study are chosen: the prior-report check's comparison
/// (`[policy.priors]`) and how many (`[priors] send_max`, at most `max_studies`).
#[derive(Debug, Clone)]
pub struct Choice {
    pub policy: crate::config::policy::PolicyConfig,
    pub most: usize,
}

impl Choice {
    pub fn of(config: &crate::config::Config) -> Choice {
        Choice {
            policy: config.policy.clone(),
            most: config.priors.send_max.min(config.priors.max_studies),
        }
    }
}

/// The priors and the PACS answers of one decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PriorsView {
    /// Newest first.
    pub priors: Vec<PriorRow>,
    /// One per configured `[[pacs]]` at decision time.
    pub pacs: Vec<PacsAnswer>,
}

impl PriorsView {
    /// From the context JSON recorded with a decision, dates in the local time `offset`
    /// seconds east of UTC; `None` when there is none (not decided yet) or it cannot be
    /// read.
    pub fn of_context(context_json: Option<&str>, offset: i64) -> Option<PriorsView> {
        let ctx: StudyContext = serde_json::from_str(context_json?).ok()?;
        let mut priors: Vec<_> = ctx
            .priors
            .iter()
            .map(|p| PriorRow {
                study_uid: p.study_uid.clone(),
                accession: p.accession.clone(),
                date: p
                    .study_time_ms
                    .map(|t| crate::time::format_local_date(t, offset)),
                modalities: p.modalities.clone(),
                body_parts: p.body_parts.clone(),
                final_reports: p.reports,
                report_documents: p.documents,
                source: match &p.source {
                    Source::Cfind { ae } => format!("pacs:{ae}"),
                    _ => "readgate".into(),
                },
                chosen: false,
                sent_to: Vec::new(),
                retrieved: None,
                not_retrieved: p.unavailable.clone(),
            })
            .collect();
        priors.sort_by(|a, b| b.date.cmp(&a.date));
        Some(PriorsView {
            priors,
            pacs: ctx.pacs,
        })
    }
}

impl PriorsView {
    /// As [`PriorsView::of_context`], with which priors go with the study (`choice`),
    /// where each was sent (`prior_sends`) and how its retrieval went, now
    /// (`prior_retrievals`, `prior_fetch_failures`).
    pub fn read(
        store: &crate::store::Store,
        context_json: Option<&str>,
        offset: i64,
        choice: Option<&Choice>,
    ) -> crate::store::Result<Option<PriorsView>> {
        let Some(mut view) = PriorsView::of_context(context_json, offset) else {
            return Ok(None);
        };
        if let (Some(choice), Some(json)) = (choice, context_json) {
            let ctx: StudyContext = serde_json::from_str(json).unwrap_or_default();
            let chosen: Vec<String> = crate::decide::policy::comparable_priors(
                &ctx,
                &choice.policy,
                crate::time::now_ms(),
            )
            .into_iter()
            .take(choice.most)
            .map(|p| p.study_uid)
            .collect();
            for row in &mut view.priors {
                row.chosen = chosen.contains(&row.study_uid);
            }
        }
        let uids: Vec<String> = view.priors.iter().map(|p| p.study_uid.clone()).collect();
        let failures = store.prior_fetch_failures(&uids)?;
        let retrievals = store.prior_retrievals(&uids)?;
        for row in &mut view.priors {
            row.retrieved = retrievals
                .iter()
                .find(|r| r.prior_uid == row.study_uid)
                .cloned();
            row.not_retrieved = failures
                .iter()
                .find(|f| f.prior_uid == row.study_uid)
                .map(|f| format!("{}: {}", f.pacs_id, f.error));
        }
        for sent in store.priors_sent(&uids)? {
            for row in view
                .priors
                .iter_mut()
                .filter(|p| p.study_uid == sent.prior_uid)
            {
                if !row.sent_to.contains(&sent.destination) {
                    row.sent_to.push(sent.destination.clone());
                }
            }
        }
        Ok(Some(view))
    }
}

impl PacsAnswer {
    /// One line for people: `hosp: answered, 3 studies`.
    pub fn summary(&self) -> String {
        match self {
            PacsAnswer::Answered { pacs, found, .. } => {
                format!("{pacs}: answered, {found} studies")
            }
            PacsAnswer::Failed { pacs, error, .. } => format!("{pacs}: failed: {error}"),
            PacsAnswer::NotYet { pacs } => format!("{pacs}: not answered yet"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::context::Prior;

    #[test]
    fn rows_are_newest_first_with_their_source() {
        let prior = |uid: &str, day: i64, source: Source| Prior {
            study_uid: uid.into(),
            accession: Some(format!("A-{uid}")),
            study_time_ms: Some(day * 86_400_000),
            reports: 0,
            documents: 1,
            modalities: vec!["CT".into()],
            source,
            body_parts: Vec::new(),
            unavailable: None,
        };
        let ctx = StudyContext {
            priors: vec![
                prior("1", 19_000, Source::dicom("(0008,0020)")),
                prior("2", 19_500, Source::Cfind { ae: "hosp".into() }),
            ],
            pacs: vec![PacsAnswer::NotYet {
                pacs: "hosp".into(),
            }],
            ..Default::default()
        };
        let json = serde_json::to_string(&ctx).unwrap();
        let v = PriorsView::of_context(Some(&json), 9 * 3600).unwrap();
        assert_eq!(v.priors[0].study_uid, "2");
        assert_eq!(v.priors[0].source, "pacs:hosp");
        assert_eq!(v.priors[1].source, "readgate");
        assert_eq!(v.priors[0].date.as_deref(), Some("2023-05-23"));
        assert_eq!(v.pacs[0].summary(), "hosp: not answered yet");
        assert!(PriorsView::of_context(None, 9 * 3600).is_none());
        assert!(PriorsView::of_context(Some("{"), 9 * 3600).is_none());
    }
}
