//! Schema versions: a database written by readgate before the schema was versioned
//! (b54f886, `user_version` 0) is recognised and migrated at open without losing a row,
//! its audit chain still verifies, and a database from a newer readgate is refused.
//! `readgate serve` refuses an older database until `readgate migrate` (or `serve
//! --migrate`) brought it up to date, each migration recorded in the audit trail.

mod common;

use common::{code_stdout_stderr, readgate_bin, run_output, Daemon, TestConfig};
use readgate::audit::{AuditError, AuditLog, NewEntry};
use readgate::model::StudyState;
use readgate::store::{schema, SchemaError, Store, StoreError};
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// `sqlite3 readgate.db .dump` of a database written by readgate at b54f886, before
/// schema versioning (`user_version` 0), stored gzip'd (`gzip -9n`). It was made with
/// `readgate demo --exit-after 25 --dir DIR` (synthetic sample studies SYN-*, one ORM
/// order, one read event, the audit trail), then `readgate roster import` of two made-up
/// readers, dumped with `sqlite3 DIR/gateway/readgate.db .dump`. Synthetic data only.
const MAIN_B54F886_GZ: &[u8] = include_bytes!("fixtures/db-main-b54f886.sql.gz");

/// The fixture's SQL text, decompressed.
fn main_b54f886_sql() -> String {
    let mut sql = String::new();
    flate2::read::GzDecoder::new(MAIN_B54F886_GZ)
        .read_to_string(&mut sql)
        .unwrap();
    sql
}

fn load_fixture(dir: &Path) -> PathBuf {
    let path = dir.join("readgate.db");
    let c = Connection::open(&path).unwrap();
    c.execute_batch(&main_b54f886_sql()).unwrap();
    path
}

fn user_version(path: &Path) -> i64 {
    let c = Connection::open(path).unwrap();
    c.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

/// Row count of every table in the database.
/// The tables migrations after the first add, empty.
const NEW_TABLES: [&str; 11] = [
    "cluster_leases",
    "console_sessions",
    "login_failures",
    "mpps",
    "mpps_instances",
    "nodes",
    "pacs_lookups",
    "pacs_studies",
    "prior_fetch_failures",
    "prior_retrievals",
    "prior_sends",
];

/// `before` (row counts of an unversioned database) with the tables migrations add.
fn with_new_tables(before: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    let mut after = before.clone();
    for t in NEW_TABLES {
        after.insert(t.to_string(), 0);
    }
    after
}

fn counts(path: &Path) -> BTreeMap<String, i64> {
    let c = Connection::open(path).unwrap();
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    tables
        .into_iter()
        .map(|t| {
            let n = c
                .query_row(&format!("SELECT COUNT(*) FROM \"{t}\""), [], |r| r.get(0))
                .unwrap();
            (t, n)
        })
        .collect()
}

#[test]
fn database_written_by_main_is_migrated_without_losing_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = load_fixture(dir.path());
    assert_eq!(user_version(&path), 0, "the fixture predates versioning");
    let before = counts(&path);
    for (table, n) in [
        ("studies", 3),
        ("instances", 6),
        ("events", 11),
        ("hl7_messages", 1),
        ("orders", 1),
        ("read_events", 1),
        ("roster", 2),
        ("audit_log", 14),
        ("audit_head", 1),
    ] {
        assert_eq!(before.get(table), Some(&n), "fixture table {table}");
    }

    let store = Store::open(&path).unwrap();
    assert_eq!(user_version(&path), schema::LATEST);
    assert_eq!(
        counts(&path),
        with_new_tables(&before),
        "no row lost, no table lost"
    );

    // A study reads back with its state and fields.
    let keys = store.find_study("SYNACC0002").unwrap().unwrap();
    assert_eq!(keys.state, StudyState::Forwarded);
    assert_eq!(keys.patient_id.as_deref(), Some("SYN-0002"));
    let row = store.study_row(&keys.study_uid).unwrap().unwrap();
    assert_eq!(row.state, StudyState::Forwarded);
    assert_eq!(row.accession.as_deref(), Some("SYNACC0002"));
    assert_eq!(row.modalities, "MR");
    assert_eq!((row.instance_count, row.instances_forwarded), (2, 2));
    assert_eq!(row.destination.as_deref(), Some("rc1"));
    assert_eq!(row.facility.as_deref(), Some("RC1"));
    let decision = store.decision_of(&keys.study_uid).unwrap().unwrap();
    assert_eq!(decision.verdict.map(|v| v.as_str()), Some("PASS"));
    assert_eq!(
        store
            .list_studies(Some(StudyState::Forwarded), 10)
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        store.count_by_state().unwrap(),
        vec![(StudyState::Forwarded, 3)]
    );
    assert_eq!(store.instances_of(&keys.study_uid).unwrap().len(), 2);
    assert!(!store.events_of(&keys.study_uid).unwrap().is_empty());
    // HL7 and ledger tables read back too.
    let orders = store
        .orders_for(Some(&keys.study_uid), Some("SYNACC0002"))
        .unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].message.control_id, "DEMO-ORM-0002");
    // Migration 10's columns: the old order states no image count, the old study has no
    // recorded completion signal (it was decided before there were any).
    assert_eq!(store.expected_images_of(&keys.study_uid).unwrap(), None);
    assert_eq!(row.completed_by, None);
    assert_eq!(store.count_hl7_messages().unwrap(), 1);
    let roster = store.imported_roster().unwrap();
    assert_eq!(roster.len(), 2);
    assert_eq!(
        roster[0].ids,
        vec!["R900".to_string(), "RC1-900".to_string()]
    );
    let (from, to) = (i64::MIN, i64::MAX);
    assert_eq!(store.ledger_read_events(from, to).unwrap().len(), 1);
    drop(store);

    // The audit chain written by main still verifies after the migration, and goes on.
    let log = AuditLog::open(&path).unwrap();
    let v = log.verify().unwrap();
    assert!(v.intact(), "{:?}", v.finding);
    assert_eq!(v.entries, 14);
    assert!(v.notes.is_empty(), "{:?}", v.notes);
    log.append(&NewEntry::new(
        readgate::model::AuditKind::ConfigLoaded,
        "system",
    ))
    .unwrap();
    drop(log);
    let ro = AuditLog::open_read_only(&path).unwrap();
    let v = ro.verify().unwrap();
    assert!(v.intact(), "{:?}", v.finding);
    assert_eq!(v.entries, 15);

    // Opening again is a no-op.
    let mut after = with_new_tables(&before);
    *after.get_mut("audit_log").unwrap() += 1;
    Store::open(&path).unwrap();
    assert_eq!(user_version(&path), schema::LATEST);
    assert_eq!(counts(&path), after);
}

