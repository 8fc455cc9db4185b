//! The reading ledger end to end through `readgate serve` (in-process): studies come in
//! over DICOM and are forwarded to DCMTK storescp, reports come back over MLLP (ORU^R01),
//! reading systems post read events over HTTP; `readgate report` (the binary) then says
//! which studies are claimable and why (ATS-3, ATS-3-note1, ATS-3-note2, ATS-4, JRS-8.1).

mod common;

use common::hl7::send_hl7;
use common::http::{post_json, request, WebClient};
use common::*;
use readgate::decide::context::StudyContext;
use readgate::decide::{Decide, Decision, Verdict};
use readgate::model::StudyState;
use readgate::time::{format_ms, Month};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const JST: i64 = 9 * 3600;
const TOKEN: &str = "rg_test_token_for_the_ris_vendor_integration";
const ADMIN_PW: &str = "console password of the ledger scenarios";

/// Routes everything to rc1; holds ACC-HOLD (until released by an operator) and
/// forwards ACC-INC flagged incomplete: stands in for the clinical-context policy.
struct TestGate;

impl Decide for TestGate {
    fn decide(&self, study: &StudyContext) -> Decision {
        match study.accession.as_deref() {
            Some("ACC-HOLD") => rc1_decision("test", Verdict::Hold, Some(PURPOSE_MISSING)),
            Some("ACC-INC") => {
                rc1_decision("test", Verdict::ForwardIncomplete, Some(PURPOSE_MISSING))
            }
            _ => rc1_decision("test", Verdict::Pass, None),
        }
    }
}

/// readgate serving [`ledger_config`] with [`TestGate`], forwarding to a storescp.
struct LedgerSite {
    _dir: tempfile::TempDir,
    _scp: StoreScp,
    cfg: TestConfig,
    config_path: std::path::PathBuf,
    rg: readgate::serve::Running,
    hl7: std::net::SocketAddr,
    http: std::net::SocketAddr,
}

impl LedgerSite {
    async fn start(critical: u32) -> LedgerSite {
        let (_dir, _scp, mut cfg) = reading_site();
        cfg.extra = ledger_config(critical);
        let config_path = cfg.write();
        let rg = readgate::serve::start_with(cfg.parse(), Some(Arc::new(TestGate)))
            .await
            .unwrap();
        let hl7 = rg.hl7_addr.expect("HL7 listener");
        let http = rg.http_addr.expect("HTTP listener");
        LedgerSite {
            _dir,
            _scp,
            cfg,
            config_path,
            rg,
            hl7,
            http,
        }
    }
}

fn ledger_config(critical: u32) -> String {
    format!(
        r#"
[hl7]
listen = "127.0.0.1:0"

[http]
listen = "127.0.0.1:0"
[[http.tokens]]
name = "ris-vendor"
token_sha256 = "{hash}"
[[http.users]]
name = "admin"
role = "admin"
password_hash = "{admin}"

[ledger]
full_time_remote_eligible = false
part_time_warning_percent = 20
part_time_critical_percent = {critical}
min_open_secs = 60
unchanged_similarity = 0.98
burst_count = 5
burst_window_secs = 60

{readers}
[[ledger.places]]
facility = "RC1"
networks = ["10.20.0.0/16"]
workstations = ["RC1-WS01"]
"#,
        hash = readgate::web::sha256_hex(TOKEN),
        admin = readgate::web::auth::hash_password(ADMIN_PW).unwrap(),
        readers = readers_toml(),
    )
}

