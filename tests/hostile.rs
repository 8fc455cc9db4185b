//! Attacks from the hospital network, one test per finding of the hostile-networks
//! issue, each performing the attack against the readgate binary and asserting the
//! bound that stops it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::hl7::Ack;
use common::{event_kinds, free_port, no_reading_site, Daemon};
use readgate::hl7::mllp;
use readgate::model::EventKind;

/// Sends one frame on a new connection and waits for its ACK.
fn exchange(port: u16, payload: &[u8]) -> Result<Ack, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    s.write_all(&mllp::encode_frame(payload))
        .map_err(|e| e.to_string())?;
    let mut decoder = mllp::Decoder::new(1 << 20);
    let mut buf = [0u8; 4096];
    loop {
        if let Some(item) = decoder.next_frame() {
            let frame = item.map_err(|e| e.to_string())?;
            return Ack::parse(&frame);
        }
        let n = s.read(&mut buf).map_err(|e| format!("no ACK: {e}"))?;
        if n == 0 {
            return Err("connection closed without an ACK".into());
        }
        decoder.push(&buf[..n]);
    }
}

/// H1: eight ~1 MiB messages at once, four with a field of a million repetitions and
/// four with a million components spread over many segments (each under the per-field
/// bounds): every one is answered AR naming the bound, a good order afterwards gets AA,
/// and the daemon's peak memory stays under 100 MiB (it was 3.45 GiB).
#[test]
fn hostile_hl7_structure_is_refused_within_bounded_memory() {
    let (_dir, mut cfg) = no_reading_site();
    let port = free_port();
    cfg.hl7_port = Some(port);
    cfg.hl7_max_frame_bytes = 2 * 1024 * 1024;
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(port);
    let header = |id: &str| {
        format!("MSH|^~\\&|RIS|HOSP|READGATE|RAD|20240601120000||ORM^O01|{id}|P|2.5.1\rPID|||P1\rORC|NW|A1\r")
    };
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let mut msg = header(&format!("H1-{i}"));
            if i % 2 == 0 {
                msg.push_str("OBR|1|A1||CT^CT|||||||||");
                msg.push_str(&"~".repeat(1 << 20));
            } else {
                let segment = format!("NTE|1||{}\r", "a^".repeat(90));
                while msg.len() < 1 << 20 {
                    msg.push_str(&segment);
                }
            }
            std::thread::spawn(move || exchange(port, msg.as_bytes()))
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let ack = t.join().expect("sender thread").expect("an ACK");
        assert_eq!(ack.code(), "AR", "message {i}: {}", ack.show());
        assert!(
            ack.show().contains("more than"),
            "message {i}: {}",
            ack.show()
        );
        let expected = if i % 2 == 0 {
            "repetitions in a field"
        } else {
            "delimiters in the message"
        };
        assert!(ack.show().contains(expected), "message {i}: {}", ack.show());
    }
    // OBR-18: the accession number.
    let good = format!(
        "{}OBR|1|A1||CT^CT{}ACC-H1\r",
        header("H1-GOOD"),
        "|".repeat(14)
    );
    let ack = exchange(port, good.as_bytes()).expect("ACK to a good order");
    assert_eq!(ack.code(), "AA", "{}", ack.show());
    let peak = common::vm_hwm_kib(daemon.child.id());
    daemon.assert_running();
    assert!(peak < 100 * 1024, "peak RSS {} MiB", peak / 1024);
}

