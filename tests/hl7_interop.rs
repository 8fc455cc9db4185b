//! HL7 interop: the readgate binary's MLLP listener against a real sender, the Python
//! `hl7` package's `mllp_send`, with every sample in tests/hl7/; then `readgate orders`
//! shows what was kept, with the message each fact came from.

mod common;

use std::path::Path;
use std::time::Duration;

use common::hl7::{mllp_send, require_python_hl7, sample, Ack, AckEncoding, SAMPLES};
use common::{free_port, readgate_bin, run_ok, wait_until, Daemon, TestConfig};
use serde_json::Value;

/// A readgate with an [hl7] listener, its config file and the HL7 port.
fn start(dir: &Path) -> (Daemon, std::path::PathBuf, u16) {
    require_python_hl7();
    let mut cfg = TestConfig::new(dir, free_port());
    let hl7_port = free_port();
    cfg.hl7_port = Some(hl7_port);
    let path = cfg.write();
    let mut daemon = Daemon::start(&path, cfg.dicom_port);
    daemon.wait_for_port(hl7_port);
    (daemon, path, hl7_port)
}

/// `readgate orders KEY --config PATH --format FORMAT`, stdout (panics on failure).
fn orders(config: &Path, key: &str, format: &str) -> String {
    let mut cmd = readgate_bin();
    cmd.args(["orders", key, "--config"])
        .arg(config)
        .args(["--format", format]);
    let out = run_ok(
        &mut cmd,
        &format!("readgate orders {key} --format {format}"),
    );
    String::from_utf8(out.stdout).expect("readgate orders prints UTF-8")
}

fn orders_json(config: &Path, key: &str) -> Value {
    let text = orders(config, key, "json");
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("readgate orders {key} --format json: {e}:\n{text}"));
    for k in ["orders", "labs", "reports"] {
        assert!(v[k].is_array(), "`{k}` is not an array in:\n{text}");
    }
    v
}

/// Every scalar in a JSON value, as text (numbers included).
fn leaves(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Bool(b) => out.push(b.to_string()),
            Value::Null => {}
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
        }
    }
    walk(v, &mut out);
    out
}

fn mentions(v: &Value, needle: &str) -> bool {
    leaves(v).iter().any(|s| s.contains(needle))
}

/// Elements of `v[key]` whose `message.control_id` is `control_id`.
fn from_message<'a>(v: &'a Value, key: &str, control_id: &str) -> Vec<&'a Value> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["message"]["control_id"].as_str() == Some(control_id))
                .collect()
        })
        .unwrap_or_default()
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// The ERR segment names `segment`-`field` (2.3.1 ERR-1 or 2.5 ERR-2: `SEG^seq^field...`).
fn err_names(ack: &Ack, segment: &str, field: &str) -> bool {
    let Some(err) = ack.segment("ERR") else {
        return false;
    };
    err.iter().skip(1).any(|f| {
        let c: Vec<&str> = f.split(ack.component_separator).collect();
        c.first() == Some(&segment) && c.get(2) == Some(&field)
    })
}

struct Expect {
    file: &'static str,
    code: &'static str,
    /// MSA-2: the sample's MSH-10 (empty for the message without an MSH).
    control_id: &'static str,
}

const EXPECTED: [Expect; 8] = [
    Expect {
        file: "omi_o23_iso2022jp.hl7",
        code: "AA",
        control_id: "MSG00001",
    },
    Expect {
        file: "orm_o01_ihe.hl7",
        code: "AA",
        control_id: "ORM0001",
    },
    Expect {
        file: "oru_r01_prelim.hl7",
        code: "AA",
        control_id: "ORU0001",
    },
    Expect {
        file: "oru_r01_final.hl7",
        code: "AA",
        control_id: "ORU0002",
    },
    Expect {
        file: "adt_a40_merge.hl7",
        code: "AA",
        control_id: "ADT0001",
    },
    Expect {
        file: "malformed_no_msh.hl7",
        code: "AR",
        control_id: "",
    },
    Expect {
        file: "malformed_truncated.hl7",
        code: "AR",
        control_id: "ORM0001",
    },
    Expect {
        file: "orm_missing_accession.hl7",
        code: "AE",
        control_id: "ORM0002",
    },
];

const JP_ACCESSION: &str = "ACC-0001";
const JP_STUDY_UID: &str = "1.2.392.200036.9116.2.5.1.37.2417525.20240601.1";

