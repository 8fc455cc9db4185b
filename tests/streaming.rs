//! Streaming (`[[routes]] forward = "streaming"`, issue #12): real peers on both sides —
//! DCMTK `storescu` as the modality, DCMTK `storescp` as the reading facility, the
//! Python `hl7` client as the RIS, pynetdicom's MPPS SCU to complete a study at once.
//!
//! - a streaming route delivers every instance while its study is still being received
//!   (long quiet period), each once and tagged; an `on_complete` route delivers nothing
//!   before the study is complete (as before streaming);
//! - a STAT order streams by default; cancelling the order (ORC-1 `CA`) mid-study stops
//!   the stream: the rest is held, and the hold says what already left (`PARTLY_SENT`);
//! - `kill -9` of `readgate serve` in the middle of a streamed 300-instance study loses
//!   no acknowledged instance.

mod common;

use common::hl7::{mllp_send, python, require_python_hl7, Ack};
use common::process::run_ok;
use common::*;
use readgate::model::{StreamState, StudyState};
use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "rg_test_streaming_viewer_token_0123";
const VIEWER_PW: &str = "streaming-viewer-pw";

/// Long enough that only MPPS (or the end of a test) completes a study.
const QUIET_SECS: u64 = 60;

const CREATOR: &str = "READGATE ACCOUNTABILITY";

/// An in-process readgate with DCMTK storescp (unique file names: a copy sent twice
/// would be two files) as rc1, HL7 and the API.
struct Site {
    dir: tempfile::TempDir,
    scp: StoreScp,
    cfg: TestConfig,
    rg: readgate::serve::Running,
}

