//! readgate on PostgreSQL (`[database] url`), end to end with real peers: DCMTK storescu
//! sends, readgate (its state in a PostgreSQL server started for the test with
//! `initdb`/`pg_ctl`) decides, forwards to DCMTK storescp and keeps its audit trail there;
//! kill -9 mid-transfer loses nothing acknowledged.

mod common;

use common::*;
use readgate::model::StudyState;
use readgate::pgtest::TempPostgres;
use readgate::store::Store;
use std::path::Path;
use std::time::Duration;

fn on_postgres(cfg: &mut TestConfig, pg: &TempPostgres) {
    cfg.database_url = Some(pg.url());
}

fn readgate(args: &[&str], config: &Path) -> (i32, String, String) {
    let mut cmd = readgate_bin();
    cmd.args(args).arg("--config").arg(config);
    code_stdout_stderr(&run_output(&mut cmd, "readgate"))
}

#[test]
fn a_study_sent_with_storescu_is_forwarded_and_audited_from_postgresql() {
    let pg = TempPostgres::start().expect("PostgreSQL for the test");
    let (dir, scp, mut cfg) = reading_site();
    on_postgres(&mut cfg, &pg);
    let config_path = cfg.write();
    let mut daemon = Daemon::start(&config_path, cfg.dicom_port);

    let study = "1.2.826.0.1.3680043.10.1234.91";
    let files_dir = dir.path().join("send");
    let sent = write_ct_files(&files_dir, study, 0, 20, 10_000);
    let mut storescu = dcmtk_scu("storescu", "CT01", &["-xe", "+sd"], cfg.dicom_port);
    run_ok(storescu.arg(&files_dir), "storescu");
    wait_until("the study at storescp", Duration::from_secs(30), || {
        scp.received() == sent
    });
    assert!(
        !cfg.data_dir.join("var/readgate.db").exists(),
        "no SQLite database beside PostgreSQL"
    );

    // The state is in PostgreSQL: the study, forwarded, seen through the store.
    let store = Store::connect(&pg.url(), 4).expect("the store on PostgreSQL");
    wait_until(
        "the study recorded as forwarded",
        Duration::from_secs(10),
        || studies_in(&store, StudyState::Forwarded, 10) == 1,
    );
    assert_eq!(daemon.terminate().code(), Some(0), "{}", daemon.log_text());

    // The audit trail is there too, and verifies; the schema is current.
    let (code, out, err) = readgate(&["audit", "verify"], &config_path);
    assert_eq!(code, 0, "audit verify: {out}{err}");
    assert!(out.contains("verified") || out.contains("intact"), "{out}");
    let (code, out, err) = readgate(&["migrate"], &config_path);
    assert_eq!(code, 0, "migrate: {out}{err}");
    assert!(out.contains("already current"), "{out}");
    assert!(out.contains("postgresql://readgate@"), "{out}");
    // `readgate backup` copies a SQLite database only: on PostgreSQL it says what to use.
    let (code, out, err) = readgate(
        &["backup", &dir.path().join("backup").display().to_string()],
        &config_path,
    );
    assert_eq!(code, 1, "backup: {out}{err}");
    assert!(err.contains("pg_dump"), "{err}");
    assert!(!dir.path().join("backup").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_transfer_on_postgresql_loses_no_acknowledged_instance() {
    let pg = TempPostgres::start().expect("PostgreSQL for the test");
    let (_dir, scp, mut cfg) = reading_site();
    cfg.stable_after_secs = 0;
    on_postgres(&mut cfg, &pg);
    let config_path = cfg.write();
    let daemon = Daemon::start(&config_path, cfg.dicom_port);
    let study = "1.2.826.0.1.3680043.10.1234.92";
    let acknowledged = send_until_killed(daemon, cfg.dicom_port, study, 200, 60, 50_000).await;
    let restarted = Daemon::start(&config_path, cfg.dicom_port);
    wait_until(
        "acknowledged instances at the destination",
        Duration::from_secs(60),
        || acknowledged.is_subset(&scp.received()),
    );
    drop(restarted);
}