#[test]
fn audit_log_open_migrates_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = load_fixture(dir.path());
    let before = counts(&path);
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(user_version(&path), schema::LATEST);
    assert_eq!(counts(&path), with_new_tables(&before));
    assert!(log.verify().unwrap().intact());
}

#[test]
fn fresh_database_gets_every_table_at_the_latest_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readgate.db");
    Store::open(&path).unwrap();
    assert_eq!(user_version(&path), schema::LATEST);
    let tables = counts(&path);
    for t in [
        "studies",
        "instances",
        "events",
        "hl7_messages",
        "orders",
        "reports",
        "patient_merges",
        "read_events",
        "roster",
        "audit_log",
        "audit_head",
        "audit_cursor",
    ] {
        assert_eq!(tables.get(t), Some(&0), "table {t}");
    }
    // The same tables, indexes and triggers as a database written before versioning and
    // then migrated; the migrations after the first add exactly these.
    let old_dir = tempfile::tempdir().unwrap();
    let old = load_fixture(old_dir.path());
    let unversioned = schema_objects(&old);
    Store::open(&old).unwrap();
    assert_eq!(schema_objects(&path), schema_objects(&old));
    // … and the same columns (migrations that add columns to tables of the first).
    for table in ["orders", "studies"] {
        assert_eq!(columns(&path, table), columns(&old, table), "{table}");
    }
    assert!(columns(&old, "orders").contains(&"expected_images".to_string()));
    assert!(columns(&old, "studies").contains(&"completed_by".to_string()));
    let added: Vec<_> = schema_objects(&old)
        .into_iter()
        .filter(|o| !unversioned.contains(o))
        .collect();
    let mut expected = vec![
        (
            "index".to_string(),
            "console_sessions_by_last_seen".to_string(),
        ),
        ("index".to_string(), "console_sessions_by_user".to_string()),
        ("index".to_string(), "hl7_refused".to_string()),
        ("index".to_string(), "login_failures_by_update".to_string()),
        ("index".to_string(), "mpps_by_study".to_string()),
        ("index".to_string(), "orders_by_received".to_string()),
        ("index".to_string(), "pacs_studies_by_uid".to_string()),
        ("index".to_string(), "prior_sends_by_study".to_string()),
        ("index".to_string(), "studies_by_lease".to_string()),
        ("index".to_string(), "studies_stream_check".to_string()),
    ];
    expected.extend(
        NEW_TABLES
            .iter()
            .map(|t| ("table".to_string(), t.to_string())),
    );
    assert_eq!(added, expected);
}

/// The columns of `table`, in order.
fn columns(path: &Path, table: &str) -> Vec<String> {
    let c = Connection::open(path).unwrap();
    let mut stmt = c
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
        .unwrap();
    let names = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    names
}

