//! The hospital's PACS as a real peer — DCMTK `dcmqrscp` and Orthanc (Debian's package)
//! hold a patient's earlier studies; `readgate pacs find` asks them (C-FIND, Study Root,
//! STUDY level).

mod common;

use common::hl7::python;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// A PACS under test, with AE title `ae`, on 127.0.0.1:`port`; killed when dropped.
struct PacsPeer {
    child: Child,
    port: u16,
    ae: &'static str,
    /// Whether it answers the optional Modalities in Study and instance count at STUDY
    /// level (Orthanc does; dcmqrscp does not).
    counts: bool,
}

impl PacsPeer {
    /// DCMTK's dcmqrscp, its database in `dir/db`.
    fn dcmqrscp(dir: &Path) -> PacsPeer {
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
        let mut cmd = Command::new(dcmtk("dcmqrscp"));
        cmd.arg("-c").arg(&config);
        PacsPeer::spawn(cmd, port, "PACS", false)
    }

    /// Orthanc (Debian's `orthanc` package), storage and index in `dir/orthanc`;
    /// readgate is one of its DICOM modalities, as a hospital would register it.
    fn orthanc(dir: &Path) -> PacsPeer {
        let (port, http) = (free_port(), free_port());
        let home = dir.join("orthanc");
        std::fs::create_dir_all(&home).expect("orthanc dir");
        let config = home.join("orthanc.json");
        let settings = serde_json::json!({
            "Name": "readgate-test",
            "StorageDirectory": home.join("storage"),
            "IndexDirectory": home.join("index"),
            "HttpPort": http,
            "DicomPort": port,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": false,
            "DicomAlwaysAllowStore": true,
            "DicomModalities": { "readgate": ["READGATE", "127.0.0.1", 11112] },
            "Plugins": []
        });
        std::fs::write(&config, settings.to_string()).expect("orthanc.json");
        let binary = std::env::var("ORTHANC_BIN").unwrap_or_else(|_| "/usr/sbin/Orthanc".into());
        let mut cmd = Command::new(binary);
        cmd.arg(&config);
        PacsPeer::spawn(cmd, port, "ORTHANC", true)
    }

    fn spawn(mut cmd: Command, port: u16, ae: &'static str, counts: bool) -> PacsPeer {
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the PACS (installed by scripts/install-test-deps)");
        wait_for_port(port, Duration::from_secs(20));
        PacsPeer {
            child,
            port,
            ae,
            counts,
        }
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
                "READGATE",
                "-aec",
                self.ae,
                "127.0.0.1",
                &self.port.to_string(),
            ])
            .args(&files);
        run_ok(&mut storescu, "storescu into the PACS");
    }
}

impl Drop for PacsPeer {
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