/// The roster of the scenarios: (ids, name, facility, employment, board certified). 1001
/// is valid from 2020-04-01; the others without bounds.
const READERS: [(&str, &str, &str, &str, bool); 5] = [
    (r#""1001", "suzuki""#, "鈴木 一郎", "RC1", "full_time", true),
    (r#""2001""#, "田中 次郎", "RC1", "trainee", false),
    (r#""3001""#, "佐藤 花子", "RC1", "part_time", true),
    (r#""4001""#, "高橋 三郎", "RC1", "full_time", false),
    (r#""5001""#, "伊藤 四郎", "RC2", "full_time", true),
];

fn readers_toml() -> String {
    READERS
        .iter()
        .map(|(ids, name, facility, employment, board)| {
            let from = if ids.contains("1001") {
                "valid_from = \"2020-04-01\"\n"
            } else {
                ""
            };
            format!(
                "[[ledger.readers]]\nids = [{ids}]\nname = \"{name}\"\nfacility = \"{facility}\"\n\
                 employment = \"{employment}\"\nboard_certified = {board}\n{from}\n"
            )
        })
        .collect()
}

/// ms → HL7 DTM `20260601093000+0900`.
fn dtm(ms: i64) -> String {
    let s = format_ms(ms, JST);
    let (main, off) = s.split_at(s.len() - 6);
    format!(
        "{}{}",
        main.replace(['-', ':', 'T'], ""),
        off.replace(':', "")
    )
}

/// ORU^R01 with OBR-25 `status`, OBR-32 signer, OBR-33 assistant, OBR-22 time.
fn oru(
    control: &str,
    accession: &str,
    status: &str,
    signer: &str,
    assistant: &str,
    at: i64,
    text: &str,
) -> String {
    let mut obr = vec![String::new(); 34];
    obr[0] = "OBR".into();
    obr[1] = "1".into();
    obr[2] = format!("PL-{accession}");
    obr[3] = format!("FL-{accession}");
    obr[4] = "CTCHEST^CT chest^LOCAL".into();
    obr[18] = accession.into();
    obr[22] = dtm(at);
    obr[25] = status.into();
    obr[32] = signer.into();
    obr[33] = assistant.into();
    format!(
        "MSH|^~\\&|REPORTING|READ_CENTER|READGATE|HOSP-T|{now}||ORU^R01^ORU_R01|{control}|P|2.5||||||UNICODE UTF-8\r\
         PID|||P-1^^^HOSP^PI||TEST^PATIENT\r\
         ORC|RE|PL-{accession}|FL-{accession}\r\
         {obr}\r\
         OBX|1|TX|59776-5^所見^LN||{text}||||||{status}\r",
        now = dtm(at),
        obr = obr.join("|"),
    )
}

fn event(
    study: &str,
    reader: &str,
    action: &str,
    at: i64,
    ip: Option<&str>,
    ws: Option<&str>,
) -> String {
    let mut v = serde_json::json!({
        "study_uid": study,
        "reader_id": reader,
        "action": action,
        "at": format_ms(at, JST),
    });
    if let Some(ip) = ip {
        v["client_ip"] = ip.into();
    }
    if let Some(ws) = ws {
        v["workstation"] = ws.into();
    }
    v.to_string()
}

fn report_cli(config: &Path, month: &str, format: &str, lang: &str) -> Vec<u8> {
    let mut cmd = readgate_bin();
    // As under systemd or cron: no $USER (finding A4).
    cmd.env_remove("USER")
        .args(["report", "--config"])
        .arg(config)
        .args(["--month", month, "--format", format, "--lang", lang]);
    run_ok(&mut cmd, "readgate report").stdout
}

fn study_row<'a>(report: &'a serde_json::Value, uid: &str) -> &'a serde_json::Value {
    report["studies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["study_uid"] == uid)
        .unwrap_or_else(|| panic!("no row for {uid}"))
}

fn reasons_of(report: &serde_json::Value, uid: &str) -> Vec<String> {
    study_row(report, uid)["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_month_of_reads_becomes_a_ledger_with_reasons_and_the_part_time_warning() {
    // 2 eligible studies, one first-read by a trainee: 50 % (> 20 % warning, ≤ 60 %).
    let LedgerSite {
        _dir,
        _scp,
        cfg,
        config_path,
        rg,
        hl7,
        http,
    } = LedgerSite::start(60).await;

    // Seven studies over DICOM.
    let base = "1.2.826.0.1.3680043.10.4242";
    let names = ["A", "B", "C", "D", "E", "HOLD", "INC"];
    let uid = |n: &str| format!("{base}.{}", names.iter().position(|x| *x == n).unwrap() + 1);
    let studies: Vec<(String, String)> =
        names.iter().map(|n| (uid(n), format!("ACC-{n}"))).collect();
    send_accessions(cfg.dicom_port, &studies).await;
    let store = rg.store.clone();
    wait_until("studies forwarded or held", Duration::from_secs(30), || {
        studies_in(&store, StudyState::Forwarded, 100) == 6
            && studies_in(&store, StudyState::Held, 100) == 1
    });

    // An operator releases the held study with a written reason.
    let released = store
        .release_override(
            &uid("HOLD"),
            "技師 山本",
            "救急のため臨床情報は電話で伝達済み",
            readgate::time::now_ms(),
        )
        .unwrap();
    assert!(released.is_some());
    wait_until("released study forwarded", Duration::from_secs(30), || {
        studies_in(&store, StudyState::Forwarded, 100) == 7
    });

    let now = readgate::time::now_ms();
    let min = 60_000;
    let t0 = now - 60 * min;
    let post = |body: String| async move {
        post_json(http, "/api/v1/read-events", Some(TOKEN), &body).await
    };
    let ok = |r: common::http::HttpResponse| {
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        r.json()
    };

    // A: a full-time, board-certified reader inside the facility.
    let r = ok(post(event(
        &uid("A"),
        "1001",
        "opened",
        t0,
        Some("10.20.1.5"),
        Some("RC1-WS01"),
    ))
    .await);
    assert_eq!(r["resolution"]["place"]["location"], "inside");
    assert_eq!(r["resolution"]["employment"], "full_time");
    assert_eq!(r["resolution"]["responsible"], true);
    ok(post(event(
        &uid("A"),
        "1001",
        "closed",
        t0 + 6 * min,
        Some("10.20.1.5"),
        None,
    ))
    .await);
    let ack = send_hl7(
        hl7,
        &oru(
            "A-F",
            "ACC-A",
            "F",
            "1001^鈴木^一郎",
            "",
            t0 + 7 * min,
            "異常なし。",
        ),
    )
    .await;
    assert!(ack.contains("MSA|AA|A-F"), "{ack}");

    // B: a part-time reader reading from an outside network.
    let r = ok(post(event(
        &uid("B"),
        "3001",
        "opened",
        t0,
        Some("203.0.113.7"),
        None,
    ))
    .await);
    assert_eq!(r["resolution"]["place"]["location"], "outside");
    let ack = send_hl7(
        hl7,
        &oru(
            "B-F",
            "ACC-B",
            "F",
            "3001",
            "",
            t0 + 10 * min,
            "右肺に結節。",
        ),
    )
    .await;
    assert!(ack.contains("MSA|AA|B-F"), "{ack}");

    // C: a trainee's preliminary, substantively confirmed by a full-time radiologist:
    // the text changed and the confirmer had the images open for ten minutes.
    let prelim = "所見：両肺に明らかな異常影を認めない。印象：異常なし。";
    let corrected = "所見：右下葉S9に4mm大の結節を認める。縦隔リンパ節の腫大なし。印象：右下葉結節、3か月後のCTで経過観察を推奨。";
    ok(post(event(
        &uid("C"),
        "2001",
        "opened",
        t0,
        None,
        Some("RC1-WS01"),
    ))
    .await);
    send_hl7(
        hl7,
        &oru(
            "C-P",
            "ACC-C",
            "P",
            "",
            "2001^田中^次郎",
            t0 + 5 * min,
            prelim,
        ),
    )
    .await;
    ok(post(event(
        &uid("C"),
        "suzuki",
        "opened",
        t0 + 20 * min,
        Some("10.20.3.3"),
        None,
    ))
    .await);
    ok(post(event(
        &uid("C"),
        "suzuki",
        "closed",
        t0 + 30 * min,
        Some("10.20.3.3"),
        None,
    ))
    .await);
    let ack = send_hl7(
        hl7,
        &oru(
            "C-F",
            "ACC-C",
            "F",
            "1001^鈴木^一郎",
            "2001^田中^次郎",
            t0 + 31 * min,
            corrected,
        ),
    )
    .await;
    assert!(ack.contains("MSA|AA|C-F"), "{ack}");

    // D: the same, confirmed unchanged within seconds.
    ok(post(event(
        &uid("D"),
        "2001",
        "opened",
        t0,
        None,
        Some("RC1-WS01"),
    ))
    .await);
    send_hl7(
        hl7,
        &oru("D-P", "ACC-D", "P", "", "2001", t0 + 5 * min, prelim),
    )
    .await;
    ok(post(event(
        &uid("D"),
        "1001",
        "opened",
        t0 + 40 * min,
        Some("10.20.3.3"),
        None,
    ))
    .await);
    ok(post(event(
        &uid("D"),
        "1001",
        "closed",
        t0 + 40 * min + 4_000,
        Some("10.20.3.3"),
        None,
    ))
    .await);
    send_hl7(
        hl7,
        &oru(
            "D-F",
            "ACC-D",
            "F",
            "1001",
            "2001",
            t0 + 40 * min + 8_000,
            prelim,
        ),
    )
    .await;

    // E: signed by a reader nobody put in the roster (recorded, reported, not dropped).
    let r = ok(post(event(
        &uid("E"),
        "9999",
        "opened",
        t0,
        Some("10.20.9.9"),
        None,
    ))
    .await);
    assert_eq!(r["resolution"]["known"], false);
    send_hl7(
        hl7,
        &oru("E-F", "ACC-E", "F", "9999", "", t0 + 3 * min, "異常なし。"),
    )
    .await;

    // HOLD and INC: read by the full-time reader inside, but left without full context.
    for n in ["HOLD", "INC"] {
        ok(post(event(
            &uid(n),
            "1001",
            "opened",
            t0,
            Some("10.20.1.5"),
            None,
        ))
        .await);
        send_hl7(
            hl7,
            &oru(
                &format!("{n}-F"),
                &format!("ACC-{n}"),
                "F",
                "1001",
                "",
                t0 + 9 * min,
                "異常なし。",
            ),
        )
        .await;
    }

    let month = Month::of(now, JST).to_string();
    let json: serde_json::Value =
        serde_json::from_slice(&report_cli(&config_path, &month, "json", "ja")).unwrap();
    assert_eq!(json["schema"], "readgate.ledger.report/1");
    assert_eq!(json["sending_facility"], "HOSP-T");
    assert_eq!(json["totals"]["studies"], 7);

    // A: eligible.
    let a = study_row(&json, &uid("A"));
    assert_eq!(a["eligible"], true, "{a:#}");
    assert_eq!(a["accession"], "ACC-A");
    assert_eq!(a["signer"]["place"], "inside");

    // B: not eligible, with that reason (and the signer's employment).
    let b = reasons_of(&json, &uid("B"));
    assert!(b.contains(&"PART_TIME_READ_OUTSIDE".to_string()), "{b:?}");
    assert!(b.contains(&"SIGNER_NOT_FULL_TIME".to_string()), "{b:?}");
    assert_eq!(study_row(&json, &uid("B"))["eligible"], false);

    // C: eligible; the confirmation evidence shows the change and the image access.
    let c = study_row(&json, &uid("C"));
    assert_eq!(c["eligible"], true, "{c:#}");
    let conf = &c["confirmation"];
    assert_eq!(conf["author"], "2001");
    assert_eq!(conf["confirmer"], "1001");
    assert_eq!(conf["formal"], false, "{conf:#}");
    assert_eq!(conf["text_changed"], true);
    assert!(conf["similarity"].as_f64().unwrap() < 0.9, "{conf:#}");
    assert_eq!(conf["signer_open_secs"].as_f64().unwrap(), 600.0);
    assert_eq!(conf["open_basis"], "read_events");
    assert_eq!(c["first_reader"]["category"], "trainee");
    let chain: Vec<&str> = c["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(chain, vec!["preliminary", "final"]);

    // D: formal, not eligible.
    let d = study_row(&json, &uid("D"));
    let dr = reasons_of(&json, &uid("D"));
    assert_eq!(dr, vec!["FORMAL_CONFIRMATION".to_string()], "{d:#}");
    assert_eq!(d["confirmation"]["formal"], true);
    assert_eq!(d["confirmation"]["signer_open_secs"].as_f64().unwrap(), 4.0);
    let formal: Vec<&str> = json["formal_confirmations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["study_uid"].as_str().unwrap())
        .collect();
    assert_eq!(formal, vec![uid("D").as_str()]);

    // E: unknown reader, reported.
    assert!(reasons_of(&json, &uid("E")).contains(&"UNKNOWN_READER".to_string()));
    let unknown = &json["unknown_readers"][0];
    assert_eq!(unknown["reader_id"], "9999");
    assert_eq!(unknown["sources"], serde_json::json!(["hl7", "rest"]));

    // Left without full context.
    assert_eq!(reasons_of(&json, &uid("HOLD")), vec!["RELEASED_OVERRIDE"]);
    assert_eq!(reasons_of(&json, &uid("INC")), vec!["FORWARDED_INCOMPLETE"]);
    let held = &json["held"][0];
    assert_eq!(held["study_uid"], uid("HOLD").as_str());
    assert_eq!(held["override_by"], "技師 山本");
    assert_eq!(held["reasons"], serde_json::json!(["EXAM_PURPOSE_MISSING"]));
    assert!(held["held_at"].is_string() && held["released_at"].is_string());
    assert_eq!(
        json["forwarded_incomplete"][0]["study_uid"],
        uid("INC").as_str()
    );

    // The share: A and C claimed, C first read by a trainee → 50 % > 20 %: warning.
    let share = &json["part_time_share"];
    assert_eq!(share["claimed"], 2);
    assert_eq!(share["first_read_trainee"], 1);
    assert_eq!(share["share_percent"].as_f64().unwrap(), 50.0);
    assert_eq!(share["level"], "warning");
    assert_eq!(json["totals"]["eligible"], 2);

    // CSV: one row per study.
    let csv = String::from_utf8(report_cli(&config_path, &month, "csv", "ja")).unwrap();
    assert_eq!(csv.lines().count(), 8, "{csv}");
    let d_line = csv.lines().find(|l| l.starts_with(&uid("D"))).unwrap();
    assert!(d_line.contains(",false,FORMAL_CONFIRMATION,"), "{d_line}");

    // HTML: self-contained, Japanese by default, English on request, with the warning.
    let html = String::from_utf8(report_cli(&config_path, &month, "html", "ja")).unwrap();
    assert!(html.contains("<html lang=\"ja\">") && html.contains("警告：基準超過"));
    assert!(html.contains("<svg") && html.contains("FORMAL_CONFIRMATION"));
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("PATIENT"), "no patient names");
    let en = String::from_utf8(report_cli(&config_path, &month, "html", "en")).unwrap();
    assert!(en.contains("WARNING: above threshold"));

    // The console's study page names B's reader in the page's language, as the report
    // does: a part-time reader outside the facility, not the stored words.
    let mut console = WebClient::new(http);
    assert_eq!(console.login("admin", ADMIN_PW).await.status, 303);
    for (lang, category, place) in [("ja", "非常勤", "施設外"), ("en", "Part-time", "Outside")]
    {
        let r = console
            .get(&format!("/studies/{}?lang={lang}", uid("B")))
            .await;
        assert_eq!(r.status, 200, "{lang}");
        let page = String::from_utf8_lossy(&r.body);
        let row = format!("<td>{category}</td><td>{place}</td><td>2</td>");
        assert!(page.contains(&row), "{lang}: no reader row {row} in {page}");
        assert!(
            !page.contains("part_time") && !page.contains("outside<"),
            "{page}"
        );
    }

    // Each generated report is in the audit trail under the OS user that ran it.
    let whoami = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    let actor = format!("cli:{}", String::from_utf8_lossy(&whoami.stdout).trim());
    let generated = rg
        .audit
        .search(&readgate::audit::Query {
            kind: Some("report_generated".into()),
            ..Default::default()
        })
        .unwrap();
    assert!(generated.len() >= 4, "{generated:?}");
    assert!(generated.iter().all(|e| e.actor == actor), "{generated:?}");

    rg.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_read_events_api_refuses_bad_tokens_and_names_bad_fields() {
    let (_dir, mut cfg) = no_reading_site();
    cfg.extra = ledger_config(30);
    cfg.stable_after_secs = 3600;
    let rg = readgate::serve::start(cfg.parse()).await.unwrap();
    let http = rg.http_addr.expect("HTTP listener");
    let study = "1.2.826.0.1.3680043.10.4243.1";
    let mut scu = Scu::ct01(cfg.dicom_port).await;
    let ds =
        synthetic_instance_with_accession(CT_IMAGE_STORAGE, study, "1.2.3.4.5", "CT", "ACC-R1");
    scu.store_ct_ok("1.2.3.4.5", &ds).await;
    scu.release().await;

    let health = request(http, "GET", "/healthz", &[], b"").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");

    let now = readgate::time::now_ms();
    let good = event(study, "1001", "opened", now, Some("10.20.1.1"), None);
    for token in [None, Some("wrong-token")] {
        let r = post_json(http, "/api/v1/read-events", token, &good).await;
        assert_eq!(r.status, 401, "{token:?}");
        assert_eq!(r.json()["field"], "authorization");
        assert!(r.header("www-authenticate").is_some());
    }
    let r = request(
        http,
        "POST",
        "/api/v1/read-events",
        &[("Authorization", &format!("Basic {TOKEN}"))],
        good.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 401);

    let r = post_json(http, "/api/v1/read-events", Some(TOKEN), &good).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // by accession only
    let by_acc = serde_json::json!({"accession": "ACC-R1", "reader_id": "2001", "action": "preliminary", "at": format_ms(now, JST), "workstation": "HOME-PC"}).to_string();
    let r = post_json(http, "/api/v1/read-events", Some(TOKEN), &by_acc).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["study_uid"], study);
    assert_eq!(r.json()["resolution"]["place"]["location"], "unknown");

    let at = format_ms(now, JST);
    let cases: Vec<(String, &str)> = vec![
        ("{".into(), "body"),
        (
            format!(r#"{{"reader_id":"1","action":"opened","at":"{at}"}}"#),
            "study_uid",
        ),
        (
            format!(r#"{{"study_uid":"1..2","reader_id":"1","action":"opened","at":"{at}"}}"#),
            "study_uid",
        ),
        (
            format!(r#"{{"study_uid":"{study}","action":"opened","at":"{at}"}}"#),
            "reader_id",
        ),
        (
            format!(r#"{{"study_uid":"{study}","reader_id":"1","action":"skimmed","at":"{at}"}}"#),
            "action",
        ),
        (
            format!(r#"{{"study_uid":"{study}","reader_id":"1","action":"opened"}}"#),
            "at",
        ),
        (
            format!(
                r#"{{"study_uid":"{study}","reader_id":"1","action":"opened","at":"2026-06-01 9:30"}}"#
            ),
            "at",
        ),
        (
            format!(
                r#"{{"study_uid":"{study}","reader_id":"1","action":"opened","at":"{at}","client_ip":"10.20.1"}}"#
            ),
            "client_ip",
        ),
        (
            format!(
                r#"{{"study_uid":"{study}","reader_id":"1","action":"opened","at":"{at}","workstation":7}}"#
            ),
            "workstation",
        ),
        (
            format!(
                r#"{{"study_uid":"{study}","reader_id":"1","action":"opened","at":"{at}","accession":"OTHER"}}"#
            ),
            "accession",
        ),
        (
            format!(
                r#"{{"study_uid":"{study}","reader_id":"1","action":"opened","at":"{at}","patient":"x"}}"#
            ),
            "patient",
        ),
        (
            format!(r#"{{"study_uid":"9.9.9","reader_id":"1","action":"opened","at":"{at}"}}"#),
            "study_uid",
        ),
        (
            format!(r#"{{"accession":"NOPE","reader_id":"1","action":"opened","at":"{at}"}}"#),
            "accession",
        ),
    ];
    for (body, field) in cases {
        let r = post_json(http, "/api/v1/read-events", Some(TOKEN), &body).await;
        assert!((400..500).contains(&r.status), "{body}: {}", r.status);
        let j = r.json();
        assert_eq!(j["field"], field, "{body}: {j}");
        assert!(j["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let r = post_json(
        http,
        "/api/v1/read-events",
        Some(TOKEN),
        &format!(r#"{{"study_uid":"9.9.9","reader_id":"1","action":"opened","at":"{at}"}}"#),
    )
    .await;
    assert_eq!(r.status, 404);
    rg.stop().await;
}

/// A scenario's read: (scenario, reader, where from — None: no REST event, HL7 only —
/// and the final report's signer, if any).
type Read<'a> = (
    &'a str,
    &'a str,
    Option<(Option<&'a str>, Option<&'a str>)>,
    Option<&'a str>,
);

/// One scenario per eligibility code the month test does not produce, each asserted in
/// the JSON report: a sign-off by a full-time reader without board certification, a
/// trainee and a full-time reader reading from outside, a reader of another facility, a
/// reader whose place is unknown, a read of a study that was never forwarded, and a study
/// opened but never signed.
#[tokio::test(flavor = "multi_thread")]
async fn every_eligibility_code_has_a_scenario() {
    let LedgerSite {
        _dir,
        _scp,
        cfg,
        config_path,
        rg,
        hl7,
        http,
    } = LedgerSite::start(60).await;
    let base = "1.2.826.0.1.3680043.10.4343";
    // (name, code it must produce)
    let scenarios = [
        ("UNCERT", "SIGNER_NOT_BOARD_CERTIFIED"),
        ("TRAINEE", "TRAINEE_READ_OUTSIDE"),
        ("FULLOUT", "FULL_TIME_READ_OUTSIDE"),
        ("OTHERFAC", "NOT_RESPONSIBLE_FACILITY"),
        ("NOPLACE", "UNKNOWN_PLACE"),
        ("HOLD", "NOT_FORWARDED"),
        ("UNSIGNED", "NO_FINAL_REPORT"),
    ];
    let uid = |n: &str| {
        let i = scenarios
            .iter()
            .position(|(x, _)| *x == n)
            .expect("scenario");
        format!("{base}.{}", i + 1)
    };
    let studies: Vec<(String, String)> = scenarios
        .iter()
        .map(|(n, _)| (uid(n), format!("ACC-{n}")))
        .collect();
    send_accessions(cfg.dicom_port, &studies).await;
    let store = rg.store.clone();
    wait_until("studies forwarded or held", Duration::from_secs(30), || {
        studies_in(&store, StudyState::Forwarded, 100) == 6
            && studies_in(&store, StudyState::Held, 100) == 1
    });

    let now = readgate::time::now_ms();
    let min = 60_000;
    let t0 = now - 20 * min;
    let inside = (Some("10.20.1.5"), Some("RC1-WS01"));
    let outside = (Some("203.0.113.7"), None);
    // (scenario, reader, where from; None: no REST event, HL7 only) then the final's signer.
    let reads: [Read; 7] = [
        ("UNCERT", "4001", Some(inside), Some("4001")),
        ("TRAINEE", "2001", Some(outside), Some("1001")),
        ("FULLOUT", "1001", Some(outside), Some("1001")),
        ("OTHERFAC", "5001", Some(inside), Some("5001")),
        ("NOPLACE", "1001", None, Some("1001")),
        ("HOLD", "1001", Some(inside), Some("1001")),
        ("UNSIGNED", "1001", Some(inside), None),
    ];
    for (n, reader, place, signer) in reads {
        if let Some((ip, ws)) = place {
            let body = event(&uid(n), reader, "opened", t0, ip, ws);
            let r = post_json(http, "/api/v1/read-events", Some(TOKEN), &body).await;
            assert_eq!(r.status, 201, "{n}: {}", String::from_utf8_lossy(&r.body));
        }
        if let Some(signer) = signer {
            let control = format!("{n}-F");
            let message = oru(
                &control,
                &format!("ACC-{n}"),
                "F",
                signer,
                "",
                t0 + 8 * min,
                "異常なし。",
            );
            let ack = send_hl7(hl7, &message).await;
            assert!(ack.contains(&format!("MSA|AA|{control}")), "{n}: {ack}");
        }
    }
    // A report covers the studies received in its month (not the reads' times).
    let month = Month::of(now, JST).to_string();
    let json: serde_json::Value =
        serde_json::from_slice(&report_cli(&config_path, &month, "json", "en")).unwrap();
    for (n, code) in scenarios {
        let reasons = reasons_of(&json, &uid(n));
        assert!(
            reasons.contains(&code.to_string()),
            "{n}: {code} not in {reasons:?}"
        );
        assert_eq!(study_row(&json, &uid(n))["eligible"], false, "{n}");
    }
    rg.stop().await;
}
