//! `readgate pacs find`: a patient's studies in the hospital's PACS (`[[pacs]]`), as
//! readgate sees them — the check to run when registering readgate with a PACS, and what
//! prior selection starts from.

use crate::config::pacs::Pacs;
use crate::config::Config;
use crate::priors::{find_studies, PacsStudy, StudyQuery};
use anyhow::{bail, Context};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum PacsCommand {
    /// List a patient's studies in a PACS (C-FIND, Study Root, STUDY level), newest first.
    Find {
        #[command(flatten)]
        config: super::ConfigFile,
        /// Patient ID (0010,0020).
        #[arg(long)]
        patient: String,
        /// Issuer of Patient ID (0010,0021).
        #[arg(long)]
        issuer: Option<String>,
        /// Only studies on or after this date (YYYYMMDD).
        #[arg(long)]
        since: Option<String>,
        /// Which `[[pacs]]` entry (by id); default: the first.
        #[arg(long)]
        pacs: Option<String>,
        /// How to print it: `table` for people, `json` for scripts.
        #[arg(long, value_enum, default_value_t = super::Format::Table)]
        format: super::Format,
    },
    /// Retrieve a study from a PACS (C-GET, Study Root, no reverse configuration needed)
    /// into a directory: the check that readgate can fetch priors, and what the benchmark
    /// times against DCMTK. Always C-GET: a `retrieve = "move"` PACS moves priors to
    /// `readgate serve`'s listener, which this one-shot command does not have.
    Get {
        #[command(flatten)]
        config: super::ConfigFile,
        /// Study Instance UID (0020,000D) of the study to retrieve.
        #[arg(long)]
        study: String,
        /// Directory the instances are written to (created 0700; files under objects/).
        #[arg(long)]
        out: PathBuf,
        /// Which `[[pacs]]` entry (by id); default: the first.
        #[arg(long)]
        pacs: Option<String>,
        /// How to print it: `table` for people, `json` for scripts.
        #[arg(long, value_enum, default_value_t = super::Format::Table)]
        format: super::Format,
    },
}

pub fn run(command: PacsCommand) -> anyhow::Result<()> {
    let (config, patient, issuer, since, pacs, format) = match command {
        PacsCommand::Find {
            config,
            patient,
            issuer,
            since,
            pacs,
            format,
        } => (config, patient, issuer, since, pacs, format),
        PacsCommand::Get {
            config,
            study,
            out,
            pacs,
            format,
        } => return get(&config.path, &study, &out, pacs.as_deref(), format),
    };
    let config = config.load()?;
    let entry = choose(&config.pacs, pacs.as_deref())?;
    if patient.trim().is_empty() {
        bail!("--patient: expected a Patient ID");
    }
    if let Some(d) = &since {
        if d.len() != 8 || !d.bytes().all(|b| b.is_ascii_digit()) {
            bail!("--since {d:?}: expected a date as YYYYMMDD");
        }
    }
    let query = StudyQuery {
        patient_id: patient,
        issuer,
        since,
    };
    let calling = entry.calling_ae(&config);
    audited(
        &config,
        serde_json::json!({"pacs": entry.id, "ae_title": entry.ae_title, "operation": "C-FIND",
            "patient_id": query.patient_id, "since": query.since}),
    )?;
    let mut studies = runtime()?.block_on(find_studies(entry, &calling, &query))?;
    studies.sort_by(|a, b| (&b.date, &b.time).cmp(&(&a.date, &a.time)));
    match format {
        super::Format::Json => println!("{}", serde_json::to_string_pretty(&studies)?),
        super::Format::Table => print_table(&entry.id, &studies),
    }
    Ok(())
}

/// The tokio runtime a one-shot command runs its DICOM association on.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `readgate pacs get`.
fn get(
    config: &std::path::Path,
    study: &str,
    out: &std::path::Path,
    pacs: Option<&str>,
    format: super::Format,
) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let entry = choose(&config.pacs, pacs)?;
    if study.trim().is_empty() {
        bail!("--study: expected a Study Instance UID");
    }
    crate::spool::private_dir(out).with_context(|| format!("--out {}", out.display()))?;
    let spool = std::sync::Arc::new(
        crate::spool::Spool::open(out, config.storage.min_free_mb * 1024 * 1024)
            .with_context(|| format!("--out {}", out.display()))?,
    );
    let calling = entry.calling_ae(&config);
    audited(
        &config,
        serde_json::json!({"pacs": entry.id, "ae_title": entry.ae_title, "operation": "C-GET",
            "study_uid": study.trim(), "out": out.display().to_string()}),
    )?;
    let retrieved = runtime()?
        .block_on(crate::priors::retrieve::get_study(
            entry, &calling, study, &spool,
        ))
        .with_context(|| match entry.retrieve {
            crate::config::pacs::Retrieve::Move => format!(
                "PACS {} is set to retrieve = \"move\"; this command always uses C-GET, \
                 which the PACS may not offer (readgate serve moves priors to its listener)",
                entry.id
            ),
            crate::config::pacs::Retrieve::Get => format!("retrieving from PACS {}", entry.id),
        })?;
    match format {
        super::Format::Json => println!("{}", serde_json::to_string_pretty(&retrieved)?),
        super::Format::Table => {
            println!(
                "{} instances ({} bytes) of study {} from PACS {} in {} ms{}",
                retrieved.instances.len(),
                retrieved.bytes(),
                retrieved.study_uid,
                entry.id,
                retrieved.millis,
                if retrieved.failed > 0 {
                    format!("; {} failed", retrieved.failed)
                } else {
                    String::new()
                }
            );
            for i in &retrieved.instances {
                println!("  {}  {}  {}", i.path, i.sop_class_uid, i.sop_instance_uid);
            }
        }
    }
    if retrieved.failed > 0 {
        bail!("{} instance(s) could not be retrieved", retrieved.failed);
    }
    if retrieved.instances.is_empty() {
        bail!(
            "PACS {} holds no instances of study {} (or none of a SOP class readgate retrieves)",
            entry.id,
            retrieved.study_uid
        );
    }
    Ok(())
}

