//! The prior-report check (JRS-7.3.2) against the hospital's real history: readgate
//! (`readgate serve`, in-process) asks a real PACS — Orthanc or DCMTK `dcmqrscp` — for
//! the patient's earlier studies when the study's images arrive, finds their report
//! documents, and holds, releases or flags the study accordingly. Studies are forwarded
//! to DCMTK `storescp`; reports arrive over MLLP.

mod common;

use common::hl7::{python, send_hl7};
use common::pacs::{associations_from, PacsLink, PacsPeer};
use common::process::readgate_bin;
use common::*;
use readgate::model::StudyState;
use std::process::Command;
use std::time::Duration;

/// Only the prior-report check, so each scenario is about priors alone.
const PRIORS_ONLY: &str = "[[policy.rules]]\nname = \"priors\"\nchecks = [\"prior_reports\"]\n";

/// readgate forwarding to a storescp, with an HL7 listener and `pacs` as its `[[pacs]]`.
struct PriorSite {
    dir: tempfile::TempDir,
    scp: StoreScp,
    cfg: TestConfig,
    rg: readgate::serve::Running,
}

impl PriorSite {
    async fn start(pacs_port: u16, pacs_ae: &str, extra_policy: &str) -> PriorSite {
        let (dir, scp, mut cfg) = reading_site();
        cfg.hl7_port = Some(free_port());
        cfg.hl7_default_charset = "utf8".into();
        cfg.policy = format!("{PRIORS_ONLY}{extra_policy}");
        cfg.extra = pacs_entry(pacs_ae, pacs_port, "", "");
        PriorSite::run(dir, scp, cfg).await
    }

    /// The config of a site whose storescp logs the order of arrivals ([`arrived`]),
    /// with HL7 (UTF-8) and only the prior-report check; `[[pacs]]` is for the caller.
    fn logged_config() -> (tempfile::TempDir, StoreScp, TestConfig) {
        let dir = tempfile::tempdir().unwrap();
        let scp = logging_scp(dir.path());
        let mut cfg = TestConfig::new(dir.path(), scp.port);
        cfg.hl7_port = Some(free_port());
        cfg.hl7_default_charset = "utf8".into();
        cfg.policy = PRIORS_ONLY.into();
        (dir, scp, cfg)
    }

    async fn run(dir: tempfile::TempDir, scp: StoreScp, cfg: TestConfig) -> PriorSite {
        let rg = readgate::serve::start(cfg.parse()).await.expect("starts");
        PriorSite { dir, scp, cfg, rg }
    }

    /// The current study: `count` CT images of `patient` acquired today, sent by CT01.
    fn send(&self, uid: &str, patient: &str, accession: &str, count: usize) {
        self.send_dated(uid, patient, accession, count, &days_ago(0));
    }

    /// As [`PriorSite::send`], the study acquired on `date` (DA).
    fn send_dated(&self, uid: &str, patient: &str, accession: &str, count: usize, date: &str) {
        self.send_with(uid, patient, accession, count, &["--study-date", date]);
    }

    /// As [`PriorSite::send`], with more make_study.py options (e.g. `--issuer`).
    fn send_with(&self, uid: &str, patient: &str, accession: &str, count: usize, options: &[&str]) {
        let out = self.dir.path().join("modality").join(uid);
        run_ok(
            Command::new(python())
                .arg(repo_path("tests/peers/make_study.py"))
                .arg(&out)
                .args(["--study-uid", uid, "--count", &count.to_string()])
                .args(["--patient-id", patient, "--accession", accession])
                .args(["--study-date", &days_ago(0), "--study-time", ""])
                .args(options),
            "make_study.py",
        );
        let files: Vec<_> = std::fs::read_dir(&out)
            .expect("study dir")
            .map(|e| e.expect("entry").path())
            .collect();
        let mut storescu = Command::new(dcmtk("storescu"));
        storescu
            .args(["-aet", "CT01", "-aec", "READGATE", "127.0.0.1"])
            .arg(self.cfg.dicom_port.to_string())
            .args(&files);
        run_ok(&mut storescu, "storescu to readgate");
    }

    /// What the facility received, once `expected.len()` files are in: their studies in
    /// `expected`'s order (priors first).
    fn arrived_in_order(&self, expected: &[&String]) -> Vec<Arrived> {
        let got = self.arrivals(expected.len());
        let studies: Vec<&String> = got.iter().map(|a| &a.study_uid).collect();
        assert_eq!(studies, expected, "{got:#?}");
        got
    }

    /// Waits until the study is decided (held or forwarded); returns its row.
    fn wait_decided(&self, uid: &str, timeout: Duration) -> readgate::store::StudyRow {
        let mut row = None;
        wait_until("the study decided", timeout, || {
            row = self.rg.store.study_row(uid).unwrap();
            matches!(
                row.as_ref().map(|r| r.state),
                Some(StudyState::Held | StudyState::Forwarded)
            )
        });
        row.expect("row")
    }

    /// Waits until the study is decided and checks that it is held for one reason,
    /// PRIOR_REPORT_MISSING; returns that reason's text (English and Japanese).
    fn wait_held_for_prior_report(&self, uid: &str) -> String {
        let row = self.wait_decided(uid, Duration::from_secs(30));
        let (codes, text) = reasons(&row);
        assert_eq!(
            (row.state, codes),
            (StudyState::Held, vec!["PRIOR_REPORT_MISSING".to_string()])
        );
        text
    }

    /// The RIS sends a final report for `accession` (ORU^R01); answered AA.
    async fn report(&self, patient: &str, accession: &str) {
        let hl7 = self.rg.hl7_addr.expect("HL7 listener");
        let ack = send_hl7(hl7, final_report(patient, accession)).await;
        assert!(ack.contains("MSA|AA"), "{ack}");
    }

    /// What storescp stored, in order, once it has logged at least `n` files: its log is
    /// written by a command it runs per file, which may finish after readgate has had
    /// the C-STORE-RSP and marked the study forwarded.
    fn arrivals(&self, n: usize) -> Vec<Arrived> {
        let log = self.dir.path().join("arrivals.log");
        wait_until(
            &format!("{n} files at storescp"),
            Duration::from_secs(15),
            || {
                std::fs::read_to_string(&log)
                    .map(|l| l.lines().filter(|x| !x.trim().is_empty()).count() >= n)
                    .unwrap_or(false)
            },
        );
        arrived(self.dir.path(), &self.scp)
    }

    /// The audit entries of one kind.
    fn audited(&self, kind: &str) -> Vec<readgate::audit::Entry> {
        self.rg
            .audit
            .search(&readgate::audit::Query {
                kind: Some(kind.into()),
                ..Default::default()
            })
            .unwrap()
    }

    fn wait_state(&self, uid: &str, state: StudyState, timeout: Duration) {
        wait_until(&format!("{uid} {state:?}"), timeout, || {
            self.rg.store.study_row(uid).unwrap().map(|r| r.state) == Some(state)
        });
    }
}