/// A plain HTTP/1.1 GET; the body.
fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect HTTP");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    out.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// M2: 300 messages with invented MSH-9 values, ten of them 500 KB long, over one
/// connection: `/metrics` keeps a fixed set of HL7 series (type `other` for the rest)
/// and stays small (it was 20,002 series and 150 MB).
#[test]
fn invented_message_types_do_not_grow_the_metrics() {
    let (dir, mut cfg) = no_reading_site();
    let port = free_port();
    let http = free_port();
    cfg.hl7_port = Some(port);
    cfg.extra = format!("[http]\nlisten = \"127.0.0.1:{http}\"\nmetrics = true\n");
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(port);
    daemon.wait_for_port(http);
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect MLLP");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let n = 300;
    for i in 0..n {
        let kind = if i % 30 == 0 {
            format!("Z{}", "Q".repeat(500_000))
        } else {
            format!("Z{i:05}^X{i}")
        };
        let msg = format!("MSH|^~\\&|RIS|HOSP|READGATE|RAD|20240601||{kind}|M2-{i}|P|2.5.1\r");
        s.write_all(&mllp::encode_frame(msg.as_bytes())).unwrap();
    }
    let mut decoder = mllp::Decoder::new(1 << 20);
    let (mut acks, mut buf) = (0, [0u8; 8192]);
    while acks < n {
        let read = s.read(&mut buf).expect("ACKs");
        assert!(read > 0, "connection closed after {acks} ACKs");
        decoder.push(&buf[..read]);
        while let Some(frame) = decoder.next_frame() {
            frame.expect("an ACK frame");
            acks += 1;
        }
    }
    let metrics = http_get(http, "/metrics");
    let series: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("readgate_hl7_messages_total{"))
        .collect();
    assert!(!series.is_empty(), "{metrics}");
    assert!(series.len() <= 3, "{series:#?}");
    assert!(
        series.iter().all(|l| l.contains("type=\"other\"")),
        "{series:#?}"
    );
    assert!(
        metrics.len() < 64 * 1024,
        "/metrics is {} bytes",
        metrics.len()
    );
    daemon.assert_running();
    drop(dir);
}

/// Raw bytes of the refused HL7 messages kept, and how many messages are kept at all.
fn stored_hl7(cfg: &common::TestConfig) -> (i64, i64) {
    cfg.database().query_row(
        "SELECT COALESCE(SUM(CASE WHEN ack_code != 'AA' THEN octet_length(raw) END), 0), COUNT(*) \
         FROM hl7_messages",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .expect("query hl7_messages")
}

/// H2, quarantine: 40 refused frames of 256 KiB (10 MiB) against a 2 MiB quarantine: every
/// frame is answered, and at most the bound (plus the last frame) is kept. They used to be
/// kept whole and forever (172 × 1 MiB filled a 200 MB disk).
#[test]
fn refused_hl7_frames_are_kept_only_within_the_quarantine() {
    let (_dir, mut cfg) = no_reading_site();
    let port = free_port();
    cfg.hl7_port = Some(port);
    cfg.hl7_extra = "quarantine_max_mb = 2\nquarantine_days = 30".into();
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(port);
    for i in 0..40 {
        // An unknown MSH-18 charset: refused with AR, stored as refused.
        let msg = format!(
            "MSH|^~\\&|RIS|HOSP|READGATE|RAD|20240601||ORM^O01|H2-{i}|P|2.5.1|||||||KLINGON\rNTE|1||{}\r",
            "x".repeat(256 * 1024)
        );
        let ack = exchange(port, msg.as_bytes()).expect("an ACK");
        assert_ne!(ack.code(), "AA", "{}", ack.show());
    }
    let (refused_bytes, kept) = stored_hl7(&cfg);
    assert!(
        refused_bytes <= 2 * 1024 * 1024 + 300 * 1024,
        "{refused_bytes} bytes of refused messages kept ({kept} messages)"
    );
    assert!(kept >= 7, "the newest refused messages are kept: {kept}");
    daemon.assert_running();
}

/// H2, free space: with the data directory's file system below `storage.min_free_mb`, an
/// HL7 message is answered AE naming the disk and nothing is stored (it used to be
/// stored with no check at all).
#[test]
fn hl7_obeys_min_free_mb() {
    let (_dir, mut cfg) = no_reading_site();
    let port = free_port();
    cfg.hl7_port = Some(port);
    cfg.min_free_mb = 1 << 40; // more than any disk has
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(port);
    let msg = format!(
        "MSH|^~\\&|RIS|HOSP|READGATE|RAD|20240601||ORM^O01|H2-DISK|P|2.5.1\rPID|||P1\rORC|NW|A1\rOBR|1|A1||CT^CT{}ACC-H2\r",
        "|".repeat(14)
    );
    let ack = exchange(port, msg.as_bytes()).expect("an ACK");
    assert_eq!(ack.code(), "AE", "{}", ack.show());
    assert!(ack.show().contains("free disk space"), "{}", ack.show());
    assert_eq!(stored_hl7(&cfg).1, 0, "nothing stored");
    daemon.assert_running();
}

/// An `[http]` section with `keys` and one admin user whose password is `password`.
fn one_user_toml(password: &str, keys: &str) -> String {
    let hash = readgate::web::auth::hash_password(password).expect("hash");
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n{keys}\n\
[[http.users]]\nname = \"admin\"\nrole = \"admin\"\npassword_hash = \"{hash}\"\n"
    )
}

