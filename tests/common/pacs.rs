//! The hospital's PACS as a real peer for the tests: DCMTK `dcmqrscp` or Orthanc
//! (Debian's package), loaded with synthetic studies by `tests/peers/make_study.py`.

use super::hl7::python;
use super::process::run_ok;
use super::{dcmtk, free_port, repo_path, wait_for_port};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// A PACS under test, with AE title `ae`, on 127.0.0.1:`port`; killed when dropped.
pub struct PacsPeer {
    child: Child,
    pub port: u16,
    pub ae: &'static str,
    /// Whether it answers the optional Modalities in Study and instance count at STUDY
    /// level (Orthanc does; dcmqrscp does not).
    pub counts: bool,
    /// Orthanc's REST port (`None` for dcmqrscp).
    http: Option<u16>,
}

impl PacsPeer {
    /// DCMTK's dcmqrscp, its database in `dir/db`.
    pub fn dcmqrscp(dir: &Path) -> PacsPeer {
        PacsPeer::dcmqrscp_on(dir, free_port())
    }

    /// dcmqrscp on a given port (to start it again where it was), logging each
    /// association to `dir/dcmqrscp.log` (see [`PacsPeer::associations_from`]).
    pub fn dcmqrscp_on(dir: &Path, port: u16) -> PacsPeer {
        PacsPeer::dcmqrscp_with(dir, port, None)
    }

    /// dcmqrscp that knows readgate (AE `READGATE` on 127.0.0.1:`readgate_port`) as a
    /// C-MOVE destination, as a hospital registers it.
    pub fn dcmqrscp_moving_to(dir: &Path, readgate_port: u16) -> PacsPeer {
        PacsPeer::dcmqrscp_with(dir, free_port(), Some(readgate_port))
    }

    fn dcmqrscp_with(dir: &Path, port: u16, readgate_port: Option<u16>) -> PacsPeer {
        let hosts = readgate_port
            .map(|p| format!("readgate = (READGATE, 127.0.0.1, {p})\n"))
            .unwrap_or_default();
        let db = dir.join("db");
        std::fs::create_dir_all(&db).expect("db dir");
        let config = dir.join("dcmqrscp.cfg");
        std::fs::write(
            &config,
            format!(
                "NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n\
                 HostTable BEGIN\n{hosts}HostTable END\nVendorTable BEGIN\nVendorTable END\n\
                 AETable BEGIN\nPACS {} RW (200, 1024mb) ANY\nAETable END\n",
                db.display()
            ),
        )
        .expect("dcmqrscp.cfg");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("dcmqrscp.log"))
            .expect("dcmqrscp.log");
        let mut cmd = Command::new(dcmtk("dcmqrscp"));
        cmd.arg("-v").arg("-c").arg(&config);
        cmd.stderr(log.try_clone().expect("log"));
        cmd.stdout(log);
        PacsPeer::spawn(cmd, port, "PACS", false, None)
    }

    /// Orthanc (Debian's `orthanc` package), storage and index in `dir/orthanc`;
    /// readgate is one of its DICOM modalities, as a hospital would register it.
    pub fn orthanc(dir: &Path) -> PacsPeer {
        PacsPeer::orthanc_moving_to(dir, 11112)
    }

    /// Orthanc with readgate registered at 127.0.0.1:`readgate_port` (for C-MOVE).
    pub fn orthanc_moving_to(dir: &Path, readgate_port: u16) -> PacsPeer {
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
            "DicomModalities": { "readgate": ["READGATE", "127.0.0.1", readgate_port] },
            "Plugins": []
        });
        std::fs::write(&config, settings.to_string()).expect("orthanc.json");
        let binary = std::env::var("ORTHANC_BIN").unwrap_or_else(|_| "/usr/sbin/Orthanc".into());
        let mut cmd = Command::new(binary);
        cmd.arg(&config);
        cmd.stdout(std::process::Stdio::null());
        cmd.stderr(std::process::Stdio::null());
        PacsPeer::spawn(cmd, port, "ORTHANC", true, Some(http))
    }

    /// Registers readgate (AE `READGATE` on 127.0.0.1:`readgate_port`) as Orthanc's C-MOVE
    /// destination through its REST API, as an administrator fixing the PACS would.
    pub async fn register_readgate(&self, readgate_port: u16) {
        let http = self.http.expect("Orthanc's REST port");
        let response = reqwest::Client::new()
            .put(format!("http://127.0.0.1:{http}/modalities/readgate"))
            .json(
                &serde_json::json!({"AET": "READGATE", "Host": "127.0.0.1", "Port": readgate_port}),
            )
            .send()
            .await
            .expect("Orthanc REST");
        assert!(response.status().is_success(), "{:?}", response.status());
    }

    fn spawn(
        mut cmd: Command,
        port: u16,
        ae: &'static str,
        counts: bool,
        http: Option<u16>,
    ) -> PacsPeer {
        let child = cmd
            .spawn()
            .expect("the PACS (installed by scripts/install-test-deps)");
        wait_for_port(port, Duration::from_secs(20));
        PacsPeer {
            child,
            port,
            ae,
            counts,
            http,
        }
    }

    /// Stores a synthetic study (tests/peers/make_study.py) into the PACS with storescu.
    pub fn load(&self, dir: &Path, uid: &str, patient: &str, accession: &str, date: &str) {
        self.load_with(dir, uid, patient, accession, date, &[]);
    }

    /// As [`PacsPeer::load`], with more make_study.py options (`--report TEXT`,
    /// `--dose-report`, `--modality MR`).
    pub fn load_with(
        &self,
        dir: &Path,
        uid: &str,
        patient: &str,
        accession: &str,
        date: &str,
        options: &[&str],
    ) {
        let out = dir.join("studies").join(uid);
        run_ok(
            Command::new(python())
                .arg(repo_path("tests/peers/make_study.py"))
                .arg(&out)
                .args(["--study-uid", uid, "--count", "2", "--patient-id", patient])
                .args(["--accession", accession, "--study-date", date])
                .args(options),
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

/// How many associations `calling` opened with the dcmqrscp logging to `dir`.
pub fn associations_from(dir: &Path, calling: &str) -> usize {
    let log = std::fs::read_to_string(dir.join("dcmqrscp.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("Association Received") && l.contains(&format!(":{calling} -> ")))
        .count()
}