/// `[[pacs]]` `hosp` (AE `ae` on 127.0.0.1:`port`, more keys `pacs_keys`) and `[priors]`
/// (retried after 1 s, more keys `priors_keys`).
fn pacs_entry(ae: &str, port: u16, pacs_keys: &str, priors_keys: &str) -> String {
    format!(
        "[[pacs]]\nid = \"hosp\"\nae_title = \"{ae}\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         timeout_secs = 5\n{pacs_keys}\n\n[priors]\nretry_secs = 1\n{priors_keys}\n"
    )
}

/// The codes of a study's reasons and the reasons' English and Japanese text.
fn reasons(row: &readgate::store::StudyRow) -> (Vec<String>, String) {
    let v: serde_json::Value =
        serde_json::from_str(row.reasons.as_deref().unwrap_or("[]")).expect("reasons JSON");
    let list = v.as_array().cloned().unwrap_or_default();
    let codes = list
        .iter()
        .map(|r| r["code"].as_str().unwrap_or("").to_string())
        .collect();
    let text = list
        .iter()
        .map(|r| format!("{} {}", r["message_en"], r["message_ja"]))
        .collect();
    (codes, text)
}

/// ORU^R01 with a final report for `accession` of `patient`.
fn final_report(patient: &str, accession: &str) -> String {
    let now = readgate::time::format_ms(readgate::time::now_ms(), JST).replace(['-', ':', 'T'], "")
        [..14]
        .to_string();
    [
        format!("MSH|^~\\&|REPORTING|HOSP|READGATE|HOSP|{now}||ORU^R01^ORU_R01|ORU-{accession}|P|2.5||||||UNICODE UTF-8"),
        format!("PID|1||{patient}^^^HOSP^PI||シナリオ^次郎"),
        format!("ORC|RE|PL-{accession}|FL-{accession}"),
        format!("OBR|1|PL-{accession}|FL-{accession}|CT001^CT 胸部^LOCAL|||{now}|||||||||||{accession}||||{now}|||F"),
        "OBX|1|TX|GDT^Report^LOCAL||異常所見なし。||||||F".to_string(),
    ]
    .join("\r")
}

/// ORM^O01 for `accession` of `patient` (a CT, OBR-24), routine.
fn routine_order(patient: &str, accession: &str) -> String {
    stat_order(patient, accession).replace("^^^^^S", "^^^^^R")
}

/// ORM^O01 for `accession` of `patient` with priority STAT (OBR-27 `^^^^^S`).
fn stat_order(patient: &str, accession: &str) -> String {
    let now = readgate::time::format_ms(readgate::time::now_ms(), JST).replace(['-', ':', 'T'], "")
        [..14]
        .to_string();
    [
        format!("MSH|^~\\&|RIS|HOSP|READGATE|HOSP|{now}||ORM^O01|ORM-{accession}|P|2.5||||||UNICODE UTF-8"),
        format!("PID|1||{patient}^^^HOSP^PI||シナリオ^次郎"),
        format!("ORC|NW|PL-{accession}|||SC||^^^^^S|||||"),
        format!("OBR|1|PL-{accession}||CT001^CT 胸部^LOCAL|||{now}|||||||||||{accession}||||||CT|||^^^^^S"),
    ]
    .join("\r")
}

/// The hospital's offset (readgate's default `policy.utc_offset`).
const JST: i64 = 9 * 3600;

/// The local date `days` days ago, DICOM DA.
fn days_ago(days: i64) -> String {
    let today = readgate::time::local_day(readgate::time::now_ms(), JST);
    readgate::time::format_dicom_da(today - days).expect("a date")
}

/// Orthanc holds two CT priors of the patient: the newest with a Basic Text SR report
/// (and a dose SR, which is no report), an older one without. The newest counts
/// (`most_recent`): the study passes and is forwarded; the answer is kept per PACS.
#[tokio::test(flavor = "multi_thread")]
async fn a_prior_with_an_sr_report_in_orthanc_lets_the_study_pass() {
    let pacs_dir = tempfile::tempdir().unwrap();
    let pacs = PacsPeer::orthanc(pacs_dir.path());
    let base = "1.2.826.0.1.3680043.10.7101";
    pacs.load_with(
        &format!("{base}.1"),
        "P-SR",
        "ACC-SR-1",
        &days_ago(30),
        &["--report", "前回と著変なし。", "--dose-report"],
    );
    pacs.load(&format!("{base}.2"), "P-SR", "ACC-SR-2", &days_ago(200));
    let site = PriorSite::start(pacs.port, pacs.ae, "").await;
    // The administrator's check lists the PACS.
    let out = run_ok(
        readgate_bin()
            .args(["config-check", "--config"])
            .arg(site.cfg.write()),
        "readgate config-check",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("PACS hosp: ORTHANC@127.0.0.1:{}", pacs.port)),
        "{text}"
    );
    let current = format!("{base}.9");
    site.send(&current, "P-SR", "ACC-SR-NOW", 2);
    let row = site.wait_decided(&current, Duration::from_secs(30));
    assert_eq!(row.state, StudyState::Forwarded, "{:?}", reasons(&row));
    let found = site.rg.store.pacs_studies(&["P-SR".to_string()]).unwrap();
    let docs: Vec<(String, u32)> = found
        .iter()
        .map(|f| (f.study.accession.clone().unwrap_or_default(), f.documents))
        .collect();
    assert_eq!(
        docs,
        [("ACC-SR-1".to_string(), 1), ("ACC-SR-2".to_string(), 0)],
        "the report SR counts, the dose SR does not"
    );
    site.rg.stop().await;
}

