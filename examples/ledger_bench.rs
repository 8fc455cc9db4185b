//! Fills a data directory with a month of teleradiology: 100,000 forwarded studies,
//! their HL7 reports (P and F) and REST read events (≥ 300,000 read events in all), then
//! times what the ledger does with them:
//!
//! - recording one read event (`web::read_events::record`: validate, find the study,
//!   resolve against roster and places, insert) in-process, p50/p99 over 10,000;
//! - the same over HTTP (`POST /api/v1/read-events`, one connection per request);
//! - building the month's ledger in-process (`ledger::compute::build`) and rendering it.
//!
//! `bench/ledger.sh` runs it, then times `readgate report` (the binary) on the same data and
//! the `sqlite3` CLI running the equivalent aggregate query.
//!
//! Usage: `cargo run --release --example ledger_bench -- DIR [STUDIES] [REST_EVENTS_PER_STUDY]
//! [DATABASE_URL]` (DIR gets `readgate.toml` and `var/readgate.db`, or with DATABASE_URL,
//! an empty PostgreSQL database, the config's `[database] url`; the month is 2026-06).

use readgate::config::Config;
use readgate::db::params;
use readgate::ledger::compute::{self, ReportScope};
use readgate::ledger::{render, Ledger};
use readgate::store::Store;
use readgate::time::{parse_rfc3339_ms, Month};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const TOKEN: &str = "rg_bench_token";

fn config_text(dir: &Path, database_url: Option<&str>) -> String {
    let mut readers = String::new();
    for i in 0..200 {
        let employment = match i % 20 {
            0..=11 => "full_time",
            12..=16 => "part_time",
            _ => "trainee",
        };
        readers.push_str(&format!(
            "[[ledger.readers]]\nids = [\"R{i:04}\", \"login{i}\"]\nname = \"Reader {i}\"\nfacility = \"{}\"\nemployment = \"{employment}\"\nboard_certified = {}\n\n",
            if i % 10 == 9 { "RC2" } else { "RC1" },
            employment != "trainee"
        ));
    }
    format!(
        r#"{database}[gateway]
id = "gw-bench"
data_dir = "{data}"
sending_facility = "HOSP-BENCH"
[dicom]
ae_title = "READGATE"
listen = "127.0.0.1:0"
allow_any_calling_ae = true
[[destinations]]
id = "rc1"
facility = "RC1"
ae_title = "RC1PACS"
host = "127.0.0.1"
port = 1
[[routes]]
destination = "rc1"
[http]
listen = "127.0.0.1:0"
[[http.tokens]]
name = "bench"
token_sha256 = "{hash}"
[ledger]
[[ledger.places]]
facility = "RC1"
networks = ["10.20.0.0/16"]
workstations = ["RC1-WS01", "RC1-WS02"]
[[ledger.places]]
facility = "RC2"
networks = ["10.30.0.0/16"]

{readers}"#,
        data = dir.join("var").display(),
        hash = readgate::web::sha256_hex(TOKEN),
        database = database_url
            .map(|url| format!("[database]\nurl = \"{url}\"\n"))
            .unwrap_or_default(),
    )
}

fn dtm(ms: i64) -> String {
    let s = readgate::time::format_ms(ms, 9 * 3600);
    let (main, off) = s.split_at(s.len() - 6);
    format!(
        "{}{}",
        main.replace(['-', ':', 'T'], ""),
        off.replace(':', "")
    )
}