/// H3: 100 simultaneous wrong logins for one user cost at most the five password checks
/// the throttle allows (each wrong password checked answers 401; the rest 429 without a
/// check). It used to be 92 checks and 1.7 GiB.
#[tokio::test(flavor = "multi_thread")]
async fn a_login_flood_costs_at_most_the_allowed_password_checks() {
    let (_dir, mut cfg) = no_reading_site();
    // All from one address: the per-address connection cap must not be what stops them.
    cfg.extra = one_user_toml("correct horse", "max_connections_per_host = 128");
    let rg = readgate::serve::start(cfg.parse()).await.expect("starts");
    let addr = rg.http_addr.expect("http");
    let attempts: Vec<_> = (0..100)
        .map(|i| {
            tokio::spawn(async move {
                let mut c = common::http::WebClient::new(addr);
                c.login("admin", &format!("wrong {i}")).await.status
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for a in attempts {
        *statuses.entry(a.await.expect("task")).or_insert(0) += 1;
    }
    let checked = statuses.get(&401).copied().unwrap_or(0);
    assert!(
        checked <= readgate::web::auth::MAX_FAILURES as usize,
        "{statuses:?}"
    );
    assert_eq!(
        checked + statuses.get(&429).copied().unwrap_or(0),
        100,
        "every attempt answered 401 or 429: {statuses:?}"
    );
    rg.stop().await;
}

/// L3: a login whose audit entry cannot be written does not happen: no session, 503.
/// (The trail is made to refuse writes with a trigger; without it the login succeeds.)
#[tokio::test(flavor = "multi_thread")]
async fn no_login_without_its_audit_entry() {
    let (_dir, mut cfg) = no_reading_site();
    cfg.extra = one_user_toml("correct horse", "");
    let rg = readgate::serve::start(cfg.parse()).await.expect("starts");
    let addr = rg.http_addr.expect("http");
    let db = cfg.database();
    common::refuse_audit_appends(&db);
    let mut c = common::http::WebClient::new(addr);
    let r = c.login("admin", "correct horse").await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(c.cookie.is_none(), "a session was opened");
    assert_eq!(c.get("/").await.status, 303, "no session: back to /login");
    common::allow_audit_appends(&db);
    let r = c.login("admin", "correct horse").await;
    assert_eq!(r.status, 303, "{}", String::from_utf8_lossy(&r.body));
    assert!(c.cookie.is_some());
    rg.stop().await;
}

/// One HTTPS request (rustls, trusting `ca`); the whole response as text.
async fn https(addr: std::net::SocketAddr, ca: &str, request: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA");
    }
    let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(request.as_bytes()).await.expect("request");
    let mut buf = Vec::new();
    let _ = tls.read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// M1, L4, L5: over readgate's own HTTPS, the login's audit entry and throttle know the
/// client's address (it was "unknown" for everyone: 20 failures locked every user out),
/// the session cookie is `Secure` without `secure_cookies`, and every page carries the
/// headers that forbid framing, scripts and sniffing.
#[tokio::test(flavor = "multi_thread")]
async fn https_knows_the_client_and_protects_the_console() {
    let (dir, mut cfg) = no_reading_site();
    let ca = common::pki::TestCa::new("readgate test CA");
    let (cert, key) = ca.issue(&["localhost"]).write(dir.path(), "https");
    let keys = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\nsecure_cookies = false",
        cert.display(),
        key.display()
    );
    cfg.extra = one_user_toml("correct horse", &keys);
    let rg = readgate::serve::start(cfg.parse()).await.expect("starts");
    let addr = rg.http_addr.expect("http");
    let body = "user=admin&password=correct+horse";
    let r = https(
        addr,
        &ca.pem,
        format!(
            "POST /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    let head = r
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 303"), "{r}");
    let cookie = head
        .lines()
        .find(|l| l.starts_with("set-cookie: readgate_session="))
        .unwrap_or_else(|| panic!("no session cookie: {r}"));
    assert!(cookie.contains("; secure"), "{cookie}");
    for h in [
        "content-security-policy: default-src 'none'",
        "frame-ancestors 'none'",
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
    ] {
        assert!(head.contains(h), "{h} missing in {head}");
    }
    let logins = rg
        .audit
        .search(&readgate::audit::Query {
            kind: Some("operator_login".into()),
            ..Default::default()
        })
        .expect("audit search");
    assert_eq!(logins.len(), 1);
    assert!(
        logins[0].detail.contains("\"client_ip\":\"127.0.0.1\""),
        "{}",
        logins[0].detail
    );
    rg.stop().await;
}

/// Every file and directory below `root` with its permission bits.
fn modes_below(root: &std::path::Path, out: &mut Vec<(std::path::PathBuf, u32)>) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(root).expect("read_dir").flatten() {
        let path = entry.path();
        let meta = entry.metadata().expect("metadata");
        out.push((path.clone(), meta.permissions().mode() & 0o777));
        if meta.is_dir() {
            modes_below(&path, out);
        }
    }
}

/// L6: after an image and an HL7 message arrive, the data directory and every directory
/// below it are 0700 and every file 0600, under a permissive umask too (they were 0755
/// and 0644: patient data readable by every local user).
#[test]
fn patient_data_is_readable_by_readgates_user_only() {
    let (dir, mut cfg) = no_reading_site();
    let port = free_port();
    cfg.hl7_port = Some(port);
    let config = cfg.write();
    // A daemon started by hand with the usual umask 022.
    let mut daemon = {
        // SAFETY: umask only changes this test process's file creation mask, inherited by
        // the child started below.
        let old = unsafe { libc::umask(0o022) };
        let d = Daemon::start(&config, cfg.dicom_port);
        unsafe { libc::umask(old) };
        d
    };
    daemon.wait_for_port(port);
    let sample = common::repo_path("sample-dicom/transfer-syntaxes/explicit-le.dcm");
    let out = common::dcmtk_scu("storescu", "MODALITY", &["-xe"], cfg.dicom_port)
        .arg(&sample)
        .output()
        .expect("storescu");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msg = format!(
        "MSH|^~\\&|RIS|HOSP|READGATE|RAD|20240601||ORM^O01|L6-1|P|2.5.1\rPID|||P1\rORC|NW|A1\rOBR|1|A1||CT^CT{}ACC-L6\r",
        "|".repeat(14)
    );
    assert_eq!(exchange(port, msg.as_bytes()).expect("ACK").code(), "AA");
    let data = dir.path().join("var");
    let mut modes = vec![(data.clone(), {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&data)
            .expect("data dir")
            .permissions()
            .mode()
            & 0o777
    })];
    modes_below(&data, &mut modes);
    let files: Vec<_> = modes.iter().filter(|(p, _)| p.is_file()).collect();
    assert!(
        files
            .iter()
            .any(|(p, _)| p.to_string_lossy().contains("/objects/")),
        "the instance is in the spool: {modes:#?}"
    );
    // The database is among them, unless it lives in PostgreSQL (then no SQLite file
    // is made beside it).
    assert_eq!(
        files.iter().any(|(p, _)| p.ends_with("readgate.db-wal")),
        !cfg.on_postgres(),
        "{modes:#?}"
    );
    for (path, mode) in &modes {
        let expected = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*mode, expected, "{} is {mode:o}", path.display());
    }
    daemon.assert_running();
}

/// L1: a SOP Instance UID with a line feed and a fake log line in it is refused, and the
/// daemon's log shows it escaped on the one line of its event: no forged line.
#[tokio::test(flavor = "multi_thread")]
async fn network_text_cannot_forge_a_log_line() {
    let (_dir, cfg) = no_reading_site();
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(cfg.dicom_port);
    let mut scu = common::Scu::connect(cfg.dicom_port, "CT01", &[common::CT_IMAGE_STORAGE])
        .await
        .expect("associate");
    let forged = "1.2.3\n2026-12-02T00:00:00.000000Z  INFO readgate: FORGED released by admin";
    let ds = common::synthetic_instance(common::CT_IMAGE_STORAGE, "1.2.3.4", "1.2.3.4.5", "CT", 10);
    let (status, _) = scu
        .store(
            common::CT_IMAGE_STORAGE,
            forged,
            &ds,
            common::Packing::Separate,
        )
        .await
        .expect("a response");
    assert_ne!(status, 0x0000);
    scu.release().await;
    let log = daemon.log_text();
    assert!(
        log.contains("\\n2026-12-02T00:00:00.000000Z  INFO readgate: FORGED"),
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.starts_with("2026-12-02T00:00:00.000000Z")),
        "a forged line:\n{log}"
    );
}

/// echoscu as `calling`: whether it succeeded, and what it printed.
fn echo(calling: &str, port: u16) -> (bool, String) {
    let out = common::dcmtk_scu("echoscu", calling, &[], port)
        .output()
        .expect("echoscu");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Connects from `source` (another loopback address) to 127.0.0.1:`port`.
fn connect_from(source: [u8; 4], port: u16) -> std::net::TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&std::net::SocketAddr::from((source, 0)).into())
        .expect("bind the source address");
    socket
        .connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .expect("connect");
    socket.into()
}