/// (type, name) of every table, index and trigger.
fn schema_objects(path: &Path) -> Vec<(String, String)> {
    let c = Connection::open(path).unwrap();
    let mut stmt = c
        .prepare("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
        .unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}

#[test]
fn database_from_a_newer_readgate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readgate.db");
    Store::open(&path).unwrap();
    let newer = schema::LATEST + 1;
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();
    let expected = format!(
        "database schema version {newer} is newer than this readgate ({}): upgrade readgate",
        schema::LATEST
    );

    let err = Store::open(&path).err().expect("refused");
    assert!(
        matches!(
            &err,
            StoreError::Schema {
                source: SchemaError::TooNew { found, known },
                ..
            } if *found == newer && *known == schema::LATEST
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&expected), "{err}");
    let err = Store::open_read_only(&path).err().expect("refused");
    assert!(err.to_string().contains(&expected), "{err}");
    let err = AuditLog::open(&path).err().expect("refused");
    assert!(
        matches!(
            &err,
            AuditError::Schema {
                source: SchemaError::TooNew { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&expected), "{err}");
    let err = AuditLog::open_read_only(&path).err().expect("refused");
    assert!(err.to_string().contains(&expected), "{err}");
    assert_eq!(user_version(&path), newer, "left as it was");
}

#[test]
fn concurrent_opens_migrate_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = load_fixture(dir.path());
    let before = counts(&path);
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                if i % 2 == 0 {
                    Store::open(&path).map(drop).map_err(|e| e.to_string())
                } else {
                    AuditLog::open(&path).map(drop).map_err(|e| e.to_string())
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    assert_eq!(user_version(&path), schema::LATEST);
    assert_eq!(counts(&path), with_new_tables(&before));
}

/// A test config with its data in `dir` and its database in SQLite whatever the suite
/// runs on: these tests upgrade SQLite files of older readgates (PostgreSQL's migrations
/// are tested in tests/schema_pg.rs).
fn sqlite_config(dir: &Path, dest_port: u16) -> TestConfig {
    let mut cfg = TestConfig::new(dir, dest_port);
    cfg.database_url = None;
    cfg
}

/// A test config (destination down: nothing is sent) whose database is the b54f886
/// fixture; returns the config file and the database.
fn gateway_on_the_fixture(dir: &Path) -> (TestConfig, PathBuf, PathBuf) {
    let cfg = sqlite_config(dir, common::free_port());
    let config = cfg.write();
    let data_dir = cfg.parse().gateway.data_dir;
    std::fs::create_dir_all(&data_dir).unwrap();
    let db = load_fixture(&data_dir);
    assert_eq!(db, cfg.parse().database_path());
    (cfg, config, db)
}

/// `readgate ARGS --config CONFIG` run to its end: exit code, stdout, stderr.
fn readgate(args: &[&str], config: &Path) -> (i32, String, String) {
    let out = run_output(
        readgate_bin().args(args).arg("--config").arg(config),
        "readgate",
    );
    code_stdout_stderr(&out)
}

/// `readgate serve ARGS` that must exit by itself (refusing to start) within 20 s:
/// its exit code and stderr.
fn serve_refused(config: &Path, args: &[&str]) -> (i32, String) {
    let mut child = readgate_bin()
        .arg("serve")
        .args(args)
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > std::time::Duration::from_secs(20) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("readgate serve {args:?} started instead of refusing");
        }
        std::thread::sleep(std::time::Duration::from_millis(30));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code().unwrap_or(-1), stderr)
}

/// `(actor, detail)` of every `schema_migrated` entry, oldest first.
fn migrated_entries(db: &Path) -> Vec<(String, serde_json::Value)> {
    let c = Connection::open(db).unwrap();
    let mut stmt = c
        .prepare("SELECT actor, detail FROM audit_log WHERE kind = 'schema_migrated' ORDER BY seq")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap();
    rows.map(|r| {
        let (actor, detail) = r.unwrap();
        (actor, serde_json::from_str(&detail).unwrap())
    })
    .collect()
}

