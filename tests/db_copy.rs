//! `readgate db copy` with the real binary: a gateway that ran on SQLite (studies sent
//! with DCMTK storescu, one held; HL7 orders and reports over MLLP; read events over
//! REST) is copied into a PostgreSQL server started for the test; every table has as
//! many rows there, `readgate audit verify` passes on the PostgreSQL config, and readgate
//! serving from PostgreSQL keeps the held study held and gives what it records next
//! fresh ids. Refusals (a non-empty target, a bad URL, a missing or older source, a
//! running gateway) name what they found and change nothing.

mod common;

use common::hl7::{sample, send_hl7};
use common::http::post_json;
use common::*;
use readgate::db::Conn;
use readgate::decide::context::StudyContext;
use readgate::decide::{Decide, Decision, Verdict};
use readgate::dicom::part10;
use readgate::model::StudyState;
use readgate::pgtest::TempPostgres;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "rg_db_copy_token_for_the_reading_system";
const BASE: &str = "1.2.826.0.1.3680043.10.5154";

/// Holds accessions starting with ACC-HOLD; everything else passes to rc1.
struct Gate;

impl Decide for Gate {
    fn decide(&self, study: &StudyContext) -> Decision {
        if study
            .accession
            .as_deref()
            .is_some_and(|a| a.starts_with("ACC-HOLD"))
        {
            rc1_decision("test", Verdict::Hold, Some(PURPOSE_MISSING))
        } else {
            rc1_decision("test", Verdict::Pass, None)
        }
    }
}

fn http_config() -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[[http.tokens]]\nname = \"reading-system\"\n\
         token_sha256 = \"{}\"\n",
        readgate::web::sha256_hex(TOKEN)
    )
}

/// `n` Part 10 files of `study` (accession `accession`) in `dir`.
fn write_study(dir: &Path, study: &str, accession: &str, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("files dir");
    (0..n)
        .map(|i| {
            let sop = format!("{study}.{i}");
            let mut file = part10::encode_file_meta(CT_IMAGE_STORAGE, &sop, EXPLICIT_LE, "");
            file.extend(synthetic_instance_with_accession(
                CT_IMAGE_STORAGE,
                study,
                &sop,
                "CT",
                accession,
            ));
            let path = dir.join(format!("{i:04}.dcm"));
            std::fs::write(&path, file).expect("write instance");
            path
        })
        .collect()
}

async fn storescu(port: u16, files: Vec<PathBuf>) {
    let out = tokio::task::spawn_blocking(move || {
        dcmtk_scu("storescu", "CT01", &["-xe"], port)
            .args(&files)
            .output()
            .expect("storescu")
    })
    .await
    .expect("storescu task");
    assert_success(&out, "storescu");
}

/// The sample order with `accession` and control id `control`.
fn order(accession: &str, control: &str) -> Vec<u8> {
    String::from_utf8(sample("orm_o01_ihe.hl7"))
        .expect("utf-8 sample")
        .replace("ACC-1001", accession)
        .replace("ORM0001", control)
        .into_bytes()
}

/// The sample final report with `accession` and control id `control`.
fn report(accession: &str, control: &str) -> Vec<u8> {
    String::from_utf8(sample("oru_r01_final.hl7"))
        .expect("utf-8 sample")
        .replace("ACC-0001", accession)
        .replace("ORU0002", control)
        .into_bytes()
}

async fn read_event(http: std::net::SocketAddr, study: &str, action: &str) {
    let body = serde_json::json!({
        "study_uid": study,
        "reader_id": "1001",
        "action": action,
        "at": readgate::time::format_ms(readgate::time::now_ms(), 9 * 3600),
    })
    .to_string();
    let r = post_json(http, "/api/v1/read-events", Some(TOKEN), &body).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

fn readgate(args: &[&str]) -> (i32, String, String) {
    let mut cmd = readgate_bin();
    cmd.args(args);
    code_stdout_stderr(&run_output(&mut cmd, "readgate"))
}

fn copy(config: &Path, more: &[&str]) -> (i32, String, String) {
    let config = config.to_str().expect("utf-8 path");
    let mut args = vec!["db", "copy", "--config", config];
    args.extend_from_slice(more);
    readgate(&args)
}

/// Rows of every table of the SQLite database at `db`.
fn sqlite_counts(db: &Path) -> BTreeMap<String, i64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    tables
        .into_iter()
        .map(|t| {
            let n: i64 = conn
                .query_row(&format!("SELECT COUNT(*) FROM \"{t}\""), [], |r| r.get(0))
                .unwrap();
            (t, n)
        })
        .collect()
}