/// M3: 32 silent TCP connections from one host (no A-ASSOCIATE-RQ) no longer take every
/// association slot: a known peer on another address still gets its C-ECHO answered (it
/// got "local limit exceeded" for 30 s).
#[test]
fn silent_dicom_sockets_from_one_host_do_not_stop_a_known_peer() {
    let (_dir, cfg) = no_reading_site();
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(cfg.dicom_port);
    let silent: Vec<_> = (0..32)
        .map(|_| connect_from([127, 0, 0, 2], cfg.dicom_port))
        .collect();
    // The attack is in place once readgate refuses the host's surplus connections.
    common::wait_until("the per-host cap refusing", Duration::from_secs(10), || {
        daemon
            .log_text()
            .contains("too many connections from this address")
    });
    let (ok, out) = echo("CT01", cfg.dicom_port);
    assert!(ok, "echo refused: {out}");
    drop(silent);
    daemon.assert_running();
}

/// M4: 64 idle MLLP connections from one host no longer block every sender: a sender on
/// another address gets AA at once (it waited 300 s).
#[test]
fn idle_mllp_connections_from_one_host_do_not_block_senders() {
    let (_dir, mut cfg) = no_reading_site();
    let port = free_port();
    cfg.hl7_port = Some(port);
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(port);
    let idle: Vec<_> = (0..64)
        .map(|_| connect_from([127, 0, 0, 3], port))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let msg = format!(
        "MSH|^~\\&|RIS|HOSP|READGATE|RAD|20240601||ORM^O01|M4-1|P|2.5.1\rPID|||P1\rORC|NW|A1\rOBR|1|A1||CT^CT{}ACC-M4\r",
        "|".repeat(14)
    );
    let ack = exchange(port, msg.as_bytes()).expect("an ACK");
    assert_eq!(ack.code(), "AA", "{}", ack.show());
    drop(idle);
    daemon.assert_running();
}

