//! `readgate studies` and `readgate orders`: what the database says of studies and of
//! the orders, labs and reports that came for them.

use super::{open_existing, Access, ConfigFile, Format};
use crate::model::StudyState;
use crate::store::StudyRow;
use anyhow::bail;

/// `readgate studies`: newest first, at most `limit`, in one state when `wanted`.
pub(super) fn list(
    config: &ConfigFile,
    wanted: Option<&str>,
    format: Format,
    limit: usize,
    lang: &str,
) -> anyhow::Result<()> {
    let lang: crate::decide::reasons::Lang = lang
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--lang: {e}"))?;
    let config = config.load()?;
    let wanted: Option<StudyState> = match wanted {
        Some(s) => match s.parse() {
            Ok(state) => Some(state),
            Err(_) => bail!(
                "--state {s:?}: expected one of {}",
                StudyState::NAMES.join(", ")
            ),
        },
        None => None,
    };
    let store = open_existing(&config, Access::ReadOnly)?;
    let rows = store.list_studies(wanted, limit)?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Table => print_table(&rows, lang),
    }
    Ok(())
}

/// `readgate orders`: a study's order, labs, contact and reports, by accession or UID.
pub(super) fn orders(config: &ConfigFile, key: &str, format: Format) -> anyhow::Result<()> {
    let config = config.load()?;
    let store = open_existing(&config, Access::ReadOnly)?;
    let view = crate::intake::view::StudyView::load(&store, key)?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&view)?),
        Format::Table => print!("{}", view.to_text()),
    }
    Ok(())
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
    let message = lang.pick("message_ja", "message_en");
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
