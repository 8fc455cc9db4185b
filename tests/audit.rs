//! The audit trail end to end: `readgate audit verify` against tampering done with the
//! real `sqlite3` shell, the ATNA export checked message by message against the elements,
//! attributes, order and value sets of the PS3.15 A.5.1 schema that readgate uses, and
//! live syslog forwarding over TCP and TLS to collectors on the loopback interface.

mod common;
use common::pki::TestCa;

use readgate::audit::syslog::{self, Sender, SenderConfig, Target};
use readgate::audit::{atna, kind, AtnaSource, AuditLog, NewEntry};
use serde_json::json;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Gateway {
    _dir: tempfile::TempDir,
    config: PathBuf,
    db: PathBuf,
}

fn gateway() -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("var");
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.path().join("readgate.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"gw-test\"\ndata_dir = \"{}\"\nsending_facility = \"HOSP-A\"\n\
             [dicom]\nae_title = \"READGATE\"\nlisten = \"127.0.0.1:0\"\nallow_any_calling_ae = true\n",
            data.display()
        ),
    )
    .unwrap();
    let db = data.join("readgate.db");
    Gateway {
        _dir: dir,
        config,
        db,
    }
}

/// A small but varied trail: every kind readgate records, Japanese text, an address.
fn sample_entries() -> Vec<NewEntry> {
    let study = "1.2.392.200036.9116.2.6.1.48.1215";
    let mut v = vec![
        NewEntry::new(kind::APPLICATION_START, "system").detail(json!({"version": "0.1.0"})),
        NewEntry::new(kind::CONFIG_LOADED, "system").detail(json!({"path": "readgate.toml"})),
        NewEntry::new(kind::OPERATOR_LOGIN, "yamada.hanako")
            .detail(json!({"client_ip": "10.1.2.3"})),
    ];
    for i in 0..5 {
        v.push(
            NewEntry::new(kind::INSTANCE_RECEIVED, "CT01")
                .study(study)
                .accession("A0001")
                .detail(
                    json!({"sop_uid": format!("{study}.{i}"), "peer_address": "127.0.0.1:40000"}),
                ),
        );
    }
    v.extend([
        NewEntry::new(kind::STUDY_HELD, "system")
            .study(study)
            .accession("A0001")
            .detail(json!({"reasons": ["NO_EXAM_PURPOSE"], "clause": "JRS-7.3.1"})),
        NewEntry::new(kind::STUDY_OVERRIDDEN, "sato.ichiro")
            .study(study)
            .accession("A0001")
            .detail(json!({"justification": "救急 <依頼医> & \"確認\" 済み"})),
        NewEntry::new(kind::STUDY_RELEASED, "system").study(study),
        NewEntry::new(kind::STUDY_FORWARDED, "system")
            .study(study)
            .accession("A0001")
            .detail(json!({"destination_ae": "RC1PACS", "host": "rc1.example"})),
        NewEntry::new(kind::READ_EVENT, "token:rc1-viewer")
            .study(study)
            .detail(json!({"reader_id": "R0042", "action": "opened", "client_ip": "192.0.2.10"})),
        NewEntry::new(kind::CONFIRMATION, "RIS^HOSP-A").study(study),
        NewEntry::new(kind::STUDY_REJECTED, "sato.ichiro")
            .study("1.2.3.4")
            .detail(json!({"reason": "wrong patient", "outcome": 4})),
        NewEntry::new(kind::REPORT_GENERATED, "yamada.hanako").detail(json!({"month": "2025-03"})),
        NewEntry::new(kind::QUERY, "yamada.hanako").detail(json!({"query": "studies held"})),
        NewEntry::new(kind::SECURITY_ALERT, "system").detail(json!({"finding": "test"})),
        NewEntry::new(kind::OPERATOR_LOGOUT, "yamada.hanako"),
        NewEntry::new(kind::APPLICATION_STOP, "system"),
    ]);
    v
}

fn readgate(args: &[&str], config: &Path) -> (i32, String, String) {
    let mut cmd = common::readgate_bin();
    cmd.args(args).arg("--config").arg(config);
    common::code_stdout_stderr(&common::run_output(&mut cmd, "readgate"))
}

/// The real sqlite3 shell, as an attacker on the machine would use it.
fn sqlite3(db: &Path, sql: &str) {
    common::run_ok(
        Command::new("sqlite3").arg(db).arg(sql),
        &format!("sqlite3 {sql}"),
    );
}