/// A prior in the PACS without any report holds the study with PRIOR_REPORT_MISSING,
/// naming its modality, accession and date; its final report over HL7 releases it.
#[tokio::test(flavor = "multi_thread")]
async fn a_prior_without_a_report_in_orthanc_holds_until_the_oru_arrives() {
    let pacs_dir = tempfile::tempdir().unwrap();
    let pacs = PacsPeer::orthanc(pacs_dir.path());
    let base = "1.2.826.0.1.3680043.10.7102";
    let prior_date = days_ago(40);
    pacs.load_with(
        &format!("{base}.1"),
        "P-NOREP",
        "ACC-NOREP-1",
        &prior_date,
        &["--dose-report"],
    );
    // An MR of the same patient without report: another modality, so it does not count.
    pacs.load_with(
        &format!("{base}.2"),
        "P-NOREP",
        "ACC-NOREP-MR",
        &days_ago(10),
        &["--modality", "MR"],
    );
    let site = PriorSite::start(pacs.port, pacs.ae, "").await;
    let current = format!("{base}.9");
    site.send(&current, "P-NOREP", "ACC-NOREP-NOW", 2);
    let text = site.wait_held_for_prior_report(&current);
    let date = format!(
        "{}-{}-{}",
        &prior_date[..4],
        &prior_date[4..6],
        &prior_date[6..]
    );
    assert!(
        text.contains(&format!("CT accession ACC-NOREP-1 of {date}")) && text.contains("PACS"),
        "{text}"
    );
    assert!(!text.contains("ACC-NOREP-MR"), "{text}");
    assert!(
        site.scp.received().is_empty(),
        "nothing forwarded while held"
    );

    // `readgate priors` shows what the decision saw: both priors, from the PACS, and
    // how the PACS answered.
    let config = site.cfg.write();
    let out = run_ok(
        readgate_bin()
            .args(["priors", "--config"])
            .arg(&config)
            .args(["ACC-NOREP-NOW", "--format", "json"]),
        "readgate priors",
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rows = v["priors"].as_array().expect("priors");
    assert_eq!(rows.len(), 2, "{v:#}");
    assert_eq!(rows[0]["accession"], "ACC-NOREP-MR", "newest first: {v:#}");
    assert_eq!(rows[1]["accession"], "ACC-NOREP-1");
    assert_eq!(rows[1]["date"], date.as_str());
    assert_eq!(
        (
            rows[1]["final_reports"].as_u64(),
            rows[1]["report_documents"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(rows[1]["source"], "pacs:hosp");
    assert_eq!(v["pacs"][0]["outcome"], "answered", "{v:#}");
    assert_eq!(v["pacs"][0]["found"], 2, "{v:#}");
    let out = run_ok(
        readgate_bin()
            .args(["priors", "--config"])
            .arg(&config)
            .arg(&current),
        "readgate priors",
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with(&format!("2 prior studies of study {current}")),
        "{table}"
    );
    assert!(table.contains("PACS hosp: answered, 2 studies"), "{table}");

    site.report("P-NOREP", "ACC-NOREP-1").await;
    site.wait_state(&current, StudyState::Forwarded, Duration::from_secs(30));
    site.rg.stop().await;
}

/// The PACS down: PRIORS_UNAVAILABLE names it and why; the study is released by itself
/// once the PACS answers again (`priors.retry_secs`). Five images of one patient cause
/// one lookup, not five.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_pacs_holds_until_it_answers() {
    let pacs_dir = tempfile::tempdir().unwrap();
    let pacs = PacsPeer::dcmqrscp(pacs_dir.path());
    let link = PacsLink::to(pacs.port);
    let base = "1.2.826.0.1.3680043.10.7103";

    // Up: five instances, one lookup.
    let site = PriorSite::start(link.port, pacs.ae, "").await;
    let first = format!("{base}.1");
    site.send(&first, "P-DOWN", "ACC-DOWN-1", 5);
    let row = site.wait_decided(&first, Duration::from_secs(30));
    assert_eq!(row.state, StudyState::Forwarded, "{:?}", reasons(&row));
    assert_eq!(associations_from(pacs_dir.path(), "READGATE"), 1);

    // Down: a new patient's study is held, the PACS named.
    drop(pacs);
    link.cut();
    let second = format!("{base}.2");
    site.send(&second, "P-DOWN-2", "ACC-DOWN-2", 1);
    let row = site.wait_decided(&second, Duration::from_secs(30));
    let (codes, text) = reasons(&row);
    assert_eq!(
        (row.state, codes),
        (StudyState::Held, vec!["PRIORS_UNAVAILABLE".to_string()])
    );
    assert!(
        text.contains("PACS hosp") && text.contains("could not be asked"),
        "{text}"
    );

    // Up again: retried, answered, released.
    let pacs = PacsPeer::dcmqrscp(pacs_dir.path());
    link.restore(pacs.port);
    site.wait_state(&second, StudyState::Forwarded, Duration::from_secs(30));
    let lookups = readgate::metrics::pacs_lookups();
    let count = |outcome| lookups.get(&("hosp".to_string(), outcome)).map(|c| c.0);
    assert_eq!(count("answered"), Some(2), "{lookups:?}");
    assert!(count("failed").unwrap_or(0) >= 1, "{lookups:?}");
    site.rg.stop().await;
}

/// `on_pacs_unreachable = "forward_flagged"`: the study leaves, flagged incomplete, with
/// the reason that the PACS could not be asked.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_pacs_can_be_configured_to_forward_flagged() {
    let site = PriorSite::start(
        free_port(),
        "NOBODY",
        "[policy.priors]\non_pacs_unreachable = \"forward_flagged\"\n",
    )
    .await;
    let uid = "1.2.826.0.1.3680043.10.7104.1";
    site.send(uid, "P-FLAG", "ACC-FLAG", 1);
    let row = site.wait_decided(uid, Duration::from_secs(30));
    assert_eq!(row.state, StudyState::Forwarded);
    let (codes, _) = reasons(&row);
    assert_eq!(codes, ["PRIORS_UNAVAILABLE"]);
    let verdict = site
        .rg
        .store
        .decision_of(uid)
        .unwrap()
        .and_then(|d| d.verdict);
    assert_eq!(
        verdict,
        Some(readgate::model::Disposition::ForwardedIncomplete)
    );
    site.rg.stop().await;
}

/// A patient merged by ADT^A40: the PACS holds the prior under the old ID. readgate asks
/// for both IDs, and the prior without report holds the study under the new one.
#[tokio::test(flavor = "multi_thread")]
async fn priors_under_a_merged_patient_id_are_found() {
    let pacs_dir = tempfile::tempdir().unwrap();
    let pacs = PacsPeer::dcmqrscp(pacs_dir.path());
    let base = "1.2.826.0.1.3680043.10.7105";
    // 7654321 is the prior ID tests/hl7/adt_a40_merge.hl7 merges into 1234567.
    pacs.load(
        &format!("{base}.1"),
        "7654321",
        "ACC-MERGED-1",
        &days_ago(20),
    );
    let site = PriorSite::start(pacs.port, pacs.ae, "").await;
    let hl7 = site.rg.hl7_addr.expect("HL7 listener");
    let ack = send_hl7(hl7, common::hl7::sample("adt_a40_merge.hl7")).await;
    assert!(ack.contains("MSA|AA"), "{ack}");
    let current = format!("{base}.9");
    site.send(&current, "1234567", "ACC-MERGED-NOW", 1);
    let text = site.wait_held_for_prior_report(&current);
    assert!(text.contains("ACC-MERGED-1"), "{text}");
    // Each lookup was audited before it was made: one `query` per patient ID asked.
    let queries = site.audited("query");
    let mut asked: Vec<String> = queries
        .iter()
        .filter(|e| e.actor == "system" && e.detail.contains("\"operation\":\"C-FIND\""))
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
            v["patient_id"].as_str().unwrap_or("").to_string()
        })
        .collect();
    asked.sort();
    // The A40 merges 7654321 (same domain, TOKYO_GEN) and X-55 (OLD_SYSTEM's) into
    // 1234567: X-55 is not asked, it may name someone else in the PACS's domain.
    assert_eq!(asked, ["1234567", "7654321"], "{queries:?}");
    // Two lookups, then the prior found under the old ID is fetched ahead (C-GET), held
    // study or not: three associations, none for X-55.
    wait_until("the prior prefetched", Duration::from_secs(30), || {
        associations_from(pacs_dir.path(), "READGATE") == 3
    });
    site.rg.stop().await;
}

/// One file the reading facility's storescp received, as dcmdump reads it.
#[derive(Debug)]
struct Arrived {
    path: std::path::PathBuf,
    sop_class_uid: String,
    study_uid: String,
    /// (0099,100A) in readgate's block: the study this one is a prior of.
    prior_of: Option<String>,
    /// Our private creator at (0099,0010).
    tagged: bool,
}

