//! The order's expected image count (`hl7.expected_images_field`) as a completeness
//! signal, with real peers: the RIS is the Python `hl7` package's `mllp_send`, the
//! modality DCMTK's storescu. A study holding exactly the count its order states is
//! decided at once, without the quiet wait; one short keeps waiting; a malformed count
//! is accepted (AA, the warning in MSA-3) and completes nothing; unset, nothing changes.

mod common;

use common::hl7::{mllp_send, python, require_python_hl7, Ack};
use common::process::run_ok;
use common::*;
use readgate::model::{CompletionSignal, StudyState};
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "rg_test_expected_images_viewer_token_01";
const VIEWER_PW: &str = "expected-images-viewer-pw";

/// The quiet wait is long here: only the count can complete a study within the tests'
/// waits.
const QUIET_SECS: u64 = 60;

/// Where the test RIS puts the count: OBR-46 (placer supplemental service information),
/// component 2, as `IMG^<count>`.
const FIELD: &str = "OBR-46.2";

struct Site {
    dir: tempfile::TempDir,
    _scp: StoreScp,
    hl7_port: u16,
    cfg: TestConfig,
    rg: readgate::serve::Running,
}

impl Site {
    /// readgate with an HL7 listener; `field` is `hl7.expected_images_field` (None: unset).
    async fn start(field: Option<&str>, quiet_secs: u64) -> Site {
        require_python_hl7();
        let (dir, scp, mut cfg) = reading_site();
        cfg.stable_after_secs = quiet_secs;
        let hl7_port = free_port();
        cfg.hl7_port = Some(hl7_port);
        if let Some(field) = field {
            cfg.hl7_extra = format!("expected_images_field = \"{field}\"\n");
        }
        cfg.extra = format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[[http.tokens]]\nname = \"ward\"\ntoken_sha256 = \"{}\"\n\
             [[http.users]]\nname = \"dr-sato\"\nrole = \"viewer\"\npassword_hash = \"{}\"\n",
            readgate::web::sha256_hex(TOKEN),
            readgate::web::auth::hash_password(VIEWER_PW).expect("hash")
        );
        let rg = readgate::serve::start(cfg.parse()).await.expect("starts");
        Site {
            dir,
            _scp: scp,
            hl7_port,
            cfg,
            rg,
        }
    }

    /// Sends ORM^O01 orders with mllp_send, one per (accession, count); their ACKs.
    fn orders(&self, orders: &[(&str, &str)]) -> Vec<Ack> {
        let payloads: Vec<Vec<u8>> = orders
            .iter()
            .enumerate()
            .map(|(i, (accession, count))| order(&format!("EXP{i}-{accession}"), accession, count))
            .collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        mllp_send(self.hl7_port, &refs, self.dir.path())
            .iter()
            .map(|raw| Ack::parse(raw).expect("an ACK"))
            .collect()
    }

    /// Instances `only` of a CT study of `count` made by make_study.py (accession
    /// `accession`), sent in that order over one storescu association per call.
    fn send(&self, studies: &[(&str, &str, usize, &[usize])]) {
        let mut files = Vec::new();
        for (study, accession, count, only) in studies {
            let out = self.dir.path().join("modality").join(study);
            if !out.exists() {
                run_ok(
                    Command::new(python())
                        .arg(repo_path("tests/peers/make_study.py"))
                        .arg(&out)
                        .args(["--study-uid", study, "--accession", accession])
                        .args(["--count", &count.to_string()]),
                    "make_study.py",
                );
            }
            files.extend(only.iter().map(|n| out.join(format!("IM{n:04}.dcm"))));
        }
        run_ok(
            Command::new(dcmtk("storescu"))
                .env("TCP_NODELAY", "1")
                .args(["-aet", "CT01", "-aec", "READGATE", "127.0.0.1"])
                .arg(self.cfg.dicom_port.to_string())
                .args(&files),
            "storescu",
        );
    }

    fn state(&self, study: &str) -> Option<StudyState> {
        self.rg.store.study_row(study).unwrap().map(|r| r.state)
    }

    fn completed_by(&self, study: &str) -> Option<CompletionSignal> {
        self.rg
            .store
            .study_row(study)
            .unwrap()
            .and_then(|r| r.completed_by)
    }

    /// Waits until `study` is decided (no longer receiving); how long that took.
    fn decided_within(&self, study: &str, timeout: Duration) -> Duration {
        let start = Instant::now();
        wait_until(&format!("{study} decided"), timeout, || {
            self.state(study)
                .is_some_and(|s| s != StudyState::Receiving)
        });
        start.elapsed()
    }

    /// `GET path` on the API with the viewer token; the JSON body.
    async fn api(&self, path: &str) -> serde_json::Value {
        let http = self.rg.http_addr.expect("HTTP listener");
        let auth = format!("Bearer {TOKEN}");
        let r = common::http::request(http, "GET", path, &[("Authorization", auth.as_str())], b"")
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()
    }
}