const DROP_GUARDS: &str = "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;";

fn filled_gateway(n: usize) -> Gateway {
    let g = gateway();
    let log = AuditLog::open(&g.db).unwrap();
    let base = sample_entries();
    let es: Vec<NewEntry> = (0..n).map(|i| base[i % base.len()].clone()).collect();
    log.append_batch(&es).unwrap();
    g
}

#[test]
fn verify_cli_names_tampering_done_with_sqlite3() {
    let g = filled_gateway(40);
    let (code, out, err) = readgate(&["audit", "verify"], &g.config);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("checked 40 entries") && out.contains("chain intact"),
        "{out}"
    );
    let (code, out, _) = readgate(&["audit", "verify", "--format", "json"], &g.config);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["entries"], json!(40));
    assert!(v["finding"].is_null());
    let anchor = format!("40:{}", v["head_hash"].as_str().unwrap());

    // Changed: one row's detail edited.
    sqlite3(
        &g.db,
        &format!("{DROP_GUARDS} UPDATE audit_log SET detail = '{{}}' WHERE seq = 17;"),
    );
    let (code, out, _) = readgate(&["audit", "verify"], &g.config);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("TAMPERED: entry 17 was changed"), "{out}");
    assert!(
        out.contains("trigger audit_log_no_update is missing"),
        "{out}"
    );
    let (code, out, _) = readgate(&["audit", "verify", "--format", "json"], &g.config);
    assert_eq!(code, 3);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["finding"]["seq"], json!(17));
    assert_eq!(v["finding"]["tamper"], json!("changed"));

    // Deleted: a row in the middle.
    let g = filled_gateway(40);
    sqlite3(
        &g.db,
        &format!("{DROP_GUARDS} DELETE FROM audit_log WHERE seq = 25;"),
    );
    let (code, out, _) = readgate(&["audit", "verify"], &g.config);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("TAMPERED: entry 25 was deleted"), "{out}");

    // Deleted: the newest rows, with the head record adjusted to match; the anchor noted
    // at the last check still catches it.
    let g2 = filled_gateway(40);
    sqlite3(
        &g2.db,
        &format!(
            "{DROP_GUARDS} DELETE FROM audit_log WHERE seq > 38; \
             UPDATE audit_head SET seq = 38, hash = (SELECT hash FROM audit_log WHERE seq = 38);"
        ),
    );
    let (code, out, _) = readgate(&["audit", "verify"], &g2.config);
    assert_eq!(code, 0, "undetectable without an anchor: {out}");
    let (code, out, _) = readgate(&["audit", "verify", "--anchor", &anchor], &g2.config);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("entry 40 (the anchor) was deleted"), "{out}");

    // Inserted: room made in the middle, an edited copy of a row put there.
    let g = filled_gateway(40);
    sqlite3(
        &g.db,
        &format!(
            "{DROP_GUARDS} UPDATE audit_log SET seq = -(seq + 1) WHERE seq >= 30; \
             UPDATE audit_log SET seq = -seq WHERE seq < 0; \
             INSERT INTO audit_log SELECT 30, at_ms, at, boot_id, mono_ns, 'dr.nobody', kind, \
             study_uid, accession, detail, hash, prev_hash FROM audit_log WHERE seq = 29; \
             UPDATE audit_head SET seq = 41;"
        ),
    );
    let (code, out, _) = readgate(&["audit", "verify"], &g.config);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("TAMPERED: entry 30 was inserted"), "{out}");

    // Inserted: a row appended after readgate's newest.
    let g = filled_gateway(40);
    sqlite3(
        &g.db,
        "INSERT INTO audit_log SELECT 41, at_ms, at, boot_id, mono_ns, actor, kind, \
         study_uid, accession, detail, hash, hash FROM audit_log WHERE seq = 40;",
    );
    let (code, out, _) = readgate(&["audit", "verify"], &g.config);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("TAMPERED: entry 41 was inserted"), "{out}");

    // Errors are not verdicts: no trail → exit 1.
    let empty = gateway();
    readgate::store::Store::open(&empty.db).unwrap();
    let (code, _, err) = readgate(&["audit", "verify"], &empty.config);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no audit trail"), "{err}");
}

