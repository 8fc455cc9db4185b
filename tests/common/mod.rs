//! Shared test harness: real peers (DCMTK binaries), the readgate binary as a process,
//! an in-process DICOM SCU built on dicom-ul, and synthetic instances.
#![allow(dead_code)]

pub mod elements;

pub mod hl7;
pub mod http;
pub mod pacs;
pub mod pki;
pub mod process;

#[allow(unused_imports)] // not every test binary uses every one
pub use process::{
    assert_success, big_instance, code_stdout_stderr, readgate_bin, run_ok, run_output, vm_hwm_kib,
};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use dicom_ul::{ClientAssociationOptions, Pdu};
use readgate::dicom::dimse::{self, Command as DimseCommand};
use readgate::model::{EventKind, StudyState};

pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
pub const MR_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// A DCMTK program. Tests never skip for a missing peer: `.ci/run` installs DCMTK.
pub fn dcmtk(tool: &str) -> PathBuf {
    let dir = std::env::var("DCMTK_BIN").unwrap_or_else(|_| "/usr/bin".into());
    // Absolute path on purpose: pynetdicom installs its own `storescu` on PATH.
    let path = Path::new(&dir).join(tool);
    assert!(
        path.exists(),
        "DCMTK's {tool} not found at {} — install it (apt-get install dcmtk) or run .ci/run",
        path.display()
    );
    path
}

/// A DCMTK network tool (`echoscu`, `storescu`) calling READGATE on 127.0.0.1:`port` as
/// `calling`, with `options` before the address; TCP_NODELAY on (Debian's DCMTK keeps
/// Nagle on otherwise). Files, if any, go after it.
pub fn dcmtk_scu(tool: &str, calling: &str, options: &[&str], port: u16) -> Command {
    let mut cmd = Command::new(dcmtk(tool));
    cmd.args(["-aet", calling, "-aec", "READGATE"])
        .args(options)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .env("TCP_NODELAY", "1");
    cmd
}

/// Sends the log of a readgate running in the test's process to the test's output
/// (once per process; a test that set up its own subscriber keeps it).
pub fn in_process_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("readgate=warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// A TCP port nobody listens on, for a daemon or peer a test starts next.
///
/// Not port 0's answer: that comes from the kernel's ephemeral range, which every outgoing
/// connection also draws its source port from, so between this check and the daemon's bind
/// another test's client could take it (seen as "timed out waiting for port" under load).
/// Ports are instead drawn at random from below the ephemeral range (where the kernel never
/// assigns source ports) and checked free on both loopback and the wildcard address.
///
/// Each port drawn is reserved for the rest of the test process's life, across the test
/// processes running in parallel: by an abstract Unix socket named after it (Linux; no
/// file, gone when the process ends). So a port stays this test's while the peer on it is
/// stopped and started again (seen in CI: a PACS restarted on its freed port found it
/// taken by another test's peer).
pub fn free_port() -> u16 {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener};
    static RESERVED: std::sync::Mutex<Vec<UnixListener>> = std::sync::Mutex::new(Vec::new());
    let (low, high) = non_ephemeral_range();
    let mut reserved = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..10_000 {
        let port = fastrand::u16(low..high);
        let free = TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("0.0.0.0", port)).is_ok();
        if !free {
            continue;
        }
        // Fails when this or another test process drew the port before.
        let name = format!("readgate-test-port-{port}");
        let reservation = SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|addr| UnixListener::bind_addr(&addr));
        if let Ok(reservation) = reservation {
            reserved.push(reservation);
            return port;
        }
    }
    panic!("no free TCP port in {low}..{high}");
}

