//! Interop with DCMTK as both ends: `storescu`/`echoscu` as the modality, `storescp` as the
//! remote reading site, the readgate binary in between, on the sample data set.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

fn sample_files() -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![repo_path("sample-dicom")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().map(|x| x == "dcm").unwrap_or(false) {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn echoscu_and_calling_ae_control() {
    let (_dir, mut cfg) = no_reading_site();
    cfg.peers = Some("[[dicom.peers]]\nae_title = \"CT01\"\nhosts = [\"127.0.0.1\"]\n".into());
    let daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    let echo = |aet: &str| {
        run_output(
            &mut dcmtk_scu("echoscu", aet, &[], cfg.dicom_port),
            "echoscu",
        )
    };
    assert!(echo("CT01").status.success());
    let refused = echo("INTRUDER");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Rejected"),
        "{refused:?}"
    );
    wait_until("rejection logged", Duration::from_secs(5), || {
        daemon.log_text().contains("INTRUDER") && daemon.log_text().contains("association rejected")
    });
}

#[test]
fn storescu_to_readgate_to_storescp_keeps_every_byte() {
    let (dir, scp, cfg) = reading_site();
    let daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    let files = sample_files();
    assert!(files.len() >= 15, "sample-dicom has {} files", files.len());
    // storescu proposes uncompressed syntaxes unless told which one a file needs; group
    // the files by the option that makes it send them as they are. Debian's DCMTK has no
    // JPEG 2000 codec, so pynetdicom sends those.
    let mut groups: std::collections::BTreeMap<&str, Vec<std::path::PathBuf>> = Default::default();
    let mut j2k = Vec::new();
    for f in &files {
        let (meta, _) = dataset_of(f);
        let option = match meta.transfer_syntax.as_str() {
            "1.2.840.10008.1.2" => "-xi",
            "1.2.840.10008.1.2.1" => "-xe",
            "1.2.840.10008.1.2.2" => "-xb",
            "1.2.840.10008.1.2.1.99" => "-xd",
            "1.2.840.10008.1.2.4.50" => "-xy",
            "1.2.840.10008.1.2.4.51" => "-xx",
            "1.2.840.10008.1.2.4.70" => "-xs",
            "1.2.840.10008.1.2.4.80" => "-xt",
            "1.2.840.10008.1.2.5" => "-xr",
            _ => {
                j2k.push(f.clone());
                continue;
            }
        };
        groups.entry(option).or_default().push(f.clone());
    }
    for (option, group) in &groups {
        let mut storescu = dcmtk_scu("storescu", "CT01", &[option], cfg.dicom_port);
        run_ok(storescu.args(group), &format!("storescu {option}"));
    }
    let mut pynetdicom = Command::new("python3");
    pynetdicom
        .arg(repo_path("tests/peers/pynetdicom_store.py"))
        .args(["127.0.0.1", &cfg.dicom_port.to_string(), "PACS", "READGATE"])
        .args(&j2k);
    run_ok(&mut pynetdicom, "pynetdicom");
    let start = std::time::Instant::now();
    while scp.received().len() != files.len() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} of {} samples forwarded; readgate's log:\n{}",
            scp.received().len(),
            files.len(),
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for f in &files {
        let (meta, original) = dataset_of(f);
        let received = scp.file_of(&meta.sop_instance_uid).expect("received");
        let (rmeta, forwarded) = dataset_of(&received);
        assert_eq!(
            rmeta.transfer_syntax,
            meta.transfer_syntax,
            "{}",
            f.display()
        );
        // everything but readgate's accountability tags arrives byte for byte
        let ts = meta.transfer_syntax.as_str();
        assert!(
            common::elements::unchanged_elements(&original, ts)
                == common::elements::unchanged_elements(&forwarded, ts),
            "{}: data set bytes changed beyond readgate's tags",
            f.display()
        );
        // dcmdump reads what arrived
        run_ok(
            Command::new(dcmtk("dcmdump")).arg(&received),
            &format!("dcmdump {}", received.display()),
        );
    }
    // the spool copy carries readgate's implementation class UID
    let spooled = walk_files(&dir.path().join("var/spool/objects"));
    let dump = run_output(Command::new(dcmtk("dcmdump")).arg(&spooled[0]), "dcmdump");
    assert!(String::from_utf8_lossy(&dump.stdout)
        .contains(readgate::dicom::part10::IMPLEMENTATION_CLASS_UID));
    // `readgate studies` lists them as forwarded
    let mut cmd = readgate_bin();
    cmd.args(["studies", "--config"]).arg(cfg.write()).args([
        "--state",
        "forwarded",
        "--format",
        "json",
    ]);
    let studies = run_ok(&mut cmd, "readgate studies");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&studies.stdout).unwrap();
    let total: i64 = rows
        .iter()
        .map(|r| r["instances_forwarded"].as_i64().unwrap())
        .sum();
    assert_eq!(total as usize, files.len());
    // logs carry UIDs but no patient names or IDs
    let log = daemon.log_text();
    for secret in ["Test^Taro", "Yamada", "SYN", "山田"] {
        assert!(!log.contains(secret), "log leaks {secret}");
    }
}

