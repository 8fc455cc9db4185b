//! The hospital's PACS as a real peer: DCMTK `dcmqrscp` holds a patient's earlier
//! studies; `readgate pacs find` asks it for them (C-FIND, Study Root, STUDY level).

mod common;

use common::hl7::python;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// DCMTK's dcmqrscp as a PACS with AE title PACS, its database in `dir/db`.
struct Dcmqrscp {
    child: Child,
    port: u16,
}

impl Dcmqrscp {
    fn start(dir: &Path) -> Dcmqrscp {
        let port = free_port();
        let db = dir.join("db");
        std::fs::create_dir_all(&db).expect("db dir");
        let config = dir.join("dcmqrscp.cfg");
        std::fs::write(
            &config,
            format!(
                "NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n\
                 HostTable BEGIN\nHostTable END\nVendorTable BEGIN\nVendorTable END\n\
                 AETable BEGIN\nPACS {} RW (200, 1024mb) ANY\nAETable END\n",
                db.display()
            ),
        )
        .expect("dcmqrscp.cfg");
        let child = Command::new(dcmtk("dcmqrscp"))
            .args(["-c"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dcmqrscp");
        wait_for_port(port, Duration::from_secs(10));
        Dcmqrscp { child, port }
    }

    /// Stores a synthetic study (tests/peers/make_study.py) into the PACS with storescu.
    fn load(&self, dir: &Path, uid: &str, patient: &str, accession: &str, date: &str) {
        let out = dir.join("studies").join(uid);
        run_ok(
            Command::new(python())
                .arg(repo_path("tests/peers/make_study.py"))
                .arg(&out)
                .args(["--study-uid", uid, "--count", "2", "--patient-id", patient])
                .args(["--accession", accession, "--study-date", date]),
            "make_study.py",
        );
        let files: Vec<PathBuf> = std::fs::read_dir(&out)
            .expect("study dir")
            .map(|e| e.expect("entry").path())
            .collect();
        let mut storescu = Command::new(dcmtk("storescu"));
        storescu
            .args([
                "-aet",
                "LOADER",
                "-aec",
                "PACS",
                "127.0.0.1",
                &self.port.to_string(),
            ])
            .args(&files);
        run_ok(&mut storescu, "storescu into dcmqrscp");
    }
}

impl Drop for Dcmqrscp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
fn a_patients_studies_are_found_in_the_pacs() {
    let (dir, mut cfg) = no_reading_site();
    let pacs = Dcmqrscp::start(dir.path());
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
            "[[pacs]]\nid = \"main\"\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\nport = {}\n\
             timeout_secs = 10\nmax_results = {max}\n",
            pacs.port
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
    // dcmqrscp answers Study Description but not the optional Modalities in Study.
    assert_eq!(v[0]["description"], "SYNTHETIC CT", "{out}");

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