fn pg_count(pg: &Conn, table: &str) -> i64 {
    pg.query_row(&format!("SELECT COUNT(*) FROM \"{table}\""), [], |r| {
        r.get(0)
    })
    .unwrap()
}

fn sqlite_max(db: &Path, sql: &str) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db");
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn pg_max(pg: &Conn, sql: &str) -> i64 {
    pg.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_populated_sqlite_gateway_moves_to_postgresql_with_its_history() {
    let pg = tokio::task::spawn_blocking(TempPostgres::start)
        .await
        .unwrap()
        .expect("PostgreSQL for the test");
    let (dir, _scp, mut cfg) = reading_site();
    cfg.database_url = None; // the installation being moved is on SQLite
    cfg.hl7_port = Some(free_port());
    cfg.hl7_default_charset = "utf8".into();
    cfg.extra = http_config();
    let config = cfg.write();
    let db = cfg.data_dir.join("var/readgate.db");

    // The roster, imported as a site does (the first import creates the database).
    let roster = dir.path().join("roster.csv");
    std::fs::write(
        &roster,
        "ids,name,facility,employment,board_certified,valid_from,valid_to\n\
         1001,Reader One,RC1,full_time,true,2020-04-01,\n\
         2001,Reader Two,RC1,part_time,true,,\n",
    )
    .unwrap();
    let (code, out, err) = readgate(&[
        "roster",
        "import",
        "--config",
        config.to_str().unwrap(),
        roster.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "roster import: {out}{err}");

    // A day on SQLite: three studies over DICOM (one held), orders and reports over
    // MLLP, reads over REST.
    let rg = readgate::serve::start_with(cfg.parse(), Some(Arc::new(Gate)))
        .await
        .expect("starts on SQLite");
    let hl7 = rg.hl7_addr.expect("HL7 listener");
    let http = rg.http_addr.expect("HTTP listener");
    let studies = [
        (format!("{BASE}.1"), "ACC-A", 6),
        (format!("{BASE}.2"), "ACC-B", 4),
        (format!("{BASE}.3"), "ACC-HOLD-1", 3),
    ];
    for (i, (uid, accession, n)) in studies.iter().enumerate() {
        let ack = send_hl7(hl7, order(accession, &format!("ORM-{i}"))).await;
        assert!(ack.contains("MSA|AA"), "{ack}");
        let files = write_study(&dir.path().join(accession), uid, accession, *n);
        storescu(cfg.dicom_port, files).await;
    }
    let store = rg.store.clone();
    wait_until("two forwarded, one held", Duration::from_secs(30), || {
        studies_in(&store, StudyState::Forwarded, 10) == 2
            && studies_in(&store, StudyState::Held, 10) == 1
    });
    for (i, (uid, accession, _)) in studies.iter().take(2).enumerate() {
        read_event(http, uid, "opened").await;
        read_event(http, uid, "final").await;
        let ack = send_hl7(hl7, report(accession, &format!("ORU-{i}"))).await;
        assert!(ack.contains("MSA|AA"), "{ack}");
    }
    rg.stop().await;

    let before = sqlite_counts(&db);
    for table in [
        "studies",
        "instances",
        "events",
        "hl7_messages",
        "orders",
        "reports",
        "read_events",
        "roster",
        "audit_log",
        "audit_head",
    ] {
        assert!(before[table] > 0, "{table} has rows to copy: {before:?}");
    }
    let max_event = sqlite_max(&db, "SELECT MAX(id) FROM events");
    let max_hl7 = sqlite_max(&db, "SELECT MAX(id) FROM hl7_messages");
    let max_read = sqlite_max(&db, "SELECT MAX(id) FROM read_events");
    let max_rowid = sqlite_max(&db, "SELECT MAX(rowid) FROM studies");
    let held_rowid = sqlite_max(
        &db,
        &format!("SELECT rowid FROM studies WHERE study_uid = '{BASE}.3'"),
    );

    // The copy: from the configured SQLite file, to the URL given.
    let url = pg.url();
    let (code, out, err) = tokio::task::spawn_blocking({
        let config = config.clone();
        let url = url.clone();
        move || copy(&config, &["--to", &url])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "db copy: {out}{err}");
    assert!(out.contains("every table's rows match"), "{out}");
    assert!(out.contains("chain intact"), "{out}");
    assert!(out.contains("recorded: database_copied"), "{out}");
    assert!(err.contains("db copy: instances: 13/13 rows"), "{err}");

    let target = Conn::postgres(&url).expect("PostgreSQL");
    for (table, n) in &before {
        let copied = pg_count(&target, table);
        // The copy's own entry follows the copied trail.
        let expected = if table == "audit_log" { n + 1 } else { *n };
        assert_eq!(copied, expected, "{table}");
    }
    assert_eq!(
        pg_max(
            &target,
            &format!("SELECT rowid FROM studies WHERE study_uid = '{BASE}.3'")
        ),
        held_rowid,
        "the ledger's handle on a study keeps its value"
    );
    let log = readgate::audit::AuditLog::connect_read_only(&url).expect("trail");
    let copied_entry = log
        .search(&readgate::audit::Query {
            kind: Some("database_copied".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(copied_entry.len(), 1);
    assert_eq!(copied_entry[0].seq, before["audit_log"] + 1);
    assert!(
        copied_entry[0].actor.starts_with("cli:"),
        "{copied_entry:?}"
    );
    assert!(
        copied_entry[0].detail.contains("\"instances\":13"),
        "{copied_entry:?}"
    );

    // The PostgreSQL config: the same data directory, `[database] url` set.
    cfg.extra = format!("{}\n[database]\nurl = \"{url}\"\n", http_config());
    let pg_config = cfg.write();
    let (code, out, err) = readgate(&["audit", "verify", "--config", pg_config.to_str().unwrap()]);
    assert_eq!(code, 0, "audit verify on PostgreSQL: {out}{err}");
    assert!(out.contains("chain intact"), "{out}");

    // readgate on PostgreSQL: the held study stays held; a new study, HL7 message and
    // read event get ids past the copied ones.
    let rg = readgate::serve::start_with(cfg.parse(), Some(Arc::new(Gate)))
        .await
        .expect("starts on PostgreSQL");
    let store = rg.store.clone();
    assert_eq!(studies_in(&store, StudyState::Held, 10), 1);
    let hl7 = rg.hl7_addr.expect("HL7 listener");
    let http = rg.http_addr.expect("HTTP listener");
    let new_study = format!("{BASE}.4");
    let ack = send_hl7(hl7, order("ACC-C", "ORM-PG")).await;
    assert!(ack.contains("MSA|AA"), "{ack}");
    storescu(
        cfg.dicom_port,
        write_study(&dir.path().join("ACC-C"), &new_study, "ACC-C", 2),
    )
    .await;
    wait_until("the new study forwarded", Duration::from_secs(30), || {
        studies_in(&store, StudyState::Forwarded, 10) == 3
    });
    read_event(http, &new_study, "opened").await;
    let held = store.list_studies(Some(StudyState::Held), 10).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].study_uid, format!("{BASE}.3"));
    rg.stop().await;

    assert!(pg_max(&target, "SELECT MAX(id) FROM events") > max_event);
    assert!(pg_max(&target, "SELECT MAX(id) FROM hl7_messages") > max_hl7);
    assert!(pg_max(&target, "SELECT MAX(id) FROM read_events") > max_read);
    assert!(
        pg_max(
            &target,
            &format!("SELECT rowid FROM studies WHERE study_uid = '{new_study}'")
        ) > max_rowid
    );
    let (code, out, err) = readgate(&["audit", "verify", "--config", pg_config.to_str().unwrap()]);
    assert_eq!(
        code, 0,
        "audit verify after serving on PostgreSQL: {out}{err}"
    );
    drop(target);
    drop(pg);
}

/// A small SQLite database written by readgate: the schema, a study and a trail.
fn small_source(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let store = readgate::store::Store::open(path).expect("store");
    drop(store);
    let log = readgate::audit::AuditLog::open(path).expect("trail");
    log.append(&readgate::audit::NewEntry::new(
        readgate::audit::kind::APPLICATION_START,
        "system",
    ))
    .unwrap();
}

#[test]
fn refusals_name_what_they_found_and_change_nothing() {
    let pg = TempPostgres::start().expect("PostgreSQL for the test");
    let url = pg.url();
    let (_dir, mut cfg) = no_reading_site();
    cfg.database_url = None; // the installation being moved is on SQLite
    let config = cfg.write();
    let db = cfg.data_dir.join("var/readgate.db");

    // No database yet at the configured place.
    let (code, _, err) = copy(&config, &["--to", &url]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("no SQLite database at {}", db.display())),
        "{err}"
    );
    let (code, _, err) = copy(
        &config,
        &["--from", "sqlite:/nonexistent/readgate.db", "--to", &url],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("no SQLite database at /nonexistent/readgate.db"),
        "{err}"
    );
    let (code, _, err) = copy(
        &config,
        &["--from", "/var/lib/readgate/readgate.db", "--to", &url],
    );
    assert_eq!(code, 1);
    assert!(err.contains("expected sqlite:PATH"), "{err}");

    small_source(&db);
    // No target, bad URLs, a server nobody runs.
    let (code, _, err) = copy(&config, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("--to: name the empty PostgreSQL database"),
        "{err}"
    );
    let (code, _, err) = copy(&config, &["--to", "mysql://gw:s3cret@db/readgate"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("expected a PostgreSQL URL") && err.contains("\"mysql\""),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    let (code, _, err) = copy(
        &config,
        &["--to", "postgresql://gw:s3cret@db:port/readgate"],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("not a PostgreSQL URL readgate can use"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    let nobody = format!(
        "postgresql://readgate:s3cret@127.0.0.1:{}/readgate",
        free_port()
    );
    let (code, _, err) = copy(&config, &["--to", &nobody]);
    assert_eq!(code, 1);
    assert!(err.contains("postgresql://readgate@127.0.0.1:"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");

    // A source of an older readgate: `readgate migrate` first.
    let older = cfg.data_dir.join("older/readgate.db");
    std::fs::create_dir_all(older.parent().unwrap()).unwrap();
    std::fs::copy(&db, &older).unwrap();
    rusqlite::Connection::open(&older)
        .unwrap()
        .pragma_update(None, "user_version", readgate::store::schema::LATEST - 1)
        .unwrap();
    let from_older = format!("sqlite:{}", older.display());
    let (code, _, err) = copy(&config, &["--from", &from_older, "--to", &url]);
    assert_eq!(code, 1);
    assert!(
        err.contains("is older than this readgate's") && err.contains("readgate migrate"),
        "{err}"
    );

    // Nothing of the refusals reached PostgreSQL.
    let target = Conn::postgres(&url).expect("PostgreSQL");
    let tables: i64 = target
        .query_row(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0, "refusals created nothing");

    // A row PostgreSQL refuses (a NUL character in text) fails the copy half-way: no
    // row of any table is left behind, and the copy can be run again.
    let source = rusqlite::Connection::open(&db).unwrap();
    source
        .execute(
            "INSERT INTO events (at, kind, detail) VALUES (1, 'note', CAST(X'610062' AS TEXT))",
            [],
        )
        .unwrap();
    let (code, _, err) = copy(&config, &["--to", &url]);
    assert_eq!(code, 1);
    assert!(err.contains("copying table events"), "{err}");
    for table in ["audit_log", "audit_head", "events", "studies"] {
        assert_eq!(pg_count(&target, table), 0, "{table} after a failed copy");
    }
    source
        .execute("DELETE FROM events WHERE kind = 'note'", [])
        .unwrap();
    drop(source);

    // A copy, then a second copy into the same (no longer empty) database.
    let (code, out, err) = copy(&config, &["--to", &url]);
    assert_eq!(code, 0, "{out}{err}");
    let entries = pg_count(&target, "audit_log");
    let (code, _, err) = copy(&config, &["--to", &url]);
    assert_eq!(code, 1);
    assert!(
        err.contains("is not empty (audit_head: 1 row, audit_log: 2 rows")
            && err.contains("copies only into an empty database"),
        "{err}"
    );
    assert_eq!(pg_count(&target, "audit_log"), entries, "nothing added");

    // A gateway serving from the source.
    let mut daemon = Daemon::start(&config, cfg.dicom_port);
    // The control socket is bound just after the DICOM port listens.
    let socket = cfg.data_dir.join("var/control.sock");
    wait_until("the control socket", Duration::from_secs(20), || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    let (code, _, err) = copy(&config, &["--to", &url]);
    assert_eq!(code, 1);
    assert!(
        err.contains("readgate serve is running on") && err.contains("stop it first"),
        "{err}"
    );
    assert_eq!(daemon.terminate().code(), Some(0), "{}", daemon.log_text());
}
