//! Command-line interface: `serve`, `migrate`, `db copy`, `studies`, `orders`, `release`, `reject`, `check`,
//! `config-check` and the `audit` group (`verify`, `export`, `search`). Every subcommand
//! takes `--config PATH` (default `config/readgate.toml`).

use crate::config::{Config, LogFormat, DEFAULT_CONFIG_PATH};
use crate::store::Store;
use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

mod audit;
mod backup;
mod config_check;
mod db;
mod doctor;
pub mod ledger;
mod logline;
mod migrate;
mod nodes;
mod operator;
mod pacs;
mod studies;
mod user;

pub use audit::{AuditCommand, ExportFormat};
pub use user::UserCommand;

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

/// `--config PATH`, as every command but `reload` takes it.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigFile {
    /// The configuration file (the Debian package installs /etc/readgate/readgate.toml).
    #[arg(long = "config", value_name = "CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub path: PathBuf,
}

impl ConfigFile {
    /// The file, read and validated.
    pub fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::load(&self.path)?)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway daemon (DICOM SCP, study stage, forwarders) until SIGTERM.
    ///
    /// Refuses to start on a database of an older readgate (see `readgate migrate`) unless
    /// given --migrate; a new data directory gets the current schema.
    Serve {
        #[command(flatten)]
        config: ConfigFile,
        /// Apply the schema migrations a database of an older readgate needs before
        /// starting (each is logged and recorded in the audit trail), as `readgate migrate`
        /// would. The Debian package's unit starts readgate this way.
        #[arg(long)]
        migrate: bool,
    },
    /// Bring the database to this readgate's schema version (`serve` refuses an older one).
    ///
    /// Prints the version found, each migration applied (number and what it does) and the
    /// version reached; each is recorded in the audit trail. Take `readgate backup` first. A database of a newer
    /// readgate is refused (exit 1); an up-to-date one is left as it is.
    Migrate {
        #[command(flatten)]
        config: ConfigFile,
        /// Only list the migrations that would be applied; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Apply a changed configuration file to the running `readgate serve` without a
    /// restart (what `systemctl reload readgate` does with SIGHUP), and say what changed.
    /// Peers, destinations, routes, policy, roster and places, users, tokens and the log
    /// level take effect for the next association, decision or request; listener
    /// addresses, storage and the other restart-only keys are named and keep their running
    /// value. An invalid file is refused (exit 1) and the running configuration stays.
    Reload {
        /// The config file of the running readgate (its data directory is where it
        /// listens for this request; it reloads the file it was started with).
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// List studies with their state, instance count, destination and last error.
    Studies {
        #[command(flatten)]
        config: ConfigFile,
        /// Only studies in this state: receiving, held, queued, forwarded, failed, rejected.
        #[arg(long)]
        state: Option<String>,
        /// How to print it: `table` for people, `json` for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// At most this many studies, newest first.
        #[arg(long, default_value_t = 200)]
        limit: usize,
        /// Language of hold reasons in the table: ja or en.
        #[arg(long, default_value = "en")]
        lang: String,
    },
    /// What readgate knows of a study's order, labs, contact and reports (from HL7), with
    /// the message each fact came from.
    Orders {
        #[command(flatten)]
        config: ConfigFile,
        /// Accession number or Study Instance UID.
        key: String,
        /// How to print it: `table` for people, `json` for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Release a held study anyway: it is forwarded with verdict RELEASED_OVERRIDE and the
    /// justification is recorded with who and when.
    Release {
        #[command(flatten)]
        config: ConfigFile,
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
        #[command(flatten)]
        config: ConfigFile,
        /// Study Instance UID or accession number.
        study: String,
        /// Who rejects it (recorded).
        #[arg(long)]
        by: String,
        /// Why it is rejected (mandatory, recorded).
        #[arg(long)]
        reason: String,
    },
    /// The gate's verdict on DICOM files or folders (plus optional HL7 messages), offline:
    /// exit 0 when every study would be forwarded, 2 when any would be held.
    Check {
        #[command(flatten)]
        config: ConfigFile,
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
        /// How to print it: `table` for people, `json` for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The reading accountability ledger for a month: eligibility per study with reasons,
    /// part-time share, formal confirmations, unknown readers and places, held/released.
    Report {
        #[command(flatten)]
        config: ConfigFile,
        /// YYYY-MM (local time, `ledger.utc_offset`).
        #[arg(long)]
        month: String,
        /// Only studies of this responsible receiving facility.
        #[arg(long)]
        facility: Option<String>,
        /// `json` (the schema of docs/ledger.md), `csv` (a row per study) or `html` (a
        /// self-contained page with its charts).
        #[arg(long, value_enum, default_value_t = ledger::ReportFormat::Json)]
        format: ledger::ReportFormat,
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
        command: ledger::RosterCommand,
    },
    /// Bearer tokens for the HTTP API.
    Token {
        #[command(subcommand)]
        command: ledger::TokenCommand,
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
        #[command(flatten)]
        config: ConfigFile,
    },
    /// Check a gateway before go-live and at 3 a.m.: config, data directory, clock,
    /// C-ECHO to every destination and PACS, listeners, certificates, audit chain, queue
    /// and held studies. Exits 1 when a check fails.
    Doctor {
        #[command(flatten)]
        config: ConfigFile,
        /// How to print it: `table` for people, `json` for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    #[command(flatten)]
    Backup(backup::BackupCommand),
    /// Move the database: `readgate db copy` copies a SQLite installation into an empty
    /// PostgreSQL database.
    Db {
        #[command(subcommand)]
        command: db::DbCommand,
    },
    /// The audit trail (ATS-4): verify its hash chain, export it, search it.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The hospital's PACS (`[[pacs]]`): find a patient's studies.
    Pacs {
        #[command(subcommand)]
        command: pacs::PacsCommand,
    },
    /// The readgate nodes sharing this database: each node's host and pid, when it
    /// started, its last heartbeat, where it listens, the studies whose forwarding it
    /// holds, and which node runs the timers (study completion, re-evaluation, audit
    /// shipping). A node whose heartbeat is older than `database.lease_secs` is shown as
    /// silent: its work goes to the others.
    Nodes {
        #[command(flatten)]
        config: ConfigFile,
        /// How to print it: `table` for people, `json` for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The patient's prior studies a study's decision saw — received by readgate or found
    /// in the hospital's PACS — with their reports, and how each `[[pacs]]` answered.
    Priors {
        #[command(flatten)]
        config: ConfigFile,
        /// Study Instance UID or accession number.
        study: String,
        /// How to print it: `table` for people, `json` for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// Exit code of `readgate audit verify` when the chain shows tampering.
pub const EXIT_TAMPERED: u8 = 3;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    #[value(alias = "text")]
    Table,
    Json,
}

pub fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. } | Command::Demo { .. }) {
        // A one-shot command whose output is piped into `head` ends quietly when the
        // reader goes away, as other Unix tools do, instead of panicking in println!.
        // The daemon keeps Rust's default (SIGPIPE ignored): a peer closing a socket must
        // not end it.
        // SAFETY: setting a signal disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
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
        let config = config.load()?;
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
        return audit::audit(command);
    }
    if let Command::Doctor { config, format } = cli.command {
        return doctor::run(&config.path, format);
    }
    if let Command::Reload { config } = cli.command {
        return reload(&config);
    }
    run(cli.command).map(|()| std::process::ExitCode::SUCCESS)
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        // Handled by `main`, which needs their exit codes.
        Command::Check { .. }
        | Command::Audit { .. }
        | Command::Doctor { .. }
        | Command::Reload { .. } => Ok(()),
        Command::Pacs { command } => pacs::run(command),
        Command::Migrate { config, dry_run } => migrate::run(&config.path, dry_run),
        Command::Nodes { config, format } => nodes::run(&config.path, format),
        Command::Backup(command) => backup::run(command),
        Command::Db { command } => db::run(command),
        Command::Priors {
            config,
            study,
            format,
        } => {
            let config = config.load()?;
            let store = open_existing(&config, Access::ReadOnly)?;
            pacs::priors(&config, &store, &study, format)
        }
        Command::Serve { config, migrate } => {
            let path = config.path;
            let config = Config::load(&path)?;
            let log_level = init_logging(&config);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let schema = if migrate {
                crate::serve::Schema::Migrate
            } else {
                crate::serve::Schema::RequireLatest
            };
            runtime.block_on(crate::serve::serve(config, &path, log_level, schema))
        }
        Command::Studies {
            config,
            state,
            format,
            limit,
            lang,
        } => studies::list(&config, state.as_deref(), format, limit, &lang),
        Command::Orders {
            config,
            key,
            format,
        } => studies::orders(&config, &key, format),
        Command::Release {
            config,
            study,
            by,
            justification,
        } => operator::release(&config, &study, &by, &justification),
        Command::Reject {
            config,
            study,
            by,
            reason,
        } => operator::reject(&config, &study, &by, &reason),
        Command::Report {
            config,
            month,
            facility,
            format,
            lang,
            out,
        } => ledger::report(
            &config.path,
            &month,
            facility,
            format,
            &lang,
            out.as_deref(),
        ),
        Command::Roster { command } => ledger::roster(command),
        Command::Token { command } => ledger::token(command),
        Command::User { command } => user::user(command),
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
        Command::ConfigCheck { config } => config_check::run(&config),
    }
}

/// The name of the user this process runs as (effective uid), from the password
/// database; `uid N` when it has no entry. libc, not a crate: one call, no dependency.
pub(crate) fn os_user() -> String {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: a zeroed passwd is a valid out-parameter; getpwuid_r writes its strings
    // into `buf`, which outlives their use below.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc == 0 && !found.is_null() && !pwd.pw_name.is_null() {
        // SAFETY: pw_name points into `buf`, NUL-terminated by getpwuid_r.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        return name.to_string_lossy().into_owned();
    }
    format!("uid {uid}")
}

/// How a command opens the database `readgate serve` created.
#[derive(Debug, Clone, Copy)]
enum Access {
    ReadOnly,
    ReadWrite,
}

fn open_existing(config: &Config, access: Access) -> anyhow::Result<Store> {
    let db = existing_database(config)?;
    Ok(match access {
        Access::ReadOnly => Store::open_read_only_at(&db)?,
        Access::ReadWrite => Store::open_at(&db)?,
    })
}

/// The configured database, when it exists (a SQLite file `serve` has made, or PostgreSQL,
/// whose server answers for itself).
pub(crate) fn existing_database(config: &Config) -> anyhow::Result<crate::config::Database> {
    let db = config.database();
    if let crate::config::Database::Sqlite(path) = &db {
        if !path.exists() {
            bail!(
                "no database at {} yet: has `readgate serve` run with this config?",
                path.display()
            );
        }
    }
    Ok(db)
}

/// Installs the log subscriber; returns how a reload changes its level (`None` when
/// `RUST_LOG` is set: it wins over `[log] level`, at start and on reload).
fn init_logging(config: &Config) -> Option<crate::serve::reload::SetLogLevel> {
    use tracing_subscriber::EnvFilter;
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    let filter = from_env
        .or_else(|| EnvFilter::try_new(&config.log.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Colour codes only on a terminal: journald and log files get plain text.
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(logline::OneLine { ansi });
    let set = match config.log.format {
        LogFormat::Json => {
            let builder = builder.json().with_filter_reloading();
            let set = level_setter(builder.reload_handle());
            builder.init();
            set
        }
        LogFormat::Text => {
            let builder = builder.with_filter_reloading();
            let set = level_setter(builder.reload_handle());
            builder.init();
            set
        }
    };
    (!fixed).then_some(set)
}

fn level_setter<S: 'static>(
    handle: tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, S>,
) -> crate::serve::reload::SetLogLevel {
    std::sync::Arc::new(move |level: &str| {
        let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}

/// `readgate reload`: asks the running readgate to reload its configuration file.
fn reload(path: &std::path::Path) -> anyhow::Result<std::process::ExitCode> {
    // The data directory says where the running readgate listens. Read leniently: a file
    // that no longer validates is exactly what the running readgate must refuse (and
    // record), so it is still sent the request.
    let data_dir = match Config::load(path) {
        Ok(config) => config.gateway.data_dir,
        Err(invalid) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let value: toml::Value = toml::from_str(&text).map_err(|_| {
                anyhow::anyhow!("{invalid}\nnothing was sent to readgate: without `gateway.data_dir` it cannot be found (send SIGHUP, e.g. `systemctl reload readgate`, to have it refuse and record this file)")
            })?;
            match value
                .get("gateway")
                .and_then(|g| g.get("data_dir"))
                .and_then(|d| d.as_str())
            {
                Some(dir) => PathBuf::from(dir),
                None => bail!("{invalid}\nnothing was sent to readgate: `gateway.data_dir` is missing, so it cannot be found"),
            }
        }
    };
    let outcome =
        crate::serve::control::ask_reload(&data_dir, std::time::Duration::from_secs(120))?;
    println!("{}", outcome.summary());
    Ok(match outcome {
        crate::serve::reload::Reloaded::Applied { .. } => std::process::ExitCode::SUCCESS,
        crate::serve::reload::Reloaded::Rejected { .. } => std::process::ExitCode::from(1),
    })
}

#[cfg(test)]
mod tests;
