//! `readgate backup` and `readgate restore` with the real binary against a live gateway:
//! a backup taken while DCMTK storescu sends and readgate forwards is restored into a new
//! data directory, where readgate starts with every instance acknowledged before the
//! backup began, byte for byte, and a trail that verifies. A damaged backup, a non-empty
//! data directory and a non-empty backup directory are refused.

mod common;

use common::*;
use readgate::dicom::part10;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const STUDY_A: &str = "1.2.826.0.1.3680043.10.5153.1";
const STUDY_B: &str = "1.2.826.0.1.3680043.10.5153.2";

/// `n` Part 10 files (explicit VR little endian, `pixel_bytes` of pixel data) of `study`
/// in `dir`, as a modality would send them.
fn write_study(dir: &Path, study: &str, n: usize, pixel_bytes: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("files dir");
    (0..n)
        .map(|i| {
            let sop = format!("{study}.{i}");
            let mut file = part10::encode_file_meta(CT_IMAGE_STORAGE, &sop, EXPLICIT_LE, "");
            file.extend(synthetic_instance(
                CT_IMAGE_STORAGE,
                study,
                &sop,
                "CT",
                pixel_bytes + 2 * i,
            ));
            let path = dir.join(format!("{i:04}.dcm"));
            std::fs::write(&path, file).expect("write instance");
            path
        })
        .collect()
}

/// Sends `files` with storescu over one association; every one must be acknowledged.
fn storescu(port: u16, files: &[PathBuf]) -> Output {
    dcmtk_scu("storescu", "CT01", &["-xe"], port)
        .args(files)
        .output()
        .expect("storescu")
}

fn readgate(args: &[&str], config: &Path, dir: &Path) -> Output {
    readgate_bin()
        .arg(args[0])
        .arg("--config")
        .arg(config)
        .args(&args[1..])
        .arg(dir)
        .output()
        .expect("readgate")
}

/// SOP Instance UID → (spool path, state) of every instance in the database at `db`.
fn instances(db: &Path) -> BTreeMap<String, (String, String)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db");
    let mut stmt = conn
        .prepare("SELECT sop_uid, path, state FROM instances")
        .expect("query");
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .expect("rows");
    rows.map(|r| r.expect("row")).collect()
}

/// Spool-relative paths of the files under `spool/objects`.
fn spool_files(spool: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let objects = spool.join("objects");
    for sub in std::fs::read_dir(&objects).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(sub.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            out.insert(format!(
                "objects/{}/{}",
                sub.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            ));
        }
    }
    out
}