/// 12,000 ports just below the kernel's ephemeral range (or above it, when it starts low).
fn non_ephemeral_range() -> (u16, u16) {
    let (eph_low, eph_high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    if eph_low >= 13_024 {
        (eph_low - 12_000, eph_low)
    } else {
        (eph_high.saturating_add(1), u16::MAX)
    }
}

pub fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends one CT instance (SOP UID STUDY.1.1, [`synthetic_instance_with_accession`]) per
/// (study UID, accession) over one CT01 association; each must be answered Success.
pub async fn send_accessions(port: u16, studies: &[(String, String)]) {
    let mut scu = Scu::ct01(port).await;
    for (study, accession) in studies {
        let sop = format!("{study}.1.1");
        let ds = synthetic_instance_with_accession(CT_IMAGE_STORAGE, study, &sop, "CT", accession);
        scu.store_ct_ok(&sop, &ds).await;
    }
    scu.release().await;
}

/// The `kind` of every entry of a study's JSON `timeline`.
pub fn timeline_kinds(study: &serde_json::Value) -> Vec<&str> {
    study["timeline"]
        .as_array()
        .expect("timeline array")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect()
}

/// How many studies the store lists in `state` (at most `limit`).
pub fn studies_in(store: &readgate::store::Store, state: StudyState, limit: usize) -> usize {
    store
        .list_studies(Some(state), limit)
        .expect("list studies")
        .len()
}

/// The kinds of a study's timeline events, in order.
pub fn event_kinds(store: &readgate::store::Store, study: &str) -> Vec<EventKind> {
    store
        .events_of(study)
        .expect("study events")
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// Partial instances left in the spool's `tmp/` under `data_dir`: the files there that hold
/// data (the empty ones are made ready ahead of need and are not instances).
pub fn partial_instances(data_dir: &Path) -> usize {
    partial_files(&data_dir.join("spool/tmp"))
}

/// Non-empty files under `dir`, its subdirectories included (on PostgreSQL each node
/// writes into `tmp/<node>/`).
fn partial_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.expect("spool tmp/ entry");
            match e.metadata() {
                Ok(m) if m.is_dir() => partial_files(&e.path()),
                Ok(m) => usize::from(m.len() > 0),
                Err(_) => 1,
            }
        })
        .sum()
}

pub fn wait_for_port(port: u16, timeout: Duration) {
    wait_until(&format!("port {port}"), timeout, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// Waits until `port` accepts connections from `child`, a peer just started there; panics
/// as soon as it exits, which it does when another test process holds the port (whoever
/// answered there meanwhile was not this peer).
pub fn wait_for_port_of(child: &mut Child, what: &str, port: u16, timeout: Duration) {
    wait_until(&format!("{what} on port {port}"), timeout, || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening on port {port} ({status}): port taken?");
        }
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && matches!(child.try_wait(), Ok(None))
    });
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A test gate's decision: route to rc1 (`because`), `verdict`, and one hold reason of
/// clause JRS-7.3.1 (`code`, English, Japanese) unless `reason` is None.
pub fn rc1_decision(
    because: &str,
    verdict: readgate::decide::Verdict,
    reason: Option<(&str, &str, &str)>,
) -> readgate::decide::Decision {
    readgate::decide::Decision {
        route: Some(readgate::decide::Route {
            destination: "rc1".into(),
            facility: "RC1".into(),
            because: because.into(),
        }),
        verdict,
        reasons: reason
            .map(|(code, en, ja)| readgate::decide::HoldReason {
                code: code.into(),
                clause: "JRS-7.3.1".into(),
                message_en: en.into(),
                message_ja: ja.into(),
            })
            .into_iter()
            .collect(),
        evaluation: None,
    }
}

/// The hold reason the test gates give for a study without an exam purpose.
pub const PURPOSE_MISSING: (&str, &str, &str) = (
    "EXAM_PURPOSE_MISSING",
    "exam purpose missing",
    "検査目的が記載されていません",
);

/// A fresh temp dir, DCMTK storescp as the reading site rc1 in DIR/rc1, and a test config
/// (data in DIR/var) forwarding to it.
pub fn reading_site() -> (tempfile::TempDir, StoreScp, TestConfig) {
    let dir = tempfile::tempdir().expect("temp dir");
    let scp = StoreScp::start(&dir.path().join("rc1"), free_port());
    let cfg = TestConfig::new(dir.path(), scp.port);
    (dir, scp, cfg)
}

/// A fresh temp dir and a test config whose destination (a free port) is down.
pub fn no_reading_site() -> (tempfile::TempDir, TestConfig) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = TestConfig::new(dir.path(), free_port());
    (dir, cfg)
}

