//! Nothing acknowledged is ever lost: kill -9 in the middle of a transfer, and a
//! destination that comes up late.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_transfer_loses_no_acknowledged_instance() {
    let (dir, scp, mut cfg) = reading_site();
    cfg.stable_after_secs = 0;
    let config_path = cfg.write();
    let daemon = Arc::new(Mutex::new(Daemon::start(&config_path, cfg.dicom_port)));

    // Kill readgate with SIGKILL at an arbitrary moment once 120 instances are acknowledged.
    let acked = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (acked, daemon) = (acked.clone(), daemon.clone());
        std::thread::spawn(move || {
            while acked.load(Ordering::SeqCst) < 120 {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_micros(1700));
            daemon.lock().unwrap().kill9();
        })
    };
    let study = "1.2.826.0.1.3680043.10.1234.77";
    let mut acknowledged = BTreeSet::new();
    let mut scu = Scu::ct01(cfg.dicom_port).await;
    for i in 0..300 {
        let sop = format!("{study}.{i}");
        let ds = synthetic_instance(CT_IMAGE_STORAGE, study, &sop, "CT", 100_000);
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
        acknowledged.len() >= 120 && acknowledged.len() < 300,
        "{} acknowledged",
        acknowledged.len()
    );

    // Restart on the same data: everything acknowledged must reach the destination.
    let restarted = Daemon::start(&config_path, cfg.dicom_port);
    wait_until(
        "acknowledged instances at the destination",
        Duration::from_secs(60),
        || acknowledged.is_subset(&scp.received()),
    );
    // nothing half-written was kept
    assert_eq!(
        std::fs::read_dir(dir.path().join("var/spool/tmp"))
            .unwrap()
            .count(),
        0
    );
    drop(restarted);
}

