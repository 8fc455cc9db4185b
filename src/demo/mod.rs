//! `readgate demo`: the whole gate on one machine in one command. A temporary directory,
//! a built-in reading site (a second readgate DICOM listener in this process, which keeps
//! what it receives), the gateway with the JRS policy, HTTP on 127.0.0.1:8080 (or a free
//! port), HL7 on a free port; then the sample studies and HL7 messages:
//! - `SYNACC0001` (ct-chest, full context) is forwarded, after its prior `SYNACC0000`
//!   (prior-ct), which the built-in hospital PACS (`pacs.rs`) holds: found by C-FIND,
//!   moved to readgate (C-MOVE) and sent first, its report (an ORU) as a Basic Text SR;
//! - `SYNACC0002` (mr-head, no exam purpose) is held, and released when its order arrives;
//! - `SYNACC0006` (ct-abdomen, sent without an order) stays held until someone releases it
//!   in the console with a justification (what a first look at the console should show);
//! - `SYNACC0004` (ja-utf8) is forwarded, then read by a part-time reader from outside the
//!   reading facility's network: not eligible in the month's ledger.

use crate::config::Config;
use crate::dicom::dimse::{self, Command as DimseCommand};
use crate::dicom::part10;
use anyhow::{bail, Context as _};
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use dicom_ul::{ClientAssociationOptions, Pdu};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod pacs;

pub const ACC_FORWARDED: &str = "SYNACC0001";
/// The prior of `ACC_FORWARDED` in the demo's PACS.
pub const ACC_PRIOR: &str = "SYNACC0000";
pub const ACC_HELD: &str = "SYNACC0002";
pub const ACC_PART_TIME: &str = "SYNACC0004";
/// Held until released by hand in the console.
pub const ACC_WAITING: &str = "SYNACC0006";

/// `preferred` when it is free (0: any free port), else a free port.
fn free_port(preferred: u16) -> u16 {
    if preferred != 0 && std::net::TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
        return preferred;
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn site_config(dir: &Path) -> String {
    format!(
        r#"
[gateway]
id = "reading-site"
data_dir = "{data}"
sending_facility = "RC1"

[dicom]
ae_title = "RC1PACS"
listen = "127.0.0.1:0"
stable_after_secs = 1
allow_any_calling_ae = true

[storage]
min_free_mb = 1
keep_forwarded = true

[[destinations]]
id = "archive"
facility = "RC1"
ae_title = "ARCHIVE"
host = "127.0.0.1"
port = 9

[[policy.rules]]
name = "keep"
checks = []
"#,
        data = dir.join("reading-site").display()
    )
}

/// A random password for a demo login (readable, 16 characters).
fn demo_password() -> anyhow::Result<String> {
    let (token, _) = crate::digest::new_token()?;
    Ok(token.trim_start_matches("rg_").chars().take(16).collect())
}

/// Where the gateway listens and what it calls: its DICOM port (known before it starts:
/// the demo PACS moves priors to it), the reading site, the demo PACS, HTTP.
struct Ports {
    dicom: u16,
    site: SocketAddr,
    pacs: SocketAddr,
    http: u16,
}

fn gateway_config(dir: &Path, ports: &Ports, token_hash: &str, users: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw-demo"
data_dir = "{data}"
sending_facility = "DEMO-HOSP"

[dicom]
ae_title = "READGATE"
listen = "127.0.0.1:{dicom_port}"
stable_after_secs = 2
allow_any_calling_ae = true

[storage]
min_free_mb = 1
keep_forwarded = true

[forward]
retry_base_secs = 1
retry_max_secs = 5
linger_ms = 300

[[destinations]]
id = "rc1"
facility = "RC1"
ae_title = "RC1PACS"
host = "127.0.0.1"
port = {site_port}

[[routes]]
destination = "rc1"

[[pacs]]
id = "hospital"
ae_title = "DEMOPACS"
host = "127.0.0.1"
port = {pacs_port}
retrieve = "move"
timeout_secs = 10

[priors]
retry_secs = 2

[hl7]
listen = "127.0.0.1:0"
default_charset = "utf8"

[http]
listen = "127.0.0.1:{http_port}"
metrics = true
[[http.tokens]]
name = "demo-admin"
token_sha256 = "{token_hash}"
role = "admin"
{users}

[ledger]
utc_offset = "+09:00"

[[ledger.readers]]
ids = ["R100"]
name = "読影 太郎"
facility = "RC1"
employment = "full_time"
board_certified = true

[[ledger.readers]]
ids = ["R200"]
name = "非常勤 花子"
facility = "RC1"
employment = "part_time"
board_certified = true

[[ledger.places]]
facility = "RC1"
networks = ["10.20.0.0/16"]
workstations = ["RC1-WS01"]
"#,
        data = dir.join("gateway").display(),
        dicom_port = ports.dicom,
        site_port = ports.site.port(),
        pacs_port = ports.pacs.port(),
        http_port = ports.http,
    )
}