/// The suite on PostgreSQL: with `READGATE_TEST_POSTGRES` set to a server's URL (e.g.
/// `postgresql://readgate@127.0.0.1:5432/readgate`, as `examples/with_postgres.rs`
/// sets it), every test config gets a new, empty database of its own on that server.
pub fn suite_database() -> Option<String> {
    let server = std::env::var("READGATE_TEST_POSTGRES").ok()?;
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = format!(
        "t{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let conn = readgate::db::Conn::postgres(&server).expect("the suite's PostgreSQL server");
    conn.execute_batch(&format!("CREATE DATABASE {name}"))
        .expect("a database for the test");
    let (base, _) = server.rsplit_once('/').expect("a URL ending in /DATABASE");
    Some(format!("{base}/{name}"))
}

/// A readgate config for tests: allow any calling AE unless `peers` is given.
pub struct TestConfig {
    /// `gateway.id` (a node's name when several share a database).
    pub gateway_id: String,
    pub data_dir: PathBuf,
    pub dicom_port: u16,
    pub dest_port: u16,
    pub stable_after_secs: u64,
    pub extra_dicom: String,
    pub extra: String,
    pub peers: Option<String>,
    pub min_free_mb: u64,
    /// More `[storage]` keys, one per line.
    pub storage_extra: String,
    /// `[database] url`: None is SQLite in the data directory, unless the suite runs on
    /// PostgreSQL ([`suite_database`]).
    pub database_url: Option<String>,
    /// More `[database]` keys, one per line.
    pub database_extra: String,
    /// The `[policy]` part; by default only the route is checked, so tests of the
    /// DICOM spine are not held for clinical context.
    pub policy: String,
    /// When set, the config gets an `[hl7]` section listening on 127.0.0.1:port.
    pub hl7_port: Option<u16>,
    /// `hl7.max_frame_bytes` (only with `hl7_port`).
    pub hl7_max_frame_bytes: u64,
    /// `hl7.idle_timeout_secs` (only with `hl7_port`).
    pub hl7_idle_timeout_secs: u64,
    /// `hl7.default_charset`: ascii, utf8, iso2022jp, shift_jis (only with `hl7_port`).
    pub hl7_default_charset: String,
    /// More `[hl7]` keys, one per line (only with `hl7_port`).
    pub hl7_extra: String,
    /// More keys of the `[[destinations]]` entry, one per line.
    pub dest_extra: String,
    /// More keys of the `[[routes]]` entry, one per line.
    pub route_extra: String,
}

impl TestConfig {
    pub fn new(data_dir: &Path, dest_port: u16) -> Self {
        TestConfig {
            gateway_id: "gw-test".into(),
            data_dir: data_dir.to_path_buf(),
            dicom_port: free_port(),
            dest_port,
            stable_after_secs: 1,
            extra_dicom: String::new(),
            extra: String::new(),
            peers: None,
            min_free_mb: 1,
            storage_extra: String::new(),
            database_url: suite_database(),
            database_extra: String::new(),
            policy: "[[policy.rules]]\nname = \"route only\"\nchecks = []\n".into(),
            hl7_port: None,
            hl7_max_frame_bytes: 1_048_576,
            hl7_idle_timeout_secs: 300,
            hl7_default_charset: "ascii".to_string(),
            hl7_extra: String::new(),
            dest_extra: String::new(),
            route_extra: String::new(),
        }
    }

    /// The `[hl7]` section, or nothing without `hl7_port`.
    fn hl7_section(&self) -> String {
        match self.hl7_port {
            None => String::new(),
            Some(port) => format!(
                r#"
[hl7]
listen = "127.0.0.1:{port}"
allowed_hosts = []
max_frame_bytes = {max_frame}
idle_timeout_secs = {idle}
default_charset = "{charset}"
{extra}
"#,
                extra = self.hl7_extra,
                max_frame = self.hl7_max_frame_bytes,
                idle = self.hl7_idle_timeout_secs,
                charset = self.hl7_default_charset,
            ),
        }
    }

    pub fn text(&self) -> String {
        let peers = match &self.peers {
            Some(p) => format!("allow_any_calling_ae = false\n{p}"),
            None => "allow_any_calling_ae = true".to_string(),
        };
        format!(
            r#"
[gateway]
id = "{gateway_id}"
data_dir = "{data}"
sending_facility = "HOSP-T"

[dicom]
ae_title = "READGATE"
listen = "127.0.0.1:{port}"
stable_after_secs = {stable}
{extra_dicom}
{peers}

[storage]
min_free_mb = {min_free}
keep_forwarded = true
{storage_extra}

[forward]
retry_base_secs = 1
retry_max_secs = 2
max_attempts = 1000
linger_ms = 300

[[destinations]]
id = "rc1"
facility = "RC1"
ae_title = "RC1PACS"
host = "127.0.0.1"
port = {dest}
{dest_extra}

[[routes]]
destination = "rc1"
{route_extra}

{policy}

{database}
{extra}
{hl7}"#,
            gateway_id = self.gateway_id,
            database = match &self.database_url {
                Some(url) => format!("[database]\nurl = \"{url}\"\n{}\n", self.database_extra),
                None => String::new(),
            },
            storage_extra = self.storage_extra,
            data = self.data_dir.join("var").display(),
            port = self.dicom_port,
            stable = self.stable_after_secs,
            extra_dicom = self.extra_dicom,
            peers = peers,
            dest = self.dest_port,
            dest_extra = self.dest_extra,
            route_extra = self.route_extra,
            extra = self.extra,
            min_free = self.min_free_mb,
            policy = self.policy,
            hl7 = self.hl7_section(),
        )
    }

    pub fn write(&self) -> PathBuf {
        let path = self.data_dir.join("readgate.toml");
        std::fs::write(&path, self.text()).expect("write config");
        path
    }

    /// The config, for a readgate started in the test's own process. Its log goes to
    /// the test's output (shown when the test fails): readgate's warnings and errors, or
    /// what `RUST_LOG` asks for.
    pub fn parse(&self) -> readgate::config::Config {
        in_process_log();
        readgate::config::Config::parse(&self.text(), Path::new("test.toml"))
            .expect("valid test config")
    }

    /// The database this config names (the SQLite file, or PostgreSQL when the suite
    /// runs there), opened as a client of its own: for reading what readgate recorded,
    /// and for the tests that change it behind readgate's back. Write neutral SQL
    /// (`?1` placeholders; `readgate::db` rewrites them for PostgreSQL).
    pub fn database(&self) -> readgate::db::Conn {
        match self.parse().database() {
            readgate::config::Database::Sqlite(path) => {
                let conn = rusqlite::Connection::open(&path)
                    .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
                conn.busy_timeout(Duration::from_secs(10))
                    .expect("busy timeout");
                readgate::db::Conn::sqlite(conn)
            }
            readgate::config::Database::Postgres { url, .. } => {
                readgate::db::Conn::postgres(&url).expect("connect to the test's database")
            }
        }
    }

    /// Whether this config keeps readgate's state in PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        self.database_url.is_some()
    }
}

