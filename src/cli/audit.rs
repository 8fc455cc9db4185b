//! `readgate audit verify|export|search`: the audit trail from the command line.

use super::ConfigFile;
use super::*;
use crate::audit::{AtnaSource, AuditLog, EntryRef, Query, Range};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the whole hash chain: exit 0 when intact, 3 when an entry was changed, deleted
    /// or inserted (the first one is named), 1 when the trail cannot be read.
    Verify {
        #[command(flatten)]
        config: ConfigFile,
        /// An entry's sequence number and hash noted outside the database earlier
        /// (`SEQ:HASH`, as printed by a previous verify); checked too.
        #[arg(long)]
        anchor: Option<String>,
        /// How to print it: `table` for people, `json` for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Write the trail as JSON lines or as IHE ATNA (DICOM PS3.15) messages in RFC 5424
    /// syslog frames (octet counting).
    Export {
        #[command(flatten)]
        config: ConfigFile,
        /// `jsonl` (one entry a line, as stored, with its hashes) or `atna` (IHE ATNA
        /// audit messages, XML).
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Entries from this time (RFC 3339, e.g. 2025-04-01T00:00:00+09:00).
        #[arg(long)]
        from: Option<String>,
        /// Entries up to this time (RFC 3339).
        #[arg(long)]
        to: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Find entries, newest first.
    Search {
        #[command(flatten)]
        config: ConfigFile,
        /// Event kind, e.g. study_overridden, read_event, operator_login.
        #[arg(long)]
        kind: Option<String>,
        /// Study Instance UID or accession number.
        #[arg(long)]
        study: Option<String>,
        /// Who: user, AE title, HL7 sender, `system`.
        #[arg(long)]
        actor: Option<String>,
        /// Text contained in the detail (or the actor).
        #[arg(long)]
        text: Option<String>,
        /// From this time (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Up to this time (RFC 3339).
        #[arg(long)]
        to: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Skip this many (newest first), for the next page.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// How to print it: `table` for people, `json` for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Atna,
}

fn open_audit(config: &std::path::Path) -> anyhow::Result<(Config, AuditLog)> {
    let config = Config::load(config)?;
    let log = AuditLog::open_read_only_at(&super::existing_database(&config)?)?;
    Ok((config, log))
}

pub(super) fn time_arg(flag: &str, v: &Option<String>) -> anyhow::Result<Option<i64>> {
    v.as_deref()
        .map(|s| {
            crate::time::parse_rfc3339_ms(s).ok().ok_or_else(|| {
                anyhow::anyhow!(
                    "{flag} {s:?}: expected an RFC 3339 time, e.g. 2025-04-01T00:00:00+09:00"
                )
            })
        })
        .transpose()
}

pub(super) fn audit(command: AuditCommand) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    match command {
        AuditCommand::Verify {
            config,
            anchor,
            format,
        } => {
            let anchor = anchor
                .as_deref()
                .map(|a| {
                    let (seq, hash) = a.split_once(':').unwrap_or((a, ""));
                    match (seq.trim().parse::<i64>(), crate::audit::chain::from_hex(hash.trim())) {
                        (Ok(seq), Some(_)) => Ok(EntryRef {
                            seq,
                            hash: hash.trim().to_ascii_lowercase(),
                        }),
                        _ => Err(anyhow::anyhow!(
                            "--anchor {a:?}: expected SEQ:HASH (a sequence number and 64 hex digits)"
                        )),
                    }
                })
                .transpose()?;
            let (_, log) = open_audit(&config.path)?;
            let v = log.verify_with_anchor(anchor.as_ref())?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Format::Table => print_verification(&log, &v),
            }
            Ok(if v.intact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_TAMPERED)
            })
        }
        AuditCommand::Export {
            config,
            format,
            from,
            to,
            out,
        } => {
            let range = Range {
                from_ms: time_arg("--from", &from)?,
                to_ms: time_arg("--to", &to)?,
            };
            let (config, log) = open_audit(&config.path)?;
            let source = AtnaSource::from_config(&config);
            let export = |w: &mut dyn std::io::Write| -> anyhow::Result<u64> {
                Ok(match format {
                    ExportFormat::Jsonl => log.export_jsonl(w, range)?,
                    ExportFormat::Atna => log.export_atna(w, range, &source)?,
                })
            };
            match &out {
                Some(path) => {
                    let mut f = std::fs::File::create(path)
                        .with_context(|| format!("--out {}", path.display()))?;
                    let n = export(&mut f)?;
                    f.sync_all()
                        .with_context(|| format!("--out {}", path.display()))?;
                    eprintln!("exported {n} entries to {}", path.display());
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut lock = stdout.lock();
                    export(&mut lock)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Search {
            config,
            kind,
            study,
            actor,
            text,
            from,
            to,
            limit,
            offset,
            format,
        } => {
            let q = Query {
                kind,
                actor,
                study,
                text,
                from_ms: time_arg("--from", &from)?,
                to_ms: time_arg("--to", &to)?,
                limit: limit.max(1),
                offset,
            };
            let (_, log) = open_audit(&config.path)?;
            let entries = log.search(&q)?;
            match format {
                Format::Json => {
                    let rows: Vec<serde_json::Value> = entries
                        .iter()
                        .map(|e| {
                            let mut v = serde_json::to_value(e).unwrap_or_default();
                            v["detail"] = e.detail_json();
                            v
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                }
                Format::Table => print_audit_entries(&entries),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(super) fn print_verification(log: &AuditLog, v: &crate::audit::Verification) {
    print_verification_at(log.path(), v)
}

/// As [`print_verification`], for the trail in the database at `path`.
pub(super) fn print_verification_at(path: &std::path::Path, v: &crate::audit::Verification) {
    println!("audit trail in {}", path.display());
    match (v.first_seq, v.last_seq) {
        (Some(a), Some(b)) => println!(
            "checked {} entries (seq {a}–{b}) in {:.2} s",
            v.entries,
            v.elapsed.as_secs_f64()
        ),
        _ => println!(
            "checked {} entries in {:.2} s",
            v.entries,
            v.elapsed.as_secs_f64()
        ),
    }
    if let (Some(seq), Some(h)) = (v.last_seq, &v.head_hash) {
        println!("newest entry: {seq}:{h}  (keep this as --anchor for the next check)");
    }
    println!(
        "system clock now: {}",
        match v.clock_synchronised {
            Some(true) => "synchronised (NTP)",
            Some(false) => "NOT synchronised: entry times are only as good as this clock",
            None => "synchronisation unknown",
        }
    );
    if v.clock_steps == 0 {
        println!("clock steps between entries: none");
    } else {
        println!("clock steps between entries: {}", v.clock_steps);
        for c in v.clock.iter().take(20) {
            let what = match c.issue {
                crate::audit::ClockIssue::SteppedBack => "wall clock set back",
                crate::audit::ClockIssue::SteppedForward => "wall clock set forward (or suspend)",
                crate::audit::ClockIssue::BehindPrevious => {
                    "after a reboot, clock behind the previous entry"
                }
            };
            println!(
                "  at entry {}: {what} by {:.3} s",
                c.seq,
                c.by_ms as f64 / 1000.0
            );
        }
    }
    for n in &v.notes {
        println!("note: {n}");
    }
    match &v.finding {
        None => println!("chain intact"),
        Some(f) => println!("TAMPERED: {}", f.message),
    }
}

pub(super) fn print_audit_entries(entries: &[crate::audit::Entry]) {
    println!(
        "{:>8}  {:<24}  {:<18}  {:<16}  {:<30}  detail",
        "seq", "time (UTC)", "kind", "actor", "study / accession"
    );
    for e in entries {
        let study = match (&e.study_uid, &e.accession) {
            (Some(s), Some(a)) => format!("{s} / {a}"),
            (Some(s), None) => s.clone(),
            (None, Some(a)) => format!("/ {a}"),
            (None, None) => "-".into(),
        };
        let detail: String = e.detail.chars().take(100).collect();
        println!(
            "{:>8}  {:<24}  {:<18}  {:<16}  {:<30}  {}",
            e.seq, e.at, e.kind, e.actor, study, detail
        );
    }
    println!(
        "{} entr{}",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" }
    );
}