#[test]
fn search_and_jsonl_export_cli() {
    let g = filled_gateway(34);
    let (code, out, err) = readgate(
        &[
            "audit",
            "search",
            "--kind",
            "study_overridden",
            "--format",
            "json",
        ],
        &g.config,
    );
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["actor"], json!("sato.ichiro"));
    assert_eq!(
        rows[0]["detail"]["justification"],
        json!("救急 <依頼医> & \"確認\" 済み")
    );
    let (code, out, _) = readgate(
        &[
            "audit", "search", "--study", "A0001", "--actor", "CT01", "--limit", "3",
        ],
        &g.config,
    );
    assert_eq!(code, 0);
    assert!(out.contains("3 entries"), "{out}");
    let (code, _, err) = readgate(&["audit", "search", "--from", "yesterday"], &g.config);
    assert_ne!(code, 0);
    assert!(err.contains("--from"), "{err}");

    let file = g.db.with_file_name("trail.jsonl");
    let (code, _, err) = readgate(
        &[
            "audit",
            "export",
            "--format",
            "jsonl",
            "--out",
            file.to_str().unwrap(),
        ],
        &g.config,
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("exported 34 entries"), "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 34);
    // A time window in the future selects nothing.
    let (code, out, _) = readgate(
        &[
            "audit",
            "export",
            "--format",
            "jsonl",
            "--from",
            "2999-01-01T00:00:00Z",
        ],
        &g.config,
    );
    assert_eq!((code, out.as_str()), (0, ""));

    // The export is verifiable without readgate: Python's hashlib recomputes the chain from
    // the documented encoding (docs/audit.md).
    let script = r#"
import hashlib, json, struct, sys
def lp(s): b = s.encode(); return struct.pack('>I', len(b)) + b
def opt(s): return b'\x00' if s is None else b'\x01' + lp(s)
prev = bytes(32); n = 0
for line in open(sys.argv[1], encoding='utf-8'):
    e = json.loads(line)
    detail = json.dumps(e['detail'], ensure_ascii=False, separators=(',', ':'))
    c = (b'\x01' + struct.pack('>qq', e['seq'], e['at_ms']) + lp(e['at']) + lp(e['boot_id'])
         + struct.pack('>q', e['mono_ns']) + lp(e['actor']) + lp(e['kind'])
         + opt(e['study_uid']) + opt(e['accession']) + lp(detail))
    # Explicit checks, not assert: they must hold under PYTHONOPTIMIZE too.
    if e['prev_hash'] != prev.hex(): sys.exit('prev_hash differs at %d' % e['seq'])
    prev = hashlib.sha256(prev + c).digest()
    if e['hash'] != prev.hex(): sys.exit('hash differs at %d' % e['seq'])
    n += 1
print(n, 'entries verified')
"#;
    let mut python = Command::new("python3");
    python.arg("-c").arg(script).arg(&file);
    let out = common::run_ok(&mut python, "python3 (the chain recomputed)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "34 entries verified"
    );
}