/// The readgate binary running `serve`; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(config_path: &Path, port: u16) -> Daemon {
        let log = config_path.with_file_name(format!(
            "readgate-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_readgate"))
            .args(["serve", "--config"])
            .arg(config_path)
            .env("RUST_LOG", "readgate=debug,info")
            .stdout(out.try_clone().expect("dup log"))
            .stderr(out)
            .spawn()
            .expect("spawn readgate");
        let mut d = Daemon { child, port, log };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("readgate exited at start-up ({status}):\n{}", d.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "readgate did not listen:\n{}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(30));
        }
        d
    }

    /// Waits until `port` (e.g. the HL7 listener) accepts connections; panics with the
    /// log if readgate exits first.
    pub fn wait_for_port(&mut self, port: u16) {
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "readgate exited before listening on port {port} ({status}):\n{}",
                    self.log_text()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "readgate did not listen on port {port}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// Panics with the log if readgate is no longer running.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("readgate exited ({status}):\n{}", self.log_text());
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().expect("wait readgate")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// DCMTK storescp as the remote reading site, bit-preserving, accepting every transfer
/// syntax it knows.
pub struct StoreScp {
    pub child: Child,
    pub dir: PathBuf,
    pub port: u16,
}

impl StoreScp {
    pub fn start(dir: &Path, port: u16) -> StoreScp {
        Self::start_with(dir, port, &[])
    }

    /// storescp with more options (e.g. `+tls KEY CERT +cf CA`).
    pub fn start_with(dir: &Path, port: u16, options: &[&str]) -> StoreScp {
        std::fs::create_dir_all(dir).expect("storescp dir");
        let mut child = Command::new(dcmtk("storescp"))
            .args(["-aet", "RC1PACS", "+B", "+xa"])
            .args(options)
            .arg("-od")
            .arg(dir)
            .arg(port.to_string())
            .env("TCP_NODELAY", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn storescp");
        wait_for_port_of(&mut child, "storescp", port, Duration::from_secs(10));
        StoreScp {
            child,
            dir: dir.to_path_buf(),
            port,
        }
    }

    /// SOP Instance UIDs of the files received so far.
    pub fn received(&self) -> std::collections::BTreeSet<String> {
        let mut set = std::collections::BTreeSet::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if let Ok(mut f) = std::fs::File::open(e.path()) {
                    if let Ok(meta) = readgate::dicom::part10::read_file_meta(&mut f) {
                        set.insert(meta.sop_instance_uid);
                    }
                }
            }
        }
        set
    }

    /// The received file holding `sop_uid`.
    pub fn file_of(&self, sop_uid: &str) -> Option<PathBuf> {
        std::fs::read_dir(&self.dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                std::fs::File::open(p)
                    .ok()
                    .and_then(|mut f| readgate::dicom::part10::read_file_meta(&mut f).ok())
                    .map(|m| m.sop_instance_uid == sop_uid)
                    .unwrap_or(false)
            })
    }
}

