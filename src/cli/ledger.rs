//! `readgate report`, `readgate roster import|list`, `readgate token add`.

use super::ConfigFile;
use super::{open_existing, Access};
use crate::config::Config;
use crate::ledger::compute::{self, ReportScope};
use crate::ledger::reasons::Lang;
use crate::ledger::{evidence, render, roster, Ledger};
use crate::store::Store;
use crate::time::Month;
use anyhow::{bail, Context as _};
use clap::{Subcommand, ValueEnum};
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ReportFormat {
    Json,
    Csv,
    Html,
}

impl ReportFormat {
    fn as_str(self) -> &'static str {
        match self {
            ReportFormat::Json => "json",
            ReportFormat::Csv => "csv",
            ReportFormat::Html => "html",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum RosterCommand {
    /// Replace the imported roster with a CSV file (columns: ids, name, facility,
    /// employment, board_certified, valid_from, valid_to). Earlier imports are kept,
    /// retired.
    Import {
        #[command(flatten)]
        config: ConfigFile,
        /// The roster CSV: a header row naming the columns above (in any order), then a
        /// reader a row.
        file: PathBuf,
    },
    /// The roster in force: config, roster CSV and imported entries.
    List {
        #[command(flatten)]
        config: ConfigFile,
        /// table or csv
        #[arg(long, default_value = "table")]
        format: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new random token for an integration, once, with the `[[http.tokens]]`
    /// entry to add to the config (which holds only its SHA-256). Writes nothing.
    Add {
        /// The integration's name, as the audit trail will show it (e.g. ris-vendor).
        name: String,
    },
}

/// `readgate report`.
#[allow(clippy::too_many_arguments)]
pub fn report(
    config_path: &Path,
    month: &str,
    facility: Option<String>,
    format: ReportFormat,
    lang: &str,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let lang: Lang = lang
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--lang: {e}"))?;
    let month = Month::parse(month).map_err(|e| anyhow::anyhow!("--month: {e}"))?;
    let config = Config::load(config_path)?;
    let store = open_existing(&config, Access::ReadWrite)?;
    let ledger = Ledger::load(&config.ledger, Some(&store))?;
    let scope = ReportScope {
        month,
        facility: facility.clone(),
        gateway_id: config.gateway.id.clone(),
        sending_facility: config.gateway.sending_facility.clone(),
    };
    let report = compute::build(&store, &ledger, &scope)?;
    let bytes = match format {
        ReportFormat::Json => render::json(&report),
        ReportFormat::Csv => render::csv(&report),
        ReportFormat::Html => render::html(&report, lang),
    };
    // The process's own user, not $USER (unset under systemd and cron: finding A4).
    let user = super::os_user();
    // A generated report is evidence too: it goes into the audit trail with its hash,
    // before anyone gets it — a report whose entry cannot be written is not given out.
    let audit = crate::audit::AuditLog::open_at(&config.database())
        .context("opening the audit trail to record the report (no report was written)")?;
    audit
        .append(&evidence::report_generated(
            &format!("cli:{user}"),
            &report.month,
            report.receiving_facility_filter.as_deref(),
            format.as_str(),
            &bytes,
        ))
        .context("recording the report in the audit trail (no report was written)")?;
    match out {
        Some(path) => {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "{}: {} studies, {} eligible, part-time share {:.1}% ({})",
                path.display(),
                report.totals.studies,
                report.totals.eligible,
                report.part_time_share.share_percent,
                report.part_time_share.level
            );
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&bytes)?;
            stdout.flush()?;
        }
    }
    Ok(())
}

pub fn roster(cmd: RosterCommand) -> anyhow::Result<()> {
    match cmd {
        RosterCommand::Import { config, file } => {
            let config = config.load()?;
            let readers = roster::read_csv(&file)?;
            std::fs::create_dir_all(&config.gateway.data_dir)
                .with_context(|| format!("cannot create {}", config.gateway.data_dir.display()))?;
            let store = Store::open_at(&config.database())?;
            let entries: Vec<_> = readers.iter().map(roster::Reader::to_entry).collect();
            let n = store.import_roster(
                &entries,
                &file.display().to_string(),
                crate::time::now_ms(),
            )?;
            println!(
                "imported {n} roster entr{} from {} (earlier imports retired); a running readgate picks it up with the next read event",
                if n == 1 { "y" } else { "ies" },
                file.display()
            );
            Ok(())
        }
        RosterCommand::List { config, format } => {
            let config = config.load()?;
            let store = if config.database.url.is_some() || config.database_path().exists() {
                Some(Store::open_read_only_at(&config.database())?)
            } else {
                None
            };
            // A database made before the ledger existed has no roster table yet.
            let ledger = match Ledger::load(&config.ledger, store.as_ref()) {
                Ok(l) => l,
                Err(crate::ledger::LedgerError::Store(_)) => Ledger::load(&config.ledger, None)?,
                Err(e) => return Err(e.into()),
            };
            match format.as_str() {
                "csv" => print!("{}", roster::to_csv(ledger.roster.readers())),
                "table" => {
                    println!(
                        "{:<20}  {:<16}  {:<10}  {:<10}  {:<9}  {:<10}  {:<10}  source",
                        "ids", "name", "facility", "employment", "certified", "from", "to",
                    );
                    for r in ledger.roster.readers() {
                        println!(
                            "{:<20}  {:<16}  {:<10}  {:<10}  {:<9}  {:<10}  {:<10}  {}",
                            r.ids.join("|"),
                            r.name,
                            r.facility,
                            r.employment.as_str(),
                            if r.board_certified { "yes" } else { "no" },
                            r.valid_from_str(),
                            r.valid_to_str(),
                            r.source
                        );
                    }
                    println!(
                        "{} entr{}",
                        ledger.roster.len(),
                        if ledger.roster.len() == 1 { "y" } else { "ies" }
                    );
                }
                other => bail!("--format {other:?}: expected table or csv"),
            }
            Ok(())
        }
    }
}

pub fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Add { name } => {
            if name.trim().is_empty() || name.contains(['"', '\\', '\n']) {
                bail!("NAME: expected a plain name such as ris-vendor");
            }
            let (token, hash) = crate::digest::new_token()?;
            println!("token for {name} (shown once; give it to the integration, keep no copy):");
            println!("  {token}");
            println!();
            println!("add to the config ([http] section):");
            println!("[[http.tokens]]");
            println!("name = \"{}\"", name.trim());
            println!("token_sha256 = \"{hash}\"");
            Ok(())
        }
    }
}