/// L8: a P-DATA-TF PDU announcing 0xFFFFFFFF bytes is answered with an A-ABORT, as the
/// README promises (the connection used to be closed without one).
#[tokio::test(flavor = "multi_thread")]
async fn an_impossible_pdu_length_is_answered_with_an_abort() {
    let (_dir, cfg) = no_reading_site();
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(cfg.dicom_port);
    let mut scu = common::Scu::ct01(cfg.dicom_port).await;
    scu.send_bytes(&[0x04, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00])
        .await
        .expect("write");
    let answer = tokio::time::timeout(Duration::from_secs(10), scu.receive())
        .await
        .expect("an answer in time");
    assert!(
        matches!(answer, Ok(dicom_ul::Pdu::AbortRQ { .. })),
        "{answer:?}"
    );
    daemon.assert_running();
}

/// M7: an instance re-sent under another Study Instance UID (duplicate policy `replace`)
/// takes its old study with it when that study has nothing else: no study is left held
/// forever with 0 instances, counted as a prior of the real one.
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_moved_to_another_study_leaves_no_empty_study() {
    let (_dir, mut cfg) = no_reading_site();
    cfg.stable_after_secs = 3600;
    let rg = readgate::serve::start(cfg.parse()).await.expect("starts");
    let (old, new, sop) = (
        "1.2.826.0.1.3680043.10.777.1",
        "1.2.826.0.1.3680043.10.777.2",
        "1.2.826.0.1.3680043.10.777.9",
    );
    let mut scu = common::Scu::ct01(cfg.dicom_port).await;
    for study in [old, new] {
        let ds = common::synthetic_instance(common::CT_IMAGE_STORAGE, study, sop, "CT", 10);
        scu.store_ct_ok(sop, &ds).await;
    }
    scu.release().await;
    assert!(
        rg.store.study_row(old).expect("query").is_none(),
        "the emptied study is left"
    );
    let moved = rg
        .store
        .study_row(new)
        .expect("query")
        .expect("the new study");
    assert_eq!(moved.instance_count, 1);
    let timeline = event_kinds(&rg.store, old);
    assert!(timeline.contains(&EventKind::Emptied), "{timeline:?}");
    rg.stop().await;
}

