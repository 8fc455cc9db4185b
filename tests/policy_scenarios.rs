//! End-to-end policy scenarios with the default JRS policy (`[policy]` left out): the
//! `readgate serve` binary between DCMTK `storescu` (the modality, CT01) and DCMTK
//! `storescp` (the reading facility), real HL7 v2 over MLLP (the Python `hl7` package's
//! `mllp_send`), test studies written by `tests/peers/make_study.py` (pydicom). Each
//! scenario asserts the study's state with `readgate studies --format json`, what reached
//! storescp, and where needed the `events` table and the recorded verdict (SQLite).
//!
//! Scenarios: complete context (header, or an order) → forwarded; missing exam purpose →
//! held, a late order releases it; placeholder clinical information → held; contrast CT
//! without a recent eGFR → held (missing / too old), a lab result releases it; a prior
//! without a final report → held until its ORU^R01 F; STAT orders → forwarded flagged;
//! operator release / reject; held across a restart, then released.
//!
//! Tagging of forwarded instances (the `READGATE ACCOUNTABILITY` private block and the
//! context copied from the order) is checked by [`assert_tagged`] and
//! [`assert_context_copied`].

mod common;

use common::hl7::{mllp_send, python, require_python_hl7, Ack};
use common::{
    assert_success, dcmtk, dcmtk_scu, free_port, readgate_bin, repo_path, run_ok, run_output,
    Daemon, StoreScp, TestConfig,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Private creator of readgate's accountability block.
const CREATOR: &str = "READGATE ACCOUNTABILITY";

/// JLAC10 推算GFRcreat (eGFR from creatinine), as the default `contrast-egfr` rule asks.
const JLAC10_EGFR: &str = "8A065000002391901";

const UID_ROOT: &str = "1.2.826.0.1.3680043.10.1234";

/// How long a study may take to be decided or forwarded (studies are stable after 1 s).
const SETTLE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Time: DICOM and HL7 dates in the hospital's time (JST, UTC+9, the policy default).
// ---------------------------------------------------------------------------

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
const JST_MS: i64 = 9 * 60 * MINUTE_MS;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// (year, month, day) of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// `YYYYMMDD` and `HHMMSS` of an instant, in JST.
fn jst(ms: i64) -> (String, String) {
    let local = ms + JST_MS;
    let (y, m, d) = civil_from_days(local.div_euclid(DAY_MS));
    let s = local.rem_euclid(DAY_MS) / 1000;
    (
        format!("{y:04}{m:02}{d:02}"),
        format!("{:02}{:02}{:02}", s / 3600, s / 60 % 60, s % 60),
    )
}

/// HL7 TS with the JST offset, e.g. `20240601101500+0900`.
fn hl7_ts(ms: i64) -> String {
    let (d, t) = jst(ms);
    format!("{d}{t}+0900")
}

// ---------------------------------------------------------------------------
// Test studies (tests/peers/make_study.py)
// ---------------------------------------------------------------------------

/// What the modality puts in the header. `None`: the attribute is not sent.
#[derive(Clone, Debug)]
struct Study {
    uid: String,
    accession: String,
    patient_id: String,
    date: String,
    /// Empty: Study Time sent empty (Type 2).
    time: String,
    purpose: Option<String>,
    history: Option<String>,
    requesting: Option<String>,
    callback: Option<String>,
    contrast: Option<String>,
    count: usize,
}

impl Study {
    /// A study acquired five minutes ago with no clinical context in its header.
    fn bare(n: &str) -> Study {
        let (date, time) = jst(now_ms() - 5 * MINUTE_MS);
        Study {
            uid: format!("{UID_ROOT}.{n}"),
            accession: format!("ACC-{n}"),
            patient_id: format!("SYN-P-{n}"),
            date,
            time,
            purpose: None,
            history: None,
            requesting: None,
            callback: None,
            contrast: None,
            count: 2,
        }
    }

    /// A study whose header carries the whole clinical context (in Japanese, UTF-8).
    fn complete(n: &str) -> Study {
        Study {
            purpose: Some("肺塞栓症の除外".into()),
            history: Some("3日前から労作時呼吸困難、D-dimer高値".into()),
            requesting: Some("佐藤^花子".into()),
            callback: Some("内線 4321".into()),
            ..Study::bare(n)
        }
    }

    fn sop_uids(&self) -> BTreeSet<String> {
        (1..=self.count)
            .map(|i| format!("{}.1.{i}", self.uid))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// HL7 messages
// ---------------------------------------------------------------------------

/// A segment from (field number, value) pairs; unlisted fields are empty.
fn seg(name: &str, fields: &[(usize, &str)]) -> String {
    let max = fields.iter().map(|f| f.0).max().unwrap_or(0);
    let mut v = vec![""; max];
    for (i, s) in fields {
        v[i - 1] = s;
    }
    format!("{name}|{}", v.join("|"))
}

fn message(segments: &[String]) -> String {
    let mut m = segments.join("\r");
    m.push('\r');
    m
}

/// One OBX lab value.
#[derive(Clone, Debug)]
struct Lab {
    code: String,
    name: String,
    system: String,
    value: String,
    units: String,
    /// OBX-14 as sent (HL7 TS); empty: no observation time.
    observed: String,
}

impl Lab {
    /// eGFR with its JLAC10 code as JAHIS / SS-MIX2 senders write it (system `JC10`).
    fn egfr(value: &str, observed: &str) -> Lab {
        Lab {
            code: JLAC10_EGFR.into(),
            name: "eGFR".into(),
            system: "JC10".into(),
            value: value.into(),
            units: "mL/min/1.73m2".into(),
            observed: observed.into(),
        }
    }

    fn obx(&self, set_id: usize) -> String {
        let id = set_id.to_string();
        let code = format!("{}^{}^{}", self.code, self.name, self.system);
        seg(
            "OBX",
            &[
                (1, &id),
                (2, "NM"),
                (3, &code),
                (5, &self.value),
                (6, &self.units),
                (11, "F"),
                (14, &self.observed),
            ],
        )
    }
}

/// An imaging order (ORM^O01 2.3.1, IHE SWF style; OMI^O23 2.5 for ISO-2022-JP).
#[derive(Clone, Debug, Default)]
struct Order {
    control_id: String,
    /// ORC-1: NW, XO, CA...
    control: String,
    patient_id: String,
    /// OBR-18 (IPC-1); empty: not sent.
    accession: String,
    /// ZDS-1 (IPC-3); empty: not sent.
    study_uid: String,
    /// OBR-13.
    clinical: String,
    /// OBR-31 (text component).
    purpose: String,
    /// ORC-12 / OBR-16 XCN, e.g. `9001^佐藤^花子`.
    physician: String,
    /// ORC-14 / OBR-17.
    phone: String,
    /// Priority (ORC-7.6 and OBR-27.6, or TQ1-9): S, A, R.
    priority: String,
    /// OBX in the order.
    labs: Vec<Lab>,
}

impl Order {
    /// A new routine order for `study` with the whole context.
    fn complete(control_id: &str, study: &Study) -> Order {
        Order {
            control_id: control_id.into(),
            control: "NW".into(),
            patient_id: study.patient_id.clone(),
            accession: study.accession.clone(),
            study_uid: String::new(),
            clinical: "1週間前から胸痛、喫煙歴あり".into(),
            purpose: "急性大動脈解離の除外".into(),
            physician: "9001^佐藤^花子".into(),
            phone: "03-1234-5678".into(),
            priority: "R".into(),
            labs: Vec::new(),
        }
    }

    /// An order for `study` that says nothing clinical (only keys and priority).
    fn empty(control_id: &str, study: &Study) -> Order {
        Order {
            clinical: String::new(),
            purpose: String::new(),
            physician: String::new(),
            phone: String::new(),
            ..Order::complete(control_id, study)
        }
    }

    fn purpose_field(&self) -> String {
        if self.purpose.is_empty() {
            String::new()
        } else {
            format!("^{}", self.purpose)
        }
    }

    /// ORM^O01, HL7 2.3.1, UTF-8 (MSH-18 `UNICODE UTF-8`).
    fn orm_o01(&self) -> Vec<u8> {
        let ts = hl7_ts(now_ms());
        let msh = format!(
            "MSH|^~\\&|RIS|SYN_HOSP|READGATE|RAD|{ts}||ORM^O01|{}|P|2.3.1||||||UNICODE UTF-8",
            self.control_id
        );
        let pid3 = format!("{}^^^SYN_HOSP^MR", self.patient_id);
        let placer = format!("PL-{}", self.control_id);
        let filler = format!("FL-{}", self.control_id);
        let timing = format!("^^^^^{}", self.priority);
        let purpose = self.purpose_field();
        let mut segments = vec![
            msh,
            seg(
                "PID",
                &[
                    (3, &pid3),
                    (5, "シナリオ^花子^^^^^L^I"),
                    (7, "19700101"),
                    (8, "F"),
                ],
            ),
            seg(
                "ORC",
                &[
                    (1, &self.control),
                    (2, &placer),
                    (3, &filler),
                    (5, "SC"),
                    (7, &timing),
                    (9, &ts),
                    (12, &self.physician),
                    (14, &self.phone),
                ],
            ),
            seg(
                "OBR",
                &[
                    (1, "1"),
                    (2, &placer),
                    (3, &filler),
                    (4, "CT001^CT 胸部^LOCAL"),
                    (13, &self.clinical),
                    (16, &self.physician),
                    (17, &self.phone),
                    (18, &self.accession),
                    (24, "CT"),
                    (27, &timing),
                    (31, &purpose),
                ],
            ),
        ];
        for (i, lab) in self.labs.iter().enumerate() {
            segments.push(lab.obx(i + 1));
        }
        if !self.study_uid.is_empty() {
            segments.push(format!("ZDS|{}^100^Application^DICOM", self.study_uid));
        }
        message(&segments).into_bytes()
    }

    /// OMI^O23, HL7 2.5 (JAHIS style), in ISO-2022-JP (MSH-18 `~ISO IR87`, MSH-20
    /// `ISO 2022-1994`), priority in TQ1-9, keys in IPC.
    fn omi_o23_iso2022jp(&self) -> Vec<u8> {
        let ts = hl7_ts(now_ms());
        let msh = format!(
            "MSH|^~\\&|HIS|SYN_HOSP|READGATE|RAD|{ts}||OMI^O23^OMI_O23|{}|P|2.5|||AL|NE|JPN|~ISO IR87||ISO 2022-1994",
            self.control_id
        );
        let pid3 = format!("{}^^^SYN_HOSP^PI", self.patient_id);
        let placer = format!("PL-{}^HIS", self.control_id);
        let purpose = self.purpose_field();
        let ipc = format!(
            "{}|RP-{}|{}|SPS-{}|CT^CT^DCM",
            self.accession, self.control_id, self.study_uid, self.control_id
        );
        let mut segments = vec![
            msh,
            seg(
                "PID",
                &[
                    (1, "0001"),
                    (3, &pid3),
                    (5, "試験^太郎^^^^^L^I~シケン^タロウ^^^^^L^P"),
                    (7, "19650412"),
                    (8, "M"),
                ],
            ),
            seg(
                "ORC",
                &[
                    (1, &self.control),
                    (2, &placer),
                    (5, "SC"),
                    (9, &ts),
                    (12, &self.physician),
                    (14, &self.phone),
                ],
            ),
            seg("TQ1", &[(1, "1"), (7, &ts), (9, &self.priority)]),
            seg(
                "OBR",
                &[
                    (1, "1"),
                    (2, &placer),
                    (4, "32110011000000000000000000000000^CT 胸部 造影^JJ1017-32"),
                    (13, &self.clinical),
                    (16, &self.physician),
                    (24, "CT"),
                    (31, &purpose),
                ],
            ),
        ];
        for (i, lab) in self.labs.iter().enumerate() {
            segments.push(lab.obx(i + 1));
        }
        segments.push(format!("IPC|{ipc}"));
        let text = message(&segments);
        let (bytes, _, unmappable) = encoding_rs::ISO_2022_JP.encode(&text);
        assert!(!unmappable, "not representable in ISO-2022-JP: {text}");
        bytes.into_owned()
    }
}

/// ORU^R01 (2.5, UTF-8): the reading report of a study, status `F`, `P` or `C` in OBR-25,
/// accession in OBR-18.
fn oru_report(control_id: &str, patient_id: &str, accession: &str, status: &str) -> Vec<u8> {
    let ts = hl7_ts(now_ms() - 60 * MINUTE_MS);
    let placer = format!("PL-{accession}^RIS");
    let filler = format!("FL-{accession}^RC");
    message(&[
        format!(
            "MSH|^~\\&|REPORTING|READ_CENTER|READGATE|SYN_HOSP|{}||ORU^R01^ORU_R01|{control_id}|P|2.5||||||UNICODE UTF-8",
            hl7_ts(now_ms())
        ),
        seg(
            "PID",
            &[(3, &format!("{patient_id}^^^SYN_HOSP^PI")), (5, "シナリオ^次郎")],
        ),
        seg("ORC", &[(1, "RE"), (2, &placer), (3, &filler)]),
        seg(
            "OBR",
            &[
                (1, "1"),
                (2, &placer),
                (3, &filler),
                (4, "CT001^CT 胸部^LOCAL"),
                (7, &ts),
                (18, accession),
                (22, &ts),
                (25, status),
                (32, "1001&鈴木&一郎"),
            ],
        ),
        seg(
            "OBX",
            &[
                (1, "1"),
                (2, "TX"),
                (3, "59776-5^所見^LN"),
                (5, "両肺に明らかな異常影を認めない。"),
                (11, status),
            ],
        ),
    ])
    .into_bytes()
}

/// ORU^R01 (2.5, UTF-8) from the laboratory system: lab values for the patient, no
/// accession (the lab order is not the imaging order).
fn oru_labs(control_id: &str, patient_id: &str, labs: &[Lab]) -> Vec<u8> {
    let ts = hl7_ts(now_ms());
    let placer = format!("LAB-{control_id}^LIS");
    let mut segments = vec![
        format!(
            "MSH|^~\\&|LIS|SYN_HOSP|READGATE|RAD|{ts}||ORU^R01^ORU_R01|{control_id}|P|2.5||||||UNICODE UTF-8"
        ),
        seg(
            "PID",
            &[(3, &format!("{patient_id}^^^SYN_HOSP^PI")), (5, "シナリオ^三郎")],
        ),
        seg("ORC", &[(1, "RE"), (2, &placer)]),
        seg(
            "OBR",
            &[
                (1, "1"),
                (2, &placer),
                (4, "RENAL^腎機能^LOCAL"),
                (22, &ts),
                (25, "F"),
            ],
        ),
    ];
    for (i, lab) in labs.iter().enumerate() {
        segments.push(lab.obx(i + 1));
    }
    message(&segments).into_bytes()
}

// ---------------------------------------------------------------------------
// A hospital site: readgate (binary) + storescp as the reading facility
// ---------------------------------------------------------------------------

struct Site {
    dir: tempfile::TempDir,
    scp: StoreScp,
    cfg: TestConfig,
    config: PathBuf,
    dicom_port: u16,
    hl7_port: u16,
    daemon: Daemon,
}

impl Site {
    /// readgate with the default JRS policy (`[policy]` left out) and an HL7 listener.
    fn start() -> Site {
        Site::start_with("")
    }

    /// [`Site::start`] with `extra` config sections.
    fn start_with(extra: &str) -> Site {
        require_python_hl7();
        let dir = tempfile::tempdir().expect("temp dir");
        let scp = StoreScp::start(&dir.path().join("rc1"), free_port());
        let mut cfg = TestConfig::new(dir.path(), scp.port);
        cfg.policy = String::new();
        cfg.extra = extra.to_string();
        let hl7_port = free_port();
        cfg.hl7_port = Some(hl7_port);
        let config = cfg.write();
        let mut daemon = Daemon::start(&config, cfg.dicom_port);
        daemon.wait_for_port(hl7_port);
        Site {
            dir,
            scp,
            config,
            dicom_port: cfg.dicom_port,
            cfg,
            hl7_port,
            daemon,
        }
    }

    /// SIGTERM, wait for a clean exit, start again on the same config and data dir.
    fn restart(&mut self) {
        let status = self.daemon.terminate();
        assert!(
            status.success(),
            "readgate did not stop cleanly on SIGTERM ({status}):\n{}",
            self.daemon.log_text()
        );
        assert!(self.daemon.log_text().contains("readgate stopped"));
        self.daemon = Daemon::start(&self.config, self.dicom_port);
        self.daemon.wait_for_port(self.hl7_port);
    }

    /// Writes the study with make_study.py and sends it with DCMTK storescu (+sd).
    fn send(&self, study: &Study) {
        let out_dir = self.dir.path().join("modality").join(&study.uid);
        let mut cmd = Command::new(python());
        cmd.arg(repo_path("tests/peers/make_study.py"))
            .arg(&out_dir)
            .args(["--study-uid", &study.uid])
            .args(["--count", &study.count.to_string()])
            .args(["--patient-id", &study.patient_id])
            .args(["--accession", &study.accession])
            .args(["--study-date", &study.date])
            .args(["--study-time", &study.time]);
        for (flag, value) in [
            ("--purpose", &study.purpose),
            ("--history", &study.history),
            ("--requesting", &study.requesting),
            ("--callback", &study.callback),
            ("--contrast", &study.contrast),
        ] {
            if let Some(v) = value {
                cmd.args([flag, v]);
            }
        }
        let made = run_ok(&mut cmd, "make_study.py");
        let printed: BTreeSet<String> = String::from_utf8_lossy(&made.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(printed, study.sop_uids(), "make_study.py wrote other UIDs");

        let mut storescu = dcmtk_scu("storescu", "CT01", &["+sd"], self.dicom_port);
        run_ok(storescu.arg(&out_dir), "storescu");
    }

    /// Sends the messages over one MLLP connection with `mllp_send`; each must be
    /// answered AA with its MSH-10 in MSA-2.
    fn hl7(&self, messages: &[Vec<u8>]) {
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let acks = mllp_send(self.hl7_port, &refs, self.dir.path());
        for (raw, sent) in acks.iter().zip(messages) {
            let ack = Ack::parse(raw).unwrap_or_else(|e| panic!("ACK: {e}"));
            let sent_text = String::from_utf8_lossy(sent);
            let control_id = sent_text
                .split('\r')
                .next()
                .and_then(|msh| msh.split('|').nth(9))
                .unwrap_or_default()
                .to_string();
            assert_eq!(
                (ack.code().as_str(), ack.msa(2).as_str()),
                ("AA", control_id.as_str()),
                "ACK to {control_id}:\n{}",
                ack.show()
            );
        }
    }

    /// `readgate SUBCOMMAND ... --config PATH`.
    fn readgate(&self, args: &[&str]) -> Output {
        run_output(
            readgate_bin().args(args).arg("--config").arg(&self.config),
            "readgate",
        )
    }

    /// `readgate studies --format json`.
    fn studies(&self) -> Vec<Value> {
        let out = self.readgate(&["studies", "--format", "json"]);
        assert_success(&out, "readgate studies");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "readgate studies --format json: {e}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    fn row(&self, study: &Study) -> Option<Value> {
        self.studies()
            .into_iter()
            .find(|r| r["study_uid"].as_str() == Some(study.uid.as_str()))
    }

    /// Waits until `readgate studies` lists the study in `state`; returns its row.
    fn wait_state(&mut self, study: &Study, state: &str) -> Value {
        let start = Instant::now();
        loop {
            let row = self.row(study);
            if let Some(r) = &row {
                if r["state"] == state {
                    return r.clone();
                }
            }
            self.daemon.assert_running();
            if start.elapsed() > SETTLE {
                panic!(
                    "study {} not {state} after {SETTLE:?}; row: {}\nevents: {:?}\nlog:\n{}",
                    study.uid,
                    row.map(|r| serde_json::to_string_pretty(&r).unwrap_or_default())
                        .unwrap_or_else(|| "(not listed)".into()),
                    self.events(study),
                    self.daemon.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Waits until every instance of the study has reached storescp.
    fn wait_delivered(&self, study: &Study) {
        let want = study.sop_uids();
        let start = Instant::now();
        while !want.is_subset(&self.scp.received()) {
            assert!(
                start.elapsed() < SETTLE,
                "instances of {} did not reach storescp; received: {:?}\nlog:\n{}",
                study.uid,
                self.scp.received(),
                self.daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Forwarded: listed as forwarded with every instance, and every file at storescp.
    /// A complete study of `patient` acquired 30 days ago, sent and forwarded: the prior
    /// of the scenarios that follow.
    fn forwarded_prior(&mut self, patient: &str, uid: &str) -> Study {
        let (date, time) = jst(now_ms() - 30 * DAY_MS);
        let prior = Study {
            date,
            time,
            patient_id: patient.into(),
            ..Study::complete(uid)
        };
        self.send(&prior);
        self.wait_forwarded(&prior);
        prior
    }

    /// Waits for `study` to be forwarded with no reason, verdict PASS, every instance
    /// tagged PASS.
    fn assert_passed(&mut self, study: &Study) {
        let row = self.wait_forwarded(study);
        assert!(codes(&row).is_empty(), "{row:#}");
        assert_eq!(self.verdict(study).as_deref(), Some("PASS"));
        assert_all_tagged(self, study, "PASS");
    }

    fn wait_forwarded(&mut self, study: &Study) -> Value {
        let row = self.wait_state(study, "forwarded");
        assert_eq!(row["destination"], "rc1", "{row:#}");
        assert_eq!(row["instances_forwarded"], study.count as i64, "{row:#}");
        assert_eq!(row["instance_count"], study.count as i64, "{row:#}");
        self.wait_delivered(study);
        row
    }

    /// None of the study's instances reached storescp.
    fn assert_not_delivered(&self, study: &Study) {
        let got = self.scp.received();
        let leaked: Vec<String> = study
            .sop_uids()
            .into_iter()
            .filter(|s| got.contains(s))
            .collect();
        assert!(
            leaked.is_empty(),
            "instances of {} reached storescp: {leaked:?}",
            study.uid
        );
    }

    /// The files storescp received for the study.
    fn delivered_files(&self, study: &Study) -> Vec<PathBuf> {
        study
            .sop_uids()
            .iter()
            .map(|s| {
                self.scp
                    .file_of(s)
                    .unwrap_or_else(|| panic!("{s} not received by storescp"))
            })
            .collect()
    }

    /// (kind, detail) of the study's events, oldest first, read from the database.
    fn events(&self, study: &Study) -> Vec<(String, String)> {
        self.cfg
            .database()
            .query_map(
                "SELECT kind, detail FROM events WHERE study_uid = ?1 ORDER BY id",
                [&study.uid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("read events")
    }

    /// `studies.verdict` as recorded (PASS, HELD, FORWARDED_INCOMPLETE, RELEASED_OVERRIDE).
    fn verdict(&self, study: &Study) -> Option<String> {
        self.cfg
            .database()
            .query_row(
                "SELECT verdict FROM studies WHERE study_uid = ?1",
                [&study.uid],
                |r| r.get(0),
            )
            .expect("read verdict")
    }

    /// The recorded evaluation of the study's policy checks (`studies.evaluation`), for
    /// failure messages.
    fn evaluation(&self, study: &Study) -> String {
        self.cfg
            .database()
            .query_row(
                "SELECT evaluation FROM studies WHERE study_uid = ?1",
                [&study.uid],
                |r| r.get::<_, Option<String>>(0),
            )
            .expect("read evaluation")
            .unwrap_or_default()
    }

    /// Waits until the study has been decided (no longer `receiving`); returns its row.
    fn wait_decided(&mut self, study: &Study) -> Value {
        let start = Instant::now();
        loop {
            if let Some(r) = self.row(study).filter(|r| r["state"] != "receiving") {
                return r;
            }
            self.daemon.assert_running();
            assert!(
                start.elapsed() < SETTLE,
                "{} never decided:\n{}",
                study.uid,
                self.daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }
}

/// The hold reasons of a `readgate studies` row (the `reasons` field is JSON text).
fn reasons(row: &Value) -> Vec<Value> {
    match row["reasons"].as_str() {
        None => Vec::new(),
        Some(text) => serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("reasons is not a JSON array ({e}): {text}")),
    }
}

fn codes(row: &Value) -> Vec<String> {
    reasons(row)
        .iter()
        .map(|r| r["code"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// The reason with `code`; every reason has a clause and both messages.
fn reason<'a>(all: &'a [Value], code: &str) -> &'a Value {
    let r = all
        .iter()
        .find(|r| r["code"] == code)
        .unwrap_or_else(|| panic!("no {code} in {all:#?}"));
    for k in ["clause", "message_en", "message_ja"] {
        assert!(
            r[k].as_str().is_some_and(|s| !s.trim().is_empty()),
            "{code}: empty {k} in {r:#}"
        );
    }
    r
}

// ---------------------------------------------------------------------------
// Tagging checks
// ---------------------------------------------------------------------------

/// Runs the Python `script` (pydicom) on `path` and `args`; panics unless it exits 0.
fn pydicom(script: &str, path: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(python());
    cmd.args(["-c", script]).arg(path).args(args);
    run_ok(&mut cmd, &format!("pydicom reading {}", path.display()))
}

/// Finds readgate's private block in a forwarded file with pydicom (scanning the odd
/// groups for the creator), checks its verdict element (xx06), and checks with DCMTK
/// dcmdump that the creator is there.
fn assert_tagged(path: &Path, verdict: &str) {
    const FIND_BLOCK: &str = r#"
import sys
import pydicom
from pydicom.tag import Tag
ds = pydicom.dcmread(sys.argv[1])
creator = sys.argv[2]
for elem in ds:
    g, e = elem.tag.group, elem.tag.element
    if g % 2 == 1 and 0x10 <= e <= 0xFF and str(elem.value).strip(" \0") == creator:
        v = ds.get(Tag(g, (e << 8) | 0x06))
        print(f"{g:04X}|{e:02X}|{'' if v is None else str(v.value).strip(' ' + chr(0))}")
        break
else:
    print("NONE")
"#;
    let out = pydicom(FIND_BLOCK, path, &[CREATOR]);
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_ne!(
        line,
        "NONE",
        "{}: no private creator {CREATOR:?} in any odd group",
        path.display()
    );
    let parts: Vec<&str> = line.splitn(3, '|').collect();
    assert_eq!(
        parts.get(2).copied(),
        Some(verdict),
        "{}: verdict element ({},{}06) of the {CREATOR:?} block",
        path.display(),
        parts.first().copied().unwrap_or("?"),
        parts.get(1).copied().unwrap_or("??")
    );
    let dump = run_ok(
        Command::new(dcmtk("dcmdump")).arg(path),
        &format!("dcmdump {}", path.display()),
    );
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(
        text.contains(CREATOR),
        "dcmdump does not show {CREATOR:?} in {}:\n{text}",
        path.display()
    );
}

/// Checks that context the HL7 order supplied was copied into the forwarded header:
/// (0040,1002) (top level or in the Request Attributes Sequence), (0010,21B0),
/// (0032,1032), (0040,2010), and that an Original Attributes Sequence item records the
/// change. `expected` pairs a tag keyword with text the value must contain.
fn assert_context_copied(path: &Path, expected: &[(&str, &str)]) {
    const READ: &str = r#"
import json
import sys
import pydicom
ds = pydicom.dcmread(sys.argv[1])
def text(v):
    return "" if v is None else str(v)
reason = text(ds.get("ReasonForTheRequestedProcedure"))
for item in ds.get("RequestAttributesSequence", []):
    reason += "|" + text(item.get("ReasonForTheRequestedProcedure"))
print(json.dumps({
    "ReasonForTheRequestedProcedure": reason,
    "AdditionalPatientHistory": text(ds.get("AdditionalPatientHistory")),
    "RequestingPhysician": text(ds.get("RequestingPhysician")),
    "OrderCallbackPhoneNumber": text(ds.get("OrderCallbackPhoneNumber")),
    "OriginalAttributesItems": len(ds.get("OriginalAttributesSequence", [])),
}, ensure_ascii=False))
"#;
    let out = pydicom(READ, path, &[]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON from pydicom");
    for (keyword, want) in expected {
        let got = v[*keyword].as_str().unwrap_or_default();
        assert!(
            got.contains(want),
            "{}: {keyword} = {got:?}, expected it to contain {want:?}",
            path.display()
        );
    }
    assert!(
        v["OriginalAttributesItems"].as_u64().unwrap_or(0) >= 1,
        "{}: no Original Attributes Sequence item records the copied context: {v}",
        path.display()
    );
}

fn assert_all_tagged(site: &Site, study: &Study, verdict: &str) {
    for f in site.delivered_files(study) {
        assert_tagged(&f, verdict);
    }
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

/// Scenario 1: Complete context goes out: from the image header alone, or from an order
/// that arrived before the images (the header says nothing).
#[test]
fn complete_context_is_forwarded() {
    let mut site = Site::start();

    let header = Study::complete("1.1");
    site.send(&header);

    let bare = Study::bare("1.2");
    let order = Order::complete("S1-ORDER", &bare);
    site.hl7(&[order.orm_o01()]);
    site.send(&bare);

    for study in [&header, &bare] {
        let row = site.wait_forwarded(study);
        assert!(codes(&row).is_empty(), "nothing is missing: {row:#}");
        assert_eq!(site.verdict(study).as_deref(), Some("PASS"));
        let kinds: Vec<String> = site.events(study).into_iter().map(|e| e.0).collect();
        assert!(
            kinds.contains(&"queued".to_string()) && kinds.contains(&"forwarded".to_string()),
            "{kinds:?}"
        );
        assert!(!kinds.contains(&"held".to_string()), "{kinds:?}");
        assert_all_tagged(&site, study, "PASS");
    }
    for f in site.delivered_files(&bare) {
        assert_context_copied(
            &f,
            &[
                ("ReasonForTheRequestedProcedure", &order.purpose),
                ("AdditionalPatientHistory", &order.clinical),
                ("RequestingPhysician", "佐藤"),
                ("OrderCallbackPhoneNumber", &order.phone),
            ],
        );
    }
}

/// Scenario 2: No exam purpose: held with EXAM_PURPOSE_MISSING (the Japanese message points
/// at OBR-31); the order that arrives later (matched by accession) releases it.
#[test]
fn missing_exam_purpose_is_held_until_the_order_arrives() {
    let mut site = Site::start();
    let study = Study {
        purpose: None,
        ..Study::complete("2.1")
    };
    site.send(&study);

    let row = site.wait_state(&study, "held");
    assert_eq!(codes(&row), ["EXAM_PURPOSE_MISSING"], "{row:#}");
    let all = reasons(&row);
    let r = reason(&all, "EXAM_PURPOSE_MISSING");
    assert_eq!(r["clause"], "JRS-7.3.1");
    let ja = r["message_ja"].as_str().unwrap();
    assert!(ja.contains("OBR-31") && ja.contains("検査目的"), "{ja}");
    assert!(
        r["message_en"].as_str().unwrap().contains("OBR-31"),
        "{r:#}"
    );
    assert_eq!(
        row["destination"], "rc1",
        "held studies keep their route: {row:#}"
    );
    assert_eq!(site.verdict(&study).as_deref(), Some("HELD"));
    site.assert_not_delivered(&study);

    // The RIS sends the order with the exam purpose, for the same accession number.
    let order = Order {
        purpose: "大動脈解離の除外".into(),
        ..Order::empty("S2-LATE", &study)
    };
    site.hl7(&[order.orm_o01()]);
    let row = site.wait_forwarded(&study);
    assert!(codes(&row).is_empty(), "{row:#}");
    assert_eq!(site.verdict(&study).as_deref(), Some("PASS"));
    let events = site.events(&study);
    let kinds: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    let held = kinds.iter().position(|k| *k == "held");
    let context = kinds.iter().position(|k| *k == "context");
    let queued = kinds.iter().rposition(|k| *k == "queued");
    assert!(
        held.is_some() && held < context && context < queued,
        "held, then new context, then queued: {events:?}"
    );
    assert_all_tagged(&site, &study, "PASS");
    for f in site.delivered_files(&study) {
        assert_context_copied(&f, &[("ReasonForTheRequestedProcedure", "大動脈解離")]);
    }
}

/// Scenario 3: Placeholder clinical information ("特になし", "-") is no clinical information:
/// held with CLINICAL_INFO_MISSING; a corrected order (XO) with real text releases it.
#[test]
fn placeholder_clinical_information_is_held() {
    let mut site = Site::start();
    let nothing = Study {
        history: None,
        ..Study::complete("3.1")
    };
    let dash = Study {
        history: None,
        ..Study::complete("3.2")
    };
    site.hl7(&[
        Order {
            clinical: "特になし".into(),
            ..Order::complete("S3-NOTHING", &nothing)
        }
        .orm_o01(),
        Order {
            clinical: "-".into(),
            ..Order::complete("S3-DASH", &dash)
        }
        .orm_o01(),
    ]);
    site.send(&nothing);
    site.send(&dash);

    for (study, shown) in [(&nothing, "「特になし」"), (&dash, "「-」")] {
        let row = site.wait_state(study, "held");
        assert_eq!(codes(&row), ["CLINICAL_INFO_MISSING"], "{row:#}");
        let all = reasons(&row);
        let r = reason(&all, "CLINICAL_INFO_MISSING");
        assert_eq!(r["clause"], "JRS-7.3.1");
        let ja = r["message_ja"].as_str().unwrap();
        assert!(ja.contains(shown) && ja.contains("OBR-13"), "{ja}");
    }

    // The RIS corrects the first order: real clinical information.
    site.hl7(&[Order {
        control: "XO".into(),
        clinical: "2週間持続する咳嗽と微熱".into(),
        ..Order::complete("S3-FIXED", &nothing)
    }
    .orm_o01()]);
    site.wait_forwarded(&nothing);
    assert_all_tagged(&site, &nothing, "PASS");
    let row = site.wait_state(&dash, "held");
    assert_eq!(codes(&row), ["CLINICAL_INFO_MISSING"], "{row:#}");
    site.assert_not_delivered(&dash);
}

/// Scenario 4a: A contrast CT without an eGFR is held (LAB_MISSING); an eGFR from 200 days
/// ago changes that to LAB_TOO_OLD; an eGFR from two days ago (ORU^R01 from the lab system,
/// JLAC10 code with system JC10) releases it.
#[test]
fn contrast_ct_is_held_until_a_recent_egfr_arrives() {
    let mut site = Site::start();
    let study = Study {
        contrast: Some("Iopamidol 300".into()),
        ..Study::complete("4.1")
    };
    site.send(&study);
    let row = site.wait_state(&study, "held");
    assert_eq!(codes(&row), ["LAB_MISSING"], "{row:#}");
    let all = reasons(&row);
    let r = reason(&all, "LAB_MISSING");
    assert_eq!(r["clause"], "JRS-7.3.1");
    assert!(
        r["message_ja"].as_str().unwrap().contains("造影検査"),
        "{r:#}"
    );
    assert!(
        r["message_en"].as_str().unwrap().contains(JLAC10_EGFR),
        "{r:#}"
    );

    let old = Lab::egfr("61.0", &hl7_ts(now_ms() - 200 * DAY_MS));
    site.hl7(&[oru_labs("S4-LAB-OLD", &study.patient_id, &[old])]);
    // The result re-opened the held study; it is decided again and still held.
    let row = site.wait_state(&study, "held");
    assert_eq!(codes(&row), ["LAB_TOO_OLD"], "{row:#}");
    assert!(
        site.events(&study).iter().any(|e| e.0 == "context"),
        "{:?}",
        site.events(&study)
    );
    site.assert_not_delivered(&study);

    let recent = Lab::egfr("58.3", &hl7_ts(now_ms() - 2 * DAY_MS));
    site.hl7(&[oru_labs("S4-LAB-NEW", &study.patient_id, &[recent])]);
    site.assert_passed(&study);
}

/// Scenario 4b: A contrast CT whose header says nothing: held for the order and the lab
/// value; the order arriving with an eGFR OBX supplies both.
#[test]
fn an_order_with_an_egfr_obx_releases_a_contrast_ct() {
    let mut site = Site::start();
    let study = Study {
        contrast: Some("Iohexol".into()),
        ..Study::bare("4.2")
    };
    site.send(&study);
    let row = site.wait_state(&study, "held");
    let got: BTreeSet<String> = codes(&row).into_iter().collect();
    let want: BTreeSet<String> = [
        "EXAM_PURPOSE_MISSING",
        "CLINICAL_INFO_MISSING",
        "LAB_MISSING",
        "ORDERING_PHYSICIAN_MISSING",
        "CALLBACK_CONTACT_MISSING",
    ]
    .map(String::from)
    .into();
    assert_eq!(got, want, "{row:#}");

    let order = Order {
        labs: vec![Lab::egfr("72.5", &hl7_ts(now_ms() - 10 * DAY_MS))],
        ..Order::complete("S4-ORDER", &study)
    };
    site.hl7(&[order.orm_o01()]);
    site.assert_passed(&study);
}

/// Scenario 5: The patient has a prior study on readgate without a final report: held with
/// PRIOR_REPORT_MISSING; a preliminary report does not count; the final report (ORU^R01,
/// OBR-25 = F, OBR-18 = the prior's accession) releases it.
///
/// The current study is sent with an empty Study Time (Type 2): see the ignored
/// `a_prior_is_dated_by_its_study_date` for why a time of day would hide the prior.
#[test]
fn a_prior_without_a_final_report_holds_until_the_report_arrives() {
    let mut site = Site::start();
    let prior = site.forwarded_prior("SYN-P-5", "5.1");

    let current = Study {
        patient_id: "SYN-P-5".into(),
        date: jst(now_ms()).0,
        time: String::new(),
        ..Study::complete("5.2")
    };
    site.send(&current);
    let row = site.wait_state(&current, "held");
    assert_eq!(codes(&row), ["PRIOR_REPORT_MISSING"], "{row:#}");
    let all = reasons(&row);
    let r = reason(&all, "PRIOR_REPORT_MISSING");
    assert_eq!(r["clause"], "JRS-7.3.2");
    let both = format!("{} {}", r["message_en"], r["message_ja"]);
    assert!(both.contains(&prior.accession), "names the prior: {r:#}");
    site.assert_not_delivered(&current);

    // A preliminary report is not what the reader needs.
    let before = site.events(&current).len();
    site.hl7(&[oru_report(
        "S5-PRELIM",
        &prior.patient_id,
        &prior.accession,
        "P",
    )]);
    let row = site.wait_state(&current, "held");
    assert_eq!(codes(&row), ["PRIOR_REPORT_MISSING"], "{row:#}");
    let events = site.events(&current);
    assert!(
        events[before..].iter().any(|e| e.0 == "context"),
        "the report re-evaluated the held study: {events:?}"
    );

    site.hl7(&[oru_report(
        "S5-FINAL",
        &prior.patient_id,
        &prior.accession,
        "F",
    )]);
    site.assert_passed(&current);
}

/// Scenario 5, realistic timing: A prior acquired 30 days ago, a current study acquired
/// five minutes ago with its Study Time set, as every modality sends it: the prior must
/// count.
#[test]
fn a_prior_is_dated_by_its_study_date() {
    let mut site = Site::start();
    let prior = site.forwarded_prior("SYN-P-5B", "5.3");

    let current = Study {
        patient_id: "SYN-P-5B".into(),
        ..Study::complete("5.4")
    };
    site.send(&current);
    let row = site.wait_decided(&current);
    assert_eq!(
        (row["state"].as_str(), codes(&row)),
        (Some("held"), vec!["PRIOR_REPORT_MISSING".to_string()]),
        "prior {} (Study Date {}) has no report; evaluation of {}:\n{}",
        prior.accession,
        prior.date,
        current.uid,
        site.evaluation(&current)
    );
}

/// Scenario 6: STAT orders with missing context are forwarded at once, flagged
/// FORWARDED_INCOMPLETE, their reasons still listed: an ORM^O01 with priority S in
/// ORC-7/OBR-27 (no exam purpose), and an ISO-2022-JP OMI^O23 with TQ1-9 = S (no callback
/// number).
#[test]
fn stat_orders_with_missing_context_are_forwarded_flagged() {
    let mut site = Site::start();
    let orm = Study::bare("6.1");
    let omi = Study::bare("6.2");
    let orm_order = Order {
        priority: "S".into(),
        purpose: String::new(),
        ..Order::complete("S6-ORM", &orm)
    };
    let omi_order = Order {
        priority: "S".into(),
        study_uid: omi.uid.clone(),
        purpose: "肺塞栓症の疑い".into(),
        clinical: "胸痛、労作時息切れ".into(),
        physician: "123456^佐藤^花子".into(),
        phone: String::new(),
        ..Order::complete("S6-OMI", &omi)
    };
    site.hl7(&[orm_order.orm_o01(), omi_order.omi_o23_iso2022jp()]);
    // The ISO-2022-JP order was decoded, not just stored.
    let view = site.readgate(&["orders", &omi.accession, "--format", "json"]);
    assert!(view.status.success(), "{view:?}");
    let view = String::from_utf8_lossy(&view.stdout);
    assert!(view.contains("肺塞栓症の疑い"), "{view}");

    site.send(&orm);
    site.send(&omi);
    for (study, missing) in [
        (&orm, "EXAM_PURPOSE_MISSING"),
        (&omi, "CALLBACK_CONTACT_MISSING"),
    ] {
        let row = site.wait_forwarded(study);
        assert_eq!(codes(&row), [missing], "reasons stay listed: {row:#}");
        assert_eq!(
            site.verdict(study).as_deref(),
            Some("FORWARDED_INCOMPLETE"),
            "{row:#}"
        );
        let events = site.events(study);
        assert!(
            events
                .iter()
                .any(|(k, d)| k == "queued" && d.contains("still missing") && d.contains(missing)),
            "{events:?}"
        );
        assert!(!events.iter().any(|e| e.0 == "held"), "{events:?}");
        assert_all_tagged(&site, study, "FORWARDED_INCOMPLETE");
    }
    let table = site.readgate(&["studies"]);
    let table = String::from_utf8_lossy(&table.stdout);
    for (study, missing) in [
        (&orm, "EXAM_PURPOSE_MISSING"),
        (&omi, "CALLBACK_CONTACT_MISSING"),
    ] {
        let line = table
            .lines()
            .find(|l| l.contains(&study.uid))
            .unwrap_or_else(|| panic!("{} not in:\n{table}", study.uid));
        assert!(
            line.contains("forwarded") && line.contains(missing),
            "{line}"
        );
    }
    assert!(
        site.daemon
            .log_text()
            .contains("STAT study forwarded incomplete"),
        "{}",
        site.daemon.log_text()
    );
}

/// Scenario 7: Operators: `readgate release` forwards a held study as RELEASED_OVERRIDE and
/// records who and why; `readgate reject` keeps another one from ever leaving.
#[test]
fn operator_release_and_reject() {
    let mut site = Site::start();
    let released = Study::bare("7.1");
    let rejected = Study::bare("7.2");
    site.send(&released);
    site.send(&rejected);
    site.wait_state(&released, "held");
    site.wait_state(&rejected, "held");

    // A justification is required.
    let refused = site.readgate(&[
        "release",
        &released.uid,
        "--by",
        "Dr. Suzuki",
        "--justification",
        "ok",
    ]);
    assert!(!refused.status.success(), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("--justification") && said.contains("at least 4 characters"),
        "{said}"
    );
    assert_eq!(site.wait_state(&released, "held")["state"], "held");

    let rej = site.readgate(&[
        "reject",
        &rejected.accession,
        "--by",
        "RT Tanaka",
        "--reason",
        "wrong patient selected at the console; re-acquire",
    ]);
    assert!(
        rej.status.success(),
        "{}",
        String::from_utf8_lossy(&rej.stderr)
    );

    let justification =
        "Trauma case: the ordering physician phoned the exam purpose in (症例検討済)";
    let rel = site.readgate(&[
        "release",
        &released.uid,
        "--by",
        "Dr. Suzuki",
        "--justification",
        justification,
    ]);
    assert!(
        rel.status.success(),
        "{}",
        String::from_utf8_lossy(&rel.stderr)
    );

    let row = site.wait_forwarded(&released);
    assert!(
        !codes(&row).is_empty(),
        "the missing context is still listed after an override: {row:#}"
    );
    assert_eq!(
        site.verdict(&released).as_deref(),
        Some("RELEASED_OVERRIDE")
    );
    let events = site.events(&released);
    assert!(
        events.iter().any(|(k, d)| k == "released-override"
            && d.contains("Dr. Suzuki")
            && d.contains(justification)),
        "{events:?}"
    );
    assert_all_tagged(&site, &released, "RELEASED_OVERRIDE");

    let row = site.wait_state(&rejected, "rejected");
    assert_eq!(row["instances_forwarded"], 0, "{row:#}");
    let events = site.events(&rejected);
    assert!(
        events
            .iter()
            .any(|(k, d)| k == "rejected" && d.contains("RT Tanaka")),
        "{events:?}"
    );
    // Nothing of it is left for the forwarder: every instance is rejected (the forwarder
    // sends only queued instances), and none reached the reading facility.
    let states: Vec<String> = site
        .cfg
        .database()
        .query_map(
            "SELECT state FROM instances WHERE study_uid = ?1",
            [&rejected.uid],
            |r| r.get(0),
        )
        .expect("instance states");
    assert!(
        !states.is_empty() && states.iter().all(|s| s == "rejected"),
        "{states:?}"
    );
    site.assert_not_delivered(&rejected);
    assert_eq!(site.wait_state(&rejected, "rejected")["state"], "rejected");
    // A rejected study cannot be released any more.
    let late = site.readgate(&[
        "release",
        &rejected.uid,
        "--by",
        "Dr. Suzuki",
        "--justification",
        justification,
    ]);
    assert!(!late.status.success(), "{late:?}");
}

/// Scenario 8: A held study survives a restart (SIGTERM, start again on the same data dir)
/// with its state, reasons and instances; the order arriving afterwards (matched by the
/// study instance UID in ZDS-1, no accession) releases it.
#[test]
fn a_held_study_survives_a_restart_and_is_released_after_it() {
    let mut site = Site::start();
    let study = Study {
        purpose: None,
        history: None,
        count: 3,
        ..Study::complete("8.1")
    };
    site.send(&study);
    let before = site.wait_state(&study, "held");
    let mut want = codes(&before);
    want.sort();
    assert_eq!(want, ["CLINICAL_INFO_MISSING", "EXAM_PURPOSE_MISSING"]);

    site.restart();
    let after = site.wait_state(&study, "held");
    for k in [
        "reasons",
        "instance_count",
        "destination",
        "accession",
        "bytes",
    ] {
        assert_eq!(after[k], before[k], "{k} changed across the restart");
    }
    site.assert_not_delivered(&study);

    let order = Order {
        accession: String::new(),
        study_uid: study.uid.clone(),
        ..Order::complete("S8-ORDER", &study)
    };
    site.hl7(&[order.orm_o01()]);
    site.assert_passed(&study);
}

/// HL7 v2 times without an offset are the sender's local time (HL7 v2.5 §2.A.22): an
/// eGFR measured 90 days and 4 hours before the study is too old for the 90-day rule
/// whether the Japanese lab system writes OBX-14 with `+0900` (first patient: held,
/// LAB_TOO_OLD, passes today) or without an offset (second patient).
#[test]
fn a_lab_time_without_offset_is_local_time() {
    let mut site = Site::start();
    // The reference is the Study Date/Time (JST, five minutes ago).
    let observed = now_ms() - 5 * MINUTE_MS - 90 * DAY_MS - 4 * 60 * MINUTE_MS;
    let (d, t) = jst(observed);
    for (n, ts) in [("9.1", format!("{d}{t}+0900")), ("9.2", format!("{d}{t}"))] {
        let study = Study {
            contrast: Some("Iopamidol 300".into()),
            ..Study::complete(n)
        };
        let lab = Lab::egfr("64.0", &ts);
        site.hl7(&[oru_labs(&format!("S9-LAB-{n}"), &study.patient_id, &[lab])]);
        site.send(&study);
        let row = site.wait_decided(&study);
        assert_eq!(
            (row["state"].as_str(), codes(&row)),
            (Some("held"), vec!["LAB_TOO_OLD".to_string()]),
            "eGFR with OBX-14 {ts:?} (90 days + 4 h before the study); evaluation:\n{}",
            site.evaluation(&study)
        );
    }
}

/// Python's http.server as the hospital's webhook receiver: appends each POSTed body as
/// one line to `out`, answers 204.
const WEBHOOK_RECEIVER: &str = r#"
import http.server, sys
out = open(sys.argv[2], 'a', encoding='utf-8')
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers['Content-Length']))
        out.write(body.decode('utf-8').replace('\n', ' ') + '\n'); out.flush()
        self.send_response(204); self.end_headers()
    def log_message(self, *args): pass
http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), Hook).serve_forever()
"#;

/// The webhook is told once per distinct set of reasons: a study held for its exam
/// purpose is announced once; an order that changes nothing re-evaluates it without a
/// second message; the order that brings the purpose releases it, announced once.
#[test]
fn the_webhook_is_told_once_per_set_of_reasons() {
    let port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let bodies = dir.path().join("webhook.jsonl");
    let mut receiver = Command::new(python())
        .args(["-c", WEBHOOK_RECEIVER, &port.to_string()])
        .arg(&bodies)
        .spawn()
        .expect("python3 http.server");
    common::wait_for_port(port, Duration::from_secs(10));
    let mut site = Site::start_with(&format!(
        "[notify]\nwebhook_url = \"http://127.0.0.1:{port}/readgate\"\n"
    ));
    let events_of = |path: &Path| -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON body"))
            .collect()
    };
    let study = Study {
        purpose: None,
        ..Study::complete("9.1")
    };
    site.send(&study);
    site.wait_state(&study, "held");
    common::wait_until("the hold announced", Duration::from_secs(10), || {
        !events_of(&bodies).is_empty()
    });

    // An order without the purpose: evaluated again, the same reasons.
    let decisions = |site: &Site| site.events(&study).iter().filter(|e| e.0 == "held").count();
    let before = decisions(&site);
    site.hl7(&[Order::empty("W-1", &study).orm_o01()]);
    common::wait_until("the study evaluated again", Duration::from_secs(30), || {
        decisions(&site) > before
    });
    // Then the order with the purpose releases it.
    let order = Order {
        purpose: "大動脈解離の除外".into(),
        ..Order::empty("W-2", &study)
    };
    site.hl7(&[order.orm_o01()]);
    site.wait_forwarded(&study);
    common::wait_until("the release announced", Duration::from_secs(10), || {
        events_of(&bodies).len() >= 2
    });
    let got = events_of(&bodies);
    let kinds: Vec<&str> = got
        .iter()
        .map(|b| b["event"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["held", "released"], "{got:#?}");
    assert_eq!(got[0]["study_uid"], study.uid.as_str());
    assert_eq!(
        got[0]["reasons"][0]["code"], "EXAM_PURPOSE_MISSING",
        "{got:#?}"
    );
    let _ = receiver.kill();
    let _ = receiver.wait();
}