impl Drop for StoreScp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The data set of a Part 10 file (everything after the file meta group) and its meta.
pub fn dataset_of(path: &Path) -> (readgate::dicom::part10::FileMeta, Vec<u8>) {
    let bytes = std::fs::read(path).expect("read dicom file");
    let meta = readgate::dicom::part10::read_file_meta(&mut &bytes[..]).expect("part 10 meta");
    let ds = bytes[meta.dataset_offset as usize..].to_vec();
    (meta, ds)
}

pub fn element(out: &mut Vec<u8>, group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) {
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&elem.to_le_bytes());
    out.extend_from_slice(vr);
    if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(value);
}

pub fn padded(s: &str, pad: u8) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(pad);
    }
    v
}

/// A synthetic explicit-VR-LE data set, its elements in this order; `None` leaves one
/// out. The series UID is the study UID + ".1".
pub struct Synthetic<'a> {
    /// (0008,0005) Specific Character Set.
    pub charset: Option<&'a str>,
    pub sop_class: &'a str,
    pub sop_uid: &'a str,
    pub accession: &'a str,
    pub modality: &'a str,
    pub patient_name: Option<&'a str>,
    pub patient_id: &'a str,
    pub study_uid: &'a str,
    /// (7FE0,0010) as OW.
    pub pixels: &'a [u8],
}

impl Synthetic<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut d = Vec::new();
        if let Some(charset) = self.charset {
            element(&mut d, 0x0008, 0x0005, b"CS", &padded(charset, b' '));
        }
        element(&mut d, 0x0008, 0x0016, b"UI", &padded(self.sop_class, 0));
        element(&mut d, 0x0008, 0x0018, b"UI", &padded(self.sop_uid, 0));
        element(&mut d, 0x0008, 0x0050, b"SH", &padded(self.accession, b' '));
        element(&mut d, 0x0008, 0x0060, b"CS", &padded(self.modality, b' '));
        if let Some(name) = self.patient_name {
            element(&mut d, 0x0010, 0x0010, b"PN", &padded(name, b' '));
        }
        element(
            &mut d,
            0x0010,
            0x0020,
            b"LO",
            &padded(self.patient_id, b' '),
        );
        element(&mut d, 0x0020, 0x000D, b"UI", &padded(self.study_uid, 0));
        let series = format!("{}.1", self.study_uid);
        element(&mut d, 0x0020, 0x000E, b"UI", &padded(&series, 0));
        element(&mut d, 0x7FE0, 0x0010, b"OW", self.pixels);
        d
    }
}

/// A synthetic explicit-VR-LE instance with `pixel_bytes` of pixel data.
pub fn synthetic_instance(
    sop_class: &str,
    study_uid: &str,
    sop_uid: &str,
    modality: &str,
    pixel_bytes: usize,
) -> Vec<u8> {
    let mut pixels = vec![0u8; pixel_bytes];
    for (i, b) in pixels.iter_mut().enumerate() {
        *b = (i * 31 % 251) as u8;
    }
    Synthetic {
        charset: None,
        sop_class,
        sop_uid,
        accession: "ACC0001",
        modality,
        patient_name: Some("Synthetic^Patient"),
        patient_id: "SYN0001",
        study_uid,
        pixels: &pixels,
    }
    .encode()
}