/// An IHE-style ORM^O01 for `accession` whose OBR-46 is `IMG^<count>`.
fn order(control_id: &str, accession: &str, count: &str) -> Vec<u8> {
    let mut obr = vec![String::new(); 46];
    for (n, v) in [
        (1, "1".to_string()),
        (2, format!("PL-{accession}")),
        (4, "CTCHEST^CT chest^LOCAL".into()),
        (13, "cough for 3 weeks".into()),
        (18, accession.to_string()),
        (24, "CT".into()),
        (46, format!("IMG^{count}")),
    ] {
        obr[n - 1] = v;
    }
    format!(
        "MSH|^~\\&|RIS|HOSP|READGATE|RAD|20240601090000||ORM^O01|{control_id}|P|2.5\r\
         PID|||SYN-SCEN-0001^^^HOSP^MR||Scenario^Synthetic\r\
         ORC|NW|PL-{accession}|||SC\r\
         OBR|{}\r",
        obr.join("|")
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn exactly_the_expected_count_decides_the_study_at_once() {
    let site = Site::start(Some(FIELD), QUIET_SECS).await;
    let study = "1.2.826.0.1.3680043.10.7301";
    let acks = site.orders(&[("ACC-E1", "3")]);
    assert_eq!(acks[0].code(), "AA", "{}", acks[0].show());
    assert_eq!(acks[0].msa(3), "", "{}", acks[0].show());
    site.send(&[(study, "ACC-E1", 3, &[1, 2, 3])]);
    // Decided on the third instance, not after the minute of quiet.
    let took = site.decided_within(study, Duration::from_secs(10));
    assert!(took < Duration::from_secs(3), "{took:?}");
    wait_until("the study forwarded", Duration::from_secs(10), || {
        site.state(study) == Some(StudyState::Forwarded)
    });
    assert_eq!(
        site.completed_by(study),
        Some(CompletionSignal::ExpectedImages)
    );
    // The audit trail's entry of the decision says so too.
    let released = site
        .rg
        .audit
        .search(&readgate::audit::Query {
            kind: Some("study_released".into()),
            study: Some(study.into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(released.len(), 1, "{released:?}");
    assert!(
        released[0]
            .detail
            .contains(r#""completed_by":"expected_images""#),
        "{}",
        released[0].detail
    );
    // The API says why it was decided early, and the count it was decided on.
    let v = site.api(&format!("/api/v1/studies/{study}")).await;
    assert_eq!(v["completed_by"], "expected_images", "{v:#}");
    assert_eq!(v["expected_images"], 3, "{v:#}");
    assert_eq!(v["instance_count"], 3, "{v:#}");
    // So does the study page, in Japanese and in English.
    let mut web = common::http::WebClient::new(site.rg.http_addr.expect("HTTP listener"));
    assert_eq!(web.login("dr-sato", VIEWER_PW).await.status, 303);
    for (lang, says) in [
        ("ja", "オーダの予定画像数に到達（3 枚）"),
        (
            "en",
            "The order&#39;s expected image count reached (3 images)",
        ),
    ] {
        let page = web.get(&format!("/studies/{study}?lang={lang}")).await;
        let body = String::from_utf8_lossy(&page.body);
        assert_eq!(page.status, 200, "{body}");
        assert!(body.contains(says), "{lang}: {body}");
    }
    site.rg.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_image_short_keeps_waiting_until_the_last_one() {
    let site = Site::start(Some(FIELD), QUIET_SECS).await;
    let (short, witness) = ("1.2.826.0.1.3680043.10.7302", "1.2.826.0.1.3680043.10.7303");
    let acks = site.orders(&[("ACC-E2", "3"), ("ACC-E3", "1")]);
    assert!(acks.iter().all(|a| a.code() == "AA"));
    // Two of three, then a witness study complete by its own count: once the witness is
    // decided, the study stage has looked at the short study after its last instance.
    site.send(&[(short, "ACC-E2", 3, &[1, 2]), (witness, "ACC-E3", 1, &[1])]);
    site.decided_within(witness, Duration::from_secs(10));
    assert_eq!(
        site.completed_by(witness),
        Some(CompletionSignal::ExpectedImages)
    );
    assert_eq!(site.state(short), Some(StudyState::Receiving));
    let v = site.api(&format!("/api/v1/studies/{short}")).await;
    assert_eq!(v["expected_images"], 3, "{v:#}");
    assert_eq!(v["completed_by"], serde_json::Value::Null, "{v:#}");
    // The last one completes it at once.
    site.send(&[(short, "ACC-E2", 3, &[3])]);
    let took = site.decided_within(short, Duration::from_secs(10));
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(
        site.completed_by(short),
        Some(CompletionSignal::ExpectedImages)
    );
    site.rg.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_after_its_images_decides_the_study_at_once() {
    let site = Site::start(Some(FIELD), QUIET_SECS).await;
    let study = "1.2.826.0.1.3680043.10.7304";
    site.send(&[(study, "ACC-E4", 2, &[1, 2])]);
    let acks = site.orders(&[("ACC-E4", "2")]);
    assert_eq!(acks[0].code(), "AA");
    let took = site.decided_within(study, Duration::from_secs(10));
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(
        site.completed_by(study),
        Some(CompletionSignal::ExpectedImages)
    );
    site.rg.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_count_is_accepted_with_a_warning_and_completes_nothing() {
    let site = Site::start(Some(FIELD), QUIET_SECS).await;
    let (abc, negative, witness) = (
        "1.2.826.0.1.3680043.10.7305",
        "1.2.826.0.1.3680043.10.7306",
        "1.2.826.0.1.3680043.10.7307",
    );
    let acks = site.orders(&[("ACC-E5", "abc"), ("ACC-E6", "-3"), ("ACC-E7", "1")]);
    for (ack, value) in acks.iter().zip(["\"abc\"", "\"-3\""]) {
        assert_eq!(ack.code(), "AA", "{}", ack.show());
        let text = ack.msa(3);
        assert!(
            text.contains("expected image count")
                && text.contains(value)
                && text.contains(FIELD)
                && text.contains("ignored"),
            "{}",
            ack.show()
        );
        assert!(ack.segment("ERR").is_none(), "{}", ack.show());
    }
    // The orders are on file, without a count.
    for accession in ["ACC-E5", "ACC-E6"] {
        let view = readgate::intake::view::StudyView::load(&site.rg.store, accession).unwrap();
        assert_eq!(view.orders.len(), 1, "{accession}");
    }
    // One instance each (what "-3" or "abc" would never match anyway), then the witness.
    site.send(&[
        (abc, "ACC-E5", 1, &[1]),
        (negative, "ACC-E6", 1, &[1]),
        (witness, "ACC-E7", 1, &[1]),
    ]);
    site.decided_within(witness, Duration::from_secs(10));
    for study in [abc, negative] {
        assert_eq!(site.state(study), Some(StudyState::Receiving), "{study}");
        assert_eq!(site.rg.store.expected_images_of(study).unwrap(), None);
    }
    site.rg.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unset_the_count_is_not_read_and_the_quiet_wait_decides() {
    const QUIET: u64 = 3;
    let site = Site::start(None, QUIET).await;
    let study = "1.2.826.0.1.3680043.10.7308";
    let acks = site.orders(&[("ACC-E8", "2")]);
    assert_eq!(acks[0].code(), "AA");
    assert_eq!(acks[0].msa(3), "");
    site.send(&[(study, "ACC-E8", 2, &[1, 2])]);
    let took = site.decided_within(study, Duration::from_secs(QUIET + 10));
    assert!(took >= Duration::from_secs(QUIET - 1), "{took:?}");
    assert_eq!(
        site.completed_by(study),
        Some(CompletionSignal::QuietPeriod)
    );
    assert_eq!(site.rg.store.expected_images_of(study).unwrap(), None);
    let v = site.api(&format!("/api/v1/studies/{study}")).await;
    assert_eq!(v["completed_by"], "quiet_period", "{v:#}");
    site.rg.stop().await;
}

/// The daemon as deployed logs the warning, naming the field and the setting.
#[test]
fn the_daemon_logs_a_malformed_count_naming_the_field() {
    require_python_hl7();
    let (dir, mut cfg) = no_reading_site();
    let hl7_port = free_port();
    cfg.hl7_port = Some(hl7_port);
    cfg.hl7_extra = format!("expected_images_field = \"{FIELD}\"\n");
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(hl7_port);
    let bad = order("LOG-1", "ACC-E9", "abc");
    let acks = mllp_send(hl7_port, &[&bad], dir.path());
    assert_eq!(Ack::parse(&acks[0]).expect("an ACK").code(), "AA");
    wait_until("the warning in the log", Duration::from_secs(10), || {
        daemon.log_text().contains("expected image count")
    });
    let log = daemon.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("expected image count"))
        .unwrap_or_default();
    assert!(
        line.contains("WARN")
            && line.contains(FIELD)
            && line.contains("\"abc\"")
            && line.contains("hl7.expected_images_field"),
        "{line}"
    );
    daemon.terminate();
}
