//! Backups: `readgate backup` takes a consistent copy of a gateway's data while it serves;
//! `readgate restore` brings one into an empty data directory.
//!
//! What a gateway knows is in two places: the SQLite database (index, decisions, queue,
//! HL7, ledger, audit trail) and the spool (the instances' files, which the database names
//! by relative path). A backup directory holds
//!
//! ```text
//! readgate.db              the database as of one moment (SQLite's online backup API)
//! spool/objects/xx/….dcm   every spool file that database names and the spool still held
//! spool/quarantine/…       files set aside for a person to look at (no database row)
//! manifest.json            written last: size and SHA-256 of each file above, readgate's
//!                          version, schema version, gateway id, time, counts
//! ```
//!
//! The priors cache (`data_dir/priors`) is left out: readgate empties it at every start
//! and retrieves from the PACS whatever a study still needs. So are the spool's `tmp/`
//! (never-acknowledged partial files, deleted at start) and the database's `-wal`/`-shm`
//! (the snapshot is one self-contained file).
//!
//! [`take`] explains how the copy stays consistent while the gateway receives and
//! forwards; [`restore`] how nothing is put in place before every checksum and the audit
//! chain have been verified. Both block (SQLite, file copies, fsync): the CLI calls them.

mod restore;
mod take;

pub use restore::{restore, Restored};
pub use take::{take, take_with, Taken};

use crate::audit::AuditError;
use crate::store::SchemaError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

/// The manifest's file name in a backup directory.
pub const MANIFEST: &str = "manifest.json";
/// The database's file name in a backup directory.
pub const DATABASE: &str = "readgate.db";
/// The spool's directory in a backup directory (and in the data directory).
pub const SPOOL: &str = "spool";
/// What `manifest.json` says it is.
pub const FORMAT: &str = "readgate-backup";
/// The manifest's layout; a restore refuses a newer one.
pub const FORMAT_VERSION: u32 = 1;
/// Progress is reported at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
const COPY_BUFFER: usize = 256 << 10;

/// Why a backup or a restore failed. Every variant names the file or directory.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup directory {path} is not empty: a backup goes into a new or empty directory")]
    TargetNotEmpty { path: PathBuf },
    #[error(
        "data directory {path} is not empty: restore only into an empty or absent data \
         directory (stop readgate and move the old one aside first)"
    )]
    DataDirNotEmpty { path: PathBuf },
    #[error(
        "data directory {path} holds {staging}, left by an interrupted restore: remove it \
         (rm -r {path}/{staging}) and run the restore again"
    )]
    InterruptedRestore {
        path: PathBuf,
        staging: &'static str,
    },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("no database at {path}: has `readgate serve` run with this config?")]
    NoDatabase { path: PathBuf },
    /// `readgate backup` and `restore` copy the SQLite file; a PostgreSQL database is
    /// backed up with PostgreSQL's own tools.
    #[error(
        "[database] url is set: readgate backup and restore copy the SQLite database only; back up \
         PostgreSQL with its own tools (pg_dump, or base backups with WAL archiving) and the \
         spool directory with the file system's"
    )]
    Postgres,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("database {path}: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database {path}: {source}")]
    Schema { path: PathBuf, source: SchemaError },
    #[error("database {path} stayed locked for {secs} s: the snapshot could not be taken")]
    Busy { path: PathBuf, secs: u64 },
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("{source}: the backup could not be recorded in the audit trail, so it was removed")]
    Unrecorded { source: AuditError },
    #[error(
        "{dir} has no {MANIFEST}: not a readgate backup, or one that did not finish (the \
         manifest is written last)"
    )]
    NoManifest { dir: PathBuf },
    #[error("{path}: not a readgate backup manifest: {why}")]
    BadManifest { path: PathBuf, why: String },
    #[error("backup file {file}: {why}; nothing was restored")]
    Corrupt { file: String, why: String },
    #[error(
        "the backup was made by readgate {version} with database schema {found}; this \
         readgate knows schema {known}: restore it with readgate {version} or newer"
    )]
    TooNew {
        version: String,
        found: i64,
        known: i64,
    },
    #[error(
        "the backup's audit trail does not verify ({finding}); nothing was restored: check \
         the live trail (readgate audit verify) and use an earlier backup"
    )]
    Tampered { finding: String },
}