#[test]
fn a_destination_that_starts_a_minute_late_gets_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let dest_port = free_port();
    let cfg = TestConfig::new(dir.path(), dest_port);
    let daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    let files: Vec<_> = [
        "ct-chest/IM0001.dcm",
        "ct-chest/IM0002.dcm",
        "ct-chest/IM0003.dcm",
        "mr-head/IM0001.dcm",
        "mr-head/IM0002.dcm",
    ]
    .iter()
    .map(|f| repo_path(&format!("sample-dicom/{f}")))
    .collect();
    let mut storescu = dcmtk_scu("storescu", "CT01", &[], cfg.dicom_port);
    run_ok(storescu.args(&files), "storescu");
    std::thread::sleep(Duration::from_secs(60));
    assert!(daemon.log_text().contains("cannot reach destination"));
    let scp = StoreScp::start(&dir.path().join("rc1"), dest_port);
    wait_until("queue drained", Duration::from_secs(30), || {
        scp.received().len() == files.len()
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn spool_files_the_index_lost_are_indexed_again_and_forwarded() {
    let (dir, scp, mut cfg) = reading_site();
    cfg.stable_after_secs = 3600; // nothing is forwarded before the "crash"
    let rg = readgate::serve::start(cfg.parse()).await.unwrap();
    let study = "1.2.826.0.1.3680043.10.1234.88";
    let mut scu = Scu::ct01(cfg.dicom_port).await;
    let mut sent = BTreeSet::new();
    for i in 0..3 {
        let sop = format!("{study}.{i}");
        let ds = synthetic_instance(CT_IMAGE_STORAGE, study, &sop, "CT", 1000);
        scu.store_ct_ok(&sop, &ds).await;
        sent.insert(sop);
    }
    scu.release().await;
    rg.stop().await;
    // An OS crash may lose the last index commits (synchronous = NORMAL); the files stay.
    let db = rusqlite::Connection::open(dir.path().join("var/readgate.db")).unwrap();
    db.execute_batch("DELETE FROM instances; DELETE FROM studies;")
        .unwrap();
    drop(db);
    // and a file that is not DICOM at all must not be deleted, only set aside
    std::fs::write(
        dir.path().join("var/spool/objects/00/garbage.dcm"),
        b"not dicom",
    )
    .unwrap();

    cfg.stable_after_secs = 0;
    let rg = readgate::serve::start(cfg.parse()).await.unwrap();
    wait_until(
        "re-indexed instances forwarded",
        Duration::from_secs(30),
        || sent.is_subset(&scp.received()),
    );
    assert!(dir
        .path()
        .join("var/spool/quarantine/objects_00_garbage.dcm")
        .exists());
    rg.stop().await;
}

/// What readgate did, in the order the kernel saw it, as far as the acknowledgement
/// depends on it.
#[derive(Debug, PartialEq)]
enum Syscall {
    /// fdatasync/fsync of a file in `spool/tmp` finished.
    SyncedTmp(String),
    /// A file renamed from `spool/tmp` to `spool/objects`.
    Renamed { from: String, to: String },
    /// fsync of a directory in `spool/objects` finished.
    SyncedDir(String),
    /// A P-DATA-TF PDU (a DIMSE response) written to a TCP socket.
    PData,
}

/// The spool and socket system calls of an `strace -f -y -yy -x` log, in order. A call
/// that blocked is split by strace into `<unfinished ...>` and `<... resumed>`; it is
/// placed where it finished.
fn spool_syscalls(log: &str) -> Vec<Syscall> {
    let mut pending: std::collections::HashMap<String, String> = Default::default();
    let mut out = Vec::new();
    for line in log.lines() {
        let Some((pid, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        let whole = if let Some(start) = call.strip_suffix(" <unfinished ...>") {
            pending.insert(pid.to_string(), start.to_string());
            continue;
        } else if call.starts_with("<... ") {
            match pending.remove(pid) {
                Some(start) => {
                    format!("{start}{}", call.split_once("resumed>").map_or("", |x| x.1))
                }
                None => continue,
            }
        } else {
            call.to_string()
        };
        let ok = !whole.contains("= -1");
        let fd_path = |w: &str| -> String {
            w.split_once('<')
                .and_then(|(_, r)| r.split_once(">)").or_else(|| r.split_once(">,")))
                .map(|(p, _)| p.to_string())
                .unwrap_or_default()
        };
        if (whole.starts_with("fdatasync(") || whole.starts_with("fsync(")) && ok {
            let path = fd_path(&whole);
            if path.contains("/spool/tmp/") {
                out.push(Syscall::SyncedTmp(path));
            } else if path.contains("/spool/objects/") {
                out.push(Syscall::SyncedDir(path));
            }
        } else if whole.starts_with("rename") && ok {
            let quoted: Vec<&str> = whole.split('"').skip(1).step_by(2).collect();
            if let [from, to] = quoted[..] {
                if from.contains("/spool/tmp/") && to.contains("/spool/objects/") {
                    out.push(Syscall::Renamed {
                        from: from.to_string(),
                        to: to.to_string(),
                    });
                }
            }
        } else if (whole.starts_with("sendto(") || whole.starts_with("write("))
            && whole.contains("<TCP:[")
            && whole.contains(", \"\\x04\\x00")
        {
            out.push(Syscall::PData);
        }
    }
    out
}

/// Nothing proves an fsync from the outside except the order of the system calls: under
/// strace, every C-STORE response readgate writes is preceded, since the previous one, by
/// the instance's fdatasync in `spool/tmp`, its rename into `spool/objects` and the fsync
/// of that directory — in that order. (A readgate that answered before syncing, or
/// synced after, fails this; the kill -9 test cannot see a missing fsync.)
#[test]
fn every_acknowledged_instance_was_synced_before_its_answer() {
    let (dir, cfg) = no_reading_site();
    let config = cfg.write();
    let trace = dir.path().join("strace.log");
    let log = std::fs::File::create(dir.path().join("readgate.log")).expect("log");
    let mut child = std::process::Command::new("strace")
        .args(["-f", "-qq", "-y", "-yy", "-x", "-s", "4"])
        .args([
            "-e",
            "trace=fdatasync,fsync,rename,renameat,renameat2,sendto,write",
        ])
        .arg("-o")
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_readgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .expect("strace (installed by scripts/install-test-deps)");
    wait_for_port(cfg.dicom_port, Duration::from_secs(30));
    let files = [
        "ct-chest/IM0001.dcm",
        "ct-chest/IM0002.dcm",
        "ct-chest/IM0003.dcm",
        "mr-head/IM0001.dcm",
    ];
    let mut storescu = dcmtk_scu("storescu", "CT01", &[], cfg.dicom_port);
    for f in files {
        storescu.arg(repo_path("sample-dicom").join(f));
    }
    run_ok(&mut storescu, "storescu");
    // SIGTERM to readgate (strace's child), then strace ends with it.
    let pid = std::fs::read_to_string(&trace)
        .ok()
        .and_then(|t| {
            t.split_whitespace()
                .next()
                .and_then(|p| p.parse::<i32>().ok())
        })
        .expect("readgate's pid in the trace");
    // SAFETY: a signal to the process this test started (through strace).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = child.wait().expect("strace exits");
    assert!(status.success(), "readgate under strace: {status}");

    let calls = spool_syscalls(&std::fs::read_to_string(&trace).expect("trace"));
    let answers = calls.iter().filter(|c| **c == Syscall::PData).count();
    assert_eq!(
        answers,
        files.len(),
        "one P-DATA answer per instance: {calls:#?}"
    );
    let mut since_answer: Vec<&Syscall> = Vec::new();
    for call in &calls {
        if *call != Syscall::PData {
            since_answer.push(call);
            continue;
        }
        // The instance answered here: synced, renamed, directory synced, in order.
        let tmp = since_answer.iter().rev().find_map(|c| match c {
            Syscall::Renamed { from, to } => Some((from.clone(), to.clone())),
            _ => None,
        });
        let Some((from, to)) = tmp else {
            panic!("an answer with no instance renamed before it: {since_answer:#?}");
        };
        let at = |want: &Syscall| since_answer.iter().position(|c| *c == want);
        let synced = at(&Syscall::SyncedTmp(from.clone()))
            .expect("fdatasync of the instance before its answer");
        let renamed = at(&Syscall::Renamed {
            from: from.clone(),
            to: to.clone(),
        })
        .expect("rename");
        let parent = std::path::Path::new(&to)
            .parent()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let dir_synced = since_answer
            .iter()
            .rposition(|c| **c == Syscall::SyncedDir(parent.clone()))
            .expect("fsync of the objects directory before the answer");
        assert!(
            synced < renamed && renamed < dir_synced,
            "{since_answer:#?}"
        );
        since_answer.clear();
    }
}
