//! `readgate backup DIR`: a consistent copy of a serving gateway's data.
//!
//! **The database** is copied with SQLite's online backup API in one step
//! (`sqlite3_backup_step(-1)`): one read transaction on the live database, which in WAL
//! mode never blocks readgate's writers (they append to the WAL; only its checkpoint
//! waits for the copy to end), and a page-for-page copy without rebuilding tables and
//! indexes as `VACUUM INTO` would (more CPU and memory for the same snapshot). Copying in
//! several smaller steps would not do: a write by another connection between two steps
//! restarts the copy, so on a busy gateway it might never finish. The copy is switched to
//! rollback journal mode (`PRAGMA journal_mode = DELETE`), so it is one self-contained file;
//! readgate turns WAL on again when it opens the restored database.
//!
//! **The spool** is copied after the snapshot: exactly the files the snapshot's
//! `instances` rows name. Spool files never change once in `objects/` (they are written in
//! `tmp/`, fsync'd and renamed under a new name), so a file copied is the file the
//! snapshot means. Files do *leave* the spool while readgate serves: after forwarding
//! (unless `storage.keep_forwarded`), with a rejected study, or when a duplicate replaces
//! an earlier copy — each time after the database says so. So a file the snapshot still
//! needs (its instance received or queued) can be gone by the time it is copied. Then a new
//! snapshot is taken (files already copied are kept) and its files copied, until no needed
//! file vanished; a file that is still needed and still absent in the next snapshot did not
//! leave in between — the live spool lacks it — and is listed in the manifest as `missing`
//! (as is, after ten snapshots, whatever is still absent).
//! Files copied for an earlier snapshot that the last one no longer names are removed
//! (restored, they would be re-indexed as instances readgate had dropped).
//!
//! The backup ends with one `syncfs`, the `backup_taken` audit entry in the live database
//! (a backup whose entry cannot be written is removed and the command fails) and then the
//! manifest (temp file, fsync, rename, fsync of the directory): a backup directory without
//! `manifest.json` did not finish.

use super::*;
use crate::audit::{AuditLog, EntryRef, NewEntry};
use crate::config::Config;
use crate::model::InstanceState;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::collections::{BTreeMap, BTreeSet};

/// How many snapshots at most, when needed files keep leaving the spool before they are
/// copied (each further one only has the files that arrived since to copy).
const MAX_SNAPSHOTS: u32 = 10;
/// How long a snapshot waits for a lock (only a WAL recovery or an exclusive lock holds
/// one back).
const BUSY_WAIT: Duration = Duration::from_secs(30);

/// A finished backup.
#[derive(Debug, Clone)]
pub struct Taken {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// SHA-256 (hex) of `manifest.json` as written, also in the `backup_taken` entry.
    pub manifest_sha256: String,
    /// The `backup_taken` entry in the live trail.
    pub entry: EntryRef,
    /// Database snapshots taken (1 unless files left the spool during the copy).
    pub snapshots: u32,
    pub elapsed: Duration,
}

/// Takes a backup of `config`'s gateway into `dir` (absent or empty), recorded as
/// `backup_taken` by `actor`.
pub fn take(
    config: &Config,
    dir: &Path,
    actor: &str,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Taken> {
    take_with(config, dir, actor, progress, &mut |_| {})
}

/// As [`take`], calling `between(attempt)` after each database snapshot, before its
/// files are copied (where a test makes files leave the spool).
pub fn take_with(
    config: &Config,
    dir: &Path,
    actor: &str,
    progress: &mut dyn FnMut(&Progress),
    between: &mut dyn FnMut(u32),
) -> Result<Taken> {
    let started = Instant::now();
    if config.database.url.is_some() {
        return Err(BackupError::Postgres);
    }
    let db = config.database_path();
    if !db.is_file() {
        return Err(BackupError::NoDatabase { path: db });
    }
    let existed = absent_or_empty(dir, || BackupError::TargetNotEmpty {
        path: dir.to_path_buf(),
    })?;
    // Opened first: a backup that could not be recorded is not begun.
    let audit = AuditLog::open(&db)?;
    crate::spool::private_dir(dir).map_err(io_at(dir))?;
    match copy(config, dir, actor, &audit, progress, between) {
        Ok((manifest, manifest_sha256, entry, snapshots)) => Ok(Taken {
            dir: dir.to_path_buf(),
            manifest,
            manifest_sha256,
            entry,
            snapshots,
            elapsed: started.elapsed(),
        }),
        Err(e) => {
            discard(dir, existed);
            Err(e)
        }
    }
}

/// Removes what a failed backup wrote: patient data with no manifest is of no use.
fn discard(dir: &Path, existed: bool) {
    if existed {
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let _ = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
            }
        }
    } else {
        let _ = fs::remove_dir_all(dir);
    }
}