/// Whether the server has closed `s` (EOF or reset) within `wait`.
fn closed_by_server(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).expect("read timeout");
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Descriptors the process holds.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// M5: 300 slow-header HTTP connections from one host (a byte of header every 300 ms)
/// no longer stay open: readgate keeps at most `max_connections_per_host` of them,
/// closes those once `header_timeout_secs` passes although bytes keep trickling in,
/// keeps its descriptors bounded, and answers a browser on another address, a DICOM
/// echo and an MLLP sender throughout (300 such connections stayed open, and with a
/// 400-descriptor limit echo and HL7 failed).
#[test]
fn slow_header_http_connections_are_capped_and_timed_out() {
    let (_dir, mut cfg) = no_reading_site();
    let http = free_port();
    let hl7 = free_port();
    cfg.hl7_port = Some(hl7);
    cfg.extra = format!(
        "[http]\nlisten = \"127.0.0.1:{http}\"\nmax_connections_per_host = 16\nheader_timeout_secs = 2\n"
    );
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(http);
    daemon.wait_for_port(hl7);
    let fds_before = open_fds(daemon.child.id());
    let mut slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = connect_from([127, 0, 0, 4], http);
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .expect("start headers");
            s
        })
        .collect();
    // Those over the per-host cap are closed as readgate accepts them (on a loaded
    // machine that takes a moment: wait for it rather than a fixed time).
    let mut kept: Vec<usize> = (0..slow.len()).collect();
    let started = std::time::Instant::now();
    while kept.len() > 16 && started.elapsed() < Duration::from_secs(10) {
        kept.retain(|&i| !closed_by_server(&mut slow[i], Duration::from_millis(1)));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        kept.len() <= 16,
        "{} slow connections kept open",
        kept.len()
    );
    assert!(!kept.is_empty());
    let fds = open_fds(daemon.child.id());
    assert!(fds < fds_before + 40, "descriptors {fds_before} -> {fds}");
    // Everyone else is served during the attack.
    let healthz = {
        let mut s = connect_from([127, 0, 0, 5], http);
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("request");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("response");
        out
    };
    assert!(healthz.starts_with("HTTP/1.1 200"), "{healthz}");
    let (ok, out) = echo("CT01", cfg.dicom_port);
    assert!(ok, "echo refused: {out}");
    let msg = "MSH|^~\\&|RIS|HOSP|READGATE|RAD|20240601||ADT^A08|M5-1|P|2.5.1\rPID|||P1\r";
    assert_eq!(exchange(hl7, msg.as_bytes()).expect("an ACK").code(), "AA");
    // The kept ones trickle a header byte every 300 ms; the header timeout closes them.
    let started = std::time::Instant::now();
    let mut open = kept.clone();
    while !open.is_empty() && started.elapsed() < Duration::from_secs(8) {
        open.retain(|&i| {
            let s = &mut slow[i];
            if s.write_all(b"X").is_err() {
                return false;
            }
            !closed_by_server(s, Duration::from_millis(20))
        });
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        open.is_empty(),
        "{} slow-header connections still open after {:?}",
        open.len(),
        started.elapsed()
    );

    daemon.assert_running();
}