/// A storescp that logs each file it stores, in order, to `<dir>/arrivals.log`.
fn logging_scp(dir: &std::path::Path) -> StoreScp {
    let log = dir.join("arrivals.log");
    StoreScp::start_with(
        &dir.join("rc1"),
        free_port(),
        &[
            "--exec-on-reception",
            &format!("echo #f >> {}", log.display()),
            "--exec-sync",
        ],
    )
}

/// What storescp stored, in the order it stored it.
fn arrived(dir: &std::path::Path, scp: &StoreScp) -> Vec<Arrived> {
    let log = std::fs::read_to_string(dir.join("arrivals.log")).unwrap_or_default();
    let mut out = Vec::new();
    for name in log.lines().filter(|l| !l.trim().is_empty()) {
        let path = scp.dir.join(name.trim());
        let dump = run_ok(Command::new(dcmtk("dcmdump")).arg(&path), "dcmdump");
        let dump = String::from_utf8_lossy(&dump.stdout).to_string();
        let value = |tag: &str| {
            dump.lines()
                .find(|l| l.starts_with(tag))
                .and_then(|l| Some(l[l.find('[')? + 1..l.find(']')?].to_string()))
        };
        out.push(Arrived {
            // dcmdump names well-known UIDs (=CTImageStorage); the meta has the UID.
            sop_class_uid: std::fs::File::open(&path)
                .ok()
                .and_then(|mut f| readgate::dicom::part10::read_file_meta(&mut f).ok())
                .map(|m| m.sop_class_uid)
                .expect("SOP Class UID"),
            study_uid: value("(0020,000d)").expect("Study Instance UID"),
            prior_of: value("(0099,100a)"),
            tagged: value("(0099,0010)").as_deref() == Some("READGATE ACCOUNTABILITY"),
            path,
        });
    }
    out
}

