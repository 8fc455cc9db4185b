//! Operator actions on a study — release anyway, reject, re-evaluate, retry — as every
//! interface (CLI, REST API, web console) carries them out: the state check, the store
//! change, the audit entry (each action its own kind, one spelling of the detail) and the
//! wake-up of whoever acts next (the decision stage or the destination's forwarder), in
//! one place, so no interface can do one without the others.
//!
//! The audit entry is written before the store changes: an action whose entry cannot be
//! written does not happen ([`ActionError::Unaudited`]). Should the study change state
//! between the entry and the change (another operator acting at the same moment), a
//! second entry of the same kind records that it was not done.
//!
//! Everything here blocks (SQLite, the audit log's fsync, spool deletions): async callers
//! run it with `spawn_blocking`.

use crate::audit::{AuditLog, NewEntry};
use crate::forward::Wakeups;
use crate::model::{AuditKind, StudyState};
use crate::store::{self, ContextKeys, Store};
use serde_json::json;
use std::path::Path;
use tokio::sync::Notify;

/// Who acts, and through which interface.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The audit trail's actor: `rest:<integration>`, `web:<user>`, the CLI user.
    pub id: String,
    /// The person the study records (`override_by`, `rejected_by`).
    pub by: String,
    /// `api`, `web console` or `readgate cli`.
    pub via: &'static str,
    /// The client's address, when the interface knows it.
    pub client_ip: Option<String>,
}

/// Why an action did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("unknown study {0}")]
    UnknownStudy(String),
    /// The study is not in a state the action applies to.
    #[error("study {study_uid} is {state}: {allowed}")]
    WrongState {
        study_uid: String,
        state: StudyState,
        /// Which studies the action applies to, in a sentence.
        allowed: &'static str,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The audit entry could not be written, so nothing was done.
    #[error("the audit trail cannot be written, so nothing was done: {0}")]
    Unaudited(crate::audit::AuditError),
}

pub type Result<T> = std::result::Result<T, ActionError>;

/// What an action changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub study_uid: String,
    /// The study's destination, when it has one (its forwarder was woken).
    pub destination: Option<String>,
    /// Instances removed from the spool (reject).
    pub removed: usize,
}

/// What the actions work on; fields a caller does not have stay `None`.
#[derive(Clone, Copy)]
pub struct Operator<'a> {
    pub store: &'a Store,
    pub audit: Option<&'a AuditLog>,
    /// Where rejected instances are deleted from.
    pub spool_dir: Option<&'a Path>,
    /// The forwarders to wake after a release or retry (the daemon's; the CLI has none:
    /// the daemon's forwarders poll).
    pub wakeups: Option<&'a Wakeups>,
    /// The decision stage, woken after a re-evaluation.
    pub decider: Option<&'a Notify>,
}

