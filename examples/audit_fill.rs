//! Fills a readgate database's audit trail with synthetic entries, in batches, and prints
//! the append rate: the data for `bench/audit.sh` and for trying `readgate audit …`.
//!
//! ```sh
//! cargo run --release --example audit_fill -- DB_PATH [COUNT] [BATCH]
//! ```
//!
//! The mix resembles a day at the gateway: mostly instances received, with the study
//! decisions, forwards, read events, confirmations, operator actions and a start/stop.

use readgate::audit::{kind, AuditLog, NewEntry};
use serde_json::json;
use std::time::Instant;

fn entry(i: u64) -> NewEntry {
    let study = format!("1.2.392.200036.9116.2.6.1.48.{}", i / 200);
    let accession = format!("A{:08}", i / 200);
    match i % 200 {
        0 => NewEntry::new(kind::APPLICATION_START, "system")
            .detail(json!({"version": env!("CARGO_PKG_VERSION"), "pid": 4242})),
        1 => NewEntry::new(kind::CONFIG_LOADED, "system")
            .detail(json!({"path": "/etc/readgate/readgate.toml", "sha256": "0".repeat(64)})),
        2 => NewEntry::new(kind::OPERATOR_LOGIN, "yamada.hanako")
            .detail(json!({"client_ip": "10.1.2.3", "method": "password"})),
        190 => NewEntry::new(kind::STUDY_HELD, "system")
            .study(&study)
            .accession(&accession)
            .detail(json!({"reasons": ["NO_EXAM_PURPOSE"], "clause": "JRS-7.3.1"})),
        191 => NewEntry::new(kind::STUDY_OVERRIDDEN, "sato.ichiro")
            .study(&study)
            .accession(&accession)
            .detail(json!({"justification": "救急: 主治医に電話で確認済み", "verdict": "RELEASED_OVERRIDE"})),
        192 => NewEntry::new(kind::STUDY_FORWARDED, "system")
            .study(&study)
            .accession(&accession)
            .detail(json!({"destination": "rc1", "destination_ae": "RC1PACS", "facility": "RC1", "instances": 186})),
        193 => NewEntry::new(kind::READ_EVENT, "token:rc1-viewer")
            .study(&study)
            .accession(&accession)
            .detail(json!({"reader_id": "R0042", "action": "opened", "workstation": "RC1-WS07", "client_ip": "192.0.2.10"})),
        194 => NewEntry::new(kind::CONFIRMATION, "RIS^HOSP-A")
            .study(&study)
            .accession(&accession)
            .detail(json!({"author": "T0007", "signer": "R0042", "minutes_open": 6, "text_changed": true})),
        195 => NewEntry::new(kind::REPORT_GENERATED, "yamada.hanako")
            .detail(json!({"month": "2025-03", "format": "html"})),
        n => NewEntry::new(kind::INSTANCE_RECEIVED, "CT01")
            .study(&study)
            .accession(&accession)
            .detail(json!({
                "sop_uid": format!("{study}.{n}"),
                "sop_class": "1.2.840.10008.5.1.4.1.1.2",
                "bytes": 527_000 + n,
                "peer_address": "192.0.2.20:50412",
            })),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: audit_fill DB_PATH [COUNT] [BATCH]")?;
    let count: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let batch: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let log = AuditLog::open(std::path::Path::new(&path))?;
    let start = Instant::now();
    let mut i = 0u64;
    while i < count {
        let n = batch.min(count - i);
        let es: Vec<NewEntry> = (i..i + n).map(entry).collect();
        log.append_batch(&es)?;
        i += n;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "appended {count} entries in batches of {batch}: {secs:.2} s, {:.1} µs per entry, {:.0} entries/s",
        secs * 1e6 / count as f64,
        count as f64 / secs
    );
    // Single appends (one transaction and one fsync each), the cost of a lone event.
    let singles = 200u32;
    let start = Instant::now();
    for k in 0..singles {
        log.append(&entry(u64::from(k) + 193))?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "single appends (fsync each): {:.3} ms per entry",
        secs * 1000.0 / f64::from(singles)
    );
    Ok(())
}