/// One row of the snapshot's `instances`.
struct Row {
    path: String,
    state: String,
}

impl Row {
    /// Whether readgate still needs the file: not yet forwarded nor rejected. (A
    /// forwarded instance's file is kept only with `storage.keep_forwarded`.)
    fn needs_file(&self) -> bool {
        matches!(
            self.state.parse::<InstanceState>(),
            Ok(InstanceState::Received | InstanceState::Queued) | Err(_)
        )
    }
}

/// What a database snapshot holds, read from the copy.
struct Snapshot {
    taken_at_ms: i64,
    schema_version: i64,
    rows: Vec<Row>,
    studies: u64,
    audit_head: Option<AuditHead>,
    audit_entries: u64,
}

type Copied = (Manifest, String, EntryRef, u32);

fn copy(
    config: &Config,
    dir: &Path,
    actor: &str,
    audit: &AuditLog,
    progress: &mut dyn FnMut(&Progress),
    between: &mut dyn FnMut(u32),
) -> Result<Copied> {
    let db = config.database_path();
    let source = Connection::open_with_flags(
        &db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql_at(&db))?;
    source.busy_timeout(BUSY_WAIT).map_err(sql_at(&db))?;
    crate::store::schema::check_sqlite(&source).map_err(|source| BackupError::Schema {
        path: db.clone(),
        source,
    })?;
    let spool = config.spool_dir();
    let snapshot_path = dir.join(DATABASE);
    let mut ticker = Ticker::new(progress);
    let mut made = HashSet::new();
    // Spool-relative path → its entry in the backup.
    let mut copied: BTreeMap<String, FileEntry> = BTreeMap::new();
    // Paths found absent: a spool file never comes back under its name.
    let mut absent: HashSet<String> = HashSet::new();
    let mut vanished_before = BTreeSet::new();
    let mut attempt = 0;
    let (snap, missing) = loop {
        attempt += 1;
        if attempt > 1 {
            fs::remove_file(&snapshot_path).map_err(io_at(&snapshot_path))?;
        }
        let t = Instant::now();
        let snap = snapshot(&source, &db, &snapshot_path)?;
        let bytes = fs::metadata(&snapshot_path).map(|m| m.len()).unwrap_or(0);
        ticker.event(Progress::Snapshot {
            attempt,
            bytes,
            elapsed: t.elapsed(),
        });
        between(attempt);
        let wanted: Vec<&Row> = snap
            .rows
            .iter()
            .filter(|r| !copied.contains_key(&r.path) && !absent.contains(&r.path))
            .filter(|r| is_spool_object(&r.path)) // others: listed as missing below
            .collect();
        let total = wanted.len() as u64;
        let mut bytes = 0;
        for (i, row) in wanted.into_iter().enumerate() {
            ticker.files(i as u64, total, bytes);
            let in_backup = format!("{SPOOL}/{}", row.path);
            let to = dir.join(&in_backup);
            if let Some(parent) = Path::new(&in_backup).parent() {
                private_dirs(dir, parent, &mut made)?;
            }
            match copy_hashed(&spool.join(&row.path), &to)? {
                Some((size, sha256)) => {
                    bytes += size;
                    let entry = FileEntry {
                        path: in_backup,
                        size,
                        sha256,
                    };
                    copied.insert(row.path.clone(), entry);
                }
                None => {
                    absent.insert(row.path.clone());
                }
            }
        }
        ticker.event(Progress::Files {
            done: total,
            total,
            bytes,
        });
        // Files this snapshot needs (not yet forwarded nor rejected) that are not in the
        // spool. Those already needed and absent last time did not leave in between: the
        // live spool lacks them. Only new ones are worth another snapshot.
        let vanished: BTreeSet<String> = snap
            .rows
            .iter()
            .filter(|r| r.needs_file() && absent.contains(&r.path))
            .map(|r| r.path.clone())
            .collect();
        if vanished.is_subset(&vanished_before) || attempt >= MAX_SNAPSHOTS {
            break (snap, vanished);
        }
        ticker.event(Progress::Retake {
            attempt,
            vanished: vanished.len() - vanished.intersection(&vanished_before).count(),
        });
        vanished_before = vanished;
    };

    // Keep exactly the files the last snapshot names.
    let named: HashSet<&str> = snap.rows.iter().map(|r| r.path.as_str()).collect();
    let stale: Vec<String> = copied
        .keys()
        .filter(|p| !named.contains(p.as_str()))
        .cloned()
        .collect();
    for rel in stale {
        if let Some(entry) = copied.remove(&rel) {
            let path = dir.join(&entry.path);
            fs::remove_file(&path).map_err(io_at(&path))?;
        }
    }
    let mut counts = Counts {
        studies: snap.studies,
        instances: snap.rows.len() as u64,
        audit_entries: snap.audit_entries,
        ..Counts::default()
    };
    let mut missing_files = Vec::new();
    for row in &snap.rows {
        if copied.contains_key(&row.path) {
            continue;
        }
        if missing.contains(&row.path) || !is_spool_object(&row.path) {
            missing_files.push(MissingFile {
                path: row.path.clone(),
                state: row.state.clone(),
            });
        } else {
            counts.not_kept += 1;
        }
    }
    let mut files: Vec<FileEntry> = copied.into_values().collect();
    let quarantined = copy_quarantine(&spool, dir)?;
    counts.quarantined = quarantined.len() as u64;
    files.extend(quarantined);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    counts.files = files.len() as u64;
    counts.bytes = files.iter().map(|f| f.size).sum();

    let (size, sha256) = hash_file(&snapshot_path)?;
    sync_tree(dir)?;
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        readgate_version: env!("CARGO_PKG_VERSION").into(),
        gateway: config.gateway.id.clone(),
        taken_at: crate::time::format_rfc3339_ms(snap.taken_at_ms),
        taken_at_ms: snap.taken_at_ms,
        schema_version: snap.schema_version,
        database: FileEntry {
            path: DATABASE.into(),
            size,
            sha256,
        },
        audit_head: snap.audit_head,
        counts,
        files,
        missing: missing_files,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::BadManifest {
        path: dir.join(MANIFEST),
        why: e.to_string(),
    })?;
    let manifest_sha256 = crate::digest::sha256_hex(&text);
    // The entry goes first: a backup whose entry cannot be written is not given out.
    let entry = audit
        .append(&backup_entry(actor, dir, &manifest, &manifest_sha256))
        .map_err(|source| BackupError::Unrecorded { source })?;
    write_manifest(dir, &text)?;
    Ok((manifest, manifest_sha256, entry, attempt))
}

