//! Nothing acknowledged is ever lost: kill -9 in the middle of a transfer, and a
//! destination that comes up late.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_transfer_loses_no_acknowledged_instance() {
    let (dir, scp, mut cfg) = reading_site();
    cfg.stable_after_secs = 0;
    let config_path = cfg.write();
    let daemon = Daemon::start(&config_path, cfg.dicom_port);
    let study = "1.2.826.0.1.3680043.10.1234.77";
    let acknowledged = send_until_killed(daemon, cfg.dicom_port, study, 300, 120, 100_000).await;

    // Restart on the same data: everything acknowledged must reach the destination.
    let restarted = Daemon::start(&config_path, cfg.dicom_port);
    wait_until(
        "acknowledged instances at the destination",
        Duration::from_secs(60),
        || acknowledged.is_subset(&scp.received()),
    );
    // nothing half-written was kept
    assert_eq!(partial_instances(&dir.path().join("var")), 0);
    drop(restarted);
}

/// The destination is down for several retries (not a fixed minute: the test waits for
/// the failed attempts themselves), then comes up and gets the whole queue.
#[test]
fn a_destination_that_starts_late_gets_the_queue() {
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
    wait_until("five failed attempts", Duration::from_secs(60), || {
        daemon
            .log_text()
            .matches("cannot reach destination")
            .count()
            >= 5
    });
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
    cfg.database()
        .execute_batch("DELETE FROM instances; DELETE FROM studies;")
        .unwrap();
    // and a file that is not DICOM at all must not be deleted, only set aside (on
    // PostgreSQL a node looks only at the files it named: `<node>.…`)
    let garbage = if cfg.on_postgres() {
        format!("{}.garbage.dcm", cfg.gateway_id)
    } else {
        "garbage.dcm".to_string()
    };
    std::fs::write(
        dir.path().join("var/spool/objects/00").join(&garbage),
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
        .join(format!("var/spool/quarantine/objects_00_{garbage}"))
        .exists());
    rg.stop().await;
}

/// What readgate did, in the order the kernel saw it, as far as an acknowledgement
/// depends on it.
#[derive(Debug, PartialEq)]
enum Syscall {
    /// fdatasync or fsync of this path finished.
    Synced(String),
    /// A file renamed.
    Renamed { from: String, to: String },
    /// Bytes written to a TCP socket; the first few, as strace escapes them.
    Sent(String),
}

/// The sync, rename and socket-write calls of an `strace -f -y -yy -x` log, in order. A
/// call that blocked is split by strace into `<unfinished ...>` and `<... resumed>`; it
/// is placed where it finished.
fn traced_calls(log: &str) -> Vec<Syscall> {
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
        if whole.contains("= -1") {
            continue;
        }
        // `call(FD</path>, …` → the path (or `TCP:[…]`) strace printed for FD.
        let fd_path = |w: &str| -> String {
            w.split_once('<')
                .and_then(|(_, r)| r.split_once(">)").or_else(|| r.split_once(">,")))
                .map(|(p, _)| p.to_string())
                .unwrap_or_default()
        };
        if whole.starts_with("fdatasync(") || whole.starts_with("fsync(") {
            out.push(Syscall::Synced(fd_path(&whole)));
        } else if whole.starts_with("rename") {
            let quoted: Vec<&str> = whole.split('"').skip(1).step_by(2).collect();
            if let [from, to] = quoted[..] {
                out.push(Syscall::Renamed {
                    from: from.to_string(),
                    to: to.to_string(),
                });
            }
        } else if (whole.starts_with("sendto(") || whole.starts_with("write("))
            && fd_path(&whole).starts_with("TCP:[")
        {
            let head = whole.split('"').nth(1).unwrap_or_default();
            out.push(Syscall::Sent(head.to_string()));
        }
    }
    out
}

