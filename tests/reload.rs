//! Live reload: `readgate reload` (the control socket) and SIGHUP apply a changed
//! configuration while a 300-instance transfer and an HL7 stream run, without dropping
//! either; the new peer is accepted and the new route used for the next study; an
//! invalid file is refused, recorded, and the running configuration keeps serving.

mod common;

use common::hl7::Ack;
use common::*;
use readgate::hl7::mllp;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PEERS: &str = "[[dicom.peers]]\nae_title = \"CT01\"\nhosts = [\"127.0.0.1\"]\n";
const NEW_PEER: &str = "[[dicom.peers]]\nae_title = \"MR01\"\nhosts = [\"127.0.0.1\"]\n";

/// `readgate reload --config PATH`: its exit status and its output.
fn reload(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_readgate"))
        .args(["reload", "--config"])
        .arg(config)
        .output()
        .expect("run readgate reload");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Writes `text` to `config` and runs `readgate reload` off the async workers.
async fn write_and_reload(config: &Path, text: String) -> (bool, String) {
    std::fs::write(config, text).expect("write config");
    let path = config.to_path_buf();
    tokio::task::spawn_blocking(move || reload(&path))
        .await
        .expect("reload ran")
}

/// The second reading site and the route that sends MR studies there.
fn rc2(port: u16) -> String {
    format!(
        "[[destinations]]\nid = \"rc2\"\nfacility = \"RC2\"\nae_title = \"RC2PACS\"\nhost = \"127.0.0.1\"\nport = {port}\n\n[[routes]]\ndestination = \"rc2\"\nmodalities = [\"MR\"]\n"
    )
}

/// An ORM^O01 with its own control id.
fn order(i: usize) -> Vec<u8> {
    String::from_utf8(common::hl7::sample("orm_o01_ihe.hl7"))
        .expect("sample is UTF-8")
        .replace("|ORM0001|", &format!("|RELOAD{i:04}|"))
        .into_bytes()
}

/// Reads one MLLP frame (an ACK) from `stream`.
fn read_frame(stream: &mut std::net::TcpStream) -> Vec<u8> {
    let mut decoder = mllp::Decoder::default();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(frame) = decoder.next_frame() {
            return frame.expect("a well-formed ACK frame");
        }
        let n = stream.read(&mut buf).expect("read ACK");
        assert!(n > 0, "readgate closed the MLLP connection");
        decoder.push(&buf[..n]);
    }
}