fn fill(store: &Store, studies: usize, rest_per_study: usize) -> anyhow::Result<(usize, usize)> {
    let (start, end) = Month::parse("2026-06")
        .map_err(anyhow::Error::msg)?
        .range(9 * 3600);
    let span = (end - start - 86_400_000) as u64;
    let mut rng = fastrand::Rng::with_seed(0x2545_F491_4F6C_DD1D);
    let base_text = "所見：両肺に明らかな浸潤影や結節影を認めない。縦隔・肺門リンパ節の腫大なし。胸水なし。心拡大なし。\
        肝臓、胆嚢、膵臓、脾臓、両側腎臓に明らかな異常所見を認めない。腹水なし。骨条件で明らかな溶骨性・造骨性病変を認めない。印象：明らかな異常所見なし。";
    let mut rest_events = 0;
    let mut reports = 0;
    store.with_transaction(|tx| {
        let mut st = tx.prepare(
            "INSERT INTO studies (study_uid, state, accession, modalities, first_received_at, last_received_at, \
             completed_at, destination, facility, verdict, forwarded_at, updated_at, instance_count) \
             VALUES (?1, 'forwarded', ?2, 'CT', ?3, ?3, ?3, 'rc1', ?4, ?5, ?6, ?6, 100)",
        )?;
        let mut msg = tx.prepare(
            "INSERT INTO hl7_messages (received_at, peer, sender, control_id, message_type, raw, ack_code, ack_text, ack) \
             VALUES (?1, '10.0.0.5:4000', 'REPORTING|READ_CENTER', ?2, 'ORU^R01', ?3, 'AA', '', ?3) RETURNING id",
        )?;
        let mut rep = tx.prepare(
            "INSERT INTO reports (message_id, received_at, accession, study_uid, status, signer_id, assistant_ids, \
             report_time, text, result) VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut ev = tx.prepare(
            "INSERT INTO read_events (study_uid, accession, reader_id, action, at, workstation, client_ip, source, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'rest:bench', ?5)",
        )?;
        for i in 0..studies {
            let uid = format!("1.2.392.200036.9116.2.5.1.37.{i}");
            let acc = format!("ACC{i:07}");
            let t = start + rng.u64(..span) as i64;
            let facility = if i % 10 == 9 { "RC2" } else { "RC1" };
            let verdict = match rng.u64(..100) {
                0 => "FORWARDED_INCOMPLETE",
                1 => "RELEASED_OVERRIDE",
                _ => "PASS",
            };
            st.execute(params![uid, acc, t, facility, verdict, t + 60_000])?;
            let signer = format!("R{:04}", rng.u64(..12) + (i as u64 % 10 == 9) as u64 * 9);
            let trainee_first = rng.u64(..100) < 30;
            let first = if trainee_first {
                format!("R{:04}", 12 + rng.u64(..8))
            } else {
                signer.clone()
            };
            let read_at = t + 3_600_000 + rng.u64(..7_200_000) as i64;
            let mut text = base_text.to_string();
            if trainee_first {
                let m = msg.query_row(params![read_at, format!("P{i}"), &[0u8][..]], |r| r.get::<_, i64>(0))?;
                let json = format!(r#"{{"assistant_interpreters":[{{"id":"{first}"}}]}}"#);
                rep.execute(params![m, read_at, acc, "P", None::<String>, first, dtm(read_at), text, json])?;
                reports += 1;
                if rng.u64(..3) > 0 {
                    text.push_str("右下葉S9に4mm大の結節あり、経過観察を推奨。");
                }
            }
            let final_at = read_at + 600_000 + rng.u64(..1_800_000) as i64;
            let m = msg.query_row(params![final_at, format!("F{i}"), &[0u8][..]], |r| r.get::<_, i64>(0))?;
            let assistants = if trainee_first { first.clone() } else { String::new() };
            let json = format!(
                r#"{{"principal_interpreter":{{"id":"{signer}"}},"assistant_interpreters":[{}]}}"#,
                if trainee_first { format!(r#"{{"id":"{first}"}}"#) } else { String::new() }
            );
            rep.execute(params![m, final_at, acc, "F", signer, assistants, dtm(final_at), text, json])?;
            reports += 1;
            // REST events: opened/closed pairs, mostly inside.
            for k in 0..rest_per_study {
                let reader = if k % 4 < 2 { &signer } else { &first };
                let action = if k % 2 == 0 { "opened" } else { "closed" };
                let at = final_at - 900_000 + (k as i64) * 200_000;
                let ip = if rng.u64(..100) < 3 {
                    "203.0.113.9".to_string()
                } else if facility == "RC2" {
                    format!("10.30.1.{}", rng.u64(..250))
                } else {
                    format!("10.20.1.{}", rng.u64(..250))
                };
                ev.execute(params![uid, acc, reader, action, at, "RC1-WS01", ip])?;
                rest_events += 1;
            }
        }
        Ok(())
    })?;
    Ok((rest_events, reports))
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(
        args.next()
            .unwrap_or_else(|| "/tmp/readgate-ledger-bench".into()),
    );
    let studies: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let per_study: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    let database_url = args.next();
    std::fs::create_dir_all(dir.join("var"))?;
    let config_path = dir.join("readgate.toml");
    std::fs::write(&config_path, config_text(&dir, database_url.as_deref()))?;
    let config = Config::load(&config_path)?;
    if database_url.is_none() {
        let db = config.database_path();
        let _ = std::fs::remove_file(&db);
        let _ = std::fs::remove_file(db.with_extension("db-wal"));
    }
    let store = Arc::new(Store::open_at(&config.database())?);

    let t = Instant::now();
    let (rest, reports) = fill(&store, studies, per_study)?;
    println!(
        "filled {} studies, {rest} REST read events, {reports} HL7 reports in {:.1} s",
        studies,
        t.elapsed().as_secs_f64()
    );

    // Recording one read event, in-process.
    let http = config.http.clone().expect("[http]");
    let state = Arc::new(readgate::web::WebState::new(
        store.clone(),
        &http,
        &config.ledger,
    )?);
    let at = readgate::time::format_ms(parse_rfc3339_ms("2026-06-15T10:00:00+09:00")?, 9 * 3600);
    let mut times = Vec::new();
    for i in 0..10_000 {
        let body = format!(
            r#"{{"study_uid":"1.2.392.200036.9116.2.5.1.37.{}","reader_id":"login{}","action":"opened","workstation":"RC1-WS02","client_ip":"10.20.5.{}","at":"{at}"}}"#,
            (i * 7919) % studies,
            i % 200,
            i % 250
        );
        let s = Instant::now();
        let (status, _) = readgate::web::read_events::record(
            &state,
            "bench",
            body.as_bytes(),
            readgate::time::now_ms(),
        )
        .map_err(|e| anyhow::anyhow!("{}: {}", e.status, e.error))?;
        times.push(s.elapsed().as_secs_f64() * 1e3);
        assert_eq!(status.as_u16(), 201);
    }
    let (p50, p99) = (percentile(&mut times, 0.5), percentile(&mut times, 0.99));
    println!("record read event (in-process: validate, find study, resolve, insert): p50 {p50:.3} ms, p99 {p99:.3} ms over 10,000");

    // The same over HTTP.
    let (tx, rx) = tokio::sync::watch::channel(false);
    let (addr, server) = readgate::web::start(&http, state.clone(), rx).await?;
    let mut times = Vec::new();
    for i in 0..2_000 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = format!(
            r#"{{"study_uid":"1.2.392.200036.9116.2.5.1.37.{}","reader_id":"R0001","action":"closed","client_ip":"10.20.5.1","at":"{at}"}}"#,
            (i * 104_729) % studies
        );
        let req = format!(
            "POST /api/v1/read-events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let s = Instant::now();
        let mut c = tokio::net::TcpStream::connect(addr).await?;
        c.set_nodelay(true)?;
        c.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        c.read_to_end(&mut buf).await?;
        times.push(s.elapsed().as_secs_f64() * 1e3);
        assert!(
            buf.starts_with(b"HTTP/1.1 201"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
    }
    let (p50, p99) = (percentile(&mut times, 0.5), percentile(&mut times, 0.99));
    println!("POST /api/v1/read-events over HTTP (new connection each): p50 {p50:.3} ms, p99 {p99:.3} ms over 2,000");
    let _ = tx.send(true);
    let _ = server.await;

    // The month's ledger, in-process.
    let ledger = Ledger::load(&config.ledger, Some(&store))?;
    let scope = ReportScope {
        month: Month::parse("2026-06").map_err(anyhow::Error::msg)?,
        facility: None,
        gateway_id: config.gateway.id.clone(),
        sending_facility: config.gateway.sending_facility.clone(),
    };
    let t = Instant::now();
    let report = compute::build(&store, &ledger, &scope)?;
    let built = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let json = render::json(&report);
    let tj = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let csv = render::csv(&report);
    let tc = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let html = render::html(&report, readgate::ledger::reasons::Lang::Ja);
    let th = t.elapsed().as_secs_f64();
    println!(
        "ledger for 2026-06: {} studies, {} REST + {} HL7-derived read events; build {:.2} s; render json {:.2} s ({} MB), csv {:.2} s ({} MB), html {:.2} s ({} MB)",
        report.totals.studies,
        report.totals.read_events_rest,
        report.totals.read_events_hl7,
        built,
        tj,
        json.len() / 1_000_000,
        tc,
        csv.len() / 1_000_000,
        th,
        html.len() / 1_000_000
    );
    println!(
        "  eligible {} / {}, part-time share {:.1}% ({}), formal confirmations {}",
        report.totals.eligible,
        report.totals.studies,
        report.part_time_share.share_percent,
        report.part_time_share.level,
        report.totals.formal_confirmations
    );
    println!("config: {}", config_path.display());
    Ok(())
}
