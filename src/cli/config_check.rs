//! `readgate config-check`: the file validated, and what it sets up in a few lines.

use super::ConfigFile;

/// Validates the file (the error names the key) and prints a summary.
pub(super) fn run(config: &ConfigFile) -> anyhow::Result<()> {
    let path = &config.path;
    let config = config.load()?;
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
            "  destination {}: {}@{}:{} (facility {}{})",
            d.id,
            d.ae_title,
            d.host,
            d.port,
            d.facility,
            if d.send_priors && !config.pacs.is_empty() {
                "; priors sent first"
            } else {
                ""
            }
        );
    }
    for p in &config.pacs {
        println!(
            "  PACS {}: {}@{}:{}{} (priors: asked again after {} s, retried after {} s, retrieved by {})",
            p.id,
            p.ae_title,
            p.host,
            p.port,
            if p.tls { " over TLS" } else { "" },
            config.priors.refresh_secs,
            config.priors.retry_secs,
            match p.retrieve {
                crate::config::pacs::Retrieve::Get => "C-GET".to_string(),
                crate::config::pacs::Retrieve::Move =>
                    format!("C-MOVE to {}", config.dicom.ae_title),
            }
        );
    }
    println!(
        "  {} route(s), {} peer(s)",
        config.routes.len(),
        config.dicom.peers.len()
    );
    Ok(())
}
