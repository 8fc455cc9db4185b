//! Backups of a data directory written through the store and the spool, with files
//! leaving the spool between the snapshot and the copy; restores refusing what does not
//! match the manifest.

use super::*;
use crate::audit::AuditLog;
use crate::config::Config;
use crate::spool::Spool;
use crate::store::{NewInstance, Store};

const STUDY: &str = "1.2.826.0.1.3680043.10.9";

struct Gateway {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: Config,
    store: Store,
    spool: Spool,
}

fn config(root: &Path, data: &str) -> Config {
    let text = format!(
        r#"
[gateway]
id = "gw-unit"
data_dir = "{}"
sending_facility = "H"
[dicom]
ae_title = "RG"
listen = "127.0.0.1:0"
allow_any_calling_ae = true
[[destinations]]
id = "a"
facility = "FA"
ae_title = "A"
host = "127.0.0.1"
port = 1
"#,
        root.join(data).display()
    );
    Config::parse(&text, Path::new("t.toml")).unwrap()
}

/// A data directory with `n` instances, each a spooled file and an index row.
fn gateway(n: usize) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let config = config(&root, "var");
    crate::spool::private_dir(&config.gateway.data_dir).unwrap();
    let store = Store::open(&config.database_path()).unwrap();
    let spool = Spool::open(&config.spool_dir(), 0).unwrap();
    let audit = AuditLog::open(&config.database_path()).unwrap();
    audit
        .append(&crate::audit::NewEntry::new(
            crate::audit::kind::APPLICATION_START,
            "system",
        ))
        .unwrap();
    let g = Gateway {
        _dir: dir,
        root,
        config,
        store,
        spool,
    };
    for i in 0..n {
        g.receive(i, &format!("instance {i} ").repeat(50 + i));
    }
    g
}

impl Gateway {
    fn receive(&self, i: usize, body: &str) -> String {
        let mut p = self.spool.begin(b"HEAD").unwrap();
        p.write(body.as_bytes()).unwrap();
        let (path, size) = self.spool.commit(p).unwrap();
        let inst = NewInstance {
            sop_uid: format!("{STUDY}.{i}"),
            study_uid: STUDY.into(),
            series_uid: None,
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            modality: Some("CT".into()),
            accession: None,
            patient_id: None,
            path: path.clone(),
            size,
            calling_ae: "CT01".into(),
            received_at: crate::time::now_ms(),
            context: "{}".into(),
        };
        self.store.index_instance(&inst, true).unwrap();
        path
    }

    fn paths(&self) -> Vec<String> {
        let mut v: Vec<String> = self.store.all_paths().unwrap().into_iter().collect();
        v.sort();
        v
    }

    /// What readgate does after forwarding an instance without `keep_forwarded`.
    fn forward_and_remove(&self, rel: &str) {
        let db = rusqlite::Connection::open(self.config.database_path()).unwrap();
        db.execute(
            "UPDATE instances SET state = 'forwarded' WHERE path = ?1",
            [rel],
        )
        .unwrap();
        self.spool.remove(rel).unwrap();
    }

    fn backup(&self, between: &mut dyn FnMut(u32)) -> (Result<Taken>, Vec<Progress>) {
        let mut seen = Vec::new();
        let r = take_with(
            &self.config,
            &self.root.join("backup"),
            "cli:test",
            &mut |p| seen.push(p.clone()),
            between,
        );
        (r, seen)
    }

