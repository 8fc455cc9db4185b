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