/// The newest entry of `kind` in the trail of the database at `db`.
fn last_entry(db: &Path, kind: &str) -> readgate::audit::Entry {
    let log = readgate::audit::AuditLog::open_read_only(db).expect("trail");
    log.search(&readgate::audit::Query {
        kind: Some(kind.into()),
        ..Default::default()
    })
    .expect("search")
    .into_iter()
    .next()
    .unwrap_or_else(|| panic!("no {kind} entry"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A config for a second gateway of the same id, with its data in `root/var` and a
/// destination nobody listens on (the restored gateway must not forward while checked).
fn restored_config(root: &Path) -> (TestConfig, PathBuf) {
    std::fs::create_dir_all(root).expect("root");
    let mut cfg = TestConfig::new(root, free_port());
    cfg.database_url = None;
    let path = cfg.write();
    (cfg, path)
}

/// Study A is acknowledged; then storescu keeps sending study B, in batches of 20 files
/// over one association each, and readgate keeps forwarding to storescp, while the
/// backup runs. Restored into a new data directory, readgate starts with every instance
/// acknowledged before the backup began, each file identical to the live one and its
/// data set to what storescu sent; nothing that the snapshot does not name is in the
/// spool; the trail verifies and records the backup and the restore.
#[tokio::test(flavor = "multi_thread")]
async fn backup_while_receiving_restores_the_same_studies() {
    let (dir, scp, mut cfg) = reading_site();
    // SQLite: `readgate backup` copies the SQLite database (on PostgreSQL it refuses and
    // names pg_dump; tests/postgres.rs).
    cfg.database_url = None;
    let rg = readgate::serve::start(cfg.parse()).await.expect("starts");
    let config = cfg.write();
    let live_db = cfg.data_dir.join("var/readgate.db");
    let files_a = write_study(&dir.path().join("a"), STUDY_A, 30, 150_000);
    let files_b = write_study(&dir.path().join("b"), STUDY_B, 1000, 20_000);
    let sent: BTreeMap<String, PathBuf> = files_a
        .iter()
        .chain(&files_b)
        .map(|f| (dataset_of(f).0.sop_instance_uid, f.clone()))
        .collect();

    let port = cfg.dicom_port;
    let out = tokio::task::spawn_blocking({
        let files = files_a.clone();
        move || storescu(port, &files)
    })
    .await
    .expect("storescu A");
    assert_success(&out, "storescu (study A)");

    // storescu sends study B until the backup is done.
    let done = Arc::new(AtomicBool::new(false));
    let sender = std::thread::spawn({
        let (done, files) = (done.clone(), files_b.clone());
        move || {
            let mut batches = 0;
            for batch in files.chunks(20) {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let out = storescu(port, batch);
                assert_success(&out, "storescu (study B)");
                batches += 1;
            }
            batches
        }
    });
    wait_until("study B arriving", Duration::from_secs(60), || {
        instances(&live_db)
            .keys()
            .filter(|s| s.starts_with(STUDY_B))
            .count()
            >= 40
    });
    // Indexed now: acknowledged (or about to be) before the backup begins.
    let before = instances(&live_db);
    let backup_dir = dir.path().join("backup");
    let backup = tokio::task::spawn_blocking({
        let (config, backup_dir) = (config.clone(), backup_dir.clone());
        move || readgate(&["backup"], &config, &backup_dir)
    })
    .await
    .expect("backup");
    done.store(true, Ordering::SeqCst);
    let batches = sender.join().expect("sender");
    assert_success(&backup, "readgate backup");
    let backup_text = text(&backup);
    assert!(
        backup_text.contains("database snapshot 1") && backup_text.contains("took"),
        "{backup_text}"
    );
    let after = instances(&live_db);
    assert!(
        batches < files_b.len() / 20,
        "storescu was done before the backup ended ({batches} batches): not a backup while receiving"
    );
    let manifest_text = std::fs::read(backup_dir.join("manifest.json")).expect("manifest");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_text).expect("json");
    let in_backup = manifest["counts"]["instances"].as_u64().expect("count") as usize;
    assert!(
        in_backup >= before.len() && in_backup <= after.len(),
        "{} before, {in_backup} in the backup, {} after",
        before.len(),
        after.len()
    );
    assert_eq!(manifest["missing"].as_array().map(Vec::len), Some(0));
    // The live trail records it with the manifest's SHA-256.
    let taken = last_entry(&live_db, "backup_taken");
    assert!(taken.actor.starts_with("cli:"), "{}", taken.actor);
    let manifest_sha = readgate::digest::sha256_hex(&manifest_text);
    assert_eq!(
        taken.detail_json()["manifest_sha256"],
        manifest_sha.as_str()
    );

    // Restore into a new data directory.
    let (cfg2, config2) = restored_config(&dir.path().join("second"));
    let restored_db = cfg2.data_dir.join("var/readgate.db");
    let restore = readgate(&["restore"], &config2, &backup_dir);
    assert_success(&restore, "readgate restore");
    let restore_text = text(&restore);
    assert!(restore_text.contains("chain intact"), "{restore_text}");
    let verify = readgate_bin()
        .args(["audit", "verify", "--config"])
        .arg(&config2)
        .output()
        .expect("audit verify");
    assert_success(&verify, "readgate audit verify (restored)");
    let restored_entry = last_entry(&restored_db, "restored");
    assert!(restored_entry.actor.starts_with("cli:"));
    assert_eq!(
        restored_entry.detail_json()["manifest_sha256"],
        manifest_sha.as_str()
    );

    // The spool holds exactly what the database names: nothing for recovery to re-index.
    let restored = instances(&restored_db);
    let named: BTreeSet<String> = restored.values().map(|(p, _)| p.clone()).collect();
    assert_eq!(spool_files(&cfg2.data_dir.join("var/spool")), named);
    assert_eq!(restored.len(), in_backup);

    // readgate starts on it; every instance acknowledged before the backup is there.
    let rg2 = readgate::serve::start(cfg2.parse())
        .await
        .expect("restored starts");
    let restored = instances(&restored_db);
    assert_eq!(
        restored.len(),
        in_backup,
        "recovery found files to re-index"
    );
    for (sop, (live_path, _)) in &before {
        let (path, _) = restored
            .get(sop)
            .unwrap_or_else(|| panic!("{sop}, acknowledged before the backup, is not restored"));
        assert_eq!(path, live_path);
        let restored_file = cfg2.data_dir.join("var/spool").join(path);
        assert_eq!(
            std::fs::read(&restored_file).expect("restored file"),
            std::fs::read(cfg.data_dir.join("var/spool").join(live_path)).expect("live file"),
            "{sop}"
        );
        assert_eq!(
            dataset_of(&restored_file).1,
            dataset_of(&sent[sop]).1,
            "{sop}: not the data set storescu sent"
        );
    }
    // Instances that came during the backup are either in it, whole, or not at all.
    for (sop, (path, _)) in &restored {
        let file = cfg2.data_dir.join("var/spool").join(path);
        assert_eq!(dataset_of(&file).1, dataset_of(&sent[sop]).1, "{sop}");
    }
    rg2.stop().await;
    rg.stop().await;
    drop(scp);
}

/// As deployed (`keep_forwarded = false`): readgate removes each file once forwarded,
/// also while the backup copies. The backup follows with new snapshots where needed;
/// restored, every instance not yet forwarded has its file and nothing else is in the
/// spool.
#[tokio::test(flavor = "multi_thread")]
async fn backup_follows_files_forwarded_during_it() {
    let (dir, scp, mut cfg) = reading_site();
    // SQLite: `readgate backup` copies the SQLite database (on PostgreSQL it refuses and
    // names pg_dump; tests/postgres.rs).
    cfg.database_url = None;
    cfg.stable_after_secs = 0;
    let text_config = cfg
        .text()
        .replace("keep_forwarded = true", "keep_forwarded = false");
    let config = dir.path().join("readgate.toml");
    std::fs::write(&config, &text_config).expect("config");
    let parsed = readgate::config::Config::parse(&text_config, &config).expect("valid test config");
    assert!(!parsed.storage.keep_forwarded);
    let rg = readgate::serve::start(parsed).await.expect("starts");
    let live_db = cfg.data_dir.join("var/readgate.db");
    // 30 studies of 10 instances, one association each.
    let studies: Vec<Vec<PathBuf>> = (0..30)
        .map(|i| {
            let study = format!("{STUDY_B}.{i}");
            write_study(&dir.path().join(format!("s{i}")), &study, 10, 40_000)
        })
        .collect();
    let port = cfg.dicom_port;
    let done = Arc::new(AtomicBool::new(false));
    let sender = std::thread::spawn({
        let done = done.clone();
        move || {
            for study in &studies {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                assert_success(&storescu(port, study), "storescu");
            }
        }
    });
    wait_until("instances forwarded", Duration::from_secs(60), || {
        instances(&live_db)
            .values()
            .filter(|(_, s)| s == "forwarded")
            .count()
            >= 20
    });
    let backup_dir = dir.path().join("backup");
    let backup = tokio::task::spawn_blocking({
        let (config, backup_dir) = (config.clone(), backup_dir.clone());
        move || readgate(&["backup"], &config, &backup_dir)
    })
    .await
    .expect("backup");
    done.store(true, Ordering::SeqCst);
    sender.join().expect("sender");
    assert_success(&backup, "readgate backup");
    eprintln!("{}", text(&backup));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup_dir.join("manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["missing"].as_array().map(Vec::len), Some(0));
    assert!(manifest["counts"]["not_kept"].as_u64().unwrap_or(0) >= 20);

    let (cfg2, config2) = restored_config(&dir.path().join("second"));
    assert_success(
        &readgate(&["restore"], &config2, &backup_dir),
        "readgate restore",
    );
    let restored = instances(&cfg2.data_dir.join("var/readgate.db"));
    let in_spool = spool_files(&cfg2.data_dir.join("var/spool"));
    for (sop, (path, state)) in &restored {
        if state == "received" || state == "queued" {
            assert!(in_spool.contains(path), "{sop} ({state}) has no file");
        }
    }
    let named: BTreeSet<String> = restored.values().map(|(p, _)| p.clone()).collect();
    assert!(
        in_spool.is_subset(&named),
        "files no row names: {:?}",
        in_spool.difference(&named).collect::<Vec<_>>()
    );
    let verify = readgate_bin()
        .args(["audit", "verify", "--config"])
        .arg(&config2)
        .output()
        .expect("audit verify");
    assert_success(&verify, "readgate audit verify (restored)");
    rg.stop().await;
    drop(scp);
}

/// A gateway that received a few studies, and a backup of it.
async fn backed_up() -> (
    tempfile::TempDir,
    readgate::serve::Running,
    PathBuf,
    PathBuf,
    serde_json::Value,
) {
    let (dir, mut cfg) = no_reading_site();
    // SQLite: `readgate backup` copies the SQLite database (on PostgreSQL it refuses and
    // names pg_dump; tests/postgres.rs).
    cfg.database_url = None;
    let rg = readgate::serve::start(cfg.parse()).await.expect("starts");
    let studies: Vec<(String, String)> = (1..=3)
        .map(|i| (format!("{STUDY_A}.{i}"), format!("ACC-{i}")))
        .collect();
    send_accessions(cfg.dicom_port, &studies).await;
    let config = cfg.write();
    let backup_dir = dir.path().join("backup");
    let out = tokio::task::spawn_blocking({
        let (config, backup_dir) = (config.clone(), backup_dir.clone());
        move || readgate(&["backup"], &config, &backup_dir)
    })
    .await
    .expect("backup");
    assert_success(&out, "readgate backup");
    let manifest =
        serde_json::from_slice(&std::fs::read(backup_dir.join("manifest.json")).expect("manifest"))
            .expect("json");
    (dir, rg, config, backup_dir, manifest)
}

/// A byte flipped in a spool file, then in the database: the restore fails naming the
/// file, and the (existing, empty) data directory stays empty.
#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_backup_is_refused_and_nothing_restored() {
    let (dir, rg, _, backup_dir, manifest) = backed_up().await;
    let (cfg2, config2) = restored_config(&dir.path().join("second"));
    let data_dir = cfg2.data_dir.join("var");
    std::fs::create_dir(&data_dir).expect("empty data dir");
    let empty = || std::fs::read_dir(&data_dir).expect("data dir").count() == 0;

    let spool_file = manifest["files"][1]["path"]
        .as_str()
        .expect("a spool file")
        .to_string();
    for file in [spool_file.as_str(), "readgate.db"] {
        let path = backup_dir.join(file);
        let original = std::fs::read(&path).expect("backup file");
        let mut flipped = original.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x10;
        std::fs::write(&path, &flipped).expect("flip");
        let out = readgate(&["restore"], &config2, &backup_dir);
        let (code, _, err) = code_stdout_stderr(&out);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains(&path.display().to_string()) && err.contains("SHA-256"),
            "{err}"
        );
        assert!(empty(), "{file}: something was restored");
        std::fs::write(&path, &original).expect("unflip");
    }
    // A backup whose manifest was never written (interrupted) is no backup.
    std::fs::rename(
        backup_dir.join("manifest.json"),
        dir.path().join("manifest.json"),
    )
    .expect("move manifest");
    let out = readgate(&["restore"], &config2, &backup_dir);
    let (code, _, err) = code_stdout_stderr(&out);
    assert_eq!(code, 1);
    assert!(err.contains("no manifest.json"), "{err}");
    assert!(empty());
    std::fs::rename(
        dir.path().join("manifest.json"),
        backup_dir.join("manifest.json"),
    )
    .expect("put manifest back");
    // Intact again, it restores.
    assert_success(
        &readgate(&["restore"], &config2, &backup_dir),
        "readgate restore",
    );
    assert!(!empty());
    rg.stop().await;
}

/// A data directory with anything in it is not restored into: refused naming it,
/// left as it was.
#[tokio::test(flavor = "multi_thread")]
async fn restore_into_a_non_empty_data_dir_is_refused() {
    let (dir, rg, _, backup_dir, _) = backed_up().await;
    let (cfg2, config2) = restored_config(&dir.path().join("second"));
    let data_dir = cfg2.data_dir.join("var");
    std::fs::create_dir(&data_dir).expect("data dir");
    std::fs::write(data_dir.join("notes.txt"), "keep me").expect("a file");
    let out = readgate(&["restore"], &config2, &backup_dir);
    let (code, _, err) = code_stdout_stderr(&out);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "data directory {} is not empty",
            data_dir.display()
        )),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(&data_dir)
        .expect("data dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, ["notes.txt"]);
    // Nor over the live gateway's own data.
    let live_config = dir.path().join("readgate.toml");
    let out = readgate(&["restore"], &live_config, &backup_dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("is not empty"), "{}", text(&out));
    rg.stop().await;
}

/// A backup goes into a new or empty directory only: a non-empty one is refused naming
/// it, its content untouched, and no backup is recorded.
#[tokio::test(flavor = "multi_thread")]
async fn backup_into_a_non_empty_dir_is_refused() {
    let (dir, rg, config, backup_dir, _) = backed_up().await;
    let db = dir.path().join("var/readgate.db");
    let before = last_entry(&db, "backup_taken").seq;
    let manifest = std::fs::read(backup_dir.join("manifest.json")).expect("manifest");
    let out = readgate(&["backup"], &config, &backup_dir);
    let (code, _, err) = code_stdout_stderr(&out);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "backup directory {} is not empty",
            backup_dir.display()
        )),
        "{err}"
    );
    assert_eq!(
        std::fs::read(backup_dir.join("manifest.json")).expect("manifest"),
        manifest
    );
    assert_eq!(last_entry(&db, "backup_taken").seq, before);
    // A file is enough to refuse.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).expect("dir");
    std::fs::write(other.join(".keep"), "").expect("file");
    let out = readgate(&["backup"], &config, &other);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read_dir(&other).expect("dir").count(), 1);
    rg.stop().await;
}