/// Checks one RFC 5424 message and its PS3.15 audit message structurally: the elements,
/// attributes, order and value sets of the A.5.1 schema that readgate's messages use.
fn check_message(msg: &[u8], expect_seq: i64) -> (String, roxmltree::Document<'_>) {
    let text = std::str::from_utf8(msg).expect("UTF-8");
    let (header, xml) = text.split_once("\u{feff}").expect("BOM before the XML");
    let fields: Vec<&str> = header.splitn(7, ' ').collect();
    assert!(
        fields[0].starts_with('<') && fields[0].ends_with(">1"),
        "{header}"
    );
    let pri: u32 = fields[0][1..fields[0].len() - 2].parse().unwrap();
    assert_eq!(pri / 8, 10, "facility 10 (security/authorization)");
    assert!(readgate::time::parse_rfc3339_ms(fields[1]).is_ok());
    assert_eq!(fields[3], "readgate");
    assert_eq!(fields[5], "IHE+RFC-3881");
    assert!(
        fields[6].starts_with(&format!("[meta sequenceId=\"{expect_seq}\"]")),
        "{header}"
    );
    let doc = roxmltree::Document::parse(xml).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "AuditMessage");
    let kids: Vec<_> = root.children().filter(|n| n.is_element()).collect();
    let names: Vec<&str> = kids.iter().map(|n| n.tag_name().name()).collect();
    assert_eq!(names[0], "EventIdentification", "{names:?}");
    let aps = names
        .iter()
        .take_while(|n| **n != "AuditSourceIdentification")
        .count()
        - 1;
    assert!(aps >= 1, "at least one ActiveParticipant: {names:?}");
    assert!(
        names[1..=aps].iter().all(|n| *n == "ActiveParticipant"),
        "{names:?}"
    );
    assert_eq!(names[aps + 1], "AuditSourceIdentification", "{names:?}");
    assert!(
        names[aps + 2..]
            .iter()
            .all(|n| *n == "ParticipantObjectIdentification"),
        "{names:?}"
    );
    let coded = |n: roxmltree::Node| {
        for a in ["csd-code", "codeSystemName", "originalText"] {
            assert!(
                n.attribute(a).is_some_and(|v| !v.is_empty()),
                "{} lacks {a}",
                n.tag_name().name()
            );
        }
    };
    let ev = kids[0];
    assert!(matches!(
        ev.attribute("EventActionCode"),
        Some("C" | "R" | "U" | "D" | "E")
    ));
    assert!(matches!(
        ev.attribute("EventOutcomeIndicator"),
        Some("0" | "4" | "8" | "12")
    ));
    assert!(readgate::time::parse_rfc3339_ms(ev.attribute("EventDateTime").unwrap()).is_ok());
    let ev_kids: Vec<_> = ev.children().filter(|n| n.is_element()).collect();
    assert_eq!(ev_kids[0].tag_name().name(), "EventID");
    for k in &ev_kids {
        match k.tag_name().name() {
            "EventID" | "EventTypeCode" => coded(*k),
            "EventOutcomeDescription" => {}
            other => panic!("unexpected {other} in EventIdentification"),
        }
    }
    for ap in &kids[1..=aps] {
        assert!(ap.attribute("UserID").is_some_and(|v| !v.is_empty()));
        assert!(matches!(
            ap.attribute("UserIsRequestor"),
            Some("true" | "false")
        ));
        if let Some(t) = ap.attribute("NetworkAccessPointTypeCode") {
            assert!(matches!(t, "1" | "2" | "3" | "4" | "5"));
            assert!(ap.attribute("NetworkAccessPointID").is_some());
        }
        for r in ap.children().filter(|n| n.is_element()) {
            assert_eq!(r.tag_name().name(), "RoleIDCode");
            coded(r);
        }
    }
    assert!(kids[aps + 1].attribute("AuditSourceID") == Some("gw-test"));
    for po in &kids[aps + 2..] {
        assert!(po
            .attribute("ParticipantObjectID")
            .is_some_and(|v| !v.is_empty()));
        if let Some(t) = po.attribute("ParticipantObjectTypeCode") {
            assert!(matches!(t, "1" | "2" | "3" | "4"));
        }
        let el: Vec<_> = po.children().filter(|n| n.is_element()).collect();
        assert_eq!(el[0].tag_name().name(), "ParticipantObjectIDTypeCode");
        coded(el[0]);
        assert!(matches!(
            el[1].tag_name().name(),
            "ParticipantObjectName" | "ParticipantObjectQuery"
        ));
        let mut seen_description = false;
        for d in &el[2..] {
            match d.tag_name().name() {
                "ParticipantObjectDetail" => {
                    assert!(!seen_description, "details come before the description");
                    assert!(d.attribute("type").is_some());
                    let v = d.attribute("value").unwrap();
                    assert!(
                        v.len() % 4 == 0
                            && v.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
                    );
                }
                "ParticipantObjectDescription" => seen_description = true,
                other => panic!("unexpected {other} in ParticipantObjectIdentification"),
            }
        }
    }
    let event_id = ev_kids[0].attribute("csd-code").unwrap().to_string();
    (event_id, doc)
}