/// Records the question in the audit trail under the OS user (`cli:<user>`) before it is
/// asked: patient data leaves the PACS for this command.
fn audited(config: &Config, what: serde_json::Value) -> anyhow::Result<()> {
    crate::spool::private_dir(&config.gateway.data_dir)
        .with_context(|| format!("cannot create {}", config.gateway.data_dir.display()))?;
    let audit = crate::audit::AuditLog::open_at(&config.database())
        .context("opening the audit trail to record the question (nothing was asked)")?;
    audit
        .record_pacs_query(&format!("cli:{}", super::os_user()), what)
        .context("recording the question in the audit trail (nothing was asked)")?;
    Ok(())
}

fn choose<'a>(all: &'a [Pacs], id: Option<&str>) -> anyhow::Result<&'a Pacs> {
    match id {
        None => all.first().context(
            "no [[pacs]] in the configuration: add the hospital's PACS (README \"Priors\")",
        ),
        Some(id) => all.iter().find(|p| p.id == id).with_context(|| {
            let ids: Vec<&str> = all.iter().map(|p| p.id.as_str()).collect();
            format!("--pacs {id:?}: no such [[pacs]] entry (configured: {ids:?})")
        }),
    }
}

fn print_table(pacs: &str, studies: &[PacsStudy]) {
    println!(
        "{} stud{} in PACS {pacs}",
        studies.len(),
        if studies.len() == 1 { "y" } else { "ies" }
    );
    for s in studies {
        println!(
            "  {:<10} {:<8} {:<16} {:>5}  {}  {}",
            s.date.as_deref().unwrap_or("-"),
            s.modalities.join("/"),
            s.accession.as_deref().unwrap_or("-"),
            s.instances
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            s.study_uid,
            s.description.as_deref().unwrap_or(""),
        );
    }
}

/// `readgate priors STUDY`: the priors of one study's decision (see [`crate::priors::view`]).
pub fn priors(
    config: &Config,
    store: &crate::store::Store,
    key: &str,
    format: super::Format,
) -> anyhow::Result<()> {
    let Some(keys) = store.find_study(key.trim())? else {
        bail!("no study with Study Instance UID or accession {key:?}");
    };
    let decision = store.decision_of(&keys.study_uid)?.unwrap_or_default();
    let offset = i64::from(config.policy.utc_offset_minutes) * 60;
    let Some(view) = crate::priors::view::PriorsView::read(
        store,
        decision.context_json.as_deref(),
        offset,
        (!config.pacs.is_empty())
            .then(|| crate::priors::view::Choice::of(config))
            .as_ref(),
    )?
    else {
        bail!(
            "study {} has not been decided yet (state {}): its priors are gathered when it is",
            keys.study_uid,
            keys.state
        );
    };
    match format {
        super::Format::Json => println!("{}", serde_json::to_string_pretty(&view)?),
        super::Format::Table => {
            println!(
                "{} prior stud{} of study {}",
                view.priors.len(),
                if view.priors.len() == 1 { "y" } else { "ies" },
                keys.study_uid
            );
            if !view.priors.is_empty() {
                println!(
                    "{:<10}  {:<16}  {:<8}  {:>7}  {:>9}  {:<12}  {:<6}  {:<13}  {:<12}  STUDY UID",
                    "DATE",
                    "ACCESSION",
                    "MOD",
                    "REPORTS",
                    "DOCUMENTS",
                    "SOURCE",
                    "CHOSEN",
                    "RETRIEVED",
                    "SENT TO"
                );
            }
            for p in &view.priors {
                println!(
                    "{:<10}  {:<16}  {:<8}  {:>7}  {:>9}  {:<12}  {:<6}  {:<13}  {:<12}  {}",
                    p.date.as_deref().unwrap_or("-"),
                    p.accession.as_deref().unwrap_or("-"),
                    p.modalities.join(" "),
                    p.final_reports,
                    p.report_documents,
                    p.source,
                    if p.chosen { "yes" } else { "-" },
                    match (&p.not_retrieved, &p.retrieved) {
                        (Some(_), _) => "NOT RETRIEVED".to_string(),
                        (None, Some(r)) => format!("{} instances", r.instances),
                        (None, None) => "-".to_string(),
                    },
                    if p.sent_to.is_empty() {
                        "-".to_string()
                    } else {
                        p.sent_to.join(",")
                    },
                    p.study_uid
                );
            }
            for p in &view.priors {
                if let Some(why) = &p.not_retrieved {
                    println!("not retrieved: {} ({why})", p.study_uid);
                }
            }
            for a in &view.pacs {
                println!("PACS {}", a.summary());
            }
        }
    }
    Ok(())
}