impl Site {
    async fn start(route_extra: &str, policy: Option<&str>) -> Site {
        let dir = tempfile::tempdir().expect("temp dir");
        let scp = StoreScp::start_with(&dir.path().join("rc1"), free_port(), &["+uf"]);
        let mut cfg = TestConfig::new(dir.path(), scp.port);
        cfg.stable_after_secs = QUIET_SECS;
        cfg.route_extra = route_extra.to_string();
        if let Some(p) = policy {
            cfg.policy = p.to_string();
        }
        cfg.hl7_port = Some(free_port());
        cfg.extra = format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[[http.tokens]]\nname = \"ward\"\ntoken_sha256 = \"{}\"\n\
             [[http.users]]\nname = \"dr-sato\"\nrole = \"viewer\"\npassword_hash = \"{}\"\n",
            readgate::web::sha256_hex(TOKEN),
            readgate::web::auth::hash_password(VIEWER_PW).expect("hash")
        );
        let rg = readgate::serve::start(cfg.parse()).await.expect("starts");
        Site { dir, scp, cfg, rg }
    }

    /// `count` instances of a CT study by make_study.py (accession and patient given),
    /// in DIR/modality/STUDY; their paths in order.
    fn make(&self, study: &str, count: usize, accession: &str, patient: &str) -> Vec<PathBuf> {
        make_study(
            &self.dir.path().join("modality"),
            study,
            count,
            accession,
            patient,
        )
    }

    /// storescu CT01 → readgate, every file answered Success.
    fn send(&self, files: &[PathBuf]) {
        run_ok(
            dcmtk_scu("storescu", "CT01", &[], self.cfg.dicom_port).args(files),
            "storescu",
        );
    }

    /// MPPS N-CREATE (`create:STEP:STUDY`) or N-SET (`set:STEP:COMPLETED:SERIES:SOPS`)
    /// with pynetdicom; each answered 0000.
    fn mpps(&self, step: &str) {
        let out = run_ok(
            Command::new(python())
                .arg(repo_path("tests/peers/mpps_scu.py"))
                .args([
                    "127.0.0.1",
                    &self.cfg.dicom_port.to_string(),
                    "CT01",
                    "READGATE",
                    step,
                ]),
            "mpps_scu.py",
        );
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(out.contains(" 0000"), "{step}: {out}");
    }

    /// The step that lists instances 1..=count of `study` (make_study.py's UIDs) as
    /// COMPLETED: the study is complete at once.
    fn complete(&self, study: &str, count: usize) {
        let step = format!("{study}.99");
        self.mpps(&format!("create:{step}:{study}"));
        let sops: Vec<String> = (1..=count).map(|n| format!("{study}.1.{n}")).collect();
        self.mpps(&format!(
            "set:{step}:COMPLETED:{study}.1:{}",
            sops.join(",")
        ));
    }

    fn row(&self, study: &str) -> readgate::store::StudyRow {
        self.rg
            .store
            .study_row(study)
            .expect("store")
            .unwrap_or_else(|| panic!("no study {study}"))
    }

    /// HL7 messages over one MLLP connection; each answered AA.
    fn hl7(&self, messages: &[String]) {
        let refs: Vec<&[u8]> = messages.iter().map(|m| m.as_bytes()).collect();
        let port = self.cfg.hl7_port.expect("hl7 port");
        for raw in mllp_send(port, &refs, self.dir.path()) {
            let ack = Ack::parse(&raw).unwrap_or_else(|e| panic!("ACK: {e}"));
            assert_eq!(ack.code(), "AA", "{:?}", String::from_utf8_lossy(&raw));
        }
    }

    /// `GET path` on the API with the viewer token.
    async fn api(&self, path: &str) -> serde_json::Value {
        let http = self.rg.http_addr.expect("HTTP listener");
        let auth = format!("Bearer {TOKEN}");
        let r = common::http::request(http, "GET", path, &[("Authorization", auth.as_str())], b"")
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()
    }

    /// (earliest, latest) delivery time of the study's instances, and when the study was
    /// decided complete (`completed_at`), from the database.
    fn delivery_times(&self, study: &str) -> (i64, i64, i64) {
        self.cfg
            .database()
            .query_row(
                "SELECT (SELECT MIN(forwarded_at) FROM instances WHERE study_uid = ?1), \
             (SELECT MAX(forwarded_at) FROM instances WHERE study_uid = ?1), completed_at \
             FROM studies WHERE study_uid = ?1",
                [study],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("times")
    }

    /// The files storescp holds (one per copy received).
    fn files_at_scp(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.scp.dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

fn make_study(
    root: &Path,
    study: &str,
    count: usize,
    accession: &str,
    patient: &str,
) -> Vec<PathBuf> {
    let out = root.join(study);
    run_ok(
        Command::new(python())
            .arg(repo_path("tests/peers/make_study.py"))
            .arg(&out)
            .args(["--study-uid", study, "--count", &count.to_string()])
            .args(["--accession", accession, "--patient-id", patient]),
        "make_study.py",
    );
    (1..=count)
        .map(|n| out.join(format!("IM{n:04}.dcm")))
        .collect()
}

fn sops(study: &str, range: std::ops::RangeInclusive<usize>) -> BTreeSet<String> {
    range.map(|n| format!("{study}.1.{n}")).collect()
}

/// A segment from (field number, value) pairs; unlisted fields are empty.
fn seg(name: &str, fields: &[(usize, &str)]) -> String {
    let max = fields.iter().map(|f| f.0).max().unwrap_or(0);
    let mut v = vec![""; max];
    for (i, s) in fields {
        v[i - 1] = s;
    }
    format!("{name}|{}", v.join("|"))
}

/// A RIS order (ORM^O01 2.3.1, UTF-8) for `accession` of `patient`: ORC-1 `control`
/// (NW, CA), priority S (STAT), the whole clinical context.
fn orm(control_id: &str, control: &str, accession: &str, patient: &str) -> String {
    let ts = "20260601101500+0900";
    let (placer, filler) = (format!("PL-{accession}"), format!("FL-{accession}"));
    let pid3 = format!("{patient}^^^SYN_HOSP^MR");
    let (timing, physician, phone) = ("^^^^^S", "9001^佐藤^花子", "03-1234-5678");
    let segments = [
        format!("MSH|^~\\&|RIS|SYN_HOSP|READGATE|RAD|{ts}||ORM^O01|{control_id}|P|2.3.1||||||UNICODE UTF-8"),
        seg("PID", &[(3, &pid3), (5, "ストリーム^花子"), (7, "19700101"), (8, "F")]),
        seg(
            "ORC",
            &[
                (1, control),
                (2, &placer),
                (3, &filler),
                (5, "SC"),
                (7, timing),
                (9, ts),
                (12, physician),
                (14, phone),
            ],
        ),
        seg(
            "OBR",
            &[
                (1, "1"),
                (2, &placer),
                (3, &filler),
                (4, "CT001^CT 胸部^LOCAL"),
                (13, "1週間前から胸痛、喫煙歴あり"),
                (16, physician),
                (17, phone),
                (18, accession),
                (24, "CT"),
                (27, timing),
                (31, "^急性大動脈解離の除外"),
            ],
        ),
    ];
    let mut m = segments.join("\r");
    m.push('\r');
    m
}

/// Whether the file carries readgate's accountability block with `verdict`.
fn tagged(path: &Path, verdict: &str) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    has(CREATOR.as_bytes()) && has(verdict.as_bytes())
}

/// A streaming route: every instance is at the reading facility while readgate is still
/// receiving the study (its quiet period is a minute); when the modality's MPPS step
/// completes it, every instance is there exactly once, tagged PASS, and the study is
/// forwarded with the time its last instance was delivered.
#[tokio::test(flavor = "multi_thread")]
async fn a_streaming_route_delivers_instances_while_the_study_is_received() {
    let site = Site::start("forward = \"streaming\"", None).await;
    let study = "1.2.826.0.1.3680043.10.7301";
    let files = site.make(study, 20, "ACC-ST-1", "SYN-ST-1");
    site.send(&files);
    let all = sops(study, 1..=20);
    // storescp has a file before readgate records its delivery: wait for both.
    wait_until(
        "every instance at storescp, and recorded as delivered",
        Duration::from_secs(20),
        || site.scp.received() == all && site.row(study).instances_forwarded == 20,
    );
    // Delivered, and the study is not complete yet: it streamed.
    let row = site.row(study);
    assert_eq!(row.state, StudyState::Receiving, "{row:?}");
    assert_eq!(row.stream, Some(StreamState::Streaming), "{row:?}");
    assert_eq!(row.instances_forwarded, 20, "{row:?}");

    site.complete(study, 20);
    wait_until("the study forwarded", Duration::from_secs(15), || {
        site.row(study).state == StudyState::Forwarded
    });
    let files = site.files_at_scp();
    assert_eq!(files.len(), 20, "each instance once: {files:?}");
    assert_eq!(site.scp.received(), all);
    for f in &files {
        assert!(tagged(f, "PASS"), "{} not tagged", f.display());
    }
    // Every instance left before the study was complete.
    let (_, last, completed) = site.delivery_times(study);
    assert!(
        last <= completed,
        "last delivery {last}, completed {completed}"
    );
    let detail = site.api(&format!("/api/v1/studies/{study}")).await;
    assert_eq!(detail["stream"], "streaming", "{detail:#}");
    let kinds = timeline_kinds(&detail);
    assert!(kinds.starts_with(&["received", "streaming"]), "{kinds:?}");
    assert!(kinds.ends_with(&["queued", "forwarded"]), "{kinds:?}");
    assert!(
        detail["time_to_reader_secs"].as_f64().is_some(),
        "{detail:#}"
    );
    site.rg.stop().await;
}

/// `forward = "on_complete"`: as before streaming, nothing leaves before the study is
/// complete, then all of it does.
#[tokio::test(flavor = "multi_thread")]
async fn an_on_complete_route_delivers_nothing_before_completion() {
    let site = Site::start("forward = \"on_complete\"", None).await;
    let study = "1.2.826.0.1.3680043.10.7302";
    let files = site.make(study, 5, "ACC-ST-2", "SYN-ST-2");
    site.send(&files);
    site.complete(study, 5);
    wait_until("the study forwarded", Duration::from_secs(15), || {
        site.row(study).state == StudyState::Forwarded
    });
    let (first, _, completed) = site.delivery_times(study);
    assert!(
        first >= completed,
        "first delivery {first}, completed {completed}"
    );
    assert_eq!(site.row(study).stream, None);
    assert_eq!(site.scp.received(), sops(study, 1..=5));
    site.rg.stop().await;
}

/// A STAT order streams with `forward` unset. The order is cancelled (ORC-1 CA) after
/// five instances left: the stream stops, the study is held, and the rest (sent after
/// the cancel) stays here. The hold — stored reasons, API, both languages — says that
/// five instances went to rc1; at completion it is held again, saying the same.
#[tokio::test(flavor = "multi_thread")]
async fn cancelling_the_order_stops_the_stream_and_the_hold_says_what_left() {
    require_python_hl7();
    // The JRS default policy: the order carries the whole context.
    let site = Site::start("", Some("")).await;
    let study = "1.2.826.0.1.3680043.10.7303";
    let (accession, patient) = ("ACC-ST-3", "SYN-ST-3");
    let files = site.make(study, 10, accession, patient);
    site.hl7(&[orm("ST3-NW", "NW", accession, patient)]);
    site.send(&files[..5]);
    let first = sops(study, 1..=5);
    wait_until(
        "the first five at storescp",
        Duration::from_secs(20),
        || site.scp.received() == first,
    );
    assert_eq!(site.row(study).stream, Some(StreamState::Streaming));

    site.hl7(&[orm("ST3-CA", "CA", accession, patient)]);
    wait_until(
        "the stream stopped and the study held",
        Duration::from_secs(15),
        || {
            let r = site.row(study);
            r.stream == Some(StreamState::Stopped) && r.state == StudyState::Held
        },
    );
    let held = site.row(study);
    let reasons: Vec<readgate::decide::HoldReason> =
        serde_json::from_str(held.reasons.as_deref().unwrap_or("[]")).expect("reasons");
    let codes: Vec<&str> = reasons.iter().map(|r| r.code.as_str()).collect();
    assert!(codes.contains(&"EXAM_PURPOSE_MISSING"), "{codes:?}");
    let partly = reasons
        .iter()
        .find(|r| r.code == "PARTLY_SENT")
        .unwrap_or_else(|| panic!("no PARTLY_SENT in {codes:?}"));
    assert!(
        partly.message_en.contains("5 of the 5 instances"),
        "{partly:?}"
    );
    assert!(partly.message_en.contains("5 to rc1"), "{partly:?}");
    assert!(partly.message_ja.contains("rc1へ5件"), "{partly:?}");
    assert_eq!(partly.clause, "ATS-5");

    // The rest arrives after the cancel: held, not forwarded.
    site.send(&files[5..]);
    site.complete(study, 10);
    wait_until("the complete study held", Duration::from_secs(15), || {
        let r = site.row(study);
        r.state == StudyState::Held && r.instance_count == 10
    });
    assert_eq!(site.scp.received(), first, "only the first part left");
    assert_eq!(site.files_at_scp().len(), 5);
    let detail = site.api(&format!("/api/v1/studies/{study}")).await;
    assert_eq!(detail["state"], "held", "{detail:#}");
    assert_eq!(detail["stream"], "stopped", "{detail:#}");
    assert_eq!(detail["instances_forwarded"], 5, "{detail:#}");
    let partly = detail["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .find(|r| r["code"] == "PARTLY_SENT")
        .unwrap_or_else(|| panic!("no PARTLY_SENT in {detail:#}"));
    let en = partly["message_en"].as_str().unwrap_or("");
    assert!(
        en.contains("5 of the 10 instances") && en.contains("5 to rc1"),
        "{en}"
    );
    assert!(
        partly["message_ja"]
            .as_str()
            .unwrap_or("")
            .contains("受信済み10件のうち5件"),
        "{partly}"
    );
    let kinds = timeline_kinds(&detail);
    assert!(
        kinds.contains(&"streaming") && kinds.contains(&"held"),
        "{kinds:?}"
    );
    // The console's held list gives it its short line, and the study page the whole
    // message, in both languages.
    let mut web = common::http::WebClient::new(site.rg.http_addr.expect("HTTP listener"));
    assert_eq!(web.login("dr-sato", VIEWER_PW).await.status, 303);
    for (lang, short, whole) in [
        (
            "ja",
            "一部の画像は送信済み → 受信側施設へ連絡",
            "受信済み10件のうち5件",
        ),
        (
            "en",
            "Part of it already left → tell the reading facility",
            "5 of the 10 instances received so far already left (5 to rc1)",
        ),
    ] {
        let held = web.get(&format!("/held?lang={lang}")).await;
        let body = String::from_utf8_lossy(&held.body);
        assert_eq!(held.status, 200, "{body}");
        assert!(body.contains(short), "{lang} held list: {body}");
        let page = web.get(&format!("/studies/{study}?lang={lang}")).await;
        let body = String::from_utf8_lossy(&page.body);
        assert_eq!(page.status, 200, "{body}");
        assert!(body.contains(whole), "{lang} study page: {body}");
    }
    site.rg.stop().await;
}

/// `kill -9` of `readgate serve` while it streams a 300-instance study from DCMTK
/// storescu to DCMTK storescp (once storescp holds 60 of them), then a restart: every
/// instance storescu got Success for reaches storescp, each at least once. When the
/// transfer ends before the kill, the same holds.
#[test]
fn kill_9_mid_stream_loses_no_acknowledged_instance() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scp = StoreScp::start(&dir.path().join("rc1"), free_port());
    let mut cfg = TestConfig::new(dir.path(), scp.port);
    cfg.stable_after_secs = 5;
    cfg.route_extra = "forward = \"streaming\"".into();
    let config = cfg.write();
    let study = "1.2.826.0.1.3680043.10.7304";
    let files = make_study(
        &dir.path().join("modality"),
        study,
        300,
        "ACC-ST-4",
        "SYN-ST-4",
    );
    let mut daemon = Daemon::start(&config, cfg.dicom_port);

    let mut storescu = dcmtk_scu("storescu", "CT01", &["-v"], cfg.dicom_port)
        .args(&files)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn storescu");
    let log = storescu.stderr.take().expect("storescu log");
    // storescu -v logs to stderr: "Sending file: F" … "Received Store Response (Success)".
    let reader = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        let mut current = None;
        for line in std::io::BufReader::new(log).lines().map_while(Result::ok) {
            if let Some(f) = line.split("Sending file: ").nth(1) {
                current = Some(f.trim().to_string());
            } else if line.contains("Received Store Response (Success)") {
                if let Some(f) = current.take() {
                    acknowledged.push(f);
                }
            }
        }
        acknowledged
    });
    // Streaming is under way once storescp holds instances of the study being received.
    let streaming = std::time::Instant::now();
    while scp.received().len() < 60 {
        if let Ok(Some(_)) = storescu.try_wait() {
            break; // the transfer ended first: kill anyway
        }
        assert!(
            streaming.elapsed() < Duration::from_secs(60),
            "nothing streamed:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let at_kill = scp.received().len();
    daemon.kill9();
    let _ = storescu.wait();
    let acknowledged: Vec<String> = reader.join().expect("reader");
    // storescu sends in order: what it got Success for is the first N files.
    let by_name: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    assert_eq!(
        acknowledged,
        by_name[..acknowledged.len()],
        "acknowledged out of order"
    );
    let acknowledged = sops(study, 1..=acknowledged.len());
    assert!(
        at_kill >= 60 || acknowledged.len() == 300,
        "killed before streaming: {at_kill} delivered"
    );
    eprintln!(
        "killed with {at_kill} delivered and {} acknowledged",
        acknowledged.len()
    );

    let restarted = Daemon::start(&config, cfg.dicom_port);
    wait_until(
        "every acknowledged instance at storescp",
        Duration::from_secs(60),
        || acknowledged.is_subset(&scp.received()),
    );
    drop(restarted);
}