    fn restore_into(&self, data: &str) -> (Config, Result<Restored>) {
        let config = config(&self.root, data);
        let r = restore(&config, &self.root.join("backup"), "cli:test", &mut |_| {});
        (config, r)
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every directory below `dir` is 0700, every file 0600.
fn assert_private_tree(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_eq!(mode(&path), 0o700, "{}", path.display());
            assert_private_tree(&path);
        } else {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
}

#[test]
fn paths_that_could_leave_their_directory_are_refused() {
    assert!(is_spool_file("spool/objects/0a/0000000000000001.dcm"));
    assert!(is_spool_file("spool/quarantine/objects_0a_1.dcm"));
    for bad in [
        "spool",
        "/spool/objects/x",
        "spool/../etc/passwd",
        "objects/0a/x.dcm",
        "spool/objects/../../x",
        "",
    ] {
        assert!(!is_spool_file(bad), "{bad}");
    }
    assert!(take::is_spool_object("objects/0a/0000000000000001.dcm"));
    for bad in [
        "objects/../x.dcm",
        "objects/0a/../../x",
        "/objects/0a/x",
        "objects/0a",
        "objects/0a/x/y",
        "tmp/x.part",
    ] {
        assert!(!take::is_spool_object(bad), "{bad}");
    }
}

#[test]
fn backup_and_restore_round_trip() {
    let g = gateway(5);
    let (taken, seen) = g.backup(&mut |_| {});
    let taken = taken.unwrap();
    assert_eq!(taken.snapshots, 1);
    let m = &taken.manifest;
    assert_eq!(
        (m.counts.instances, m.counts.files, m.counts.studies),
        (5, 5, 1)
    );
    assert!(m.missing.is_empty());
    assert_eq!(m.gateway, "gw-unit");
    assert_eq!(m.schema_version, crate::store::schema::LATEST);
    assert!(seen
        .iter()
        .any(|p| matches!(p, Progress::Snapshot { attempt: 1, .. })));
    let dir = g.root.join("backup");
    let text = fs::read(dir.join(MANIFEST)).unwrap();
    assert_eq!(crate::digest::sha256_hex(&text), taken.manifest_sha256);
    assert_eq!(&Manifest::read(&dir).unwrap(), m);
    // Private, self-contained, nothing left over.
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(MANIFEST)), 0o600);
    assert_eq!(mode(&dir.join(DATABASE)), 0o600);
    for f in &m.files {
        assert_eq!(mode(&dir.join(&f.path)), 0o600, "{}", f.path);
    }
    assert_private_tree(&dir);
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [MANIFEST, DATABASE, SPOOL]);
    // The live trail records it, with the manifest's checksum.
    let live = AuditLog::open_read_only(&g.config.database_path()).unwrap();
    let e = &live
        .search(&crate::audit::Query {
            kind: Some("backup_taken".into()),
            ..Default::default()
        })
        .unwrap()[0];
    assert_eq!(e.actor, "cli:test");
    assert_eq!(
        e.detail_json()["manifest_sha256"],
        taken.manifest_sha256.as_str()
    );

    let (config, restored) = g.restore_into("restored");
    let restored = restored.unwrap();
    assert!(restored.verification.intact());
    let data = &config.gateway.data_dir;
    assert_eq!(mode(data), 0o700);
    assert!(!data.join(restore::STAGING).exists());
    let store = Store::open_read_only(&config.database_path()).unwrap();
    let mut paths: Vec<String> = store.all_paths().unwrap().into_iter().collect();
    paths.sort();
    assert_eq!(paths, g.paths());
    for p in &paths {
        assert_eq!(
            fs::read(config.spool_dir().join(p)).unwrap(),
            fs::read(g.config.spool_dir().join(p)).unwrap()
        );
        assert_eq!(mode(&config.spool_dir().join(p)), 0o600);
    }
    assert_private_tree(data);
    let trail = AuditLog::open_read_only(&config.database_path()).unwrap();
    assert!(trail.verify().unwrap().intact());
    let last = &trail.search(&crate::audit::Query::default()).unwrap()[0];
    assert_eq!(last.kind, "restored");
    assert_eq!(last.seq, restored.entry.seq);
    assert_eq!(
        last.detail_json()["manifest_sha256"],
        taken.manifest_sha256.as_str()
    );

    // Not over the restored data, nor into the backup again.
    let (_, again) = g.restore_into("restored");
    assert!(
        matches!(again, Err(BackupError::DataDirNotEmpty { .. })),
        "{again:?}"
    );
    let (again, _) = g.backup(&mut |_| {});
    assert!(
        matches!(again, Err(BackupError::TargetNotEmpty { .. })),
        "{again:?}"
    );
}

