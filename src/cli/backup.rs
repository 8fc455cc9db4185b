//! `readgate backup DIR` and `readgate restore DIR` (see `crate::backup`): progress on
//! stderr, a summary on stdout, exit 1 on any failure.

use super::ConfigFile;
use super::*;
use crate::backup::{Counts, Progress};

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Copy the database (a consistent snapshot) and the spool into DIR, a new or empty
    /// directory, while readgate serves; manifest.json, written last, holds each file's
    /// SHA-256. The priors cache is not copied. Recorded in the audit trail.
    Backup {
        #[command(flatten)]
        config: ConfigFile,
        /// Where the backup goes (created 0700 if absent).
        dir: PathBuf,
    },
    /// Restore a backup into the configured data directory, which must be empty or
    /// absent: every file's SHA-256 and the audit chain are verified before anything is
    /// put in place.
    Restore {
        #[command(flatten)]
        config: ConfigFile,
        /// A directory written by `readgate backup`.
        dir: PathBuf,
    },
}

pub fn run(command: BackupCommand) -> anyhow::Result<()> {
    let actor = format!("cli:{}", super::os_user());
    match command {
        BackupCommand::Backup { config, dir } => {
            let config = config.load()?;
            let taken =
                crate::backup::take(&config, &dir, &actor, &mut |p| show("backup", "copied", p))?;
            let m = &taken.manifest;
            println!(
                "backup of gateway {} taken at {} in {}",
                m.gateway,
                m.taken_at,
                taken.dir.display()
            );
            println!(
                "  database: {}, schema {}",
                megabytes(m.database.size),
                m.schema_version
            );
            print_counts(&m.counts);
            if let Some(h) = &m.audit_head {
                println!(
                    "  audit trail: {} entries up to {}:{}",
                    m.counts.audit_entries, h.seq, h.hash
                );
            }
            if !m.missing.is_empty() {
                eprintln!(
                    "backup: WARNING: the live spool lacks {} file(s) its database needs (listed \
                     under \"missing\" in manifest.json): the backup mirrors that; see readgate doctor",
                    m.missing.len()
                );
                println!(
                    "  missing from the live spool: {} (see manifest.json)",
                    m.missing.len()
                );
            }
            println!(
                "  manifest.json SHA-256 {} (audit entry {})",
                taken.manifest_sha256, taken.entry.seq
            );
            println!(
                "took {:.2} s ({} database snapshot{})",
                taken.elapsed.as_secs_f64(),
                taken.snapshots,
                if taken.snapshots == 1 { "" } else { "s" }
            );
            Ok(())
        }
        BackupCommand::Restore { config, dir } => {
            let config = config.load()?;
            let m = crate::backup::Manifest::read(&dir)?;
            if m.gateway != config.gateway.id {
                eprintln!(
                    "restore: note: the backup is of gateway {}, this config's gateway.id is {}",
                    m.gateway, config.gateway.id
                );
            }
            let r = crate::backup::restore(&config, &dir, &actor, &mut |p| {
                show("restore", "checked and copied", p)
            })?;
            let m = &r.manifest;
            println!(
                "restored the backup of gateway {} taken at {} (readgate {}) into {}",
                m.gateway,
                m.taken_at,
                m.readgate_version,
                r.data_dir.display()
            );
            println!(
                "  every file's size and SHA-256 as in its manifest.json ({})",
                r.manifest_sha256
            );
            print_counts(&m.counts);
            if !m.missing.is_empty() {
                println!(
                    "  {} file(s) the live spool already lacked when the backup was taken (manifest.json, \"missing\")",
                    m.missing.len()
                );
            }
            audit::print_verification_at(&config.database_path(), &r.verification);
            println!(
                "recorded: restored, audit entry {}:{}",
                r.entry.seq, r.entry.hash
            );
            println!(
                "took {:.2} s; start readgate on it and check with `readgate doctor`",
                r.elapsed.as_secs_f64()
            );
            Ok(())
        }
    }
}

fn print_counts(c: &Counts) {
    println!("  studies: {}, instances: {}", c.studies, c.instances);
    println!(
        "  spool: {} files, {} ({} quarantined; {} instance file(s) already removed after forwarding or rejection)",
        c.files,
        megabytes(c.bytes),
        c.quarantined,
        c.not_kept
    );
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Progress on stderr.
fn show(command: &str, done_what: &str, p: &Progress) {
    match p {
        Progress::Snapshot {
            attempt,
            bytes,
            elapsed,
        } => eprintln!(
            "{command}: database snapshot {attempt}: {} in {:.2} s",
            megabytes(*bytes),
            elapsed.as_secs_f64()
        ),
        Progress::Retake { vanished, .. } => eprintln!(
            "{command}: {vanished} file(s) the snapshot needed left the spool before they were \
             copied (forwarded, rejected or replaced): taking another snapshot"
        ),
        Progress::Files { total: 0, .. } => {}
        Progress::Files { done, total, bytes } => eprintln!(
            "{command}: {done}/{total} spool files {done_what} ({})",
            megabytes(*bytes)
        ),
    }
}