/// As [`synthetic_instance`], with its own accession number (0008,0050), no patient name
/// and 64 bytes of pixel data.
pub fn synthetic_instance_with_accession(
    sop_class: &str,
    study_uid: &str,
    sop_uid: &str,
    modality: &str,
    accession: &str,
) -> Vec<u8> {
    Synthetic {
        charset: None,
        sop_class,
        sop_uid,
        accession,
        modality,
        patient_name: None,
        patient_id: "SYN0001",
        study_uid,
        pixels: &[0u8; 64],
    }
    .encode()
}

/// How the SCU packs a C-STORE on the wire.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Packing {
    /// Command PDU, then data PDU(s): what most SCUs do.
    Separate,
    /// Command and the whole data set in one PDU (many SCUs do this for small objects).
    SamePdu,
    /// The command set split over three PDVs in separate PDUs.
    FragmentedCommand,
}

/// A minimal C-STORE SCU over dicom-ul, used to drive readgate in-process.
pub struct Scu {
    assoc: dicom_ul::association::client::AsyncClientAssociation<tokio::net::TcpStream>,
    msg: u16,
}

impl Scu {
    pub async fn connect(port: u16, calling: &str, classes: &[&str]) -> Result<Scu, String> {
        let mut opts = ClientAssociationOptions::new()
            .calling_ae_title(calling.to_string())
            .called_ae_title("READGATE")
            .with_abstract_syntax("1.2.840.10008.1.1");
        for c in classes {
            opts = opts.with_presentation_context(c.to_string(), vec![EXPLICIT_LE.to_string()]);
        }
        let assoc = opts
            .establish_async(format!("127.0.0.1:{port}").as_str())
            .await
            .map_err(|e| e.to_string())?;
        Ok(Scu { assoc, msg: 0 })
    }

    /// An association from CT01 offering CT Image Storage; panics if it is refused.
    pub async fn ct01(port: u16) -> Scu {
        Scu::connect(port, "CT01", &[CT_IMAGE_STORAGE])
            .await
            .expect("CT01 associates")
    }

    /// One C-STORE of `dataset` as CT Image Storage in separate PDUs; panics unless it
    /// is answered Success (0000).
    pub async fn store_ct_ok(&mut self, sop_uid: &str, dataset: &[u8]) {
        let (status, comment) = self
            .store(CT_IMAGE_STORAGE, sop_uid, dataset, Packing::Separate)
            .await
            .expect("C-STORE answered");
        assert_eq!(status, 0, "C-STORE {sop_uid}: {status:04X} {comment:?}");
    }

    pub fn context_for(&self, class: &str) -> u8 {
        self.assoc
            .presentation_contexts()
            .iter()
            .find(|pc| {
                pc.abstract_syntax == class
                    && pc.reason == PresentationContextResultReason::Acceptance
            })
            .map(|pc| pc.id)
            .expect("accepted context")
    }

    /// Sends one C-STORE and returns (status, error comment).
    pub async fn store(
        &mut self,
        class: &str,
        sop_uid: &str,
        dataset: &[u8],
        packing: Packing,
    ) -> Result<(u16, Option<String>), String> {
        self.store_on(self.context_for(class), class, sop_uid, dataset, packing)
            .await
    }