fn audit_kinds(db: &readgate::config::Database, kind: &str) -> Vec<serde_json::Value> {
    let log = readgate::audit::AuditLog::open_read_only_at(db).expect("audit trail");
    log.search(&readgate::audit::Query {
        kind: Some(kind.to_string()),
        limit: 1000,
        ..Default::default()
    })
    .expect("search")
    .iter()
    .map(|e| e.detail_json())
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_applies_peers_and_routes_without_dropping_transfers() {
    let (dir, rc1, mut cfg) = reading_site();
    let rc2_scp = StoreScp::start(&dir.path().join("rc2"), free_port());
    cfg.stable_after_secs = 1;
    cfg.peers = Some(PEERS.to_string());
    cfg.route_extra = "modalities = [\"CT\"]".to_string();
    cfg.hl7_port = Some(free_port());
    let config_path = cfg.write();
    let mut daemon = Daemon::start(&config_path, cfg.dicom_port);
    let hl7_port = cfg.hl7_port.expect("hl7 port");
    daemon.wait_for_port(hl7_port);

    // MR01 is not a peer yet: refused.
    let mut echo = dcmtk_scu("echoscu", "MR01", &[], cfg.dicom_port);
    let refused = echo.output().expect("echoscu");
    assert!(!refused.status.success(), "MR01 is not a peer yet");

    // An MR study has no route yet: held.
    let held_study = "1.2.826.0.1.3680043.10.1234.502";
    let mut scu = Scu::connect(cfg.dicom_port, "CT01", &[MR_IMAGE_STORAGE])
        .await
        .expect("CT01 associates");
    for i in 0..2 {
        let sop = format!("{held_study}.{i}");
        let ds = synthetic_instance(MR_IMAGE_STORAGE, held_study, &sop, "MR", 2_000);
        let (status, comment) = scu
            .store(MR_IMAGE_STORAGE, &sop, &ds, Packing::Separate)
            .await
            .expect("C-STORE answered");
        assert_eq!(status, 0, "{comment:?}");
    }
    scu.release().await;
    let db = cfg.parse().database();
    wait_until("the MR study held", Duration::from_secs(30), || {
        readgate::store::Store::open_read_only_at(&db)
            .ok()
            .and_then(|s| s.study_row(held_study).ok().flatten())
            .is_some_and(|r| r.state == readgate::model::StudyState::Held)
    });

    // A 300-instance transfer and an HL7 stream, both paused half-way until the reload
    // is done, so that it falls inside them.
    let reloaded = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let study = "1.2.826.0.1.3680043.10.1234.501";
    let transfer = {
        let (reloaded, acked, port) = (reloaded.clone(), acked.clone(), cfg.dicom_port);
        tokio::spawn(async move {
            let mut scu = Scu::ct01(port).await;
            for i in 0..300 {
                while i == 150 && !reloaded.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let sop = format!("{study}.{i}");
                let ds = synthetic_instance(CT_IMAGE_STORAGE, study, &sop, "CT", 20_000);
                scu.store_ct_ok(&sop, &ds).await;
                acked.fetch_add(1, Ordering::SeqCst);
            }
            scu.release().await;
        })
    };
    let hl7_stream = {
        let reloaded = reloaded.clone();
        std::thread::spawn(move || {
            let mut stream =
                std::net::TcpStream::connect(("127.0.0.1", hl7_port)).expect("MLLP connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            let mut codes = Vec::new();
            for i in 0..60 {
                while i == 30 && !reloaded.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                stream
                    .write_all(&mllp::encode_frame(&order(i)))
                    .expect("send ORM");
                let ack = Ack::parse(&read_frame(&mut stream)).expect("parse ACK");
                codes.push(ack.code());
            }
            codes
        })
    };
    let start = Instant::now();
    while acked.load(Ordering::SeqCst) < 100 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "transfer stalled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The new file: MR01 becomes a peer, MR studies go to rc2.
    cfg.peers = Some(format!("{PEERS}{NEW_PEER}"));
    cfg.extra = rc2(rc2_scp.port);
    let (ok, said) = write_and_reload(&config_path, cfg.text()).await;
    assert!(ok, "reload failed: {said}");
    assert!(
        said.contains("in force now: dicom, destinations, routes"),
        "{said}"
    );
    reloaded.store(true, Ordering::SeqCst);

    // Neither stream was dropped: every instance and every message was acknowledged.
    tokio::time::timeout(Duration::from_secs(120), transfer)
        .await
        .expect("transfer finished in time")
        .expect("every instance of the transfer answered 0000 on one association");
    let codes = tokio::task::spawn_blocking(move || hl7_stream.join())
        .await
        .expect("join")
        .expect("HL7 stream on one connection");
    assert!(codes.iter().all(|c| c == "AA"), "{codes:?}");
    assert_eq!(codes.len(), 60);

    // The new peer is accepted, and its MR study takes the new route to rc2.
    let mut storescu = dcmtk_scu("storescu", "MR01", &[], cfg.dicom_port);
    storescu.arg(repo_path("sample-dicom/mr-head"));
    storescu.arg("+sd");
    run_ok(&mut storescu, "storescu from the new peer");
    // The study held for want of a route is decided again and takes the new one.
    wait_until("the held MR study at rc2", Duration::from_secs(60), || {
        (0..2).all(|i| rc2_scp.received().contains(&format!("{held_study}.{i}")))
    });
    wait_until("MR01's study at rc2", Duration::from_secs(60), || {
        rc2_scp.received().len() >= 4
    });
    wait_until("CT study at rc1", Duration::from_secs(60), || {
        (0..300)
            .map(|i| format!("{study}.{i}"))
            .all(|s| rc1.received().contains(&s))
    });
    assert!(
        rc2_scp.received().iter().all(|s| !s.starts_with(study)),
        "the CT study went to rc1 only"
    );

    // An invalid file is refused with the key named; the running configuration stays.
    let valid = cfg.text();
    std::fs::write(
        &config_path,
        valid.replace("stable_after_secs = 1", "stable_after_secs = \"soon\""),
    )
    .expect("write config");
    let (ok, said) = reload(&config_path);
    assert!(!ok, "an invalid config must be refused: {said}");
    assert!(said.contains("dicom.stable_after_secs"), "{said}");
    assert!(said.contains("running configuration stays"), "{said}");
    let mut echo = dcmtk_scu("echoscu", "MR01", &[], cfg.dicom_port);
    run_ok(&mut echo, "echoscu from MR01 after the refused reload");

    // SIGHUP reloads too; a changed listener address is named and kept.
    let moved = valid.replace(
        &format!("listen = \"127.0.0.1:{}\"", cfg.dicom_port),
        &format!("listen = \"127.0.0.1:{}\"", free_port()),
    );
    assert_ne!(moved, valid);
    std::fs::write(&config_path, moved).expect("write config");
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(daemon.child.id() as i32, libc::SIGHUP);
    }
    wait_until("the SIGHUP reload", Duration::from_secs(20), || {
        daemon
            .log_text()
            .contains("kept until readgate is restarted: dicom.listen")
    });
    daemon.assert_running();
    let mut echo = dcmtk_scu("echoscu", "CT01", &[], cfg.dicom_port);
    run_ok(&mut echo, "echoscu on the running listener after SIGHUP");

    assert!(daemon.terminate().success());
    let loaded = audit_kinds(&db, "config_loaded");
    let reloads: Vec<_> = loaded.iter().filter(|d| d["reload"] == true).collect();
    assert_eq!(reloads.len(), 2, "{loaded:?}");
    assert!(reloads
        .iter()
        .any(|d| d["restart_needed"] == serde_json::json!(["dicom.listen"])));
    let rejected = audit_kinds(&db, "config_rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0]["error"]
        .as_str()
        .is_some_and(|e| e.contains("dicom.stable_after_secs")));
}

/// Users and tokens of `[http]` change with a reload: a removed token is refused at
/// once, a new one accepted; the listener stays where it was.
#[tokio::test(flavor = "multi_thread")]
async fn reload_changes_api_tokens() {
    let (dir, _rc1, mut cfg) = reading_site();
    let http_port = free_port();
    let (old_token, new_token) = ("old-secret-token-0001", "new-secret-token-0002");
    let sha = |t: &str| {
        use sha2::Digest;
        sha2::Sha256::digest(t.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let http = |token: &str| {
        format!(
            "[http]\nlisten = \"127.0.0.1:{http_port}\"\n[[http.tokens]]\nname = \"ris\"\ntoken_sha256 = \"{}\"\nrole = \"viewer\"\n",
            sha(token)
        )
    };
    cfg.extra = http(old_token);
    let config_path = cfg.write();
    let mut daemon = Daemon::start(&config_path, cfg.dicom_port);
    daemon.wait_for_port(http_port);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{http_port}").parse().expect("addr");
    let get = |token: &'static str| async move {
        common::http::request(
            addr,
            "GET",
            "/api/v1/studies",
            &[("Authorization", &format!("Bearer {token}"))],
            b"",
        )
        .await
        .status
    };
    assert_eq!(get(old_token).await, 200);
    assert_eq!(get(new_token).await, 401);

    cfg.extra = http(new_token);
    let (ok, said) = write_and_reload(&config_path, cfg.text()).await;
    assert!(ok, "{said}");
    assert!(said.contains("http.users / http.tokens"), "{said}");
    assert_eq!(get(old_token).await, 401);
    assert_eq!(get(new_token).await, 200);
    drop(dir);
}

/// Without a running readgate, `readgate reload` says so and fails.
#[test]
fn reload_without_a_running_readgate_says_so() {
    let (_dir, cfg) = no_reading_site();
    let path = cfg.write();
    let (ok, said) = reload(&path);
    assert!(!ok);
    assert!(said.contains("is `readgate serve` running"), "{said}");
}

/// `hl7.allowed_hosts` follows a reload: the next connection from an address no longer
/// listed is refused; the listener itself stays.
#[tokio::test(flavor = "multi_thread")]
async fn reload_changes_hl7_senders() {
    let (_dir, _rc1, mut cfg) = reading_site();
    let hl7_port = free_port();
    cfg.hl7_port = Some(hl7_port);
    let config_path = cfg.write();
    let mut daemon = Daemon::start(&config_path, cfg.dicom_port);
    daemon.wait_for_port(hl7_port);
    let ack = |port: u16| -> Option<String> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        stream.write_all(&mllp::encode_frame(&order(1))).ok()?;
        let mut buf = [0u8; 4096];
        let mut decoder = mllp::Decoder::default();
        loop {
            if let Some(frame) = decoder.next_frame() {
                return Ack::parse(&frame.ok()?).ok().map(|a| a.code());
            }
            let n = stream.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            decoder.push(&buf[..n]);
        }
    };
    let answer = tokio::task::spawn_blocking(move || ack(hl7_port))
        .await
        .expect("join");
    assert_eq!(answer.as_deref(), Some("AA"));

    let text = cfg
        .text()
        .replace("allowed_hosts = []", "allowed_hosts = [\"192.0.2.1\"]");
    let (ok, said) = write_and_reload(&config_path, text).await;
    assert!(ok, "{said}");
    assert!(said.contains("in force now: hl7"), "{said}");
    let answer = tokio::task::spawn_blocking(move || ack(hl7_port))
        .await
        .expect("join");
    assert_eq!(answer, None, "a sender no longer allowed is refused");
    daemon.assert_running();
}

/// The control socket is bounded: a request is at most 64 bytes and must come within 5 s;
/// a silent or oversized client does not keep `readgate reload` from being answered.
#[tokio::test(flavor = "multi_thread")]
async fn the_control_socket_bounds_its_clients() {
    let (_dir, _rc1, cfg) = reading_site();
    let config_path = cfg.write();
    let mut daemon = Daemon::start(&config_path, cfg.dicom_port);
    let socket = cfg.data_dir.join("var/control.sock");
    // The socket is made after the DICOM port listens.
    wait_until("the control socket", Duration::from_secs(30), || {
        socket.exists()
    });
    // A client that connects and says nothing holds the socket for 5 s at most.
    let silent = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
    let started = Instant::now();
    let (ok, said) = tokio::task::spawn_blocking({
        let p = config_path.clone();
        move || reload(&p)
    })
    .await
    .expect("reload ran");
    assert!(ok, "{said}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
    // 1 MiB without a line end: only 64 bytes are read, and the answer is an error.
    let mut big = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
    big.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = big.write_all(&vec![b'x'; 1 << 20]);
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(answer.contains("unknown request"), "{answer:?}");
    daemon.assert_running();
    let (ok, said) = reload(&config_path);
    assert!(ok, "{said}");
}
