//! MPPS (Modality Performed Procedure Step) from pynetdicom, the modality's side: a step
//! COMPLETED with every instance it lists in completes its study at once, without the
//! quiet wait; a missing instance is waited for; DISCONTINUED is recorded; malformed or
//! out-of-order messages get the DIMSE status PS3.4 F.7.2 gives.

mod common;

use common::hl7::python;
use common::process::run_ok;
use common::*;
use readgate::model::{StepStatus, StudyState};
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "rg_test_mpps_viewer_token_0123456789";

/// The quiet wait is long here: only MPPS can complete a study within the tests' waits.
const QUIET_SECS: u64 = 60;

struct Site {
    dir: tempfile::TempDir,
    _scp: StoreScp,
    cfg: TestConfig,
    rg: readgate::serve::Running,
}

impl Site {
    async fn start() -> Site {
        Site::start_with(|_| {}).await
    }

    async fn start_with(change: impl FnOnce(&mut TestConfig)) -> Site {
        let (dir, scp, mut cfg) = reading_site();
        cfg.stable_after_secs = QUIET_SECS;
        cfg.extra = format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[[http.tokens]]\nname = \"ward\"\ntoken_sha256 = \"{}\"\n",
            readgate::web::sha256_hex(TOKEN)
        );
        change(&mut cfg);
        let rg = readgate::serve::start(cfg.parse()).await.expect("starts");
        Site {
            dir,
            _scp: scp,
            cfg,
            rg,
        }
    }

    /// pynetdicom's MPPS messages, one association each; their "NAME STATUS" lines.
    fn mpps(&self, steps: &[String]) -> Vec<String> {
        let out = run_ok(
            Command::new(python())
                .arg(repo_path("tests/peers/mpps_scu.py"))
                .args([
                    "127.0.0.1",
                    &self.cfg.dicom_port.to_string(),
                    "CT01",
                    "READGATE",
                ])
                .args(steps),
            "mpps_scu.py",
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .collect()
    }

    /// Instances `from..=to` of a CT study made by make_study.py, sent with storescu.
    fn send(&self, study: &str, count: usize, only: &[usize]) {
        let out = self.dir.path().join("modality").join(study);
        if !out.exists() {
            run_ok(
                Command::new(python())
                    .arg(repo_path("tests/peers/make_study.py"))
                    .arg(&out)
                    .args(["--study-uid", study, "--count", &count.to_string()]),
                "make_study.py",
            );
        }
        let files: Vec<_> = only
            .iter()
            .map(|n| out.join(format!("IM{n:04}.dcm")))
            .collect();
        run_ok(
            Command::new(dcmtk("storescu"))
                .args(["-aet", "CT01", "-aec", "READGATE", "127.0.0.1"])
                .arg(self.cfg.dicom_port.to_string())
                .args(&files),
            "storescu",
        );
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

    fn state(&self, study: &str) -> Option<StudyState> {
        self.rg.store.study_row(study).unwrap().map(|r| r.state)
    }
}

/// make_study.py's instance UIDs: series `<study>.1`, instances `<study>.1.<n>`.
fn completed(mpps: &str, study: &str, count: usize) -> String {
    let sops: Vec<String> = (1..=count).map(|n| format!("{study}.1.{n}")).collect();
    format!("set:{mpps}:COMPLETED:{study}.1:{}", sops.join(","))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_completed_step_with_every_instance_in_completes_its_study_at_once() {
    let site = Site::start().await;
    let (study, step) = (
        "1.2.826.0.1.3680043.10.7201",
        "1.2.826.0.1.3680043.10.7201.99",
    );
    let created = site.mpps(&[format!("create:{step}:{study}")]);
    assert_eq!(created, ["N-CREATE 0000"]);
    site.send(study, 3, &[1, 2, 3]);
    // In progress: the study waits (the quiet period is a minute).
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(site.state(study), Some(StudyState::Receiving));

    let done = Instant::now();
    let set = site.mpps(&[completed(step, study, 3)]);
    assert_eq!(set, ["N-SET 0000"]);
    wait_until("the study forwarded", Duration::from_secs(10), || {
        site.state(study) == Some(StudyState::Forwarded)
    });
    // Decided on the N-SET, not after the quiet period.
    assert!(
        done.elapsed() < Duration::from_secs(5),
        "{:?}",
        done.elapsed()
    );
    let steps = site.rg.store.steps_of(study).unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(
        (steps[0].status, steps[0].instances, steps[0].received),
        (StepStatus::Completed, 3, 3)
    );
    // Its time to reader (last image → at the facility) is counted and shown: under the
    // wait for the N-SET plus the forward, far under the minute of quiet.
    let waited = site
        .rg
        .store
        .study_row(study)
        .unwrap()
        .and_then(|r| r.time_to_reader_secs())
        .expect("time to reader");
    assert!((1.0..10.0).contains(&waited), "{waited}");
    let h = readgate::metrics::times_to_reader();
    let rc1 = h.get("rc1").expect("rc1 histogram");
    assert_eq!(rc1.count, 1);
    assert!((rc1.sum - waited).abs() < 0.01, "{} vs {waited}", rc1.sum);
    let v = site.api(&format!("/api/v1/studies/{study}")).await;
    assert_eq!(v["time_to_reader_secs"].as_f64(), Some(waited), "{v:#}");
    // It says why it was decided before the quiet period ended.
    assert_eq!(v["completed_by"], "mpps", "{v:#}");
    // The trail holds the step as the modality reported it (started, then completed),
    // by the modality's AE title, and the decision says what completed the study.
    let trail = |kind: &str| {
        site.rg
            .audit
            .search(&readgate::audit::Query {
                kind: Some(kind.into()),
                study: Some(study.into()),
                ..Default::default()
            })
            .unwrap()
    };
    for (kind, status) in [
        ("procedure_step_created", "IN PROGRESS"),
        ("procedure_step_updated", "COMPLETED"),
    ] {
        let entries = trail(kind);
        assert_eq!(entries.len(), 1, "{kind}: {entries:?}");
        assert_eq!(entries[0].actor, "CT01", "{kind}");
        let detail = entries[0].detail_json();
        assert_eq!(detail["mpps_uid"], step, "{kind}: {detail}");
        assert_eq!(detail["status"], status, "{kind}: {detail}");
    }
    let released = trail("study_released");
    assert_eq!(released.len(), 1, "{released:?}");
    assert_eq!(released[0].detail_json()["completed_by"], "mpps");
    site.rg.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_completed_step_waits_for_its_missing_instance() {
    let site = Site::start().await;
    let (study, step) = (
        "1.2.826.0.1.3680043.10.7202",
        "1.2.826.0.1.3680043.10.7202.99",
    );
    site.mpps(&[format!("create:{step}:{study}")]);
    site.send(study, 3, &[1, 2]);
    site.mpps(&[completed(step, study, 3)]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        site.state(study),
        Some(StudyState::Receiving),
        "one instance is missing"
    );
    let last = Instant::now();
    site.send(study, 3, &[3]);
    wait_until("the study forwarded", Duration::from_secs(10), || {
        site.state(study) == Some(StudyState::Forwarded)
    });
    assert!(
        last.elapsed() < Duration::from_secs(5),
        "{:?}",
        last.elapsed()
    );
    site.rg.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn discontinued_steps_and_malformed_messages() {
    let site = Site::start().await;
    let (study, step) = (
        "1.2.826.0.1.3680043.10.7203",
        "1.2.826.0.1.3680043.10.7203.99",
    );
    let other = "1.2.826.0.1.3680043.10.7203.98";
    let lines = site.mpps(&[
        format!("create:{step}:{study}"),
        // The same step again: duplicate.
        format!("create:{step}:{study}"),
        // N-CREATE must start IN PROGRESS.
        format!("create:{other}:{study}:COMPLETED"),
        // A status that does not exist.
        format!("set:{step}:FINISHED"),
        // A step nobody created.
        format!("set:{other}:COMPLETED:{study}.1:{study}.1.1"),
        format!("set:{step}:DISCONTINUED"),
        // Final: no more updates.
        format!("set:{step}:IN PROGRESS"),
        // The SCP names a step the modality left unnamed.
        format!("create:-:{study}"),
        // A data set over 4 MiB (80,000 listed instances): refused, not read into memory.
        format!("set:{other}:IN PROGRESS:{study}.1:oversize"),
    ]);
    let codes: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        codes,
        ["0000", "0111", "0106", "0106", "0112", "0000", "0110", "0000", "0213"],
        "{lines:#?}"
    );
    let steps = site.rg.store.steps_of(study).unwrap();
    assert!(
        steps.iter().any(|s| s.mpps_uid.starts_with("2.25.")),
        "{steps:?}"
    );
    let statuses: Vec<StepStatus> = steps.iter().map(|s| s.status).collect();
    assert!(
        statuses.contains(&StepStatus::Discontinued) && statuses.contains(&StepStatus::InProgress),
        "{steps:?}"
    );
    // A discontinued step completes nothing: the study (one image) keeps to the quiet wait.
    site.send(study, 1, &[1]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(site.state(study), Some(StudyState::Receiving));
    // The API shows both steps of the study.
    let v = site.api(&format!("/api/v1/studies/{study}")).await;
    let shown: Vec<&str> = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["status"].as_str())
        .collect();
    assert_eq!(shown, ["DISCONTINUED", "IN PROGRESS"], "{v:#}");
    site.rg.stop().await;
}

/// `dicom.max_mpps_bytes` bounds what one step may make readgate hold: 2,000 listed
/// instances (about 150 KB) are refused under a 64 KiB bound; and a disk below
/// `storage.min_free_mb` refuses a step before anything is recorded.
#[tokio::test(flavor = "multi_thread")]
async fn step_bounds_are_settings() {
    let site = Site::start_with(|cfg| cfg.extra_dicom = "max_mpps_bytes = 65536".into()).await;
    let (study, step) = (
        "1.2.826.0.1.3680043.10.7204",
        "1.2.826.0.1.3680043.10.7204.99",
    );
    let lines = site.mpps(&[
        format!("create:{step}:{study}"),
        format!("set:{step}:COMPLETED:{study}.1:many=2000"),
        format!("set:{step}:COMPLETED:{study}.1:many=200"),
    ]);
    let codes: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap_or(""))
        .collect();
    assert_eq!(codes, ["0000", "0213", "0000"], "{lines:#?}");
    site.rg.stop().await;

    // More free space asked for than any disk here has.
    let full = Site::start_with(|cfg| cfg.min_free_mb = 1 << 40).await;
    let lines = full.mpps(&[format!("create:{step}:{study}")]);
    assert_eq!(lines, ["N-CREATE 0213"], "{lines:#?}");
    assert!(full.rg.store.steps_of(study).unwrap().is_empty());
    full.rg.stop().await;
}