    pub async fn store_on(
        &mut self,
        pc: u8,
        class: &str,
        sop_uid: &str,
        dataset: &[u8],
        packing: Packing,
    ) -> Result<(u16, Option<String>), String> {
        self.msg += 1;
        let cmd = dimse::c_store_rq(self.msg, class, sop_uid);
        let pdv = |t: PDataValueType, last: bool, data: Vec<u8>| PDataValue {
            presentation_context_id: pc,
            value_type: t,
            is_last: last,
            data,
        };
        let mut pdus = Vec::new();
        match packing {
            Packing::Separate => {
                pdus.push(Pdu::PData {
                    data: vec![pdv(PDataValueType::Command, true, cmd)],
                });
                let chunks: Vec<&[u8]> = dataset.chunks(16 * 1024).collect();
                for (i, c) in chunks.iter().enumerate() {
                    pdus.push(Pdu::PData {
                        data: vec![pdv(PDataValueType::Data, i + 1 == chunks.len(), c.to_vec())],
                    });
                }
            }
            Packing::SamePdu => {
                pdus.push(Pdu::PData {
                    data: vec![
                        pdv(PDataValueType::Command, true, cmd),
                        pdv(PDataValueType::Data, true, dataset.to_vec()),
                    ],
                });
            }
            Packing::FragmentedCommand => {
                let third = cmd.len() / 3;
                pdus.push(Pdu::PData {
                    data: vec![pdv(PDataValueType::Command, false, cmd[..third].to_vec())],
                });
                pdus.push(Pdu::PData {
                    data: vec![pdv(
                        PDataValueType::Command,
                        false,
                        cmd[third..2 * third].to_vec(),
                    )],
                });
                pdus.push(Pdu::PData {
                    data: vec![pdv(
                        PDataValueType::Command,
                        true,
                        cmd[2 * third..].to_vec(),
                    )],
                });
                pdus.push(Pdu::PData {
                    data: vec![pdv(PDataValueType::Data, true, dataset.to_vec())],
                });
            }
        }
        for p in &pdus {
            self.assoc.send(p).await.map_err(|e| e.to_string())?;
        }
        self.response().await
    }

    pub async fn response(&mut self) -> Result<(u16, Option<String>), String> {
        let mut buf = Vec::new();
        loop {
            match self.assoc.receive().await.map_err(|e| e.to_string())? {
                Pdu::PData { data } => {
                    for v in data {
                        buf.extend_from_slice(&v.data);
                        if v.is_last && v.value_type == PDataValueType::Command {
                            let c = DimseCommand::decode(&buf).map_err(|e| e.to_string())?;
                            return Ok((
                                c.status().map_err(|e| e.to_string())?,
                                c.text(dimse::TAG_ERROR_COMMENT),
                            ));
                        }
                    }
                }
                other => return Err(format!("unexpected {other:?}")),
            }
        }
    }

    /// Bytes on the wire as they are (a malformed PDU).
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), String> {
        use tokio::io::AsyncWriteExt;
        self.assoc
            .inner_stream()
            .write_all(bytes)
            .await
            .map_err(|e| e.to_string())
    }

    /// The next PDU from readgate.
    pub async fn receive(&mut self) -> Result<Pdu, String> {
        self.assoc.receive().await.map_err(|e| e.to_string())
    }

    pub async fn send_raw(&mut self, pdu: &Pdu) -> Result<(), String> {
        self.assoc.send(pdu).await.map_err(|e| e.to_string())
    }

    pub async fn echo(&mut self) -> Result<u16, String> {
        self.msg += 1;
        let pc = self.context_for("1.2.840.10008.1.1");
        let cmd = dimse::CommandBuilder::new()
            .uid(dimse::TAG_AFFECTED_SOP_CLASS, "1.2.840.10008.1.1")
            .u16(dimse::TAG_COMMAND_FIELD, dimse::C_ECHO_RQ)
            .u16(dimse::TAG_MESSAGE_ID, self.msg)
            .u16(dimse::TAG_DATA_SET_TYPE, dimse::NO_DATA_SET)
            .encode();
        self.assoc
            .send(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: pc,
                    value_type: PDataValueType::Command,
                    is_last: true,
                    data: cmd,
                }],
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok(self.response().await?.0)
    }

    pub async fn release(self) {
        let _ = self.assoc.release().await;
    }
}

/// A DIMSE answer (status, Error Comment) is `status` and its comment says `text`.
pub fn assert_answer(status: u16, comment: &Option<String>, want: u16, text: &str) {
    assert_eq!(status, want, "{comment:?}");
    assert!(
        comment.as_deref().unwrap_or("").contains(text),
        "{want:04X} without {text:?} in its comment: {comment:?}"
    );
}

