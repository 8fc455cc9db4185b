//! `readgate release` and `readgate reject`: an operator's decision on a held (or failed)
//! study, taken on the database directly and recorded in the audit trail like the
//! console's and the API's (`actions.rs`).

use super::{open_existing, Access, ConfigFile};
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
    let config = config.load()?;
    let (store, uid) = operator_target(&config, study, by, justification, "--justification")?;
    let audit = crate::audit::AuditLog::open_at(&config.database())?;
    let op = cli_operator(&store, &audit, None);
    match op.release(&uid, &cli_actor(by), justification.trim()) {
        Ok(_) => {
            println!("released {uid} (RELEASED_OVERRIDE, by {}); readgate serve forwards it within seconds", by.trim());
            notify_operator_action(
                &config,
                &store,
                &uid,
                "released_override",
                by,
                justification,
            );
            Ok(())
        }
        Err(crate::actions::ActionError::WrongState { .. }) => {
            bail!("{uid} is not held (or has no route to release it to): see `readgate studies`")
        }
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
    let config = config.load()?;
    let (store, uid) = operator_target(&config, study, by, reason, "--reason")?;
    let audit = crate::audit::AuditLog::open_at(&config.database())?;
    let spool = config.spool_dir();
    let op = cli_operator(&store, &audit, Some(&spool));
    match op.reject(&uid, &cli_actor(by), reason.trim()) {
        Ok(done) => {
            println!(
                "rejected {uid} (by {}); {} instance(s) removed from the spool",
                by.trim(),
                done.removed
            );
            notify_operator_action(&config, &store, &uid, "rejected", by, reason);
            Ok(())
        }
        Err(crate::actions::ActionError::WrongState { .. }) => {
            bail!("{uid} is neither held nor failed: see `readgate studies`")
        }
        Err(e) => Err(e.into()),
    }
}

/// Checks an operator action's words and finds the study it is about.
fn operator_target(
    config: &Config,
    study: &str,
    by: &str,
    why: &str,
    why_flag: &str,
) -> anyhow::Result<(Store, String)> {
    if by.trim().is_empty() {
        bail!("--by: say who takes this decision (it is recorded)");
    }
    if why.trim().chars().count() < 4 {
        bail!("{why_flag}: a written reason of at least 4 characters is required (it is recorded)");
    }
    let store = open_existing(config, Access::ReadWrite)?;
    let Some(found) = store.find_study(study)? else {
        bail!("no study with UID or accession {study:?}");
    };
    Ok((store, found.study_uid))
}

/// The CLI acts on the database directly; the daemon's forwarders poll the queue.
fn cli_operator<'a>(
    store: &'a Store,
    audit: &'a crate::audit::AuditLog,
    spool_dir: Option<&'a std::path::Path>,
) -> crate::actions::Operator<'a> {
    crate::actions::Operator {
        store,
        audit: Some(audit),
        spool_dir,
        wakeups: None,
        decider: None,
    }
}

fn cli_actor(by: &str) -> crate::actions::Actor {
    crate::actions::Actor {
        id: by.trim().to_string(),
        by: by.trim().to_string(),
        via: "readgate cli",
        client_ip: None,
    }
}

fn notify_operator_action(
    config: &Config,
    store: &Store,
    uid: &str,
    event: &str,
    by: &str,
    note: &str,
) {
    let accession = store
        .find_study(uid)
        .ok()
        .flatten()
        .and_then(|s| s.accession);
    crate::notify::study_event(
        crate::notify::Webhook::from_config(&config.notify).as_ref(),
        &crate::notify::StudyEvent {
            event: event.into(),
            gateway: config.gateway.id.clone(),
            study_uid: uid.to_string(),
            accession,
            reasons: Vec::new(),
            by: Some(by.trim().to_string()),
            note: Some(note.trim().to_string()),
            at: crate::time::now_ms(),
        },
    );
}
