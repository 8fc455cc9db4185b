//! The hospital's PACS as a real peer — DCMTK `dcmqrscp` and Orthanc (Debian's package)
//! hold a patient's earlier studies; `readgate pacs find` asks them (C-FIND, Study Root,
//! STUDY level).

mod common;

use common::pacs::PacsPeer;
use common::process::{readgate_bin, run_ok, run_output};
use common::*;
use std::path::Path;
use std::process::Command;

/// `readgate pacs find` with `args`: (exit success, stdout, stderr).
fn pacs_find(config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = run_output(
        readgate_bin()
            .args(["pacs", "find", "--config"])
            .arg(config)
            .args(args),
        "readgate pacs find",
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `query` entries for PACS questions of `operation` in the trail, all by a `cli:` actor.
fn pacs_questions(cfg: &TestConfig, operation: &str) -> usize {
    let log = readgate::audit::AuditLog::open_read_only_at(&cfg.parse().database())
        .expect("the audit trail");
    let entries = log
        .search(&readgate::audit::Query {
            kind: Some("query".into()),
            ..Default::default()
        })
        .expect("search");
    assert!(
        entries.iter().all(|e| e.actor.starts_with("cli:")),
        "{entries:?}"
    );
    entries
        .iter()
        .filter(|e| e.detail.contains(&format!("\"operation\":\"{operation}\"")))
        .count()
}

fn accessions(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).expect("JSON");
    v.as_array()
        .expect("a list")
        .iter()
        .map(|s| s["accession"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn a_patients_studies_are_found_in_dcmqrscp() {
    let (dir, cfg) = no_reading_site();
    let pacs = PacsPeer::dcmqrscp(dir.path());
    patients_studies_are_found(cfg, pacs);
}

#[test]
fn a_patients_studies_are_found_in_orthanc() {
    let (dir, cfg) = no_reading_site();
    let pacs = PacsPeer::orthanc(dir.path());
    patients_studies_are_found(cfg, pacs);
}

fn patients_studies_are_found(mut cfg: TestConfig, pacs: PacsPeer) {
    let base = "1.2.826.0.1.3680043.10.7001";
    pacs.load(&format!("{base}.1"), "P-PRIOR", "ACC-2023", "20230501");
    pacs.load(&format!("{base}.2"), "P-PRIOR", "ACC-2024", "20240210");
    pacs.load(&format!("{base}.3"), "P-OTHER", "ACC-OTHER", "20240301");
    let entry = |max: usize| {
        format!(
            "[[pacs]]\nid = \"main\"\nae_title = \"{}\"\nhost = \"127.0.0.1\"\nport = {}\n\
             timeout_secs = 10\nmax_results = {max}\n",
            pacs.ae, pacs.port
        )
    };
    cfg.extra = entry(100);
    let config = cfg.write();

    // Newest first, only this patient's, with what the PACS says of each.
    let (ok, out, err) = pacs_find(&config, &["--patient", "P-PRIOR", "--format", "json"]);
    assert!(ok, "{err}");
    assert_eq!(accessions(&out), ["ACC-2024", "ACC-2023"], "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["study_uid"], format!("{base}.2"));
    assert_eq!(v[0]["date"], "20240210");
    assert_eq!(v[0]["time"], "093000");
    assert_eq!(v[0]["description"], "SYNTHETIC CT", "{out}");
    if pacs.counts {
        assert_eq!(v[0]["modalities"][0], "CT", "{out}");
        assert_eq!(v[0]["instances"], 2, "{out}");
    }

    // A date bound, a patient the PACS does not know, the table form.
    let (ok, out, _) = pacs_find(
        &config,
        &[
            "--patient",
            "P-PRIOR",
            "--since",
            "20240101",
            "--format",
            "json",
        ],
    );
    assert!(ok);
    assert_eq!(accessions(&out), ["ACC-2024"]);
    let (ok, out, _) = pacs_find(&config, &["--patient", "NOBODY", "--format", "json"]);
    assert!(ok);
    assert!(accessions(&out).is_empty());
    let (ok, out, _) = pacs_find(&config, &["--patient", "P-PRIOR"]);
    assert!(ok && out.starts_with("2 studies in PACS main"), "{out}");

    // Bad input is named.
    let (ok, _, err) = pacs_find(&config, &["--patient", "P-PRIOR", "--since", "2024-01-01"]);
    assert!(!ok && err.contains("--since"), "{err}");
    let (ok, _, err) = pacs_find(&config, &["--patient", "P-PRIOR", "--pacs", "other"]);
    assert!(!ok && err.contains("no such [[pacs]] entry"), "{err}");

    // Every question was audited under the OS user before it was asked.
    assert_eq!(pacs_questions(&cfg, "C-FIND"), 4);

    // More studies than max_results: cancelled and said so, not cut short silently.
    cfg.extra = entry(1);
    let config = cfg.write();
    let (ok, _, err) = pacs_find(&config, &["--patient", "P-PRIOR"]);
    assert!(!ok && err.contains("more than 1 studies"), "{err}");

    // The PACS down: the link is named.
    drop(pacs);
    let (ok, _, err) = pacs_find(&config, &["--patient", "P-PRIOR"]);
    assert!(
        !ok && err.contains("cannot associate with PACS main"),
        "{err}"
    );
}

#[test]
fn a_study_is_retrieved_by_c_get_from_dcmqrscp() {
    let (dir, cfg) = no_reading_site();
    let pacs = PacsPeer::dcmqrscp(dir.path());
    study_is_retrieved(&dir, cfg, pacs);
}

#[test]
fn a_study_is_retrieved_by_c_get_from_orthanc() {
    let (dir, cfg) = no_reading_site();
    let pacs = PacsPeer::orthanc(dir.path());
    study_is_retrieved(&dir, cfg, pacs);
}

/// `readgate pacs get` brings every instance of the study — images and its SR report —
/// into the output directory, each data set byte for byte as the PACS holds it.
fn study_is_retrieved(dir: &tempfile::TempDir, mut cfg: TestConfig, pacs: PacsPeer) {
    let uid = "1.2.826.0.1.3680043.10.7201.1";
    pacs.load_with(
        uid,
        "P-GET",
        "ACC-GET",
        "20240301",
        &["--report", "著変なし。"],
    );
    cfg.extra = format!(
        "[[pacs]]\nid = \"main\"\nae_title = \"{}\"\nhost = \"127.0.0.1\"\nport = {}\ntimeout_secs = 10\n",
        pacs.ae, pacs.port
    );
    let config = cfg.write();
    let out_dir = dir.path().join("fetched");
    let out = run_output(
        readgate_bin()
            .args(["pacs", "get", "--config"])
            .arg(&config)
            .args(["--study", uid, "--format", "json", "--out"])
            .arg(&out_dir),
        "readgate pacs get",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let got: std::collections::BTreeMap<String, String> = v["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| {
            (
                i["sop_instance_uid"].as_str().unwrap().to_string(),
                i["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        format!("{uid}.1.1"),
        format!("{uid}.1.2"),
        format!("{uid}.2.1"),
    ];
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), want, "{v:#}");
    assert_eq!(v["failed"], 0);
    // Same data sets as the files loaded into the PACS (matched by SOP Instance UID).
    let loaded = dir.path().join("studies").join(uid);
    for entry in std::fs::read_dir(&loaded).unwrap() {
        let original = entry.unwrap().path();
        let (meta, sent) = dataset_of(&original);
        let fetched = out_dir.join(&got[&meta.sop_instance_uid]);
        let (fmeta, received) = dataset_of(&fetched);
        assert_eq!(fmeta.sop_class_uid, meta.sop_class_uid);
        if fmeta.transfer_syntax == meta.transfer_syntax {
            assert!(
                sent == received,
                "{} changed on the way",
                meta.sop_instance_uid
            );
        }
        // And DCMTK reads it.
        run_ok(Command::new(dcmtk("dcmdump")).arg(&fetched), "dcmdump");
    }

    assert_eq!(pacs_questions(&cfg, "C-GET"), 1);

    // A study the PACS does not hold: nothing retrieved, said so.
    let out = run_output(
        readgate_bin()
            .args(["pacs", "get", "--config"])
            .arg(&config)
            .args(["--study", "1.2.3.404", "--out"])
            .arg(dir.path().join("none")),
        "readgate pacs get",
    );
    // dcmqrscp answers Success with no sub-operation, Orthanc refuses (C000): both fail
    // the command with the PACS named.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && (err.contains("PACS main holds no instances of study 1.2.3.404")
                || err.contains("PACS main refused")),
        "{err}"
    );
}