/// kill -9 in the middle of a transfer: `count` instances of one study (`pixel_bytes`
/// each) sent one per C-STORE on one association while another thread SIGKILLs the daemon
/// at an arbitrary moment after `kill_after` were acknowledged. Returns the SOP Instance
/// UIDs that were acknowledged (0000) before it died.
pub async fn send_until_killed(
    daemon: Daemon,
    port: u16,
    study: &str,
    count: usize,
    kill_after: usize,
    pixel_bytes: usize,
) -> std::collections::BTreeSet<String> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let daemon = std::sync::Arc::new(std::sync::Mutex::new(daemon));
    let acked = std::sync::Arc::new(AtomicUsize::new(0));
    let killed = std::sync::Arc::new(AtomicBool::new(false));
    let killer = {
        let (acked, killed, daemon) = (acked.clone(), killed.clone(), daemon.clone());
        std::thread::spawn(move || {
            while acked.load(Ordering::SeqCst) < kill_after {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_micros(1700));
            daemon.lock().unwrap().kill9();
            killed.store(true, Ordering::SeqCst);
        })
    };
    let mut acknowledged = std::collections::BTreeSet::new();
    let mut scu = Scu::ct01(port).await;
    for i in 0..count {
        // On a loaded machine the killer may be late: from kill_after + 80 on, wait for
        // it, so that the kill always falls inside the transfer.
        while i >= kill_after + 80 && !killed.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let sop = format!("{study}.{i}");
        let ds = synthetic_instance(CT_IMAGE_STORAGE, study, &sop, "CT", pixel_bytes);
        match scu
            .store(CT_IMAGE_STORAGE, &sop, &ds, Packing::Separate)
            .await
        {
            Ok((0, _)) => {
                acknowledged.insert(sop);
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Ok((status, comment)) => panic!("unexpected status {status:04X} {comment:?}"),
            Err(_) => break, // readgate died
        }
    }
    killer.join().unwrap();
    assert!(
        acknowledged.len() >= kill_after && acknowledged.len() < count,
        "{} acknowledged",
        acknowledged.len()
    );
    acknowledged
}

/// `count` CT instances of `study` (SOP UIDs `study.first…`) as Part 10 files in `dir`.
pub fn write_ct_files(
    dir: &Path,
    study: &str,
    first: usize,
    count: usize,
    pixel_bytes: usize,
) -> std::collections::BTreeSet<String> {
    std::fs::create_dir_all(dir).unwrap();
    let mut sops = std::collections::BTreeSet::new();
    for i in first..first + count {
        let sop = format!("{study}.{i}");
        let ds = synthetic_instance(CT_IMAGE_STORAGE, study, &sop, "CT", pixel_bytes);
        let mut file = readgate::dicom::part10::encode_file_meta(
            CT_IMAGE_STORAGE,
            &sop,
            "1.2.840.10008.1.2.1",
            "",
        );
        file.extend_from_slice(&ds);
        std::fs::write(dir.join(format!("{i}.dcm")), file).unwrap();
        sops.insert(sop);
    }
    sops
}

/// Makes every audit append fail, as a full disk or a broken database would: a trigger
/// that refuses inserts into `audit_log` (in the dialect of `db`).
pub fn refuse_audit_appends(db: &readgate::db::Conn) {
    let sql = match db.backend() {
        readgate::db::Backend::Sqlite => {
            "CREATE TRIGGER refuse BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'disk full'); END;"
        }
        readgate::db::Backend::Postgres => {
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'disk full'; END $$; \
             CREATE TRIGGER refuse BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION refuse();"
        }
    };
    db.execute_batch(sql)
        .expect("a trigger refusing audit appends");
}

/// Undoes [`refuse_audit_appends`].
pub fn allow_audit_appends(db: &readgate::db::Conn) {
    let sql = match db.backend() {
        readgate::db::Backend::Sqlite => "DROP TRIGGER refuse;",
        readgate::db::Backend::Postgres => {
            "DROP TRIGGER refuse ON audit_log; DROP FUNCTION refuse();"
        }
    };
    db.execute_batch(sql).expect("drop the refusing trigger");
}

/// What an attacker with the database's password does: drops the append-only guard and
/// rewrites the detail of audit entry `seq`.
pub fn tamper_audit_detail(db: &readgate::db::Conn, seq: i64, detail: &str) {
    let drop_guard = match db.backend() {
        readgate::db::Backend::Sqlite => "DROP TRIGGER audit_log_no_update;",
        readgate::db::Backend::Postgres => "DROP TRIGGER audit_log_no_update ON audit_log;",
    };
    db.execute_batch(drop_guard)
        .expect("drop the append-only guard");
    let changed = db
        .execute(
            "UPDATE audit_log SET detail = ?1 WHERE seq = ?2",
            readgate::db::params![detail, seq],
        )
        .expect("rewrite an audit entry");
    assert_eq!(changed, 1, "audit entry {seq}");
}
