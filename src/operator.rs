//! Operator decisions on held studies — release anyway, or reject — as every interface
//! (CLI, REST API, web console) carries them out: the store change and its audit entry
//! together, so no interface can record one without the other.

use crate::audit::{kind, AuditLog, NewEntry};
use crate::store::{self, Store};
use std::path::Path;

/// Releases a held study (verdict RELEASED_OVERRIDE). `detail` is what the audit entry
/// records besides the study (who, why, through which interface). Returns the study's
/// destination, or None when the study is not held with a route (nothing changed).
pub fn release(
    store: &Store,
    audit: Option<&AuditLog>,
    study_uid: &str,
    actor: &str,
    by: &str,
    justification: &str,
    detail: serde_json::Value,
) -> store::Result<Option<Option<String>>> {
    if store
        .release_override(study_uid, by, justification, crate::time::now_ms())?
        .is_none()
    {
        return Ok(None);
    }
    if let Some(entry) = audit.and_then(|a| {
        a.record(
            NewEntry::new(kind::STUDY_OVERRIDDEN, actor)
                .study(study_uid)
                .detail(detail),
        )
    }) {
        // The forwarded instances cite this entry in their tags.
        store.set_audit_seq(study_uid, entry.seq)?;
    }
    Ok(Some(
        store.decision_of(study_uid)?.and_then(|d| d.destination),
    ))
}

/// Rejects a held or failed study: it is never sent, and its instances leave the spool.
/// Returns how many instances were removed, or None when the study is neither held nor
/// failed (nothing changed).
#[allow(clippy::too_many_arguments)] // each is a distinct fact of the decision
pub fn reject(
    store: &Store,
    audit: Option<&AuditLog>,
    spool_dir: Option<&Path>,
    study_uid: &str,
    actor: &str,
    by: &str,
    reason: &str,
    detail: serde_json::Value,
) -> store::Result<Option<usize>> {
    let Some(paths) = store.reject_study(study_uid, by, reason, crate::time::now_ms())? else {
        return Ok(None);
    };
    if let Some(a) = audit {
        a.record(
            NewEntry::new(kind::STUDY_REJECTED, actor)
                .study(study_uid)
                .detail(detail),
        );
    }
    if let Some(spool) = spool_dir {
        for p in &paths {
            let _ = std::fs::remove_file(spool.join(p));
        }
    }
    Ok(Some(paths.len()))
}