impl Operator<'_> {
    /// Releases a held study anyway (verdict RELEASED_OVERRIDE), with a written
    /// justification. `key` is a Study Instance UID or an accession number.
    pub fn release(&self, key: &str, actor: &Actor, justification: &str) -> Result<Done> {
        const ALLOWED: &str = "only held studies with a route can be released";
        let (uid, state) = self.find(key)?;
        let routed = self.store.decision_of(&uid)?.and_then(|d| d.destination);
        if state != StudyState::Held || routed.is_none() {
            return Err(wrong(uid, state, ALLOWED));
        }
        let now = crate::time::now_ms();
        let detail = json!({"by": actor.by, "justification": justification});
        let kind = AuditKind::StudyOverridden;
        let entry = self.record(kind, "release", actor, &uid, detail)?;
        if self
            .store
            .release_override(&uid, &actor.by, justification, now)?
            .is_none()
        {
            return Err(self.not_done(kind, "release", actor, uid, ALLOWED));
        }
        if let Some(entry) = entry {
            // The forwarded instances cite this entry in their tags.
            self.store.set_audit_seq(&uid, entry)?;
        }
        self.wake_forwarder(uid)
    }

    /// Rejects a held or failed study: it is never sent, and its instances leave the
    /// spool.
    pub fn reject(&self, key: &str, actor: &Actor, reason: &str) -> Result<Done> {
        const ALLOWED: &str = "only held or failed studies can be rejected";
        let (uid, state) = self.find(key)?;
        if !matches!(state, StudyState::Held | StudyState::Failed) {
            return Err(wrong(uid, state, ALLOWED));
        }
        let detail = json!({"by": actor.by, "reason": reason});
        let kind = AuditKind::StudyRejected;
        self.record(kind, "reject", actor, &uid, detail)?;
        let Some(paths) =
            self.store
                .reject_study(&uid, &actor.by, reason, crate::time::now_ms())?
        else {
            return Err(self.not_done(kind, "reject", actor, uid, ALLOWED));
        };
        if let Some(spool) = self.spool_dir {
            for p in &paths {
                if let Err(e) = std::fs::remove_file(spool.join(p)) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(study_uid = %uid, path = %p, error = %e, "rejected instance not removed from the spool");
                    }
                }
            }
        }
        Ok(Done {
            study_uid: uid,
            destination: None,
            removed: paths.len(),
        })
    }

    /// Sends a held study back to the decision stage: context that arrived without a
    /// link to it (or a changed policy) may release it.
    pub fn reevaluate(&self, key: &str, actor: &Actor) -> Result<Done> {
        let (uid, state) = self.find(key)?;
        const ALLOWED: &str = "only held studies are re-evaluated";
        if state != StudyState::Held {
            return Err(wrong(uid, state, ALLOWED));
        }
        let keys = ContextKeys {
            study_uids: vec![uid.clone()],
            ..Default::default()
        };
        let why = format!("re-evaluation requested by {}", actor.id);
        let kind = AuditKind::StudyReevaluated;
        self.record(kind, "reevaluate", actor, &uid, json!({}))?;
        if self
            .store
            .reconsider_held(&keys, &why, crate::time::now_ms())?
            .is_empty()
        {
            // Released or rejected meanwhile.
            return Err(self.not_done(kind, "reevaluate", actor, uid, ALLOWED));
        }
        if let Some(n) = self.decider {
            n.notify_one();
        }
        Ok(Done {
            study_uid: uid,
            destination: None,
            removed: 0,
        })
    }

    /// Puts a failed study back in its destination's queue.
    pub fn retry(&self, key: &str, actor: &Actor) -> Result<Done> {
        const ALLOWED: &str = "only failed studies can be retried";
        let (uid, state) = self.find(key)?;
        if state != StudyState::Failed {
            return Err(wrong(uid, state, ALLOWED));
        }
        let kind = AuditKind::StudyRetried;
        self.record(kind, "retry", actor, &uid, json!({}))?;
        if !self.store.retry_study(&uid, crate::time::now_ms())? {
            return Err(self.not_done(kind, "retry", actor, uid, ALLOWED));
        }
        self.wake_forwarder(uid)
    }

    fn find(&self, key: &str) -> Result<(String, StudyState)> {
        let keys = self
            .store
            .find_study(key.trim())?
            .ok_or_else(|| ActionError::UnknownStudy(key.trim().to_string()))?;
        Ok((keys.study_uid, keys.state))
    }

    /// Wakes the forwarder of the study's destination, and says what was done.
    fn wake_forwarder(&self, uid: String) -> Result<Done> {
        let destination = self.store.decision_of(&uid)?.and_then(|d| d.destination);
        if let (Some(w), Some(d)) = (self.wakeups, destination.as_deref()) {
            w.wake(d);
        }
        Ok(Done {
            study_uid: uid,
            destination,
            removed: 0,
        })
    }

    /// The study changed state after the action's entry was written: a second entry says
    /// the action was not done (best effort: the first is already written), and the error
    /// names the state found.
    fn not_done(
        &self,
        kind: AuditKind,
        action: &str,
        actor: &Actor,
        uid: String,
        allowed: &'static str,
    ) -> ActionError {
        let state = match self.find(&uid) {
            Ok((_, state)) => state,
            Err(e) => return e,
        };
        let detail = json!({"outcome": "not done", "state": state.to_string()});
        if let Err(e) = self.record(kind, action, actor, &uid, detail) {
            tracing::warn!(study_uid = %uid, error = %e, "the audit entry saying an action was not done could not be written");
        }
        wrong(uid, state, allowed)
    }

    /// The action's audit entry: `{"action", "via", "client_ip"?, ...fields}`. Returns
    /// its sequence number (None without an audit trail, e.g. in-process tests).
    fn record(
        &self,
        kind: AuditKind,
        action: &str,
        actor: &Actor,
        uid: &str,
        mut detail: serde_json::Value,
    ) -> Result<Option<i64>> {
        let Some(audit) = self.audit else {
            return Ok(None);
        };
        detail["action"] = action.into();
        detail["via"] = actor.via.into();
        if let Some(ip) = &actor.client_ip {
            detail["client_ip"] = ip.as_str().into();
        }
        // The accession too: auditors search the trail by it (`audit search --study`).
        let mut entry = NewEntry::new(kind, &actor.id).study(uid).detail(detail);
        if let Some(accession) = self
            .store
            .find_study(uid)
            .ok()
            .flatten()
            .and_then(|s| s.accession)
            .filter(|a| !a.is_empty())
        {
            entry = entry.accession(&accession);
        }
        audit
            .append(&entry)
            .map(|r| Some(r.seq))
            .map_err(ActionError::Unaudited)
    }
}

fn wrong(study_uid: String, state: StudyState, allowed: &'static str) -> ActionError {
    ActionError::WrongState {
        study_uid,
        state,
        allowed,
    }
}
