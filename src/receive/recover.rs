//! Start-up recovery: spool files the index does not know are indexed again.
//!
//! A file reaches `objects/` only after it was fsync'd, and before its index row was
//! committed; a crash in between (or an OS crash that loses recent WAL commits) leaves
//! a complete instance without its row. The peer may or may not have had its 0000; either
//! way the instance is kept and forwarded — never silently deleted.

use super::association::{spooled_instance, valid_uid};
use crate::config::DuplicatePolicy;
use crate::dicom::dataset::{self, tags, Encoding};
use crate::dicom::part10;
use crate::spool::Spool;
use crate::store::{Indexed, Store};
use tracing::{info, warn};

/// Returns (re-indexed, quarantined) counts.
pub fn recover(
    spool: &Spool,
    store: &Store,
    policy: DuplicatePolicy,
) -> anyhow::Result<(usize, usize)> {
    let lost = spool.unindexed(&store.all_paths()?)?;
    let (mut indexed, mut quarantined) = (0, 0);
    for rel in lost {
        match describe(spool, &rel) {
            Ok(instance) => {
                match store.index_instance(&instance, policy == DuplicatePolicy::Replace)? {
                    Indexed::KeptFirst => spool.remove(&rel)?,
                    Indexed::Replaced { old_path } => spool.remove(&old_path)?,
                    Indexed::New => {}
                }
                indexed += 1;
            }
            Err(why) => {
                let moved = spool.quarantine(&rel)?;
                warn!(file = %moved, reason = %why, "spool file cannot be read back: moved to quarantine for inspection");
                quarantined += 1;
            }
        }
    }
    if indexed + quarantined > 0 {
        info!(
            indexed,
            quarantined, "recovered spool files the index did not know"
        );
    }
    Ok((indexed, quarantined))
}

/// `Err` is the reason the file is quarantined, logged and kept with it: a message for
/// the administrator, not an error the program handles.
fn describe(spool: &Spool, rel: &str) -> Result<crate::store::NewInstance, String> {
    let path = spool.absolute(rel);
    let mut file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let received_at = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or_else(crate::time::now_ms);
    let meta = part10::read_file_meta(&mut file).map_err(|e| e.to_string())?;
    let encoding =
        Encoding::for_transfer_syntax(&meta.transfer_syntax).map_err(|e| e.to_string())?;
    let header = dataset::walk(&file, encoding).map_err(|e| e.to_string())?;
    if !header
        .get(tags::STUDY_INSTANCE_UID)
        .map(valid_uid)
        .unwrap_or(false)
    {
        return Err("no valid Study Instance UID".into());
    }
    let calling_ae = meta.source_ae.clone().unwrap_or_default();
    Ok(spooled_instance(
        &header,
        &meta.sop_class_uid,
        &meta.transfer_syntax,
        rel,
        size,
        &calling_ae,
        received_at,
    ))
}
