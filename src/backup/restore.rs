//! `readgate restore DIR`: a backup into an empty (or absent) data directory.
//!
//! Nothing goes into place before everything was checked. The database and every spool
//! file are copied into `data_dir/.restore-partial/`, each hashed on the way and compared
//! with the manifest (a missing, shorter or changed file stops the restore, naming it);
//! the copy is made durable; the audit chain of the copied database is verified up to the
//! newest entry the manifest names (`readgate audit verify --anchor`); the `restored`
//! entry is appended to it. Only then are `spool/` and, last, `readgate.db` renamed into
//! the data directory. Any failure before removes the partial copy, leaving the data
//! directory as empty as it was.
//!
//! Files are 0600 and directories 0700. Run as root, the restored files get the owner of
//! the data directory (or, when it did not exist, of its parent), so the service's user
//! can open them.

use super::*;
use crate::audit::{AuditLog, EntryRef, NewEntry, Verification};
use crate::config::Config;
use std::os::unix::fs::MetadataExt;

/// Where a restore copies to before anything is put in place.
pub const STAGING: &str = ".restore-partial";

/// A finished restore.
#[derive(Debug, Clone)]
pub struct Restored {
    pub data_dir: PathBuf,
    pub manifest: Manifest,
    /// SHA-256 (hex) of the backup's `manifest.json`.
    pub manifest_sha256: String,
    /// The audit chain of the restored database, verified before the entry below.
    pub verification: Verification,
    /// The `restored` entry in the restored trail.
    pub entry: EntryRef,
    pub elapsed: Duration,
}