pub type Result<T> = std::result::Result<T, BackupError>;

/// `Io` naming `path`.
fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `Sql` naming `path`.
fn sql_at(path: &Path) -> impl FnOnce(rusqlite::Error) -> BackupError + '_ {
    move |source| BackupError::Sql {
        path: path.to_path_buf(),
        source,
    }
}

/// `manifest.json`: what a backup holds and how to check it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The readgate that took it.
    pub readgate_version: String,
    /// `gateway.id` of the gateway it was taken from.
    pub gateway: String,
    /// When the database snapshot was taken (RFC 3339, UTC) …
    pub taken_at: String,
    /// … and as Unix milliseconds.
    pub taken_at_ms: i64,
    /// `PRAGMA user_version` of the snapshot.
    pub schema_version: i64,
    /// The database snapshot.
    pub database: FileEntry,
    /// The snapshot's newest audit entry (`None`: an empty trail). A restore verifies the
    /// chain up to it.
    pub audit_head: Option<AuditHead>,
    pub counts: Counts,
    /// Every spool file in the backup, by path in the backup directory.
    pub files: Vec<FileEntry>,
    /// Files the snapshot needs (their instances are not yet forwarded) that the live
    /// spool did not have: the backup mirrors a spool that had already lost them.
    pub missing: Vec<MissingFile>,
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the backup directory (`readgate.db`, `spool/objects/ab/….dcm`).
    pub path: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// An entry of the audit trail, as `readgate audit verify --anchor SEQ:HASH` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
}

/// A spool file the snapshot needs and the live spool lacked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingFile {
    /// Spool-relative, as the database names it.
    pub path: String,
    /// The instance's state in the snapshot.
    pub state: String,
}

/// What the snapshot holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub studies: u64,
    pub instances: u64,
    /// Spool files in the backup (instances' and quarantined ones).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Of `files`, those in `spool/quarantine`.
    pub quarantined: u64,
    /// Instances whose file had left the spool before the snapshot, as readgate does
    /// after forwarding (`storage.keep_forwarded = false`) or a rejection.
    pub not_kept: u64,
    pub audit_entries: u64,
}

impl Manifest {
    /// Reads and checks `dir/manifest.json`: its format, and that this readgate can open
    /// the database it describes.
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BackupError::NoManifest {
                    dir: dir.to_path_buf(),
                })
            }
            Err(e) => return Err(io_at(&path)(e)),
        };
        let bad = |why: String| BackupError::BadManifest {
            path: path.clone(),
            why,
        };
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if m.format != FORMAT {
            return Err(bad(format!("format {:?}, expected {FORMAT:?}", m.format)));
        }
        if m.format_version > FORMAT_VERSION {
            return Err(bad(format!(
                "format version {} is newer than this readgate's ({FORMAT_VERSION}): \
                 restore it with readgate {} or newer",
                m.format_version, m.readgate_version
            )));
        }
        if m.schema_version > crate::store::schema::LATEST {
            return Err(BackupError::TooNew {
                version: m.readgate_version.clone(),
                found: m.schema_version,
                known: crate::store::schema::LATEST,
            });
        }
        if m.database.path != DATABASE {
            return Err(bad(format!(
                "database {:?}, expected {DATABASE:?}",
                m.database.path
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for f in &m.files {
            if !is_spool_file(&f.path) {
                return Err(bad(format!("{:?} is not a path inside spool/", f.path)));
            }
            if !seen.insert(f.path.as_str()) {
                return Err(bad(format!("{:?} is listed twice", f.path)));
            }
        }
        Ok(m)
    }
}

/// Whether `rel` is a plain relative path below `spool/` (nothing that could climb out
/// of the directory it is joined to).
fn is_spool_file(rel: &str) -> bool {
    let path = Path::new(rel);
    let mut parts = path.components();
    parts.next() == Some(Component::Normal(SPOOL.as_ref()))
        && path.components().count() >= 2
        && parts.all(|c| matches!(c, Component::Normal(_)))
}

/// Creates `path` for writing, readable by its owner only, failing if it exists.
fn create_private(path: &Path) -> Result<File> {
    File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_at(path))
}

/// Copies `from` to a new private file `to`, returning its size and SHA-256 (hex). `None`
/// when `from` does not exist.
fn copy_hashed(from: &Path, to: &Path) -> Result<Option<(u64, String)>> {
    let src = match File::open(from) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(from)(e)),
    };
    let mut dst = create_private(to)?;
    read_hashed(src, from, |chunk| dst.write_all(chunk).map_err(io_at(to))).map(Some)
}