/// Forwarded copies are tagged in memory only up to 16 MiB: a 40 MB instance goes through
/// the spool's tmp/, arrives whole (its pixel data byte for byte), and readgate's peak RSS
/// does not grow by anything near its size.
#[test]
fn an_instance_over_16_mib_is_forwarded_through_a_file_in_bounded_memory() {
    let big = big_instance(40);
    let (_dir, scp, cfg) = reading_site();
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(cfg.dicom_port);
    let before = vm_hwm_kib(daemon.child.id());
    let mut storescu = dcmtk_scu("storescu", "CT01", &[], cfg.dicom_port);
    run_ok(storescu.arg(&big), "storescu of a 40 MB instance");
    wait_until(
        "the 40 MB instance at storescp",
        Duration::from_secs(60),
        || scp.received().len() == 1,
    );
    let after = vm_hwm_kib(daemon.child.id());
    daemon.assert_running();
    let (meta, original) = dataset_of(&big);
    let received = scp.file_of(&meta.sop_instance_uid).expect("received");
    let (_, forwarded) = dataset_of(&received);
    let tail = &original[original.len() - 30_000_000..];
    assert!(
        forwarded.len() > original.len() && forwarded.ends_with(tail),
        "the pixel data arrives byte for byte after the added tags"
    );
    eprintln!("readgate VmHWM {before} KiB before, {after} KiB after relaying 40 MB");
    assert!(
        after < before + 16 * 1024,
        "peak RSS grew from {before} to {after} KiB relaying a 40 MB instance"
    );
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            v.extend(walk_files(&e.path()));
        } else {
            v.push(e.path());
        }
    }
    v
}

#[test]
fn sigterm_finishes_and_exits_cleanly() {
    let (_dir, cfg) = no_reading_site();
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    let status = daemon.terminate();
    assert!(status.success(), "{status:?}\n{}", daemon.log_text());
    assert!(daemon.log_text().contains("readgate stopped"));
}

#[test]
fn a_bad_config_names_the_key() {
    let (_dir, cfg) = no_reading_site();
    let path = cfg.write();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("stable_after_secs", "stable_afer_secs");
    std::fs::write(&path, text).unwrap();
    let out = run_output(
        readgate_bin().args(["serve", "--config"]).arg(&path),
        "readgate serve",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stable_afer_secs"), "{err}");
}

/// A destination that accepts only Implicit VR Little Endian gets readgate's native
/// instances re-encoded to it (the fallback context readgate proposes for native data):
/// storescp stores an explicit-VR instance as implicit VR, tagged and complete.
#[test]
fn native_instances_are_re_encoded_for_a_destination_that_wants_implicit_vr() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scp = StoreScp::start_with(&dir.path().join("rc1"), free_port(), &["+xi"]);
    let cfg = TestConfig::new(dir.path(), scp.port);
    let daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    let sample = repo_path("sample-dicom/transfer-syntaxes/explicit-le.dcm");
    let (meta, _) = dataset_of(&sample);
    assert_eq!(meta.transfer_syntax, "1.2.840.10008.1.2.1");
    run_ok(
        dcmtk_scu("storescu", "CT01", &["-xe"], cfg.dicom_port).arg(&sample),
        "storescu",
    );
    wait_until("delivered", Duration::from_secs(30), || {
        scp.received().contains(&meta.sop_instance_uid)
    });
    let delivered = walk_files(&dir.path().join("rc1"));
    assert_eq!(delivered.len(), 1);
    let (got, _) = dataset_of(&delivered[0]);
    assert_eq!(
        got.transfer_syntax, "1.2.840.10008.1.2",
        "not re-encoded as implicit VR"
    );
    let dump = run_ok(
        Command::new(dcmtk("dcmdump")).arg(&delivered[0]),
        "dcmdump of the re-encoded file",
    );
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(text.contains("READGATE ACCOUNTABILITY"), "{text}");
    assert!(text.contains("(7fe0,0010)"), "pixel data missing:\n{text}");
    drop(daemon);
}

/// SIGTERM while an instance is arriving: readgate stops accepting, lets the open
/// association finish (its instance is answered 0000 and kept), then exits cleanly.
#[test]
fn sigterm_waits_for_the_transfer_in_progress() {
    let big = big_instance(200);
    let (_dir, cfg) = no_reading_site();
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(cfg.dicom_port);
    let mut storescu = dcmtk_scu("storescu", "CT01", &[], cfg.dicom_port);
    storescu.arg(&big);
    let sending = std::thread::spawn(move || run_output(&mut storescu, "storescu"));
    wait_until("the association open", Duration::from_secs(10), || {
        daemon.log_text().contains("association accepted")
    });
    assert!(!sending.is_finished(), "the transfer ended before SIGTERM");
    let status = daemon.terminate();
    let out = sending.join().expect("storescu thread");
    assert!(
        out.status.success(),
        "the transfer in progress was cut: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(status.success(), "{status:?}\n{}", daemon.log_text());
    let log = daemon.log_text();
    assert!(log.contains("readgate stopped"), "{log}");
    assert!(log.contains("stored=1"), "{log}");
    // The instance is kept: a restart finds it in the index.
    let n: i64 = cfg
        .database()
        .query_row("SELECT COUNT(*) FROM instances", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 1);
}