#[test]
fn atna_export_is_well_formed_ps3_15() {
    let g = filled_gateway(sample_entries().len());
    let file = g.db.with_file_name("trail.atna");
    let (code, _, err) = readgate(
        &[
            "audit",
            "export",
            "--format",
            "atna",
            "--out",
            file.to_str().unwrap(),
        ],
        &g.config,
    );
    assert_eq!(code, 0, "{err}");
    let data = std::fs::read(&file).unwrap();
    let frames = atna::split_frames(&data).expect("octet-counted frames");
    let entries = sample_entries();
    assert_eq!(frames.len(), entries.len());
    for (i, (frame, e)) in frames.iter().zip(&entries).enumerate() {
        let (event_id, doc) = check_message(frame, i as i64 + 1);
        let expected = match e.kind.as_str() {
            "instance_received" | "study_forwarded" => "110104",
            "read_event" | "study_held" | "study_released" | "study_overridden"
            | "confirmation" => "110103",
            "study_rejected" => "110105",
            "report_generated" => "110106",
            "query" => "110112",
            "security_alert" => "110113",
            "operator_login" | "operator_logout" => "110114",
            _ => "110100",
        };
        assert_eq!(event_id, expected, "{}", e.kind);
        let xml = doc.input_text();
        assert!(
            xml.contains(&format!(
                "csd-code=\"{}\" codeSystemName=\"99READGATE\"",
                e.kind
            )),
            "the readgate kind is kept: {xml}"
        );
        if let Some(uid) = &e.study_uid {
            let study = doc
                .descendants()
                .find(|n| n.attribute("ParticipantObjectID") == Some(uid.as_str()))
                .expect("study participant object");
            let id_type = study.first_element_child().unwrap();
            assert_eq!(id_type.attribute("csd-code"), Some("110180"));
        }
    }
    // Escaping survives: the overridden study's justification is inside the base64 detail,
    // and the XML parsed above, so nothing broke the markup.
    let (_, doc) = check_message(frames[9], 10);
    assert!(doc.input_text().contains("99READGATE"));
}

/// A syslog collector on 127.0.0.1: accepts connections one after another and collects
/// octet-counted frames.
struct Collector {
    port: u16,
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
}

fn split_stream(buf: &mut Vec<u8>, frames: &Mutex<Vec<Vec<u8>>>) {
    loop {
        let Some(sp) = buf.iter().position(|&b| b == b' ') else {
            return;
        };
        let Some(len) = std::str::from_utf8(&buf[..sp])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            panic!(
                "bad frame header: {:?}",
                String::from_utf8_lossy(&buf[..sp.min(20)])
            );
        };
        if buf.len() < sp + 1 + len {
            return;
        }
        frames
            .lock()
            .unwrap()
            .push(buf[sp + 1..sp + 1 + len].to_vec());
        buf.drain(..sp + 1 + len);
    }
}