#[test]
fn every_sample_over_mllp_send_then_readgate_orders() {
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, config, port) = start(dir.path());
    assert_eq!(SAMPLES.map(|s| s), EXPECTED.map(|e| e.file));

    // All samples over one connection, as one sender would send them.
    let payloads: Vec<Vec<u8>> = SAMPLES.iter().map(|s| sample(s)).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let acks = mllp_send(port, &refs, dir.path());
    daemon.assert_running();

    for (raw, e) in acks.iter().zip(&EXPECTED) {
        let ack = Ack::parse(raw).unwrap_or_else(|err| panic!("{}: {err}", e.file));
        let show = ack.show();
        assert_eq!(ack.code(), e.code, "{}: MSA-1 in\n{show}", e.file);
        assert_eq!(ack.msa(2), e.control_id, "{}: MSA-2 in\n{show}", e.file);
        assert!(
            ack.msh(9).starts_with("ACK"),
            "{}: MSH-9 in\n{show}",
            e.file
        );
        if e.code == "AE" {
            assert!(
                err_names(&ack, "OBR", "18") || err_names(&ack, "IPC", "1"),
                "{}: the ERR segment must name OBR-18 or IPC-1:\n{show}",
                e.file
            );
        }
    }

    // The ACK to the ISO-2022-JP order declares ISO-2022-JP and is encoded in it (7-bit:
    // ASCII or ISO 2022 escapes, never UTF-8 or Shift_JIS bytes).
    let jp = Ack::parse(&acks[0]).unwrap();
    assert!(
        jp.msh(18).contains("ISO IR87"),
        "MSH-18 of the ACK to the ISO-2022-JP order: {:?}\n{}",
        jp.msh(18),
        jp.show()
    );
    assert!(
        matches!(jp.encoding, AckEncoding::Ascii | AckEncoding::Iso2022Jp),
        "ACK to the ISO-2022-JP order is {:?}: {:?}",
        jp.encoding,
        jp.raw
    );
    // The UTF-8 reports get ACKs declaring UTF-8.
    for i in [2, 3] {
        let ack = Ack::parse(&acks[i]).unwrap();
        assert_eq!(
            ack.msh(18),
            "UNICODE UTF-8",
            "{}\n{}",
            SAMPLES[i],
            ack.show()
        );
    }

    // What readgate kept for the JAHIS order's accession: the order with its Japanese
    // clinical context, the lab values, and both report versions.
    let v = orders_json(&config, JP_ACCESSION);
    let order = from_message(&v, "orders", "MSG00001");
    assert_eq!(order.len(), 1, "one order from MSG00001:\n{}", pretty(&v));
    let order = order[0];
    for needle in [
        "胸痛、労作時息切れ", // OBR-13 clinical information
        "肺塞栓の除外",       // OBR-31 exam purpose
        "佐藤",               // ORC-12 ordering provider
        "12345678",           // ORC-14 call-back phone
        "CT 胸部 造影",       // OBR-4 procedure
        "肺塞栓症疑い",       // DG1 diagnosis
        "ヨード造影剤",       // AL1 allergy
    ] {
        assert!(
            mentions(order, needle),
            "order from MSG00001 lacks {needle:?}:\n{}",
            pretty(order)
        );
    }
    let labs = from_message(&v, "labs", "MSG00001");
    assert!(
        labs.iter().any(|l| mentions(l, "45.2")) && labs.iter().any(|l| mentions(l, "1.18")),
        "labs from MSG00001 lack eGFR 45.2 / creatinine 1.18:\n{}",
        pretty(&v)
    );
    for (control_id, status, words) in [
        ("ORU0001", "P", ["p", "preliminary"]),
        ("ORU0002", "F", ["f", "final"]),
    ] {
        let reports = from_message(&v, "reports", control_id);
        assert_eq!(
            reports.len(),
            1,
            "one report version from {control_id} ({status}):\n{}",
            pretty(&v)
        );
        assert!(
            leaves(reports[0])
                .iter()
                .any(|s| words.contains(&s.to_lowercase().as_str())),
            "report from {control_id} is not marked {status}:\n{}",
            pretty(reports[0])
        );
        assert!(
            mentions(reports[0], "肺塞栓症なし"),
            "report text from {control_id}:\n{}",
            pretty(reports[0])
        );
    }

    // The text format says the same, with the control ids.
    let text = orders(&config, JP_ACCESSION, "text");
    for needle in [
        "胸痛、労作時息切れ",
        "肺塞栓の除外",
        "MSG00001",
        "ORU0001",
        "ORU0002",
    ] {
        assert!(
            text.contains(needle),
            "`readgate orders {JP_ACCESSION}` lacks {needle:?}:\n{text}"
        );
    }
    // Found by study UID too.
    let by_uid = orders_json(&config, JP_STUDY_UID);
    assert_eq!(
        from_message(&by_uid, "orders", "MSG00001").len(),
        1,
        "order by study UID:\n{}",
        pretty(&by_uid)
    );

    // The IHE order: escapes decoded, the order and its lab value kept once.
    let check_ihe_order_once = || {
        let v = orders_json(&config, "ACC-1001");
        let o = from_message(&v, "orders", "ORM0001");
        assert_eq!(
            v["orders"].as_array().map(Vec::len),
            Some(1),
            "ACC-1001 has exactly one order:\n{}",
            pretty(&v)
        );
        assert_eq!(o.len(), 1, "{}", pretty(&v));
        assert!(
            mentions(o[0], "Headache for 3 weeks & nausea"),
            "OBR-13 with \\T\\ decoded:\n{}",
            pretty(o[0])
        );
        assert_eq!(
            from_message(&v, "labs", "ORM0001").len(),
            1,
            "one lab value (creatinine) from ORM0001:\n{}",
            pretty(&v)
        );
    };
    check_ihe_order_once();

    // A sender that did not see the ACK sends the same message again (same MSH-10), on
    // a new connection: same ACK code, no second copy.
    for (file, code, control_id) in [
        ("orm_o01_ihe.hl7", "AA", "ORM0001"),
        ("orm_missing_accession.hl7", "AE", "ORM0002"),
        ("oru_r01_final.hl7", "AA", "ORU0002"),
    ] {
        let again = mllp_send(port, &[&sample(file)], dir.path());
        let ack = Ack::parse(&again[0]).unwrap();
        assert_eq!(ack.code(), code, "resent {file}:\n{}", ack.show());
        assert_eq!(ack.msa(2), control_id, "resent {file}:\n{}", ack.show());
    }
    check_ihe_order_once();
    let v = orders_json(&config, JP_ACCESSION);
    assert_eq!(
        from_message(&v, "reports", "ORU0002").len(),
        1,
        "the resent final report is listed once:\n{}",
        pretty(&v)
    );
    assert_eq!(from_message(&v, "reports", "ORU0001").len(), 1);
    daemon.assert_running();
}