/// readgate `serve --config CONFIG` under strace (sync, rename and write calls, with the
/// paths and sockets of descriptors, `strings` bytes of each buffer) writing to `trace`.
fn traced_readgate(config: &Path, trace: &Path, strings: u32) -> std::process::Child {
    let log = std::fs::File::create(trace.with_extension("readgate.log")).expect("log");
    std::process::Command::new("strace")
        .args(["-f", "-qq", "-y", "-yy", "-x", "-s", &strings.to_string()])
        .args([
            "-e",
            "trace=fdatasync,fsync,rename,renameat,renameat2,sendto,write",
        ])
        .arg("-o")
        .arg(trace)
        .arg(env!("CARGO_BIN_EXE_readgate"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .expect("strace (installed by scripts/install-test-deps)")
}

/// Stops readgate under strace (SIGTERM to the traced process) and returns the calls.
fn stop_traced(mut child: std::process::Child, trace: &Path) -> Vec<Syscall> {
    let pid = std::fs::read_to_string(trace)
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
    traced_calls(&std::fs::read_to_string(trace).expect("trace"))
}

/// Nothing proves an fsync from the outside except the order of the system calls: under
/// strace, every C-STORE response readgate writes is preceded, since the previous one, by
/// the instance's fdatasync in `spool/tmp`, its rename into `spool/objects` and the fsync
/// of that directory — in that order. (A readgate that answered before syncing, or
/// synced after, fails this; the kill -9 test cannot see a missing fsync.)
#[test]
fn every_acknowledged_instance_was_synced_before_its_answer() {
    let (dir, cfg) = no_reading_site();
    let trace = dir.path().join("strace.log");
    let child = traced_readgate(&cfg.write(), &trace, 4);
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
    let calls = stop_traced(child, &trace);

    let is_answer = |c: &Syscall| matches!(c, Syscall::Sent(h) if h.starts_with("\\x04\\x00"));
    let answers = calls.iter().filter(|c| is_answer(c)).count();
    assert_eq!(
        answers,
        files.len(),
        "one P-DATA answer per instance: {calls:#?}"
    );
    let mut since_answer: Vec<&Syscall> = Vec::new();
    for call in &calls {
        if !is_answer(call) {
            since_answer.push(call);
            continue;
        }
        // The instance answered here: synced, renamed, directory synced, in order.
        let moved = since_answer.iter().rev().find_map(|c| match c {
            Syscall::Renamed { from, to }
                if from.contains("/spool/tmp/") && to.contains("/spool/objects/") =>
            {
                Some((from.clone(), to.clone()))
            }
            _ => None,
        });
        let Some((from, to)) = moved else {
            panic!("an answer with no instance renamed before it: {since_answer:#?}");
        };
        let at = |want: &Syscall| since_answer.iter().position(|c| *c == want);
        let synced = at(&Syscall::Synced(from.clone()))
            .expect("fdatasync of the instance before its answer");
        let renamed = at(&Syscall::Renamed {
            from: from.clone(),
            to: to.clone(),
        })
        .expect("rename");
        let parent = Path::new(&to)
            .parent()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let dir_synced = since_answer
            .iter()
            .rposition(|c| **c == Syscall::Synced(parent.clone()))
            .expect("fsync of the objects directory before the answer");
        assert!(
            synced < renamed && renamed < dir_synced,
            "{since_answer:#?}"
        );
        since_answer.clear();
    }
}

/// HL7 messages are durable before their ACK, and messages arriving together share a
/// commit: under strace, every ACK readgate writes is preceded, since the previous ACK
/// on any connection, by a sync of the database's write-ahead log; and with eight
/// senders at once, some syncs cover several ACKs (group commit).
#[test]
fn every_hl7_ack_follows_its_commit_and_commits_are_shared() {
    let (dir, mut cfg) = no_reading_site();
    // SQLite: the test watches readgate's own fsync of the WAL. On PostgreSQL the commit
    // is synced by the server; tests/cluster.rs shows no AA is sent while it is away.
    cfg.database_url = None;
    let hl7 = free_port();
    cfg.hl7_port = Some(hl7);
    let trace = dir.path().join("strace.log");
    let child = traced_readgate(&cfg.write(), &trace, 8);
    wait_for_port(hl7, Duration::from_secs(30));
    let senders: Vec<_> = (0..8)
        .map(|c| {
            let scratch = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let messages: Vec<Vec<u8>> = (0..25)
                    .map(|i| {
                        format!(
                            "MSH|^~\\&|RIS|HOSP|READGATE|RAD|20260601090000||ADT^A08|G{c}-{i}|P|2.5.1\rPID|||P{c}\r"
                        )
                        .into_bytes()
                    })
                    .collect();
                let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
                common::hl7::mllp_send(hl7, &refs, &scratch)
            })
        })
        .collect();
    for s in senders {
        let acks = s.join().expect("sender");
        assert_eq!(acks.len(), 25);
    }
    let calls = stop_traced(child, &trace);

    let is_ack = |c: &Syscall| matches!(c, Syscall::Sent(h) if h.starts_with("\\vMSH"));
    let is_wal_sync =
        |c: &Syscall| matches!(c, Syscall::Synced(p) if p.ends_with("readgate.db-wal"));
    assert_eq!(
        calls.iter().filter(|c| is_ack(c)).count(),
        200,
        "{calls:#?}"
    );
    let (mut synced, mut acks_per_sync, mut since_sync) = (false, Vec::new(), 0);
    for call in &calls {
        if is_wal_sync(call) {
            synced = true;
            if since_sync > 0 {
                acks_per_sync.push(since_sync);
            }
            since_sync = 0;
        } else if is_ack(call) {
            assert!(synced, "an ACK written before any commit was synced");
            since_sync += 1;
        }
    }
    acks_per_sync.push(since_sync);
    // The ACKs after a sync are those of the messages it made durable. Each sender waits
    // for its ACK before the next message, so at most 8 messages are ever unanswered: a
    // run of more than 8 ACKs without a sync would be ACKs of messages never synced.
    assert!(
        acks_per_sync.iter().all(|&n| n <= 8),
        "ACKs without a sync of their commit: {acks_per_sync:?}"
    );
    // A batch larger than one is a shared commit.
    assert!(
        acks_per_sync.iter().any(|&n| n > 1),
        "no commit was shared by several messages: {acks_per_sync:?}"
    );
}