fn backup_entry(actor: &str, dir: &Path, m: &Manifest, manifest_sha256: &str) -> NewEntry {
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    NewEntry::new(crate::audit::kind::BACKUP_TAKEN, actor).detail(serde_json::json!({
        "to": dir.display().to_string(),
        "manifest_sha256": manifest_sha256,
        "taken_at": m.taken_at,
        "schema_version": m.schema_version,
        "studies": m.counts.studies,
        "instances": m.counts.instances,
        "files": m.counts.files,
        "bytes": m.counts.bytes,
        "missing": m.missing.len(),
        "audit_head": m.audit_head.as_ref().map(|h| format!("{}:{}", h.seq, h.hash)),
    }))
}

/// `objects/xx/NAME`, as the spool names its files (see `Spool::place`): nothing else is
/// copied from the path a database row gives.
pub(super) fn is_spool_object(rel: &str) -> bool {
    let mut parts = rel.split('/');
    let (Some("objects"), Some(sub), Some(name), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let plain = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    };
    plain(sub) && plain(name)
}

/// Copies `spool/quarantine/*` (files readgate could not read back, kept for a person to
/// look at; no database row names them). One removed meanwhile is skipped.
fn copy_quarantine(spool: &Path, dir: &Path) -> Result<Vec<FileEntry>> {
    let from = spool.join("quarantine");
    let entries = match fs::read_dir(&from) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_at(&from)(e)),
    };
    let to = dir.join(SPOOL).join("quarantine");
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_at(&from))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            continue;
        }
        if out.is_empty() {
            private_dirs(
                dir,
                &Path::new(SPOOL).join("quarantine"),
                &mut HashSet::new(),
            )?;
        }
        let dest = to.join(&name);
        if let Some((size, sha256)) = copy_hashed(&entry.path(), &dest)? {
            out.push(FileEntry {
                path: format!("{SPOOL}/quarantine/{name}"),
                size,
                sha256,
            });
        }
    }
    Ok(out)
}

