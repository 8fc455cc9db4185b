//! The hospital's PACS as a real peer — DCMTK `dcmqrscp` and Orthanc (Debian's package)
//! hold a patient's earlier studies; `readgate pacs find` asks them (C-FIND, Study Root,
//! STUDY level).

mod common;

use common::pacs::PacsPeer;
use common::*;
use std::path::Path;

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
    patients_studies_are_found(&dir, cfg, pacs);
}

#[test]
fn a_patients_studies_are_found_in_orthanc() {
    let (dir, cfg) = no_reading_site();
    let pacs = PacsPeer::orthanc(dir.path());
    patients_studies_are_found(&dir, cfg, pacs);
}

fn patients_studies_are_found(dir: &tempfile::TempDir, mut cfg: TestConfig, pacs: PacsPeer) {
    let base = "1.2.826.0.1.3680043.10.7001";
    pacs.load(
        dir.path(),
        &format!("{base}.1"),
        "P-PRIOR",
        "ACC-2023",
        "20230501",
    );
    pacs.load(
        dir.path(),
        &format!("{base}.2"),
        "P-PRIOR",
        "ACC-2024",
        "20240210",
    );
    pacs.load(
        dir.path(),
        &format!("{base}.3"),
        "P-OTHER",
        "ACC-OTHER",
        "20240301",
    );
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