#[test]
fn migrate_command_then_serve_on_a_database_of_an_older_readgate() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, config, db) = gateway_on_the_fixture(dir.path());
    let before = counts(&db);

    // serve refuses the older schema, naming both versions and the command.
    let (code, stderr) = serve_refused(&config, &[]);
    assert_ne!(code, 0, "{stderr}");
    let expected = format!(
        "database schema version 0 is older than this readgate needs ({}): run `readgate migrate`",
        schema::LATEST
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(user_version(&db), 0, "serve left it as it was");
    assert_eq!(counts(&db), before);

    // --dry-run lists every migration and changes nothing.
    let (code, stdout, stderr) = readgate(&["migrate", "--dry-run"], &config);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("schema version 0 (this readgate's: "),
        "{stdout}"
    );
    for (i, description) in schema::DESCRIPTIONS.iter().enumerate() {
        let line = format!("  migration {}: {description}\n", i + 1);
        assert!(stdout.contains(&line), "{line:?} missing:\n{stdout}");
    }
    assert!(
        stdout.contains(&format!("would reach schema version {}", schema::LATEST)),
        "{stdout}"
    );
    assert!(stdout.contains("readgate backup"), "{stdout}");
    assert_eq!(user_version(&db), 0, "--dry-run changed nothing");
    assert_eq!(counts(&db), before);

    // migrate applies them all, one line each, and records each in the audit trail.
    let (code, stdout, stderr) = readgate(&["migrate"], &config);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for (i, description) in schema::DESCRIPTIONS.iter().enumerate() {
        let line = format!("applied migration {}: {description}\n", i + 1);
        assert!(stdout.contains(&line), "{line:?} missing:\n{stdout}");
    }
    assert!(
        stdout.contains(&format!("schema version {} reached", schema::LATEST)),
        "{stdout}"
    );
    assert_eq!(user_version(&db), schema::LATEST);
    let entries = migrated_entries(&db);
    assert_eq!(entries.len() as i64, schema::LATEST, "{entries:?}");
    for (i, (actor, detail)) in entries.iter().enumerate() {
        assert!(actor.starts_with("cli:"), "{actor}");
        assert_eq!(detail["version"], i as i64 + 1);
        assert_eq!(detail["description"], schema::DESCRIPTIONS[i]);
    }
    let v = AuditLog::open_read_only(&db).unwrap().verify().unwrap();
    assert!(v.intact(), "{:?}", v.finding);

    // Again: already current, nothing written.
    let (code, stdout, stderr) = readgate(&["migrate"], &config);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("already current"), "{stdout}");
    assert_eq!(migrated_entries(&db).len() as i64, schema::LATEST);

    // serve starts now, and stops cleanly.
    let mut daemon = Daemon::start(&config, cfg.dicom_port);
    assert!(daemon.terminate().success(), "{}", daemon.log_text());
}

#[test]
fn serve_migrate_brings_an_older_database_up_to_date_and_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, config, db) = gateway_on_the_fixture(dir.path());
    let log = dir.path().join("serve.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = readgate_bin()
        .args(["serve", "--migrate", "--config"])
        .arg(&config)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", cfg.dicom_port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "serve --migrate exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(20));
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("applied schema migration"), "{text}");
    assert_eq!(user_version(&db), schema::LATEST);
    let entries = migrated_entries(&db);
    assert_eq!(entries.len() as i64, schema::LATEST, "{entries:?}");
    assert!(entries.iter().all(|(actor, _)| actor == "system"));
}

#[test]
fn serve_creates_a_new_database_at_the_latest_version_without_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_config(dir.path(), common::free_port());
    let config = cfg.write();
    let db = cfg.parse().database_path();
    assert!(!db.exists());
    let (code, stdout, _) = readgate(&["migrate", "--dry-run"], &config);
    assert_eq!(code, 0);
    assert!(stdout.contains("no database at"), "{stdout}");
    let mut daemon = Daemon::start(&config, cfg.dicom_port);
    assert!(daemon.terminate().success(), "{}", daemon.log_text());
    assert_eq!(user_version(&db), schema::LATEST);
    assert!(
        migrated_entries(&db).is_empty(),
        "a new database is not migrated"
    );
    let (code, stdout, _) = readgate(&["migrate"], &config);
    assert_eq!(code, 0);
    assert!(stdout.contains("already current"), "{stdout}");
}

#[test]
fn serve_and_migrate_refuse_a_database_of_a_newer_readgate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sqlite_config(dir.path(), common::free_port());
    let config = cfg.write();
    let db = cfg.parse().database_path();
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    Store::open(&db).unwrap();
    let newer = schema::LATEST + 1;
    Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();
    let expected = format!(
        "database schema version {newer} is newer than this readgate ({}): upgrade readgate",
        schema::LATEST
    );
    for args in [&[][..], &["--migrate"][..]] {
        let (code, stderr) = serve_refused(&config, args);
        assert_ne!(code, 0, "serve {args:?}: {stderr}");
        assert!(stderr.contains(&expected), "serve {args:?}: {stderr}");
    }
    for args in [&["migrate"][..], &["migrate", "--dry-run"][..]] {
        let (code, stdout, stderr) = readgate(args, &config);
        assert_ne!(code, 0, "{args:?}: {stdout}");
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
    }
    assert_eq!(user_version(&db), newer, "left as it was");
}