/// A file the snapshot needs is forwarded and removed before it is copied: a new
/// snapshot, in which it is forwarded, is taken; the backup does not list it and the
/// restored database knows it as forwarded.
#[test]
fn a_file_forwarded_during_the_backup_is_followed_by_a_new_snapshot() {
    let g = gateway(4);
    let gone = g.paths()[1].clone();
    let (taken, seen) = g.backup(&mut |attempt| {
        if attempt == 1 {
            g.forward_and_remove(&gone);
        }
    });
    let taken = taken.unwrap();
    assert_eq!(taken.snapshots, 2);
    assert!(seen.contains(&Progress::Retake {
        attempt: 1,
        vanished: 1
    }));
    let m = &taken.manifest;
    assert_eq!((m.counts.files, m.counts.not_kept), (3, 1));
    assert!(m.missing.is_empty());
    assert!(!m.files.iter().any(|f| f.path.ends_with(&gone)));
    let (config, restored) = g.restore_into("restored");
    restored.unwrap();
    let db = rusqlite::Connection::open(config.database_path()).unwrap();
    let state: String = db
        .query_row(
            "SELECT state FROM instances WHERE path = ?1",
            [&gone],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(state, "forwarded");
}

/// A file copied for the first snapshot whose instance was replaced (a duplicate sent
/// again) before the second is not in the backup: restored, it would come back as an
/// instance readgate had dropped.
#[test]
fn files_the_last_snapshot_no_longer_names_are_left_out() {
    let g = gateway(3);
    let paths = g.paths();
    let first = paths[0].clone();
    let gone = paths[2].clone();
    // Which instance has `first`.
    let db = rusqlite::Connection::open(g.config.database_path()).unwrap();
    let sop: String = db
        .query_row(
            "SELECT sop_uid FROM instances WHERE path = ?1",
            [&first],
            |r| r.get(0),
        )
        .unwrap();
    let i: usize = sop.rsplit('.').next().unwrap().parse().unwrap();
    let mut replaced = None;
    let dir = g.root.join("backup");
    let mut seen = Vec::new();
    let taken = take_with(
        &g.config,
        &dir,
        "cli:test",
        &mut |p| {
            // After the first snapshot's files were copied, before the second.
            if matches!(p, Progress::Retake { .. }) && replaced.is_none() {
                replaced = Some(g.receive(i, "sent again"));
                g.spool.remove(&first).unwrap();
            }
            seen.push(p.clone());
        },
        &mut |attempt| {
            if attempt == 1 {
                g.forward_and_remove(&gone);
            }
        },
    )
    .unwrap();
    let replaced = replaced.expect("a second snapshot");
    assert_eq!(taken.snapshots, 2, "{seen:?}");
    let listed: Vec<&str> = taken
        .manifest
        .files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert!(!listed.iter().any(|p| p.ends_with(&first)), "{listed:?}");
    assert!(listed.iter().any(|p| p.ends_with(&replaced)), "{listed:?}");
    assert!(!dir.join(SPOOL).join(&first).exists());
    assert_eq!(taken.manifest.counts.files, 2);
}

/// A file the database needs that the live spool does not have is not a race: the
/// second snapshot still needs it, it is listed as missing, and the backup succeeds.
#[test]
fn a_file_the_live_spool_lacks_is_listed_as_missing() {
    let g = gateway(3);
    let lost = g.paths()[0].clone();
    g.spool.remove(&lost).unwrap();
    let (taken, _) = g.backup(&mut |_| {});
    let taken = taken.unwrap();
    assert_eq!(taken.snapshots, 2);
    assert_eq!(
        taken.manifest.missing,
        vec![MissingFile {
            path: lost,
            state: "received".into()
        }]
    );
    assert_eq!(taken.manifest.counts.files, 2);
}

#[test]
fn quarantined_files_are_copied_too() {
    let g = gateway(2);
    let rel = g.receive(9, "unreadable");
    let moved = g.spool.quarantine(&rel).unwrap();
    let db = rusqlite::Connection::open(g.config.database_path()).unwrap();
    db.execute("DELETE FROM instances WHERE path = ?1", [&rel])
        .unwrap();
    let (taken, _) = g.backup(&mut |_| {});
    let taken = taken.unwrap();
    assert_eq!(taken.manifest.counts.quarantined, 1);
    let (config, restored) = g.restore_into("restored");
    restored.unwrap();
    assert_eq!(
        fs::read(config.spool_dir().join(&moved)).unwrap(),
        fs::read(g.config.spool_dir().join(&moved)).unwrap()
    );
}

/// Each way a backup can be damaged stops the restore before anything is in place,
/// naming the file; the data directory stays absent.
#[test]
fn a_damaged_backup_is_refused_naming_the_file() {
    let g = gateway(3);
    let (taken, _) = g.backup(&mut |_| {});
    let taken = taken.unwrap();
    let dir = g.root.join("backup");
    let spool_file = dir.join(&taken.manifest.files[1].path);
    let original = fs::read(&spool_file).unwrap();

    let mut flipped = original.clone();
    flipped[5] ^= 0x01;
    fs::write(&spool_file, &flipped).unwrap();
    let (config, r) = g.restore_into("restored");
    let err = r.unwrap_err().to_string();
    assert!(err.contains(&taken.manifest.files[1].path), "{err}");
    assert!(err.contains("SHA-256"), "{err}");
    assert!(!config.gateway.data_dir.exists(), "{err}");

    fs::write(&spool_file, &original[..10]).unwrap();
    let (config, r) = g.restore_into("restored");
    let err = r.unwrap_err().to_string();
    assert!(err.contains("10 bytes"), "{err}");
    assert!(!config.gateway.data_dir.exists());

    fs::remove_file(&spool_file).unwrap();
    let (_, r) = g.restore_into("restored");
    let err = r.unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");
    fs::write(&spool_file, &original).unwrap();

    // The database: one byte flipped.
    let db = dir.join(DATABASE);
    let original_db = fs::read(&db).unwrap();
    let mut flipped = original_db.clone();
    let at = flipped.len() - 100;
    flipped[at] ^= 0x40;
    fs::write(&db, &flipped).unwrap();
    let (config, r) = g.restore_into("restored");
    let err = r.unwrap_err().to_string();
    assert!(err.contains(DATABASE) && err.contains("SHA-256"), "{err}");
    assert!(!config.gateway.data_dir.exists());
    fs::write(&db, &original_db).unwrap();

    // An empty data directory that exists stays, empty.
    fs::create_dir(self::config(&g.root, "empty").gateway.data_dir).unwrap();
    fs::write(&spool_file, &flipped[..3]).unwrap();
    let (config, r) = g.restore_into("empty");
    assert!(r.is_err());
    assert_eq!(fs::read_dir(&config.gateway.data_dir).unwrap().count(), 0);
    fs::write(&spool_file, &original).unwrap();

    // No manifest: a backup that did not finish.
    fs::rename(dir.join(MANIFEST), dir.join("m")).unwrap();
    let (_, r) = g.restore_into("restored");
    assert!(matches!(r, Err(BackupError::NoManifest { .. })), "{r:?}");
    fs::rename(dir.join("m"), dir.join(MANIFEST)).unwrap();

    // A manifest pointing outside the backup.
    let text = fs::read_to_string(dir.join(MANIFEST)).unwrap();
    let escaped = text.replacen("\"spool/objects/", "\"spool/../../objects/", 1);
    fs::write(dir.join(MANIFEST), escaped).unwrap();
    let (_, r) = g.restore_into("restored");
    assert!(matches!(r, Err(BackupError::BadManifest { .. })), "{r:?}");
    fs::write(dir.join(MANIFEST), text).unwrap();

    // Undamaged again: restores.
    let (_, r) = g.restore_into("restored");
    r.unwrap();
}

/// A trail tampered with in the backup (its checksums rewritten to match) does not
/// verify: nothing is restored.
#[test]
fn a_backup_whose_trail_does_not_verify_is_not_restored() {
    let g = gateway(1);
    let (taken, _) = g.backup(&mut |_| {});
    let taken = taken.unwrap();
    let dir = g.root.join("backup");
    let db = rusqlite::Connection::open(dir.join(DATABASE)).unwrap();
    db.execute_batch(
        "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET actor = 'someone' WHERE seq = 1",
    )
    .unwrap();
    drop(db);
    let (size, sha256) = hash_file(&dir.join(DATABASE)).unwrap();
    let mut m = taken.manifest.clone();
    m.database.size = size;
    m.database.sha256 = sha256;
    fs::write(dir.join(MANIFEST), serde_json::to_vec(&m).unwrap()).unwrap();
    let (config, r) = g.restore_into("restored");
    assert!(matches!(r, Err(BackupError::Tampered { .. })), "{r:?}");
    assert!(!config.gateway.data_dir.exists());
}

#[test]
fn a_failed_backup_leaves_nothing_behind() {
    let g = gateway(2);
    // The audit trail refuses the entry: no backup.
    let db = rusqlite::Connection::open(g.config.database_path()).unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    .unwrap();
    let (r, _) = g.backup(&mut |_| {});
    let err = r.unwrap_err().to_string();
    assert!(err.contains("disk full"), "{err}");
    assert!(!g.root.join("backup").exists());
    // Into an empty directory that exists: it stays, empty.
    fs::create_dir(g.root.join("backup")).unwrap();
    let (r, _) = g.backup(&mut |_| {});
    assert!(r.is_err());
    assert_eq!(fs::read_dir(g.root.join("backup")).unwrap().count(), 0);
    db.execute_batch("DROP TRIGGER refuse").unwrap();
    let (r, _) = g.backup(&mut |_| {});
    r.unwrap();
}
