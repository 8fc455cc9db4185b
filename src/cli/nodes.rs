//! `readgate nodes`: the nodes sharing the configured database, their heartbeats, the
//! forwarding they hold and which of them runs the cluster's timers.

use super::*;
use crate::store::NodeRow;

/// A node as listed, with what the listing derives from its row.
#[derive(serde::Serialize)]
struct Listed {
    #[serde(flatten)]
    row: NodeRow,
    /// `alive`, `silent` (no heartbeat for a lease) or `stopped`.
    status: &'static str,
    /// Whether it holds the cluster's timers now.
    runs_timers: bool,
}

pub fn run(path: &std::path::Path, format: Format) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let store = open_existing(&config, Access::ReadOnly)?;
    let now = crate::time::now_ms();
    let lease_ms = (config.database.lease_secs * 1000) as i64;
    let timers = store.lease_holder(crate::cluster::TIMERS, now)?;
    let listed: Vec<Listed> = store
        .nodes(now)?
        .into_iter()
        .map(|row| Listed {
            status: if row.stopped_at.is_some() {
                "stopped"
            } else if now - row.heartbeat_at > lease_ms {
                "silent"
            } else {
                "alive"
            },
            runs_timers: timers.as_ref().is_some_and(|(owner, _)| *owner == row.id),
            row,
        })
        .collect();
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&listed)?),
        Format::Table => {
            if listed.is_empty() {
                println!("no node has joined this database yet (`readgate serve` joins at start)");
                return Ok(());
            }
            println!(
                "{:<16} {:<8} {:<20} {:>6} {:>10} {:>7} {:<6} {:<10} LISTENS",
                "NODE", "STATUS", "HOST", "PID", "HEARTBEAT", "LEASES", "TIMERS", "VERSION"
            );
            for n in &listed {
                let age = format!("{}s ago", (now - n.row.heartbeat_at).max(0) / 1000);
                println!(
                    "{:<16} {:<8} {:<20} {:>6} {:>10} {:>7} {:<6} {:<10} {}",
                    n.row.id,
                    n.status,
                    n.row.host,
                    n.row.pid,
                    age,
                    n.row.leases,
                    if n.runs_timers { "yes" } else { "" },
                    n.row.version,
                    n.row.listens
                );
            }
        }
    }
    Ok(())
}
