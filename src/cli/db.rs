//! `readgate db copy`: a single-node installation's SQLite database copied into an empty
//! PostgreSQL database (see `crate::dbcopy`): progress on stderr, a summary on stdout,
//! exit 1 on any refusal or mismatch (nothing committed then).

use super::ConfigFile;
use super::*;
use crate::dbcopy::{Copied, Progress};
use std::path::Path;

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy a SQLite database (history, ledger, audit trail) into an empty PostgreSQL
    /// database, in one transaction; then compare the rows of every table, verify the
    /// audit chain there and record `database_copied`. Stop `readgate serve` first, and
    /// bring the source to this readgate's schema with `readgate migrate`.
    Copy {
        #[command(flatten)]
        config: ConfigFile,
        /// `sqlite:PATH`, the database to copy; default: the configured data directory's
        /// readgate.db.
        #[arg(long, value_name = "sqlite:PATH")]
        from: Option<String>,
        /// `postgresql://user[:password]@host[:port]/database`, an empty database to copy
        /// into; default: the config's `[database] url` (keeps a password off the command line).
        #[arg(long, value_name = "URL")]
        to: Option<String>,
    },
}

pub fn run(command: DbCommand) -> anyhow::Result<()> {
    match command {
        DbCommand::Copy { config, from, to } => {
            let config = config.load()?;
            let source = match &from {
                Some(from) => source_path(from)?,
                None => config.database_path(),
            };
            let Some(url) = to.or_else(|| config.database.url.clone()) else {
                bail!(
                    "--to: name the empty PostgreSQL database to copy into \
                     (postgresql://user@host:port/database), or set [database] url in the config"
                );
            };
            refuse_if_served(&source)?;
            let actor = format!("cli:{}", super::os_user());
            eprintln!(
                "db copy: {} → {}",
                source.display(),
                crate::db::redact_url(&url)
            );
            let copied = crate::dbcopy::copy(&source, &url, &actor, &mut show)?;
            print_summary(&source, &url, &copied);
            Ok(())
        }
    }
}

/// `sqlite:PATH` → PATH.
fn source_path(from: &str) -> anyhow::Result<PathBuf> {
    match from.strip_prefix("sqlite:") {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ if from.starts_with("postgres") => bail!(
            "--from: readgate copies from SQLite only (a single-node installation), got a PostgreSQL URL"
        ),
        _ => bail!("--from {from:?}: expected sqlite:PATH (the readgate.db of a data directory)"),
    }
}

/// A readgate serving from the data directory that holds `source` answers on its
/// control socket there: what it wrote after the copy's snapshot would be lost.
fn refuse_if_served(source: &Path) -> anyhow::Result<()> {
    let Some(data_dir) = source.parent() else {
        return Ok(());
    };
    let data_dir = if data_dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        data_dir
    };
    let socket = crate::serve::control::socket_path(data_dir);
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        bail!(
            "readgate serve is running on {} (it answers on {}): stop it first (systemctl stop readgate), \
             or what it records after the copy would be lost",
            data_dir.display(),
            socket.display()
        );
    }
    Ok(())
}

fn show(p: &Progress) {
    match p {
        Progress::Rows { table, done, total } => {
            eprintln!("db copy: {table}: {done}/{total} rows")
        }
        Progress::Step(step) => eprintln!("db copy: {step}"),
    }
}

fn print_summary(source: &Path, url: &str, c: &Copied) {
    println!(
        "copied {} (schema version {}) into {}",
        source.display(),
        c.schema_version,
        crate::db::redact_url(url)
    );
    let width = c.tables.iter().map(|t| t.table.len()).max().unwrap_or(5);
    println!("  {:<width$}  {:>10}  {:>10}", "table", "source", "copy");
    for t in &c.tables {
        println!("  {:<width$}  {:>10}  {:>10}", t.table, t.source, t.target);
    }
    println!(
        "  every table's rows match; {} identity counter(s) moved past the copied ids",
        c.identities.len()
    );
    match &c.source_head {
        Some(h) => println!("  audit trail copied up to {}:{}", h.seq, h.hash),
        None => println!("  the source's audit trail was empty"),
    }
    audit::print_verification_at(Path::new(&crate::db::redact_url(url)), &c.verification);
    println!(
        "recorded: database_copied, audit entry {}:{}",
        c.entry.seq, c.entry.hash
    );
    println!(
        "took {:.2} s; next: set [database] url in the config and start readgate",
        c.elapsed.as_secs_f64()
    );
}