/// Restores the backup in `from` into `config`'s data directory, recorded as `restored`
/// by `actor`.
pub fn restore(
    config: &Config,
    from: &Path,
    actor: &str,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Restored> {
    let started = Instant::now();
    if config.database.url.is_some() {
        return Err(BackupError::Postgres);
    }
    let manifest = Manifest::read(from)?;
    let manifest_path = from.join(MANIFEST);
    let (_, manifest_sha256) = hash_file(&manifest_path)?;
    let data_dir = config.gateway.data_dir.clone();
    let existed = absent_or_empty(&data_dir, || {
        if data_dir.join(STAGING).exists() {
            BackupError::InterruptedRestore {
                path: data_dir.clone(),
                staging: STAGING,
            }
        } else {
            BackupError::DataDirNotEmpty {
                path: data_dir.clone(),
            }
        }
    })?;
    let owner = owner_for(&data_dir, existed)?;
    crate::spool::private_dir(&data_dir).map_err(io_at(&data_dir))?;
    let staging = data_dir.join(STAGING);
    let staged = stage(
        config,
        from,
        &staging,
        &manifest,
        &manifest_sha256,
        actor,
        owner,
        progress,
    );
    let (verification, entry) = match staged {
        Ok(done) => done,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            if !existed {
                let _ = fs::remove_dir(&data_dir);
            }
            return Err(e);
        }
    };
    if let Some((uid, gid)) = owner {
        chown(&data_dir, uid, gid)?;
    }
    // Into place: the spool, then the database (the database's presence is the restore).
    let spool = data_dir.join(SPOOL);
    fs::rename(staging.join(SPOOL), &spool).map_err(io_at(&spool))?;
    for suffix in ["-wal", "-shm", ""] {
        let name = format!("{DATABASE}{suffix}");
        let staged = staging.join(&name);
        if suffix.is_empty() || staged.exists() {
            let to = data_dir.join(&name);
            fs::rename(&staged, &to).map_err(io_at(&to))?;
        }
    }
    fs::remove_dir(&staging).map_err(io_at(&staging))?;
    sync_dir(&data_dir)?;
    if !existed {
        if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(Restored {
        data_dir,
        manifest,
        manifest_sha256,
        verification,
        entry,
        elapsed: started.elapsed(),
    })
}

/// Copies and checks everything into `staging`, verifies the copied trail and records
/// the restore in it.
#[allow(clippy::too_many_arguments)]
fn stage(
    config: &Config,
    from: &Path,
    staging: &Path,
    m: &Manifest,
    manifest_sha256: &str,
    actor: &str,
    owner: Option<(u32, u32)>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(Verification, EntryRef)> {
    crate::spool::private_dir(staging).map_err(io_at(staging))?;
    let mut made = HashSet::new();
    private_dirs(staging, Path::new(SPOOL), &mut made)?;
    let mut ticker = Ticker::new(progress);
    let total = m.files.len() as u64;
    let mut bytes = 0;
    copy_checked(from, staging, &m.database)?;
    for (i, f) in m.files.iter().enumerate() {
        ticker.files(i as u64, total, bytes);
        if let Some(parent) = Path::new(&f.path).parent() {
            private_dirs(staging, parent, &mut made)?;
        }
        copy_checked(from, staging, f)?;
        bytes += f.size;
    }
    ticker.event(Progress::Files {
        done: total,
        total,
        bytes,
    });
    sync_tree(staging)?;

    let db = staging.join(DATABASE);
    let anchor = m.audit_head.as_ref().map(|h| EntryRef {
        seq: h.seq,
        hash: h.hash.clone(),
    });
    let verification = AuditLog::open_read_only(&db)?.verify_with_anchor(anchor.as_ref())?;
    if let Some(f) = &verification.finding {
        return Err(BackupError::Tampered {
            finding: f.message.clone(),
        });
    }
    let entry = {
        // Opening for writing also brings an older backup's schema up to date.
        let audit = AuditLog::open(&db)?;
        audit.append(&restored_entry(actor, from, m, manifest_sha256, config))?
    };
    if let Some((uid, gid)) = owner {
        chown_tree(staging, uid, gid)?;
    }
    Ok((verification, entry))
}

fn restored_entry(
    actor: &str,
    from: &Path,
    m: &Manifest,
    manifest_sha256: &str,
    config: &Config,
) -> NewEntry {
    let from = fs::canonicalize(from).unwrap_or_else(|_| from.to_path_buf());
    NewEntry::new(crate::audit::kind::RESTORED, actor).detail(serde_json::json!({
        "from": from.display().to_string(),
        "manifest_sha256": manifest_sha256,
        "taken_at": m.taken_at,
        "taken_from_gateway": m.gateway,
        "gateway": config.gateway.id,
        "taken_by_version": m.readgate_version,
        "schema_version": m.schema_version,
        "studies": m.counts.studies,
        "instances": m.counts.instances,
        "files": m.counts.files,
        "bytes": m.counts.bytes,
        "audit_head": m.audit_head.as_ref().map(|h| format!("{}:{}", h.seq, h.hash)),
    }))
}

/// Copies one file of the backup into `staging`, checking size and SHA-256 against the
/// manifest.
fn copy_checked(from: &Path, staging: &Path, f: &FileEntry) -> Result<()> {
    let corrupt = |why: String| BackupError::Corrupt {
        file: from.join(&f.path).display().to_string(),
        why,
    };
    match copy_hashed(&from.join(&f.path), &staging.join(&f.path))? {
        None => Err(corrupt("missing (the manifest lists it)".into())),
        Some((size, _)) if size != f.size => Err(corrupt(format!(
            "{size} bytes, the manifest says {}",
            f.size
        ))),
        Some((_, sha256)) if !sha256.eq_ignore_ascii_case(&f.sha256) => Err(corrupt(format!(
            "SHA-256 {sha256} differs from the manifest's {}: the file was changed or damaged",
            f.sha256
        ))),
        Some(_) => Ok(()),
    }
}

/// Whose the restored files become: when run as root, the owner of the data directory,
/// or of its parent when it did not exist (root's own: left as they are).
fn owner_for(data_dir: &Path, existed: bool) -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let of = if existed {
        data_dir.to_path_buf()
    } else {
        match data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => p.to_path_buf(),
            None => PathBuf::from("."),
        }
    };
    let meta = match fs::metadata(&of) {
        Ok(m) => m,
        // The parent is created along with the data directory: root's.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(&of)(e)),
    };
    Ok((meta.uid() != 0).then(|| (meta.uid(), meta.gid())))
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io_at(path))
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<()> {
    chown(dir, uid, gid)?;
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let path = entry.path();
        if entry.file_type().map_err(io_at(&path))?.is_dir() {
            chown_tree(&path, uid, gid)?;
        } else {
            chown(&path, uid, gid)?;
        }
    }
    Ok(())
}