/// An ISO-2022-JP order whose sending facility (MSH-4) is in kanji: the ACK names it in
/// MSH-6, so the ACK itself must be ISO-2022-JP encoded (ESC $ B ...), not UTF-8.
/// Unsupported message types are accepted but not processed.
#[test]
fn ack_in_the_senders_charset_and_unsupported_types() {
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, _config, port) = start(dir.path());

    let raw = sample("omi_o23_iso2022jp.hl7");
    let text = encoding_rs::ISO_2022_JP
        .decode_without_bom_handling_and_without_replacement(&raw)
        .expect("the sample is ISO-2022-JP")
        .into_owned();
    let (msh, rest) = text.split_once('\r').unwrap();
    assert!(msh.contains("|HIS|TOKYO_GEN|READGATE|"), "{msh}");
    let msh = msh
        .replace("|HIS|TOKYO_GEN|", "|HIS|東京総合病院|")
        .replace("|MSG00001|", "|MSG00001K|");
    let variant = format!("{msh}\r{rest}");
    let (encoded, _, unmappable) = encoding_rs::ISO_2022_JP.encode(&variant);
    assert!(!unmappable);
    assert!(encoded.windows(3).any(|w| w == b"\x1b$B"));

    let siu =
        b"MSH|^~\\&|SCHED|GENHOSP|READGATE|RAD|20240601120000||SIU^S12^SIU_S12|SIU0001|P|2.5\r\
                SCH|1|1\rPID|||PAT-1001^^^GENHOSP^MR||DOE^JANE\r";
    let acks = mllp_send(port, &[&encoded, siu], dir.path());

    let ack = Ack::parse(&acks[0]).unwrap();
    assert_eq!(ack.code(), "AA", "{}", ack.show());
    assert_eq!(ack.msa(2), "MSG00001K");
    assert_eq!(
        ack.encoding,
        AckEncoding::Iso2022Jp,
        "ACK bytes: {:?}",
        String::from_utf8_lossy(&ack.raw)
    );
    assert!(
        ack.raw.windows(3).any(|w| w == b"\x1b$B"),
        "no ESC $ B in the ACK: {:?}",
        ack.raw
    );
    assert_eq!(ack.msh(6), "東京総合病院", "{}", ack.show());
    assert!(ack.msh(18).contains("ISO IR87"), "{}", ack.show());

    let ack = Ack::parse(&acks[1]).unwrap();
    assert_eq!(ack.code(), "AA", "SIU^S12:\n{}", ack.show());
    assert_eq!(ack.msa(2), "SIU0001");
    assert!(
        ack.msa(3).starts_with("not processed"),
        "MSA-3 of an unsupported type should say \"not processed: ...\":\n{}",
        ack.show()
    );

    // Still serving after all that.
    wait_until("the HL7 port", Duration::from_secs(5), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    daemon.assert_running();
}
