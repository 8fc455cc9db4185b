//! Command-line interface: `serve`, `studies`, `orders`, `release`, `reject`, `check`,
//! `config-check` and the `audit` group (`verify`, `export`, `search`). Every subcommand
//! takes `--config PATH` (default `config/readgate.toml`).

use crate::audit::{AtnaSource, AuditLog, EntryRef, Query, Range};
use crate::config::{Config, LogFormat, DEFAULT_CONFIG_PATH};
use crate::model::StudyState;
use crate::store::{Store, StudyRow};
use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "readgate",
    version,
    about = "Teleradiology gateway: holds studies that lack clinical context, forwards and tags the rest"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway daemon (DICOM SCP, study stage, forwarders) until SIGTERM.
    Serve {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// List studies with their state, instance count, destination and last error.
    Studies {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Only studies in this state: receiving, held, queued, forwarded, failed.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[arg(long, default_value_t = 200)]
        limit: usize,
        /// Language of hold reasons in the table: ja or en.
        #[arg(long, default_value = "en")]
        lang: String,
    },
    /// What readgate knows of a study's order, labs, contact and reports (from HL7), with
    /// the message each fact came from.
    Orders {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Accession number or Study Instance UID.
        key: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Release a held study anyway: it is forwarded with verdict RELEASED_OVERRIDE and the
    /// justification is recorded with who and when.
    Release {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Study Instance UID or accession number.
        study: String,
        /// Who releases it (recorded).
        #[arg(long)]
        by: String,
        /// Why it may go without the missing context (mandatory, recorded).
        #[arg(long)]
        justification: String,
    },
    /// Reject a held or failed study: it is not sent; its instances leave the spool.
    Reject {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Study Instance UID or accession number.
        study: String,
        #[arg(long)]
        by: String,
        /// Why it is rejected (mandatory, recorded).
        #[arg(long)]
        reason: String,
    },
    /// The gate's verdict on DICOM files or folders (plus optional HL7 messages), offline:
    /// exit 0 when every study would be forwarded, 2 when any would be held.
    Check {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// DICOM files or folders (searched recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// HL7 v2 messages (orders, results) that go with the images; repeatable.
        #[arg(long = "hl7")]
        hl7: Vec<PathBuf>,
        /// Language of the reasons: ja or en.
        #[arg(long, default_value = "ja")]
        lang: String,
        /// The calling AE title the images would come from (for routes by calling_ae).
        #[arg(long)]
        calling_ae: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The reading accountability ledger for a month: eligibility per study with reasons,
    /// part-time share, formal confirmations, unknown readers and places, held/released.
    Report {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// YYYY-MM (local time, `ledger.utc_offset`).
        #[arg(long)]
        month: String,
        /// Only studies of this responsible receiving facility.
        #[arg(long)]
        facility: Option<String>,
        #[arg(long, value_enum, default_value_t = crate::ledger::cli::ReportFormat::Json)]
        format: crate::ledger::cli::ReportFormat,
        /// Language of the HTML report: ja or en.
        #[arg(long, default_value = "ja")]
        lang: String,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The reader roster: import a CSV, list the roster in force.
    Roster {
        #[command(subcommand)]
        command: crate::ledger::cli::RosterCommand,
    },
    /// Bearer tokens for the HTTP API.
    Token {
        #[command(subcommand)]
        command: crate::ledger::cli::TokenCommand,
    },
    /// Web console users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The whole gate on one machine: a built-in reading site, the sample studies and HL7
    /// messages (forwarded, held then released by its order, read by a part-time reader
    /// from outside); runs until Ctrl-C.
    Demo {
        /// HTTP port (a free one if taken).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// The repository (holds sample-dicom/).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Data directory (default: a new one in the temp directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Stop after this many seconds (tests).
        #[arg(long)]
        exit_after: Option<u64>,
    },
    /// Validate the configuration file and print a summary.
    ConfigCheck {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// The audit trail (ATS-4): verify its hash chain, export it, search it.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// Exit code of `readgate audit verify` when the chain shows tampering.
pub const EXIT_TAMPERED: u8 = 3;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the whole hash chain: exit 0 when intact, 3 when an entry was changed, deleted
    /// or inserted (the first one is named), 1 when the trail cannot be read.
    Verify {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// An entry's sequence number and hash noted outside the database earlier
        /// (`SEQ:HASH`, as printed by a previous verify); checked too.
        #[arg(long)]
        anchor: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Write the trail as JSON lines or as IHE ATNA (DICOM PS3.15) messages in RFC 5424
    /// syslog frames (octet counting).
    Export {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
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
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
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
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Atna,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    #[value(alias = "text")]
    Table,
    Json,
}

pub fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    if let Command::Check {
        config,
        paths,
        hl7,
        lang,
        calling_ae,
        format,
    } = cli.command
    {
        let lang: crate::decide::reasons::Lang = lang
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--lang: {e}"))?;
        let config = Config::load(&config)?;
        let verdicts = crate::check::run(config, &paths, &hl7, calling_ae.as_deref())?;
        match format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&verdicts)?),
            Format::Table => crate::check::print(&verdicts, lang),
        }
        return Ok(if crate::check::all_forward(&verdicts) {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::from(2)
        });
    }
    if let Command::Audit { command } = cli.command {
        return audit(command);
    }
    run(cli.command).map(|()| std::process::ExitCode::SUCCESS)
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        // Handled by `main`, which needs their exit codes.
        Command::Check { .. } | Command::Audit { .. } => Ok(()),
        Command::Serve { config } => {
            let config = Config::load(&config)?;
            init_logging(&config);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(crate::serve::serve(config))
        }
        Command::Studies {
            config,
            state: wanted,
            format,
            limit,
            lang,
        } => {
            let lang: crate::decide::reasons::Lang = lang
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--lang: {e}"))?;
            let config = Config::load(&config)?;
            let wanted: Option<StudyState> = match &wanted {
                Some(s) => match s.parse() {
                    Ok(state) => Some(state),
                    Err(_) => bail!(
                        "--state {s:?}: expected one of {}",
                        StudyState::NAMES.join(", ")
                    ),
                },
                None => None,
            };
            let store = open_existing(&config)?;
            let rows = store.list_studies(wanted, limit)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Format::Table => print_table(&rows, lang),
            }
            Ok(())
        }
        Command::Orders {
            config,
            key,
            format,
        } => {
            let config = Config::load(&config)?;
            let store = open_existing(&config)?;
            let view = crate::intake::view::StudyView::load(&store, &key)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&view)?),
                Format::Table => print!("{}", view.to_text()),
            }
            Ok(())
        }
        Command::Release {
            config,
            study,
            by,
            justification,
        } => {
            let config = Config::load(&config)?;
            let (store, uid) =
                operator_target(&config, &study, &by, &justification, "--justification")?;
            let audit = crate::audit::AuditLog::open(&config.database_path())?;
            let op = cli_operator(&store, &audit, None);
            match op.release(&uid, &cli_actor(&by), justification.trim()) {
                Ok(_) => {
                    println!("released {uid} (RELEASED_OVERRIDE, by {}); readgate serve forwards it within seconds", by.trim());
                    notify_operator_action(
                        &config,
                        &store,
                        &uid,
                        "released_override",
                        &by,
                        &justification,
                    );
                    Ok(())
                }
                Err(crate::actions::ActionError::WrongState { .. }) => bail!(
                    "{uid} is not held (or has no route to release it to): see `readgate studies`"
                ),
                Err(e) => Err(e.into()),
            }
        }
        Command::Reject {
            config,
            study,
            by,
            reason,
        } => {
            let config = Config::load(&config)?;
            let (store, uid) = operator_target(&config, &study, &by, &reason, "--reason")?;
            let audit = crate::audit::AuditLog::open(&config.database_path())?;
            let spool = config.spool_dir();
            let op = cli_operator(&store, &audit, Some(&spool));
            match op.reject(&uid, &cli_actor(&by), reason.trim()) {
                Ok(done) => {
                    println!(
                        "rejected {uid} (by {}); {} instance(s) removed from the spool",
                        by.trim(),
                        done.removed
                    );
                    notify_operator_action(&config, &store, &uid, "rejected", &by, &reason);
                    Ok(())
                }
                Err(crate::actions::ActionError::WrongState { .. }) => {
                    bail!("{uid} is neither held nor failed: see `readgate studies`")
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Report {
            config,
            month,
            facility,
            format,
            lang,
            out,
        } => crate::ledger::cli::report(&config, &month, facility, format, &lang, out.as_deref()),
        Command::Roster { command } => crate::ledger::cli::roster(command),
        Command::Token { command } => crate::ledger::cli::token(command),
        Command::User { command } => user(command),
        Command::Demo {
            port,
            repo,
            dir,
            exit_after,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(crate::demo::run(&repo, dir, port, exit_after))
        }
        Command::ConfigCheck { config: path } => {
            let config = Config::load(&path)?;
            println!("{}: valid", path.display());
            println!(
                "  gateway {} ({}), data in {}",
                config.gateway.id,
                config.gateway.sending_facility,
                config.gateway.data_dir.display()
            );
            println!(
                "  DICOM {} on {}",
                config.dicom.ae_title, config.dicom.listen
            );
            for d in &config.destinations {
                println!(
                    "  destination {}: {}@{}:{} (facility {})",
                    d.id, d.ae_title, d.host, d.port, d.facility
                );
            }
            println!(
                "  {} route(s), {} peer(s)",
                config.routes.len(),
                config.dicom.peers.len()
            );
            Ok(())
        }
    }
}

fn open_audit(config: &std::path::Path) -> anyhow::Result<(Config, AuditLog)> {
    let config = Config::load(config)?;
    let db = config.database_path();
    if !db.exists() {
        bail!(
            "no database at {} yet: has `readgate serve` run with this config?",
            db.display()
        );
    }
    let log = AuditLog::open_read_only(&db)?;
    Ok((config, log))
}

fn time_arg(flag: &str, v: &Option<String>) -> anyhow::Result<Option<i64>> {
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

fn audit(command: AuditCommand) -> anyhow::Result<std::process::ExitCode> {
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
            let (_, log) = open_audit(&config)?;
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
            let (config, log) = open_audit(&config)?;
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
            let (_, log) = open_audit(&config)?;
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

fn print_verification(log: &AuditLog, v: &crate::audit::Verification) {
    println!("audit trail in {}", log.path().display());
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

fn print_audit_entries(entries: &[crate::audit::Entry]) {
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
    let db = config.database_path();
    if !db.exists() {
        bail!("no database at {}", db.display());
    }
    let store = Store::open(&db)?;
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

fn open_existing(config: &Config) -> anyhow::Result<Store> {
    let db = config.database_path();
    if !db.exists() {
        bail!(
            "no database at {} yet: has `readgate serve` run with this config?",
            db.display()
        );
    }
    Ok(Store::open_read_only(&db)?)
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Colour codes only on a terminal: journald and log files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn print_table(rows: &[StudyRow], lang: crate::decide::reasons::Lang) {
    println!(
        "{:<64}  {:<10}  {:>9}  {:<12}  {:<10}  last error / reasons",
        "study instance UID", "state", "instances", "destination", "modality"
    );
    for r in rows {
        let note = r
            .last_error
            .clone()
            .or_else(|| r.reasons.as_deref().map(|j| reason_codes(j, lang)))
            .unwrap_or_default();
        println!(
            "{:<64}  {:<10}  {:>4}/{:<4}  {:<12}  {:<10}  {}",
            r.study_uid,
            r.state,
            r.instances_forwarded,
            r.instance_count,
            r.destination.as_deref().unwrap_or("-"),
            r.modalities,
            note
        );
    }
    println!(
        "{} stud{}",
        rows.len(),
        if rows.len() == 1 { "y" } else { "ies" }
    );
}

/// Hold reasons are stored as JSON; the table shows their codes and English text.
fn reason_codes(json: &str, lang: crate::decide::reasons::Lang) -> String {
    let message = match lang {
        crate::decide::reasons::Lang::Ja => "message_ja",
        crate::decide::reasons::Lang::En => "message_en",
    };
    match serde_json::from_str::<Vec<serde_json::Value>>(json) {
        Ok(v) => v
            .iter()
            .map(|r| {
                format!(
                    "{} [{}]: {}",
                    r["code"].as_str().unwrap_or("?"),
                    r["clause"].as_str().unwrap_or("?"),
                    r[message].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => json.to_string(),
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Read a password (stdin, or a prompt without echo on a terminal) and print the
    /// `[[http.users]]` entry (argon2id hash) to add to the config. Writes nothing.
    Add {
        name: String,
        #[arg(long, value_parser = ["viewer", "admin"])]
        role: String,
    },
}

fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let mut saved: Option<libc::termios> = None;
    if tty {
        eprint!("password: ");
        // SAFETY: termios is plain data; fd 0 is stdin, checked to be a terminal.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) == 0 {
                saved = Some(t);
                t.c_lflag &= !libc::ECHO;
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
        }
    }
    let mut line = String::new();
    let res = stdin.lock().read_line(&mut line);
    if let Some(t) = saved {
        // SAFETY: restores the settings read above.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &t);
        }
        eprintln!();
    }
    res.context("reading the password from stdin")?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.chars().count() < 8 {
        bail!("the password must have at least 8 characters");
    }
    Ok(pw)
}

fn user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add { name, role } => {
            let name = name.trim().to_string();
            if name.is_empty() || name.contains('"') || name.contains('\\') {
                bail!("NAME: expected a non-empty user name without quotes or backslashes");
            }
            let pw = read_password()?;
            let hash = crate::web::auth::hash_password(&pw).map_err(|e| anyhow::anyhow!(e))?;
            println!(
                "[[http.users]]\nname = \"{name}\"\nrole = \"{role}\"\npassword_hash = \"{hash}\""
            );
            Ok(())
        }
    }
}