/// The chosen priors go to the reading facility before the study: Orthanc holds three
/// CT priors of the patient; with `max_studies = 2` the two newest are retrieved (C-GET)
/// and sent — images and the SR report — each tagged with readgate's block naming the
/// study they are priors of, then the study. A second study of the patient sends no
/// prior again (the facility has them), and priors never become studies (so the ledger
/// cannot count them).
#[tokio::test(flavor = "multi_thread")]
async fn chosen_priors_are_sent_first_tagged_and_only_once() {
    let pacs_dir = tempfile::tempdir().unwrap();
    let pacs = PacsPeer::orthanc(pacs_dir.path());
    let base = "1.2.826.0.1.3680043.10.7106";
    let (newest, middle, oldest) = (
        format!("{base}.1"),
        format!("{base}.2"),
        format!("{base}.3"),
    );
    pacs.load_with(
        &newest,
        "P-SEND",
        "ACC-SEND-1",
        &days_ago(30),
        &["--report", "前回と著変なし。"],
    );
    pacs.load(&middle, "P-SEND", "ACC-SEND-2", &days_ago(60));
    pacs.load(&oldest, "P-SEND", "ACC-SEND-3", &days_ago(90));
    let (dir, scp, mut cfg) = PriorSite::logged_config();
    cfg.extra = pacs_entry(pacs.ae, pacs.port, "", "max_studies = 2");
    let site = PriorSite::run(dir, scp, cfg).await;

    let current = format!("{base}.9");
    site.send(&current, "P-SEND", "ACC-SEND-NOW", 2);
    let row = site.wait_decided(&current, Duration::from_secs(30));
    assert_eq!(row.state, StudyState::Forwarded, "{:?}", reasons(&row));
    let got = site.arrivals(7);
    let studies: Vec<&str> = got.iter().map(|a| a.study_uid.as_str()).collect();
    // Two images each, the newest prior with its SR, then the study's two images.
    assert_eq!(got.len(), 7, "{got:#?}");
    let first_current = studies
        .iter()
        .position(|s| *s == current)
        .expect("the study");
    assert_eq!(first_current, 5, "priors first: {studies:?}");
    assert!(
        studies[..5].iter().all(|s| *s == newest || *s == middle),
        "{studies:?}"
    );
    assert_eq!(
        studies.iter().filter(|s| **s == newest).count(),
        3,
        "{studies:?}"
    );
    assert!(
        !studies.contains(&oldest.as_str()),
        "max_studies = 2: {studies:?}"
    );
    for a in &got {
        assert!(a.tagged, "readgate's block on every instance: {a:?}");
        let expected = (a.study_uid != current).then(|| "ACC-SEND-NOW".to_string());
        assert_eq!(a.prior_of, expected, "{a:?}");
    }
    // Shown where the study is: sent to rc1.
    let out = run_ok(
        readgate_bin()
            .args(["priors", "--config"])
            .arg(site.cfg.write())
            .args(["ACC-SEND-NOW", "--format", "json"]),
        "readgate priors",
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let sent: Vec<(String, serde_json::Value, serde_json::Value)> = v["priors"]
        .as_array()
        .expect("priors")
        .iter()
        .map(|p| {
            (
                p["accession"].as_str().unwrap_or("").to_string(),
                p["chosen"].clone(),
                p["sent_to"].clone(),
            )
        })
        .collect();
    let (yes, no) = (serde_json::json!(true), serde_json::json!(false));
    assert_eq!(
        sent,
        [
            (
                "ACC-SEND-1".to_string(),
                yes.clone(),
                serde_json::json!(["rc1"])
            ),
            ("ACC-SEND-2".to_string(), yes, serde_json::json!(["rc1"])),
            ("ACC-SEND-3".to_string(), no, serde_json::json!([])),
        ],
        "{v:#}"
    );

    // A second study of the patient, once the first is reported: the facility has the
    // priors (and the first study).
    site.report("P-SEND", "ACC-SEND-NOW").await;
    let second = format!("{base}.10");
    site.send(&second, "P-SEND", "ACC-SEND-LATER", 1);
    site.wait_state(&second, StudyState::Forwarded, Duration::from_secs(30));
    let got = site.arrivals(8);
    assert_eq!(got.len(), 8, "only the new image: {got:#?}");
    assert_eq!(got[7].study_uid, second);
    // Each prior sent once, audited (before it went) with the study it went with.
    let sends = site.audited("prior_sent");
    // docs/audit.md: the actor is readgate's calling AE towards the destination.
    assert!(sends.iter().all(|e| e.actor == "READGATE"), "{sends:?}");
    let mut audited: Vec<(String, String)> = sends
        .iter()
        .map(|e| {
            let d: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
            (
                e.study_uid.clone().unwrap_or_default(),
                d["prior_of"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    audited.sort();
    assert_eq!(
        audited,
        [
            (newest.clone(), "ACC-SEND-NOW".to_string()),
            (middle.clone(), "ACC-SEND-NOW".to_string())
        ]
    );
    // Priors are not studies: nothing for the ledger to count.
    for prior in [&newest, &middle] {
        assert!(site.rg.store.study_row(prior).unwrap().is_none());
    }
    site.rg.stop().await;
}

/// A chosen prior that cannot be retrieved holds the study back (`on_pacs_unreachable`
/// is `hold` by default): it stays queued, its last error naming the prior and the PACS,
/// and leaves with the prior first once the PACS is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_prior_that_cannot_be_retrieved_holds_the_study_back_until_it_can() {
    let pacs_dir = tempfile::tempdir().unwrap();
    let pacs = PacsPeer::dcmqrscp(pacs_dir.path());
    let link = PacsLink::to(pacs.port);
    let base = "1.2.826.0.1.3680043.10.7107";
    let prior = format!("{base}.1");
    pacs.load(&prior, "P-GONE", "ACC-GONE-1", &days_ago(15));
    let (dir, scp, mut cfg) = PriorSite::logged_config();
    // Time between the lookup (first image) and the decision to stop the PACS in; the
    // prior is retrieved when the study leaves, not ahead (that is tested below).
    cfg.stable_after_secs = 3;
    cfg.extra = pacs_entry(pacs.ae, link.port, "", "prefetch = false");
    let site = PriorSite::run(dir, scp, cfg).await;
    // The prior's report came over HL7 (dcmqrscp lists no document classes).
    site.report("P-GONE", "ACC-GONE-1").await;

    let current = format!("{base}.9");
    site.send(&current, "P-GONE", "ACC-GONE-NOW", 1);
    wait_until("the PACS answered", Duration::from_secs(30), || {
        site.rg
            .store
            .pacs_lookups(&["P-GONE".to_string()])
            .unwrap()
            .iter()
            .any(|l| l.error.is_none())
    });
    drop(pacs);
    link.cut();
    let mut row = None;
    wait_until("a failed attempt", Duration::from_secs(30), || {
        row = site.rg.store.study_row(&current).unwrap();
        row.as_ref().and_then(|r| r.last_error.clone()).is_some()
    });
    let row = row.expect("row");
    assert_eq!(row.state, StudyState::Queued);
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains(&format!(
            "prior study {prior} could not be retrieved from PACS hosp"
        )),
        "{error}"
    );
    assert!(arrived(site.dir.path(), &site.scp).is_empty());

    let pacs = PacsPeer::dcmqrscp(pacs_dir.path());
    link.restore(pacs.port);
    site.wait_state(&current, StudyState::Forwarded, Duration::from_secs(30));
    let got = site.arrived_in_order(&[&prior, &prior, &prior, &current]);

    // The prior's report existed only as the ORU: it arrives as a Basic Text SR in the
    // prior study, after its images, and DCMTK and pydicom read its Japanese text.
    let sr = &got[2];
    assert_eq!(
        sr.sop_class_uid, "1.2.840.10008.5.1.4.1.1.88.11",
        "{got:#?}"
    );
    assert_eq!(sr.prior_of.as_deref(), Some("ACC-GONE-NOW"));
    let dump = run_ok(Command::new(dcmtk("dcmdump")).arg(&sr.path), "dcmdump SR");
    let dump = String::from_utf8_lossy(&dump.stdout);
    for expected in [
        "(0008,0005) CS [ISO_IR 192]",
        "(0008,0060) CS [SR]",
        "(0040,a040) CS [CONTAINER]",
        "[Diagnostic Imaging Report]",
        "(0040,a160) UT [異常所見なし。]",
        "(0008,0050) SH [ACC-GONE-1]",
        "(0010,0020) LO [P-GONE]",
        "ORU^R01",
    ] {
        assert!(dump.contains(expected), "{expected} in\n{dump}");
    }
    // DCMTK's SR toolkit reads it as a valid Basic Text SR document.
    let sr_dump = run_ok(
        Command::new(dcmtk("dsrdump")).args(["-Ec"]).arg(&sr.path),
        "dsrdump",
    );
    let sr_dump = String::from_utf8_lossy(&sr_dump.stdout);
    assert!(
        sr_dump.contains("Basic Text SR Document") && sr_dump.contains("異常所見なし。"),
        "{sr_dump}"
    );
    let read = run_ok(
        Command::new(python())
            .arg("-c")
            .arg(
                "import sys, pydicom\n\
             d = pydicom.dcmread(sys.argv[1])\n\
             print(d.StudyInstanceUID, d.VerificationFlag)\n\
             print(d.ContentSequence[0].TextValue)",
            )
            .arg(&sr.path),
        "pydicom reads the SR",
    );
    let text = String::from_utf8_lossy(&read.stdout);
    assert_eq!(
        text.trim(),
        format!("{prior} UNVERIFIED\n異常所見なし。"),
        "{text}"
    );
    let retrieves = readgate::metrics::pacs_retrieves();
    assert!(
        retrieves.contains_key(&("hosp".to_string(), "failed"))
            && retrieves.contains_key(&("hosp".to_string(), "retrieved")),
        "{retrieves:?}"
    );
    site.rg.stop().await;
}

/// `retrieve = "move"`, as most hospital PACS retrieve: the PACS (which knows readgate's
/// AE, host and port) stores the prior back through readgate's DICOM listener; those
/// instances are the move's, not studies, and reach the facility before the study.
async fn moved_priors_arrive_first(orthanc: bool) {
    let base = if orthanc {
        "1.2.826.0.1.3680043.10.7108"
    } else {
        "1.2.826.0.1.3680043.10.7109"
    };
    let pacs_dir = tempfile::tempdir().unwrap();
    let (dir, scp, mut cfg) = PriorSite::logged_config();
    let pacs = if orthanc {
        PacsPeer::orthanc_moving_to(pacs_dir.path(), cfg.dicom_port)
    } else {
        PacsPeer::dcmqrscp_moving_to(pacs_dir.path(), cfg.dicom_port)
    };
    let prior = format!("{base}.1");
    // Orthanc lists the SR report; with dcmqrscp the report comes over HL7 and goes as
    // readgate's own SR.
    let report: &[&str] = if orthanc {
        &["--report", "前回と著変なし。"]
    } else {
        &[]
    };
    pacs.load_with(&prior, "P-MOVE", "ACC-MOVE-1", &days_ago(20), report);
    cfg.extra = pacs_entry(pacs.ae, pacs.port, "retrieve = \"move\"", "");
    let site = PriorSite::run(dir, scp, cfg).await;
    let check = run_ok(
        readgate_bin()
            .args(["config-check", "--config"])
            .arg(site.cfg.write()),
        "readgate config-check",
    );
    let check = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.contains("retrieved by C-MOVE to READGATE") && check.contains("priors sent first"),
        "{check}"
    );
    if !orthanc {
        site.report("P-MOVE", "ACC-MOVE-1").await;
    }

    let current = format!("{base}.9");
    site.send(&current, "P-MOVE", "ACC-MOVE-NOW", 2);
    let row = site.wait_decided(&current, Duration::from_secs(30));
    assert_eq!(row.state, StudyState::Forwarded, "{:?}", reasons(&row));
    let got = site.arrived_in_order(&[&prior, &prior, &prior, &current, &current]);
    assert!(got
        .iter()
        .any(|a| a.sop_class_uid == "1.2.840.10008.5.1.4.1.1.88.11"));
    assert!(got[..3]
        .iter()
        .all(|a| a.prior_of.as_deref() == Some("ACC-MOVE-NOW")));
    // The moved instances never became a study, and the move was audited as such.
    assert!(site.rg.store.study_row(&prior).unwrap().is_none());
    let queries = site.audited("query");
    assert!(
        queries
            .iter()
            .any(|e| e.detail.contains("\"operation\":\"C-MOVE\"") && e.detail.contains(&prior)),
        "{queries:?}"
    );

    // A C-STORE naming readgate's move when none is pending (a late sub-operation, or
    // someone guessing) is refused, not taken as a study (pynetdicom sets the originator).
    let stray = format!("{base}.66");
    let out = site.dir.path().join("stray");
    run_ok(
        Command::new(python())
            .arg(repo_path("tests/peers/make_study.py"))
            .arg(&out)
            .args([
                "--study-uid",
                &stray,
                "--count",
                "1",
                "--patient-id",
                "P-MOVE",
            ]),
        "make_study.py",
    );
    let file = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let answer = run_ok(
        Command::new(python())
            .arg("-c")
            .arg(
                "import sys, pydicom\n\
             from pynetdicom import AE\n\
             ds = pydicom.dcmread(sys.argv[1])\n\
             ae = AE(ae_title=sys.argv[3])\n\
             ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)\n\
             assoc = ae.associate('127.0.0.1', int(sys.argv[2]), ae_title='READGATE')\n\
             st = assoc.send_c_store(ds, originator_aet='READGATE', originator_id=1)\n\
             print('%04X %s' % (st.Status, st.get('ErrorComment', '')))\n\
             assoc.release()",
            )
            .arg(&file)
            .arg(site.cfg.dicom_port.to_string())
            .arg(pacs.ae),
        "pynetdicom C-STORE as a move sub-operation",
    );
    let answer = String::from_utf8_lossy(&answer.stdout);
    assert!(
        answer.starts_with("0124 ") && answer.contains("no retrieval by readgate is pending"),
        "{answer}"
    );
    assert!(site.rg.store.study_row(&stray).unwrap().is_none());
    site.rg.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn priors_are_moved_from_orthanc() {
    moved_priors_arrive_first(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn priors_are_moved_from_dcmqrscp_with_the_report_from_hl7() {
    moved_priors_arrive_first(false).await;
}

/// A study dated long ago (sent late, or an old study imported): its priors are those of
/// the year before *its* date, and the PACS is asked back from there, not from today.
#[tokio::test(flavor = "multi_thread")]
async fn an_old_study_is_checked_against_the_priors_of_its_own_year() {
    let pacs_dir = tempfile::tempdir().unwrap();
    let pacs = PacsPeer::dcmqrscp(pacs_dir.path());
    let base = "1.2.826.0.1.3680043.10.7110";
    pacs.load(&format!("{base}.1"), "P-OLD", "ACC-OLD-1", &days_ago(500));
    let site = PriorSite::start(pacs.port, pacs.ae, "").await;
    let current = format!("{base}.9");
    site.send_dated(&current, "P-OLD", "ACC-OLD-NOW", 1, &days_ago(400));
    let text = site.wait_held_for_prior_report(&current);
    assert!(text.contains("ACC-OLD-1"), "{text}");
    site.rg.stop().await;
}

/// Two hospitals' patients with the same ID: the PACS answers with the Issuer of Patient
/// ID (Orthanc does), and a study of another issuer is not the patient's prior. One of
/// the patient's own issuer, or with none, is.
#[tokio::test(flavor = "multi_thread")]
async fn a_pacs_study_of_another_issuer_is_not_a_prior() {
    let pacs_dir = tempfile::tempdir().unwrap();
    let pacs = PacsPeer::orthanc(pacs_dir.path());
    let base = "1.2.826.0.1.3680043.10.7111";
    pacs.load_with(
        &format!("{base}.1"),
        "P-ISSUER",
        "ACC-OTHER-HOSP",
        &days_ago(30),
        &["--issuer", "HOSP_B"],
    );
    // Every prior in the look-back needs a report, so the PACS study is named below
    // beside the first study (the same ID: readgate's own studies are not told apart).
    let all = "[policy.priors]\nrequire = \"all\"\n";
    let site = PriorSite::start(pacs.port, pacs.ae, all).await;
    let passes = format!("{base}.8");
    site.send_with(
        &passes,
        "P-ISSUER",
        "ACC-ISSUER-A",
        1,
        &["--issuer", "HOSP_A"],
    );
    let row = site.wait_decided(&passes, Duration::from_secs(30));
    assert_eq!(row.state, StudyState::Forwarded, "{:?}", reasons(&row));
    let found = site
        .rg
        .store
        .pacs_studies(&["P-ISSUER".to_string()])
        .unwrap();
    assert_eq!(
        found[0].study.issuer.as_deref(),
        Some("HOSP_B"),
        "{found:?}"
    );

    // The same PACS study, for a study of HOSP_B's patient: a prior without report.
    let held = format!("{base}.9");
    site.send_with(
        &held,
        "P-ISSUER",
        "ACC-ISSUER-B",
        1,
        &["--issuer", "HOSP_B"],
    );
    let text = site.wait_held_for_prior_report(&held);
    assert!(text.contains("ACC-OTHER-HOSP"), "{text}");
    site.rg.stop().await;
}

/// `send_priors`: a destination set to `false` (a facility that fetches priors itself)
/// gets the study alone; a route set to `true` sends them to it anyway.
#[tokio::test(flavor = "multi_thread")]
async fn send_priors_is_switched_per_destination_and_per_route() {
    let pacs_dir = tempfile::tempdir().unwrap();
    let pacs = PacsPeer::dcmqrscp(pacs_dir.path());
    let base = "1.2.826.0.1.3680043.10.7112";
    let prior = format!("{base}.1");
    pacs.load(&prior, "P-SWITCH", "ACC-SWITCH-1", &days_ago(10));
    for (route, expected_priors) in [("", 0), ("send_priors = true", 2)] {
        let (dir, scp, mut cfg) = PriorSite::logged_config();
        cfg.dest_extra = "send_priors = false".into();
        cfg.route_extra = route.into();
        cfg.extra = pacs_entry(pacs.ae, pacs.port, "", "");
        let site = PriorSite::run(dir, scp, cfg).await;
        site.report("P-SWITCH", "ACC-SWITCH-1").await;
        let current = format!("{base}.{}", 8 + expected_priors);
        site.send(&current, "P-SWITCH", "ACC-SWITCH-NOW", 1);
        site.wait_state(&current, StudyState::Forwarded, Duration::from_secs(30));
        // With priors: the two images and the SR made of the ORU.
        let expected = if expected_priors == 0 { 0 } else { 3 };
        let got = site.arrivals(expected + 1);
        let priors = got.iter().filter(|a| a.study_uid == prior).count();
        assert_eq!(priors, expected, "route {route:?}: {got:#?}");
        assert_eq!(
            got.last().map(|a| a.study_uid.as_str()),
            Some(current.as_str())
        );
        site.rg.stop().await;
    }
}

/// A STAT study is not held back by a prior the PACS cannot deliver (`policy.stat` is
/// `forward_flagged` by default): it leaves without it; a routine one would wait.
#[tokio::test(flavor = "multi_thread")]
async fn a_stat_study_leaves_without_a_prior_the_pacs_cannot_deliver() {
    let pacs_dir = tempfile::tempdir().unwrap();
    let pacs = PacsPeer::dcmqrscp(pacs_dir.path());
    let base = "1.2.826.0.1.3680043.10.7113";
    let prior = format!("{base}.1");
    pacs.load(&prior, "P-STAT", "ACC-STAT-1", &days_ago(15));
    let (dir, scp, mut cfg) = PriorSite::logged_config();
    // Time between the lookup (first image) and the decision to stop the PACS in; the
    // prior is retrieved when the study leaves.
    cfg.stable_after_secs = 3;
    cfg.extra = pacs_entry(pacs.ae, pacs.port, "", "prefetch = false");
    // Decided when complete: with `forward` unset a STAT study streams from its first
    // image, and would take its prior along while the PACS is still up.
    cfg.route_extra = "forward = \"on_complete\"".into();
    let site = PriorSite::run(dir, scp, cfg).await;
    site.report("P-STAT", "ACC-STAT-1").await;
    let hl7 = site.rg.hl7_addr.expect("HL7 listener");
    let ack = send_hl7(hl7, stat_order("P-STAT", "ACC-STAT-NOW")).await;
    assert!(ack.contains("MSA|AA"), "{ack}");

    let current = format!("{base}.9");
    site.send(&current, "P-STAT", "ACC-STAT-NOW", 1);
    wait_until("the PACS answered", Duration::from_secs(30), || {
        site.rg
            .store
            .pacs_lookups(&["P-STAT".to_string()])
            .unwrap()
            .iter()
            .any(|l| l.error.is_none())
    });
    drop(pacs);
    site.wait_state(&current, StudyState::Forwarded, Duration::from_secs(30));
    // The study alone.
    site.arrived_in_order(&[&current]);
    let context = site
        .rg
        .store
        .decision_of(&current)
        .unwrap()
        .and_then(|d| d.context_json)
        .unwrap_or_default();
    assert!(context.contains("\"priority\":\"stat\""), "{context}");
    site.rg.stop().await;
}

/// `priors.prefetch`: the order (before any image) has the patient's history looked up
/// and the chosen prior retrieved; when the study passes it leaves with that prior,
/// retrieved once, before its images arrived, so its decision waits for no PACS.
#[tokio::test(flavor = "multi_thread")]
async fn priors_are_fetched_on_the_order_before_the_images_arrive() {
    let base = "1.2.826.0.1.3680043.10.7114";
    let pacs_dir = tempfile::tempdir().unwrap();
    let pacs = PacsPeer::orthanc(pacs_dir.path());
    let prior = format!("{base}.1");
    pacs.load_with(
        &prior,
        "P-AHEAD",
        "ACC-AHEAD-1",
        &days_ago(30),
        &["--report", "前回と著変なし。"],
    );
    let (dir, scp, mut cfg) = PriorSite::logged_config();
    cfg.extra = pacs_entry(pacs.ae, pacs.port, "", "");
    let site = PriorSite::run(dir, scp, cfg).await;
    let hl7 = site.rg.hl7_addr.expect("HL7 listener");
    let ack = send_hl7(hl7, routine_order("P-AHEAD", "ACC-AHEAD-NOW")).await;
    assert!(ack.contains("MSA|AA"), "{ack}");

    let retrievals = |site: &PriorSite| -> Vec<serde_json::Value> {
        site.audited("query")
            .iter()
            .map(|e| serde_json::from_str::<serde_json::Value>(&e.detail).unwrap())
            .filter(|d| d["operation"] == "C-GET")
            .collect()
    };
    wait_until(
        "the prior fetched on the order",
        Duration::from_secs(30),
        || readgate::metrics::pacs_retrieves().contains_key(&("hosp".to_string(), "retrieved")),
    );
    let ahead = retrievals(&site);
    assert_eq!(ahead.len(), 1, "{ahead:?}");
    assert_eq!(ahead[0]["purpose"], "prefetch");
    assert_eq!(ahead[0]["study_uid"], prior.as_str());
    let fetched_at = readgate::time::now_ms();

    let current = format!("{base}.9");
    site.send(&current, "P-AHEAD", "ACC-AHEAD-NOW", 2);
    let row = site.wait_decided(&current, Duration::from_secs(30));
    assert_eq!(row.state, StudyState::Forwarded, "{:?}", reasons(&row));
    // Two images and Orthanc's SR report of the prior, then the study.
    let got = site.arrived_in_order(&[&prior, &prior, &prior, &current, &current]);
    assert!(got[..3]
        .iter()
        .all(|a| a.prior_of.as_deref() == Some("ACC-AHEAD-NOW")));
    // Retrieved once, before the first image: the study's send took it from the cache.
    assert_eq!(retrievals(&site).len(), 1);
    let first_image = site
        .rg
        .store
        .study_row(&current)
        .unwrap()
        .map(|r| r.first_received_at)
        .unwrap_or(0);
    assert!(first_image >= fetched_at, "{first_image} < {fetched_at}");
    let sent = site.audited("prior_sent");
    assert_eq!(sent.len(), 1, "{sent:?}");
    // `readgate priors` shows it found, chosen, retrieved (three instances) and sent.
    let shown = run_ok(
        readgate_bin()
            .args(["priors", &current, "--format", "json", "--config"])
            .arg(site.cfg.write()),
        "readgate priors --format json",
    );
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let row = &shown["priors"][0];
    assert_eq!(row["study_uid"], prior.as_str(), "{shown:#}");
    assert_eq!(row["chosen"], true, "{shown:#}");
    assert_eq!(row["retrieved"]["instances"], 3, "{shown:#}");
    assert_eq!(row["retrieved"]["pacs_id"], "hosp", "{shown:#}");
    assert_eq!(row["not_retrieved"], serde_json::Value::Null, "{shown:#}");
    assert_eq!(row["sent_to"], serde_json::json!(["rc1"]), "{shown:#}");
    site.rg.stop().await;
}

/// A prior the PACS lists but will not deliver (Orthanc does not know readgate as a move
/// destination yet) holds the study with PRIORS_UNAVAILABLE naming it; once the PACS
/// is fixed, readgate's retry retrieves it and the study leaves with it, on its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_prior_the_pacs_will_not_deliver_holds_the_study_until_it_does() {
    let base = "1.2.826.0.1.3680043.10.7115";
    let pacs_dir = tempfile::tempdir().unwrap();
    let (dir, scp, mut cfg) = PriorSite::logged_config();
    // Orthanc moves to a port nobody listens on: C-FIND answers, C-MOVE fails.
    let pacs = PacsPeer::orthanc_moving_to(pacs_dir.path(), free_port());
    let prior = format!("{base}.1");
    pacs.load_with(
        &prior,
        "P-NOMOVE",
        "ACC-NOMOVE-1",
        &days_ago(12),
        &["--report", "前回と著変なし。"],
    );
    // Time for the prefetch to fail before the study is decided.
    cfg.stable_after_secs = 3;
    cfg.extra = pacs_entry(pacs.ae, pacs.port, "retrieve = \"move\"", "");
    let readgate_port = cfg.dicom_port;
    let site = PriorSite::run(dir, scp, cfg).await;

    let current = format!("{base}.9");
    site.send(&current, "P-NOMOVE", "ACC-NOMOVE-NOW", 1);
    let row = site.wait_decided(&current, Duration::from_secs(30));
    let (codes, text) = reasons(&row);
    assert_eq!(
        (row.state, codes),
        (StudyState::Held, vec!["PRIORS_UNAVAILABLE".to_string()]),
        "{text}"
    );
    let date = {
        let d = days_ago(12);
        format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..])
    };
    for part in [
        "ACC-NOMOVE-1",
        date.as_str(),
        "could not be retrieved",
        "取得できませんでした",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    let shown = run_ok(
        readgate_bin()
            .args(["priors", &current, "--config"])
            .arg(site.cfg.write()),
        "readgate priors",
    );
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("NOT RETRIEVED"), "{shown}");
    assert!(arrived(site.dir.path(), &site.scp).is_empty());

    pacs.register_readgate(readgate_port).await;
    site.wait_state(&current, StudyState::Forwarded, Duration::from_secs(30));
    site.arrived_in_order(&[&prior, &prior, &prior, &current]);
    let retrieves = readgate::metrics::pacs_retrieves();
    assert!(
        retrieves.contains_key(&("hosp".to_string(), "failed"))
            && retrieves.contains_key(&("hosp".to_string(), "retrieved")),
        "{retrieves:?}"
    );
    site.rg.stop().await;
}

/// Body part (`policy.priors.same_body_part`): Orthanc answers Body Part Examined at
/// SERIES level. A newer head CT without a report is neither compared with a chest CT nor
/// sent with it; the older chest CT, reported, is both.
#[tokio::test(flavor = "multi_thread")]
async fn a_prior_of_another_body_part_is_neither_compared_nor_sent() {
    let base = "1.2.826.0.1.3680043.10.7116";
    let pacs_dir = tempfile::tempdir().unwrap();
    let pacs = PacsPeer::orthanc(pacs_dir.path());
    let (chest, head) = (format!("{base}.1"), format!("{base}.2"));
    pacs.load_with(
        &chest,
        "P-PART",
        "ACC-PART-CHEST",
        &days_ago(40),
        &["--body-part", "CHEST", "--report", "前回と著変なし。"],
    );
    pacs.load_with(
        &head,
        "P-PART",
        "ACC-PART-HEAD",
        &days_ago(10),
        &["--body-part", "HEAD"],
    );
    let (dir, scp, mut cfg) = PriorSite::logged_config();
    cfg.extra = pacs_entry(pacs.ae, pacs.port, "", "");
    let site = PriorSite::run(dir, scp, cfg).await;
    let current = format!("{base}.9");
    site.send_with(
        &current,
        "P-PART",
        "ACC-PART-NOW",
        1,
        &["--body-part", "CHEST"],
    );
    let row = site.wait_decided(&current, Duration::from_secs(30));
    assert_eq!(row.state, StudyState::Forwarded, "{:?}", reasons(&row));
    site.arrived_in_order(&[&chest, &chest, &chest, &current]);
    // Both are listed; only the chest CT is chosen (and it kept its body part).
    let found = site.rg.store.pacs_studies(&["P-PART".to_string()]).unwrap();
    let parts: Vec<(&str, Vec<String>)> = found
        .iter()
        .map(|f| (f.study.study_uid.as_str(), f.study.body_parts.clone()))
        .collect();
    assert_eq!(
        parts,
        [
            (head.as_str(), vec!["HEAD".to_string()]),
            (chest.as_str(), vec!["CHEST".to_string()])
        ]
    );
    let shown = run_ok(
        readgate_bin()
            .args(["priors", &current, "--config"])
            .arg(site.cfg.write()),
        "readgate priors",
    );
    let shown = String::from_utf8_lossy(&shown.stdout);
    let chosen: Vec<&str> = shown.lines().filter(|l| l.contains("  yes  ")).collect();
    assert!(
        chosen.len() == 1 && chosen[0].contains("ACC-PART-CHEST"),
        "{shown}"
    );
    site.rg.stop().await;
}

/// A report committed just before readgate stopped — after the commit, before the held
/// study it completes was sent back to the decision stage, so no ACK went out: the
/// sender's resend is a repeat, applied once, and still releases the study.
#[tokio::test(flavor = "multi_thread")]
async fn a_resent_report_releases_the_study_its_first_copy_did_not_reach() {
    let pacs_dir = tempfile::tempdir().unwrap();
    let pacs = PacsPeer::dcmqrscp(pacs_dir.path());
    let base = "1.2.826.0.1.3680043.10.7117";
    let (patient, prior) = ("P-RESENT", "ACC-RESENT-1");
    pacs.load(&format!("{base}.1"), patient, prior, &days_ago(30));
    let site = PriorSite::start(pacs.port, pacs.ae, "").await;
    let current = format!("{base}.9");
    site.send(&current, patient, "ACC-RESENT-NOW", 1);
    site.wait_held_for_prior_report(&current);

    // The first copy, recorded as the HL7 writer records it, and nothing after that.
    let text = final_report(patient, prior);
    let first = readgate::store::IncomingMessage {
        received_at: readgate::time::now_ms(),
        peer: "127.0.0.1:1".into(),
        sender: "REPORTING|HOSP".into(),
        control_id: format!("ORU-{prior}"),
        message_type: "ORU^R01".into(),
        charset: None,
        parsed: Some(
            readgate::hl7::message::parse_for(&text, &readgate::hl7::Config::default())
                .expect("the report parses"),
        ),
        raw: text.clone().into_bytes(),
        ack_code: "AA".into(),
        ack_text: String::new(),
        ack: format!("MSH|^~\\&|READGATE|HOSP|REPORTING|HOSP|||ACK|1|P|2.5\rMSA|AA|ORU-{prior}")
            .into_bytes(),
    };
    let store = site.rg.store.clone();
    let recorded = tokio::task::spawn_blocking(move || store.record_hl7_batch(&[first]))
        .await
        .unwrap()
        .unwrap();
    assert!(!recorded.messages[0].duplicate);
    let state = site.rg.store.study_row(&current).unwrap().map(|r| r.state);
    assert_eq!(state, Some(StudyState::Held));

    // The sender had no ACK: it sends the message again, and gets the first's.
    let ack = send_hl7(site.rg.hl7_addr.expect("HL7 listener"), &text).await;
    assert!(ack.contains(&format!("MSA|AA|ORU-{prior}")), "{ack}");
    site.wait_state(&current, StudyState::Forwarded, Duration::from_secs(30));
    let reports: i64 = site
        .cfg
        .database()
        .query_row(
            "SELECT COUNT(*) FROM reports WHERE accession = ?1",
            [prior],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(reports, 1, "applied once");
    site.rg.stop().await;
}
