//! `readgate release` and `readgate reject`: an operator's decision on a held (or failed)
//! study, taken on the database directly and recorded in the audit trail like the
//! console's and the API's (`actions.rs`).

use super::{open_existing, Access, ConfigFile};
use crate::actions::{ActionError, Actor, Operator};
use crate::audit::AuditLog;
use crate::config::Config;
use crate::store::Store;
use anyhow::bail;

/// `readgate release`: forwarded anyway, as RELEASED_OVERRIDE with the justification.
pub(super) fn release(
    config: &ConfigFile,
    study: &str,
    by: &str,
    justification: &str,
) -> anyhow::Result<()> {
    let t = Target::find(config, study, by, justification, "--justification")?;
    match t
        .operator(None)
        .release(&t.uid, &t.actor, justification.trim())
    {
        Ok(_) => {
            println!(
                "released {} (RELEASED_OVERRIDE, by {}); readgate serve forwards it within seconds",
                t.uid, t.actor.by
            );
            t.notify("released_override", justification);
            Ok(())
        }
        Err(ActionError::WrongState { .. }) => bail!(
            "{} is not held (or has no route to release it to): see `readgate studies`",
            t.uid
        ),
        Err(e) => Err(e.into()),
    }
}

/// `readgate reject`: not sent; its instances leave the spool.
pub(super) fn reject(
    config: &ConfigFile,
    study: &str,
    by: &str,
    reason: &str,
) -> anyhow::Result<()> {
    let t = Target::find(config, study, by, reason, "--reason")?;
    let spool = t.config.spool_dir();
    match t
        .operator(Some(&spool))
        .reject(&t.uid, &t.actor, reason.trim())
    {
        Ok(done) => {
            println!(
                "rejected {} (by {}); {} instance(s) removed from the spool",
                t.uid, t.actor.by, done.removed
            );
            t.notify("rejected", reason);
            Ok(())
        }
        Err(ActionError::WrongState { .. }) => {
            bail!(
                "{} is neither held nor failed: see `readgate studies`",
                t.uid
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// What an operator's decision acts on and with: the study, who decides, the database
/// and the audit trail `readgate serve` uses.
struct Target {
    config: Config,
    store: Store,
    audit: AuditLog,
    uid: String,
    actor: Actor,
}

impl Target {
    /// Checks the decision's words (`--by`, and the reason under `why_flag`) and finds
    /// the study by UID or accession.
    fn find(
        config: &ConfigFile,
        study: &str,
        by: &str,
        why: &str,
        why_flag: &str,
    ) -> anyhow::Result<Target> {
        if by.trim().is_empty() {
            bail!("--by: say who takes this decision (it is recorded)");
        }
        if why.trim().chars().count() < 4 {
            bail!("{why_flag}: a written reason of at least 4 characters is required (it is recorded)");
        }
        let config = config.load()?;
        let store = open_existing(&config, Access::ReadWrite)?;
        let Some(found) = store.find_study(study)? else {
            bail!("no study with UID or accession {study:?}");
        };
        let audit = AuditLog::open_at(&config.database())?;
        Ok(Target {
            config,
            store,
            audit,
            uid: found.study_uid,
            actor: Actor {
                id: by.trim().to_string(),
                by: by.trim().to_string(),
                via: "readgate cli",
                client_ip: None,
            },
        })
    }

    /// The CLI acts on the database directly; the daemon's forwarders poll the queue.
    fn operator<'a>(&'a self, spool_dir: Option<&'a std::path::Path>) -> Operator<'a> {
        Operator {
            store: &self.store,
            audit: Some(&self.audit),
            spool_dir,
            wakeups: None,
            decider: None,
        }
    }

    /// Tells the configured webhook what was decided (`event`), with the operator's note.
    fn notify(&self, event: &str, note: &str) {
        let accession = self
            .store
            .find_study(&self.uid)
            .ok()
            .flatten()
            .and_then(|s| s.accession);
        crate::notify::study_event(
            crate::notify::Webhook::from_config(&self.config.notify).as_ref(),
            &crate::notify::StudyEvent {
                event: event.into(),
                gateway: self.config.gateway.id.clone(),
                study_uid: self.uid.clone(),
                accession,
                reasons: Vec::new(),
                by: Some(self.actor.by.clone()),
                note: Some(note.trim().to_string()),
                at: crate::time::now_ms(),
            },
        );
    }
}
