//! What a forwarded instance is tagged with: the accountability record of its study's
//! decision, and the order's clinical context for attributes the image lacks.

use crate::config::Config;
use crate::decide::context::{Fact, Source, StudyContext};
use crate::store::Store;
use crate::tag::{Accountability, ContextCopy};
use std::time::{Duration, UNIX_EPOCH};

/// Why a study's instances cannot be tagged (and so are not sent).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StampError {
    #[error("reading the decision: {0}")]
    Store(String),
    #[error("no decision recorded for {0}")]
    NoDecision(String),
    #[error("study {study_uid} is not released for forwarding (verdict {verdict:?})")]
    NotReleased {
        study_uid: String,
        verdict: Option<crate::model::Disposition>,
    },
}

/// The tags for every instance of `study_uid`, from its recorded decision.
pub fn for_study(
    store: &Store,
    config: &Config,
    study_uid: &str,
) -> Result<(Accountability, ContextCopy), StampError> {
    let decision = store
        .decision_of(study_uid)
        .map_err(|e| StampError::Store(e.to_string()))?
        .ok_or_else(|| StampError::NoDecision(study_uid.to_string()))?;
    let verdict = match decision.verdict {
        Some(v) if v.releases() => v,
        verdict => {
            return Err(StampError::NotReleased {
                study_uid: study_uid.to_string(),
                verdict,
            })
        }
    };
    let reason_codes: Vec<String> = decision
        .reasons_json
        .as_deref()
        .and_then(|j| serde_json::from_str::<Vec<serde_json::Value>>(j).ok())
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["code"].as_str().map(str::to_string))
        .collect();
    let evaluation: serde_json::Value = decision
        .evaluation_json
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    let text = |key: &str, default: &str| {
        evaluation[key]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| default.to_string())
    };
    let accountability = Accountability {
        gateway_id: config.gateway.id.clone(),
        sending_facility: config.gateway.sending_facility.clone(),
        receiving_facility: decision.facility.clone().unwrap_or_default(),
        policy_id: text("policy_id", &config.policy.id),
        policy_version: text("policy_version", &config.policy.version),
        verdict,
        reason_codes,
        evaluated_at: UNIX_EPOCH
            + Duration::from_millis(decision.evaluated_at.unwrap_or(0).max(0) as u64),
        audit_ref: match (decision.audit_seq, decision.event_id) {
            (Some(seq), _) => format!("readgate:{}:audit:{seq}", config.gateway.id),
            (None, Some(id)) => format!("readgate:{}:event:{id}", config.gateway.id),
            (None, None) => String::new(),
        },
        prior_of: None,
    };
    let context: StudyContext = decision
        .context_json
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    // Offer the order's value; the tagger copies it only where the image has none.
    let from_order = |facts: &[Fact]| {
        facts
            .iter()
            .find(|f| matches!(f.source, Source::Hl7 { .. }))
            .map(|f| f.value.clone())
    };
    let copy = ContextCopy {
        exam_purpose: from_order(&context.exam_purpose),
        clinical_information: from_order(&context.clinical_information),
        requesting_physician: from_order(&context.ordering_physician),
        callback_phone: from_order(&context.callback_phone),
    };
    Ok((accountability, copy))
}
