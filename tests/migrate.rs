//! Schema versions: a database written by readgate before the schema was versioned
//! (b54f886, `user_version` 0) is recognised and migrated at open without losing a row,
//! its audit chain still verifies, and a database from a newer readgate is refused.

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
const NEW_TABLES: [&str; 7] = [
    "mpps",
    "mpps_instances",
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
        ("index".to_string(), "hl7_refused".to_string()),
        ("index".to_string(), "mpps_by_study".to_string()),
        ("index".to_string(), "orders_by_received".to_string()),
        ("index".to_string(), "pacs_studies_by_uid".to_string()),
        ("index".to_string(), "prior_sends_by_study".to_string()),
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
