//! Attacks from the hospital network, one test per finding of the hostile-networks
//! issue, each performing the attack against the readgate binary and asserting the
//! bound that stops it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::hl7::Ack;
use common::{free_port, no_reading_site, Daemon};
use readgate::hl7::mllp;

/// Peak resident set (VmHWM) of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

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
    let peak = peak_rss_kib(daemon.child.id());
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
fn stored_hl7(data_dir: &std::path::Path) -> (i64, i64) {
    let db = rusqlite::Connection::open(data_dir.join("var").join("readgate.db")).expect("db");
    db.query_row(
        "SELECT COALESCE(SUM(CASE WHEN ack_code != 'AA' THEN length(raw) END), 0), COUNT(*) \
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
    let (dir, mut cfg) = no_reading_site();
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
    let (refused_bytes, kept) = stored_hl7(dir.path());
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
    let (dir, mut cfg) = no_reading_site();
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
    assert_eq!(stored_hl7(dir.path()).1, 0, "nothing stored");
    daemon.assert_running();
}