/// Sends every Part 10 file in `folder` to `addr` on one association.
pub async fn send_folder(addr: SocketAddr, calling: &str, folder: &Path) -> anyhow::Result<usize> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .collect();
    files.sort();
    let mut items = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let meta = part10::read_file_meta(&mut &bytes[..])
            .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        let ds = bytes
            .get(meta.dataset_offset as usize..)
            .unwrap_or_default()
            .to_vec();
        items.push((meta, ds));
    }
    let mut opts = ClientAssociationOptions::new()
        .calling_ae_title(calling.to_string())
        .called_ae_title("READGATE");
    for (m, _) in &items {
        opts = opts
            .with_presentation_context(m.sop_class_uid.clone(), vec![m.transfer_syntax.clone()]);
    }
    let mut assoc = opts
        .establish_async(addr.to_string().as_str())
        .await
        .map_err(|e| anyhow::anyhow!("association with readgate: {e}"))?;
    let mut sent = 0;
    for (i, (meta, ds)) in items.iter().enumerate() {
        let pc = assoc
            .presentation_contexts()
            .iter()
            .find(|pc| {
                pc.abstract_syntax == meta.sop_class_uid
                    && pc.transfer_syntax == meta.transfer_syntax
                    && pc.reason == PresentationContextResultReason::Acceptance
            })
            .map(|pc| pc.id)
            .context("readgate accepted no context for a sample")?;
        let cmd = dimse::c_store_rq(i as u16 + 1, &meta.sop_class_uid, &meta.sop_instance_uid);
        let pdv = |t, last, data| PDataValue {
            presentation_context_id: pc,
            value_type: t,
            is_last: last,
            data,
        };
        assoc
            .send(&Pdu::PData {
                data: vec![pdv(PDataValueType::Command, true, cmd)],
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let chunks: Vec<&[u8]> = ds.chunks(16 * 1024).collect();
        for (j, c) in chunks.iter().enumerate() {
            assoc
                .send(&Pdu::PData {
                    data: vec![pdv(PDataValueType::Data, j + 1 == chunks.len(), c.to_vec())],
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let mut buf = Vec::new();
        let status = 'resp: loop {
            match assoc.receive().await.map_err(|e| anyhow::anyhow!("{e}"))? {
                Pdu::PData { data } => {
                    for v in data {
                        buf.extend_from_slice(&v.data);
                        if v.is_last && v.value_type == PDataValueType::Command {
                            let c =
                                DimseCommand::decode(&buf).map_err(|e| anyhow::anyhow!("{e}"))?;
                            break 'resp c.status().map_err(|e| anyhow::anyhow!("{e}"))?;
                        }
                    }
                }
                other => bail!("unexpected {other:?}"),
            }
        };
        if status != 0 {
            bail!("readgate answered {status:04X} for a sample");
        }
        sent += 1;
    }
    let _ = assoc.release().await;
    Ok(sent)
}

/// One HL7 message over MLLP; returns the ACK.
pub async fn send_hl7(addr: SocketAddr, message: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut frame = vec![0x0b];
    frame.extend_from_slice(message.as_bytes());
    frame.extend_from_slice(&[0x1c, 0x0d]);
    s.write_all(&frame).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.ends_with(&[0x1c, 0x0d]) {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await??;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn hl7_now() -> String {
    crate::time::format_ms(crate::time::now_ms(), 9 * 3600)
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect()
}

/// The hospital's final report of the prior CT (only in the RIS, not in the PACS).
pub fn report_of_prior() -> String {
    let now = hl7_now();
    [
        format!("MSH|^~\\&|RIS|DEMO-HOSP|READGATE|RAD|{now}||ORU^R01^ORU_R01|DEMO-ORU-0000|P|2.5"),
        "PID|||SYN-0001^^^DEMO||Test^Taro||19700101|M".to_string(),
        "ORC|RE|PLC-0000^RIS|FLC-0000".to_string(),
        format!("OBR|1|PLC-0000^RIS|FLC-0000|CTCHEST^CT Chest^LOCAL|||20241001101500|||||||||||{ACC_PRIOR}||||20241001120000|||F"),
        "OBX|1|TX|GDT^Report^LOCAL||右下葉に5mmの小結節影。半年後の経過観察を推奨。||||||F".to_string(),
    ]
    .join("\r")
        + "\r"
}

/// The order for the held MR study: exam purpose, clinical information, ordering
/// physician and callback number.
pub fn order_for_held_study() -> String {
    let now = hl7_now();
    [
        format!("MSH|^~\\&|RIS|DEMO-HOSP|READGATE|RAD|{now}||ORM^O01|DEMO-ORM-0002|P|2.5"),
        "PID|||SYN-0002^^^DEMO||Sample^Hanako||19800101|F".to_string(),
        format!("ORC|NW|PLC-0002^RIS|||SC||||{now}|||9001^Yamada^Ichiro^^^Dr||03-0000-0002"),
        format!("OBR|1|PLC-0002^RIS||MRHEAD^MR Head^LOCAL|||{now}||||||頭痛が3週間続き、嘔気あり|||9001^Yamada^Ichiro^^^Dr|03-0000-0002|SYNACC0002||||||MR|||||||^脳腫瘍の除外"),
    ]
    .join("\r")
        + "\r"
}

async fn http_post(addr: SocketAddr, path: &str, token: &str, body: &str) -> anyhow::Result<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf);
    Ok(text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

async fn wait_state(
    store: &crate::store::Store,
    accession: &str,
    state: crate::model::StudyState,
    secs: u64,
) -> bool {
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        if let Ok(Some(s)) = store.find_study(accession) {
            if s.state == state {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Removes a directory when dropped (the demo's own temporary data directory).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.0) {
            Ok(()) => println!("removed {} (pass --dir to keep the data)", self.0.display()),
            Err(e) => eprintln!("could not remove {}: {e}", self.0.display()),
        }
    }
}

/// Runs the demo until Ctrl-C (or `exit_after` seconds). `repo` holds sample-dicom/.
pub async fn run(
    repo: &Path,
    dir: Option<PathBuf>,
    http_port: u16,
    exit_after: Option<u64>,
) -> anyhow::Result<()> {
    let samples = repo.join("sample-dicom");
    if !samples.join("ct-chest").is_dir() {
        bail!(
            "sample-dicom/ not found under {} (run the demo from the repository, or pass --repo)",
            repo.display()
        );
    }
    let temporary = dir.is_none();
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("readgate-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // A directory the demo made for itself goes when it ends, however it ends.
    let _cleanup = temporary.then(|| RemoveOnDrop(dir.clone()));
    let site = crate::serve::start(Config::parse(
        &site_config(&dir),
        Path::new("demo-site.toml"),
    )?)
    .await
    .context("starting the built-in reading site")?;
    let (token, hash) = crate::digest::new_token()?;
    let port = free_port(http_port);
    // Console logins for this run only: random passwords, printed below.
    let admin_password = demo_password()?;
    let viewer_password = demo_password()?;
    let mut users = String::new();
    for (name, role, password) in [
        ("admin", "admin", &admin_password),
        ("viewer", "viewer", &viewer_password),
    ] {
        let hash = crate::web::auth::hash_password(password)?;
        users.push_str(&format!(
            "[[http.users]]\nname = \"{name}\"\nrole = \"{role}\"\npassword_hash = \"{hash}\"\n"
        ));
    }
    // The hospital's PACS holds the chest patient's prior CT; it moves studies to the
    // gateway, whose DICOM port is chosen first.
    let dicom_port = free_port(0);
    let gateway_node = (
        "READGATE".to_string(),
        SocketAddr::from(([127, 0, 0, 1], dicom_port)),
    );
    let hospital_pacs = pacs::start(&samples.join("prior-ct"), "DEMOPACS", gateway_node)
        .await
        .context("starting the built-in hospital PACS")?;
    let ports = Ports {
        dicom: dicom_port,
        site: site.dicom_addr,
        pacs: hospital_pacs.addr,
        http: port,
    };
    let text = gateway_config(&dir, &ports, &hash, &users);
    std::fs::write(dir.join("readgate.toml"), &text)?;
    let gw = crate::serve::start(Config::parse(&text, &dir.join("readgate.toml"))?)
        .await
        .context("starting the gateway")?;
    let http = gw.http_addr.context("no HTTP listener")?;
    let hl7 = gw.hl7_addr.context("no HL7 listener")?;
    println!("readgate demo — data in {}", dir.display());
    println!(
        "  gateway DICOM {}  HL7 {}  reading site DICOM {}  hospital PACS {} ({})",
        gw.dicom_addr, hl7, site.dicom_addr, hospital_pacs.addr, hospital_pacs.ae_title
    );
    println!("  console: http://{http}/  log in as admin / {admin_password} (or viewer / {viewer_password})");
    println!("    Held studies will show {ACC_WAITING} (CT abdomen, sent without an order): it stays held until you open it there and release it with a justification");
    println!("  REST API token, role admin: {token}");
    println!("  OpenAPI: http://{http}/api/v1/openapi.json   metrics: http://{http}/metrics");

    // The prior's report lives only in the RIS: it comes as an ORU^R01.
    let ack = send_hl7(hl7, &report_of_prior()).await?;
    println!(
        "  the RIS sends the report of {ACC_PRIOR} (CT chest, 2024-10-01, in the hospital PACS): ACK {}",
        if ack.contains("MSA|AA") { "AA" } else { "not AA" }
    );
    for folder in ["ct-chest", "mr-head", "ja-utf8", "ct-abdomen"] {
        let n = send_folder(gw.dicom_addr, "CT01", &samples.join(folder)).await?;
        println!("  sent {folder}: {n} instance(s)");
    }
    let store = gw.store.clone();
    if wait_state(
        &store,
        ACC_FORWARDED,
        crate::model::StudyState::Forwarded,
        30,
    )
    .await
    {
        let sent = store
            .find_study(ACC_FORWARDED)
            .ok()
            .flatten()
            .and_then(|k| store.decision_of(&k.study_uid).ok().flatten())
            .and_then(|d| {
                crate::priors::view::PriorsView::read(
                    &store,
                    d.context_json.as_deref(),
                    9 * 3600,
                    None,
                )
                .ok()
                .flatten()
            })
            .map(|v| v.priors.iter().filter(|p| !p.sent_to.is_empty()).count())
            .unwrap_or(0);
        println!(
            "  {ACC_FORWARDED} (CT chest) was forwarded after {sent} prior(s): {ACC_PRIOR} found in the hospital PACS, moved to readgate and sent first, its report as a DICOM SR"
        );
    }
    if wait_state(&store, ACC_HELD, crate::model::StudyState::Held, 30).await {
        println!("  {ACC_HELD} (MR head) is HELD: no exam purpose, no clinical information, no callback number");
    }
    if wait_state(&store, ACC_WAITING, crate::model::StudyState::Held, 30).await {
        println!("  {ACC_WAITING} (CT abdomen) is HELD and no order will come: release it in the console (http://{http}/, Held studies) with a justification");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ack = send_hl7(hl7, &order_for_held_study()).await?;
    println!(
        "  the RIS sends {ACC_HELD}'s order (exam purpose 脳腫瘍の除外): ACK {}",
        if ack.contains("|AA|") || ack.contains("MSA|AA") {
            "AA"
        } else {
            "not AA"
        }
    );
    if wait_state(&store, ACC_HELD, crate::model::StudyState::Forwarded, 30).await {
        println!("  {ACC_HELD} passed with its order and was forwarded");
    }
    if wait_state(
        &store,
        ACC_PART_TIME,
        crate::model::StudyState::Forwarded,
        30,
    )
    .await
    {
        let at = crate::time::format_ms(crate::time::now_ms(), 9 * 3600);
        let body = serde_json::json!({
            "accession": ACC_PART_TIME, "reader_id": "R200", "action": "final",
            "client_ip": "192.0.2.10", "workstation": "HOME-PC", "at": at,
        });
        let status = http_post(http, "/api/v1/read-events", &token, &body.to_string()).await?;
        println!("  part-time reader R200 signed {ACC_PART_TIME} from home (192.0.2.10): read event {status}");
    }
    let month = crate::time::format_ms(crate::time::now_ms(), 9 * 3600)[..7].to_string();
    println!();
    println!("What to look at (Authorization: Bearer {token}):");
    println!("  curl -s -H 'Authorization: Bearer {token}' http://{http}/api/v1/studies");
    println!("    {ACC_FORWARDED} forwarded with full context; {ACC_HELD} held, then released by its order");
    // The binary that runs now: after `cargo run`, readgate is not on the PATH.
    let me = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "readgate".into());
    println!(
        "  {me} priors --config {} {ACC_FORWARDED}",
        dir.join("readgate.toml").display()
    );
    println!("    its priors: {ACC_PRIOR} from the hospital PACS, sent to rc1");
    println!(
        "  curl -s -H 'Authorization: Bearer {token}' http://{http}/api/v1/studies/{ACC_HELD}"
    );
    println!("    its timeline: held with reasons (ja/en), context arrived, forwarded");
    println!("  curl -s -H 'Authorization: Bearer {token}' 'http://{http}/api/v1/reports/{month}?format=html' > report.html");
    println!("    {ACC_PART_TIME}: not eligible (PART_TIME_READ_OUTSIDE, ATS-3)");
    println!("  curl -s -H 'Authorization: Bearer {token}' http://{http}/api/v1/audit/verify");
    println!("  the console, http://{http}/ (admin / {admin_password}): {ACC_WAITING} is waiting in Held studies for you to release it");
    println!();
    match exit_after {
        // Ctrl-C (SIGINT) still stops it early.
        Some(secs) => {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(secs)) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        None => {
            println!("Ctrl-C stops the demo.");
            tokio::signal::ctrl_c()
                .await
                .context("waiting for Ctrl-C")?;
        }
    }
    gw.stop().await;
    site.stop().await;
    hospital_pacs.stop();
    Ok(())
}