/// Copies the live database into `to` in one backup step and reads what the copy holds.
fn snapshot(source: &Connection, db: &Path, to: &Path) -> Result<Snapshot> {
    drop(create_private(to)?);
    let mut dest = Connection::open(to).map_err(sql_at(to))?;
    let taken_at_ms;
    {
        let backup = Backup::new(source, &mut dest).map_err(sql_at(to))?;
        let waiting = Instant::now();
        loop {
            // -1: every page in one step, i.e. within one read transaction (see above).
            match backup.step(-1).map_err(sql_at(db))? {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked => {
                    if waiting.elapsed() >= BUSY_WAIT {
                        return Err(BackupError::Busy {
                            path: db.to_path_buf(),
                            secs: BUSY_WAIT.as_secs(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                // A result a newer rusqlite may add: try again like Busy.
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        taken_at_ms = crate::time::now_ms();
    }
    let sql = sql_at(to);
    let read = |dest: &Connection| -> rusqlite::Result<Snapshot> {
        dest.pragma_update(None, "journal_mode", "DELETE")?;
        let schema_version: i64 = dest.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let mut stmt = dest.prepare("SELECT path, state FROM instances ORDER BY path")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Row {
                    path: r.get(0)?,
                    state: r.get(1)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let studies: i64 = dest.query_row("SELECT count(*) FROM studies", [], |r| r.get(0))?;
        let audit_entries: i64 =
            dest.query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0))?;
        let audit_head = dest
            .query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
                Ok(AuditHead {
                    seq: r.get(0)?,
                    hash: r.get(1)?,
                })
            })
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        Ok(Snapshot {
            taken_at_ms,
            schema_version,
            rows,
            studies: studies.max(0) as u64,
            audit_head,
            audit_entries: audit_entries.max(0) as u64,
        })
    };
    let snap = read(&dest).map_err(sql)?;
    dest.close().map_err(|(_, e)| sql_at(to)(e))?;
    Ok(snap)
}

/// Writes `manifest.json` durably and last: temp file, fsync, rename, fsync of `dir`.
fn write_manifest(dir: &Path, text: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{MANIFEST}.tmp"));
    let mut f = create_private(&tmp)?;
    f.write_all(text).map_err(io_at(&tmp))?;
    f.sync_all().map_err(io_at(&tmp))?;
    let path = dir.join(MANIFEST);
    fs::rename(&tmp, &path).map_err(io_at(&path))?;
    sync_dir(dir)
}