/// Reads `src` (the file at `path`) to its end, handing each chunk to `sink`; returns its
/// size and SHA-256 (hex).
fn read_hashed(
    mut src: File,
    path: &Path,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut size = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_at(path)(e)),
        };
        hasher.update(&buf[..n]);
        sink(&buf[..n])?;
        size += n as u64;
    }
    Ok((size, crate::digest::hex(&hasher.finalize())))
}

/// Creates `root/rel` and every directory between them 0700 (`create_dir_all` would
/// give the intermediate ones the umask's mode). `made` remembers what exists already.
fn private_dirs(root: &Path, rel: &Path, made: &mut HashSet<PathBuf>) -> Result<()> {
    let mut dir = root.to_path_buf();
    for part in rel.components() {
        dir.push(part);
        if made.insert(dir.clone()) {
            crate::spool::private_dir(&dir).map_err(io_at(&dir))?;
        }
    }
    Ok(())
}

/// Size and SHA-256 (hex) of a file.
fn hash_file(path: &Path) -> Result<(u64, String)> {
    let f = File::open(path).map_err(io_at(path))?;
    read_hashed(f, path, |_| Ok(()))
}

/// Makes everything written to `dir`'s file system durable: file data, new names and
/// directories (one `syncfs`, cheaper than an fsync per file and directory).
fn sync_tree(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(io_at(dir))?;
    // SAFETY: a plain syscall on a file descriptor we own.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(io_at(dir)(io::Error::last_os_error()));
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_at(dir))
}

/// Whether `dir` exists; refuses one that is not a directory or holds anything.
fn absent_or_empty(dir: &Path, not_empty: impl FnOnce() -> BackupError) -> Result<bool> {
    match fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_at(dir)(e)),
        Ok(m) if !m.is_dir() => Err(BackupError::NotADirectory {
            path: dir.to_path_buf(),
        }),
        Ok(_) => {
            let mut entries = fs::read_dir(dir).map_err(io_at(dir))?;
            if entries.next().is_some() {
                return Err(not_empty());
            }
            Ok(true)
        }
    }
}

/// Progress of long work, for the CLI to show (at most every 2 s, and once at the end).
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A database snapshot was taken (`attempt` 1, then again when files it needed left
    /// the spool before they were copied).
    Snapshot {
        attempt: u32,
        bytes: u64,
        elapsed: Duration,
    },
    /// `vanished` files the last snapshot needed left the spool (forwarded, rejected or
    /// replaced) before they were copied: another snapshot is taken.
    Retake { attempt: u32, vanished: usize },
    /// Spool files copied (backup) or checked and copied (restore) so far.
    Files { done: u64, total: u64, bytes: u64 },
}

/// Calls `report` with the files done so far at most every [`PROGRESS_EVERY`].
struct Ticker<'a> {
    report: &'a mut dyn FnMut(&Progress),
    last: Instant,
}

impl<'a> Ticker<'a> {
    fn new(report: &'a mut dyn FnMut(&Progress)) -> Ticker<'a> {
        Ticker {
            report,
            last: Instant::now(),
        }
    }

    fn files(&mut self, done: u64, total: u64, bytes: u64) {
        if self.last.elapsed() >= PROGRESS_EVERY {
            self.last = Instant::now();
            (self.report)(&Progress::Files { done, total, bytes });
        }
    }

    fn event(&mut self, p: Progress) {
        (self.report)(&p);
    }
}

#[cfg(test)]
mod tests;