impl Collector {
    fn start_on(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> Collector {
        let port = listener.local_addr().unwrap().port();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let f = frames.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let f = f.clone();
                let tls = tls.clone();
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 16384];
                    match tls {
                        None => loop {
                            match stream.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    buf.extend_from_slice(&chunk[..n]);
                                    split_stream(&mut buf, &f);
                                }
                            }
                        },
                        Some(cfg) => {
                            let conn = rustls::ServerConnection::new(cfg).unwrap();
                            let mut s = rustls::StreamOwned::new(conn, stream);
                            loop {
                                match s.read(&mut chunk) {
                                    Ok(0) => {
                                        // Answer the sender's close_notify, as TLS asks.
                                        s.conn.send_close_notify();
                                        let _ = s.conn.complete_io(&mut s.sock);
                                        return;
                                    }
                                    Err(_) => return,
                                    Ok(n) => {
                                        buf.extend_from_slice(&chunk[..n]);
                                        split_stream(&mut buf, &f);
                                    }
                                }
                            }
                        }
                    }
                });
            }
        });
        Collector { port, frames }
    }

    fn seqs(&self) -> Vec<i64> {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .map(|m| {
                let t = String::from_utf8_lossy(m);
                let i = t.find("sequenceId=\"").expect("meta sequenceId") + 12;
                t[i..].split('"').next().unwrap().parse().unwrap()
            })
            .collect()
    }

    fn wait_for(&self, n: usize) -> Vec<i64> {
        let start = Instant::now();
        loop {
            let s = self.seqs();
            if s.len() >= n {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "collector got {} of {n} messages",
                s.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A sender to `target` (`tcp://…` or `tls://…`) that retries after at most 1 s and
/// looks at the trail every 50 ms.
fn sender_config(target: &str, tls: Option<Arc<rustls::ClientConfig>>) -> SenderConfig {
    SenderConfig {
        target: Target::parse(target).unwrap(),
        tls,
        source: source(),
        retry_max: Duration::from_secs(1),
        poll: Duration::from_millis(50),
        only_while: None,
    }
}

fn source() -> AtnaSource {
    AtnaSource {
        gateway_id: "gw-test".into(),
        site_id: Some("HOSP-A".into()),
        ae_title: Some("READGATE".into()),
        hostname: "localhost".into(),
        app_name: "readgate".into(),
    }
}

#[test]
fn syslog_tcp_ships_everything_once_across_restarts_and_outages() {
    let g = gateway();
    let log = AuditLog::open(&g.db).unwrap();
    // The collector is down at first: reserve a port, close it, start the sender.
    let port = common::free_port();
    let cfg = sender_config(&format!("tcp://127.0.0.1:{port}"), None);
    let sender = Sender::spawn(
        &readgate::config::Database::Sqlite(g.db.clone()),
        cfg.clone(),
    )
    .unwrap();
    // Appends never wait for the network.
    let start = Instant::now();
    for e in sample_entries() {
        log.append(&e).unwrap();
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    let collector = Collector::start_on(TcpListener::bind(("127.0.0.1", port)).unwrap(), None);
    let n = sample_entries().len();
    let got = collector.wait_for(n);
    assert_eq!(got, (1..=n as i64).collect::<Vec<_>>());
    for (i, m) in collector.frames.lock().unwrap().iter().enumerate() {
        check_message(m, i as i64 + 1);
    }
    sender.stop();
    assert_eq!(log.cursor(&cfg.target.to_string()).unwrap(), n as i64);

    // Entries appended while no sender runs are sent after a restart, and only those.
    log.append_batch(&sample_entries()).unwrap();
    let sender = Sender::spawn(
        &readgate::config::Database::Sqlite(g.db.clone()),
        cfg.clone(),
    )
    .unwrap();
    let got = collector.wait_for(2 * n);
    assert_eq!(got, (1..=2 * n as i64).collect::<Vec<_>>());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(collector.seqs().len(), 2 * n, "nothing sent twice");
    sender.stop();
}

/// L7: a collector that reads the first message and closes gets entries that are not
/// marked delivered: the cursor stays, and the next collector receives every entry (it
/// used to see 1 of 29; the other 28 were marked sent).
#[test]
fn syslog_cursor_waits_for_the_collectors_confirmation() {
    let g = gateway();
    let log = AuditLog::open(&g.db).unwrap();
    let entries: Vec<_> = (0..5).flat_map(|_| sample_entries()).collect();
    let n = entries.len();
    log.append_batch(&entries).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = sender_config(&format!("tcp://127.0.0.1:{port}"), None);
    let sender = Sender::spawn(
        &readgate::config::Database::Sqlite(g.db.clone()),
        cfg.clone(),
    )
    .unwrap();
    // The failing collector: reads up to the first frame's end, then closes.
    let (mut stream, _) = listener.accept().unwrap();
    let (mut buf, mut byte) = (Vec::new(), [0u8; 1]);
    let frames = Mutex::new(Vec::new());
    while frames.lock().unwrap().is_empty() {
        stream.read_exact(&mut byte).unwrap();
        buf.push(byte[0]);
        split_stream(&mut buf, &frames);
    }
    drop(stream);
    drop(listener);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        log.cursor(&cfg.target.to_string()).unwrap(),
        0,
        "entries marked delivered that no collector read"
    );
    let collector = Collector::start_on(TcpListener::bind(("127.0.0.1", port)).unwrap(), None);
    let got = collector.wait_for(n);
    assert_eq!(got, (1..=n as i64).collect::<Vec<_>>());
    common::wait_until("the cursor", Duration::from_secs(10), || {
        log.cursor(&cfg.target.to_string()).unwrap() == n as i64
    });
    sender.stop();
}

#[test]
fn syslog_tls_with_a_private_ca() {
    let _ = syslog::Scheme::Tls;
    let dir = tempfile::tempdir().unwrap();
    // A CA and a server certificate for localhost / 127.0.0.1, made for this test.
    let ca = TestCa::new("readgate test CA");
    let ca_path = ca.write(dir.path(), "ca.pem");
    let (cert_path, key_path) = ca
        .issue(&["localhost", "127.0.0.1"])
        .write(dir.path(), "server");
    let server_cfg = readgate::tls::server_config(&cert_path, &key_path, &[]).unwrap();
    let collector =
        Collector::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), Some(server_cfg));

    let g = gateway();
    let log = AuditLog::open(&g.db).unwrap();
    log.append_batch(&sample_entries()).unwrap();
    let cfg = sender_config(
        &format!("tls://localhost:{}", collector.port),
        Some(readgate::tls::client_config(&ca_path, None).unwrap()),
    );
    let sender = Sender::spawn(&readgate::config::Database::Sqlite(g.db.clone()), cfg).unwrap();
    let n = sample_entries().len();
    assert_eq!(collector.wait_for(n), (1..=n as i64).collect::<Vec<_>>());
    sender.stop();

    // A collector whose certificate the configured CA did not sign gets nothing.
    let other_ca = TestCa::new("another CA").write(dir.path(), "other-ca.pem");
    let g2 = gateway();
    AuditLog::open(&g2.db)
        .unwrap()
        .append(&NewEntry::new(kind::CONFIG_LOADED, "system"))
        .unwrap();
    let cfg = sender_config(
        &format!("tls://localhost:{}", collector.port),
        Some(readgate::tls::client_config(&other_ca, None).unwrap()),
    );
    let sender = Sender::spawn(
        &readgate::config::Database::Sqlite(g2.db.clone()),
        cfg.clone(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    sender.stop();
    assert_eq!(
        collector.seqs().len(),
        n,
        "nothing went to an unverified collector"
    );
    assert_eq!(
        AuditLog::open(&g2.db)
            .unwrap()
            .cursor(&cfg.target.to_string())
            .unwrap(),
        0
    );
}

#[test]
fn serve_forwards_the_trail_to_the_configured_collector() {
    let collector = Collector::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), None);
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[gateway]\nid = \"gw-test\"\ndata_dir = \"{}\"\nsending_facility = \"HOSP-A\"\n\
         [dicom]\nae_title = \"READGATE\"\nlisten = \"127.0.0.1:0\"\nallow_any_calling_ae = true\n\
         [audit]\nsyslog = \"tcp://127.0.0.1:{}\"\napp_name = \"readgate\"\n",
        dir.path().join("var").display(),
        collector.port
    );
    let config = readgate::config::Config::parse(&text, Path::new("test.toml")).unwrap();
    let db = config.database_path();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let running = rt.block_on(readgate::serve::start(config)).unwrap();
    let log = AuditLog::open(&db).unwrap();
    log.append_batch(&sample_entries()).unwrap();
    // serve itself recorded its configuration and start before these
    let n = log.verify().unwrap().last_seq.unwrap() as usize;
    assert!(n > sample_entries().len());
    assert_eq!(collector.wait_for(n), (1..=n as i64).collect::<Vec<_>>());
    // What is recorded while stopping (serve's own application_stop) still goes out.
    rt.block_on(running.stop());
    let all = log.verify().unwrap().last_seq.unwrap() as usize;
    assert!(all > n, "stopping is recorded");
    assert_eq!(collector.wait_for(all).len(), all);
}