/// M5: `http.max_connections` caps connections from all addresses together; a closed
/// one frees its place.
#[test]
fn http_connections_are_capped_in_total() {
    let (_dir, mut cfg) = no_reading_site();
    let http = free_port();
    cfg.extra = format!("[http]\nlisten = \"127.0.0.1:{http}\"\nmax_connections = 4\n");
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(http);
    // wait_for_port's own probe holds a place until readgate sees it closed.
    std::thread::sleep(Duration::from_millis(300));
    let held: Vec<TcpStream> = (0..4u8)
        .map(|i| connect_from([127, 0, 0, 6 + i], http))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut fifth = connect_from([127, 0, 0, 11], http);
    assert!(
        closed_by_server(&mut fifth, Duration::from_secs(2)),
        "a fifth connection was kept: {}",
        daemon.log_text()
    );
    common::wait_until("the refusal logged", Duration::from_secs(10), || {
        daemon.log_text().contains("http.max_connections")
    });
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert!(http_get(http, "/healthz").contains("ok"));
    daemon.assert_running();
}

/// M3, the slots: connections that have not sent a valid A-ASSOCIATE-RQ take no
/// association slot. With 4 slots, 16 silent sockets from four hosts and four
/// associations from an unknown AE title leave a known peer's echo answered.
#[test]
fn only_identified_peers_take_association_slots() {
    let (_dir, mut cfg) = no_reading_site();
    cfg.extra_dicom = "max_associations = 4".into();
    cfg.peers = Some("[[dicom.peers]]\nae_title = \"CT01\"\n".into());
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(cfg.dicom_port);
    std::thread::sleep(Duration::from_millis(200));
    let silent: Vec<_> = (0..16u8)
        .map(|i| connect_from([127, 0, 0, 20 + i % 4], cfg.dicom_port))
        .collect();
    for _ in 0..4 {
        assert!(!echo("STRANGER", cfg.dicom_port).0);
    }
    std::thread::sleep(Duration::from_millis(200));
    let (ok, out) = echo("CT01", cfg.dicom_port);
    assert!(ok, "echo refused: {out}");
    drop(silent);
    daemon.assert_running();
}

/// When every slot is taken by a known peer, the next known peer is told "transient,
/// local limit exceeded" (so it retries later), and is served once a slot is free.
#[tokio::test(flavor = "multi_thread")]
async fn a_busy_gateway_answers_transient_local_limit_exceeded() {
    let (_dir, mut cfg) = no_reading_site();
    cfg.extra_dicom = "max_associations = 1".into();
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(cfg.dicom_port);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let held = common::Scu::ct01(cfg.dicom_port).await;
    let port = cfg.dicom_port;
    let ct01 = move || echo("CT01", port);
    let (ok, text) = tokio::task::spawn_blocking(ct01).await.expect("echo");
    assert!(!ok, "{text}");
    assert!(
        text.contains("Rejected Transient") && text.contains("Local Limit Exceeded"),
        "{text}"
    );
    held.release().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, text) = tokio::task::spawn_blocking(ct01).await.expect("echo");
    assert!(ok, "{text}");
    daemon.assert_running();
}

/// L2: an instance with 300,000 top-level elements is refused when it is received
/// (C000 naming the bound) instead of being acknowledged and then refused by the tag
/// rewrite, queued forever; nothing of it is kept.
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_too_large_to_tag_is_refused_on_receipt() {
    let (_dir, cfg) = no_reading_site();
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(cfg.dicom_port);
    let study = "1.2.392.200036.9116.2.99";
    let sop = format!("{study}.1.1");
    let mut ds = common::synthetic_instance(common::CT_IMAGE_STORAGE, study, &sop, "CT", 64);
    // Empty private elements after the pixel data, in ascending tag order: groups
    // 7FE1, 7FE3, … with elements 1000..FFFF.
    let mut n = 0;
    'groups: for group in (0x7FE1u16..).step_by(2) {
        for element in 0x1000u16..=0xFFFF {
            common::element(&mut ds, group, element, b"LO", b"");
            n += 1;
            if n == 300_000 {
                break 'groups;
            }
        }
    }
    let mut scu = common::Scu::ct01(cfg.dicom_port).await;
    let (status, comment) = scu
        .store(
            common::CT_IMAGE_STORAGE,
            &sop,
            &ds,
            common::Packing::Separate,
        )
        .await
        .expect("an answer");
    scu.release().await;
    common::assert_answer(status, &comment, 0xC000, "top-level elements");
    daemon.assert_running();
    daemon.terminate();
    let kept: i64 = cfg
        .database()
        .query_row("SELECT COUNT(*) FROM instances", [], |r| r.get(0))
        .expect("count");
    assert_eq!(kept, 0);
}
