//! The hospital's PACS as a real peer for the tests: DCMTK `dcmqrscp` or Orthanc
//! (Debian's package), loaded with synthetic studies by `tests/peers/make_study.py`.

use super::hl7::python;
use super::process::run_ok;
use super::{dcmtk, free_port, repo_path, wait_for_port_of};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Where it keeps its files; [`PacsPeer::load`] writes the studies it makes there.
    dir: PathBuf,
}

impl PacsPeer {
    /// DCMTK's dcmqrscp, its database in `dir/db`.
    /// Each association is logged to `dir/dcmqrscp.log` (see [`associations_from`]); a
    /// second one started on the same `dir` serves the same studies.
    pub fn dcmqrscp(dir: &Path) -> PacsPeer {
        PacsPeer::dcmqrscp_with(dir, free_port(), None)
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
        PacsPeer::spawn(cmd, dir, port, "PACS", false, None)
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
        PacsPeer::spawn(cmd, dir, port, "ORTHANC", true, Some(http))
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
        dir: &Path,
        port: u16,
        ae: &'static str,
        counts: bool,
        http: Option<u16>,
    ) -> PacsPeer {
        let mut child = cmd
            .spawn()
            .expect("the PACS (installed by scripts/install-test-deps)");
        wait_for_port_of(&mut child, ae, port, Duration::from_secs(20));
        PacsPeer {
            child,
            port,
            ae,
            counts,
            http,
            dir: dir.to_path_buf(),
        }
    }

    /// Stores a synthetic study (tests/peers/make_study.py) into the PACS with storescu.
    pub fn load(&self, uid: &str, patient: &str, accession: &str, date: &str) {
        self.load_with(uid, patient, accession, date, &[]);
    }

    /// As [`PacsPeer::load`], with more make_study.py options (`--report TEXT`,
    /// `--dose-report`, `--modality MR`).
    pub fn load_with(
        &self,
        uid: &str,
        patient: &str,
        accession: &str,
        date: &str,
        options: &[&str],
    ) {
        let out = self.dir.join("studies").join(uid);
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

/// The network path from readgate to a PACS, which a test cuts and restores: a TCP relay on
/// a port it holds for its whole life. A PACS stopped and started again on its own freed
/// port raced with the tests running beside it, which may draw and bind that port
/// meanwhile; behind the link, the PACS starts again on a port of its own.
/// Cut, the link closes each connection as it arrives, as a load balancer with no server
/// behind it does.
pub struct PacsLink {
    pub port: u16,
    to: Arc<Mutex<Option<u16>>>,
    closed: Arc<AtomicBool>,
}

impl PacsLink {
    /// A link to the PACS listening on 127.0.0.1:`port`.
    pub fn to(port: u16) -> PacsLink {
        // Port 0 is safe here: the port is bound at once and held until the link drops.
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind the PACS link");
        let link = PacsLink {
            port: listener.local_addr().expect("its port").port(),
            to: Arc::new(Mutex::new(Some(port))),
            closed: Arc::new(AtomicBool::new(false)),
        };
        let (to, closed) = (link.to.clone(), link.closed.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if closed.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let target = *to.lock().unwrap_or_else(|e| e.into_inner());
                // Cut, or the PACS is not (yet) listening: the client sees its connection closed.
                if let Some(server) = target.and_then(|p| TcpStream::connect(("127.0.0.1", p)).ok())
                {
                    relay(client, server);
                }
            }
        });
        link
    }

    /// From now on, connections are closed as they arrive.
    pub fn cut(&self) {
        *self.to.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// From now on, connections go to the PACS on 127.0.0.1:`port`.
    pub fn restore(&self, port: u16) {
        *self.to.lock().unwrap_or_else(|e| e.into_inner()) = Some(port);
    }
}

impl Drop for PacsLink {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        // Wakes the accepting thread so that it sees `closed` and ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies each direction until its sender closes, then closes it towards the other side.
fn relay(client: TcpStream, server: TcpStream) {
    let pipe = |mut from: TcpStream, to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut &to);
            let _ = to.shutdown(Shutdown::Write);
        });
    };
    // Otherwise both are dropped here, and the client sees its connection closed.
    if let (Ok(client_side), Ok(server_side)) = (client.try_clone(), server.try_clone()) {
        pipe(client, server_side);
        pipe(server, client_side);
    }
}