/// A1, A2: reports over HL7 are reads in the trail, by their interpreter; a final report
/// signed by someone other than the preliminary's author is a confirmation (neither was
/// ever recorded).
#[tokio::test(flavor = "multi_thread")]
async fn hl7_reports_leave_reads_and_confirmations_in_the_trail() {
    let (_dir, mut cfg) = common::no_reading_site();
    cfg.hl7_port = Some(common::free_port());
    cfg.hl7_default_charset = "utf8".into();
    let rg = readgate::serve::start(cfg.parse()).await.expect("starts");
    let hl7 = rg.hl7_addr.expect("HL7 listener");
    for sample in ["oru_r01_prelim.hl7", "oru_r01_final.hl7"] {
        let ack = common::hl7::send_hl7(hl7, common::hl7::sample(sample)).await;
        assert!(ack.contains("MSA|AA"), "{sample}: {ack}");
    }
    let search = |kind: &str| {
        rg.audit
            .search(&readgate::audit::Query {
                kind: Some(kind.into()),
                ..Default::default()
            })
            .unwrap()
    };
    let reads = search("read_event");
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert!(
        reads.iter().all(|e| e.actor.starts_with("hl7:")),
        "{reads:?}"
    );
    assert!(
        reads.iter().any(|e| e.actor.ends_with("/2001")),
        "{reads:?}"
    );
    assert!(
        reads.iter().any(|e| e.actor.ends_with("/1001")),
        "{reads:?}"
    );
    assert!(reads
        .iter()
        .all(|e| e.accession.as_deref() == Some("ACC-0001")));
    let confirmations = search("confirmation");
    assert_eq!(confirmations.len(), 1, "{confirmations:?}");
    assert_eq!(confirmations[0].actor, "1001");
    assert!(confirmations[0].detail.contains("\"author\":\"2001\""));
    rg.stop().await;
}
