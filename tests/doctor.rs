//! `readgate doctor` against a live gateway: every check passes while the reading site's
//! storescp answers C-ECHO; with it stopped the destination's check fails and so does the
//! command; JSON for monitoring; a broken config is a failed check, not a crash.

mod common;

use common::process::readgate_bin;
use common::*;
use std::process::Output;

fn doctor(config: &std::path::Path, json: bool) -> Output {
    let mut cmd = readgate_bin();
    cmd.arg("doctor").arg("--config").arg(config);
    if json {
        cmd.args(["--format", "json"]);
    }
    cmd.output().expect("readgate doctor")
}

fn checks(out: &Output) -> Vec<(String, String, String)> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    v.as_array()
        .expect("an array of checks")
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap_or("").to_string(),
                c["outcome"].as_str().unwrap_or("").to_string(),
                c["detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_checks_a_live_gateway_and_fails_on_a_silent_destination() {
    let (dir, scp, cfg) = reading_site();
    let rg = readgate::serve::start(cfg.parse()).await.expect("starts");
    let config = cfg.write();

    let out = doctor(&config, false);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "config",
        "data dir",
        "audit chain",
        "queue",
        "held studies",
        "C-ECHO destination rc1",
        "listener DICOM",
    ] {
        assert!(
            table
                .lines()
                .any(|l| l.contains(line) && !l.starts_with("FAIL")),
            "{line} in\n{table}"
        );
    }
    assert!(table.contains("answered in"), "{table}");
    assert!(table.contains("(mode 700"), "{table}");

    let all = checks(&doctor(&config, true));
    let echo = all
        .iter()
        .find(|(c, _, _)| c == "C-ECHO destination rc1")
        .expect("the destination's check");
    assert_eq!(echo.1, "ok", "{all:?}");

    // The reading site stops answering: its check fails, and the command with it.
    drop(scp);
    let out = doctor(&config, true);
    assert_eq!(out.status.code(), Some(1));
    let all = checks(&out);
    let echo = all
        .iter()
        .find(|(c, _, _)| c == "C-ECHO destination rc1")
        .expect("the destination's check");
    assert_eq!(echo.1, "fail", "{all:?}");
    assert!(echo.2.contains("RC1PACS@127.0.0.1"), "{echo:?}");
    rg.stop().await;

    // readgate stopped: its listener's check fails too.
    let all = checks(&doctor(&config, true));
    let listener = all
        .iter()
        .find(|(c, _, _)| c == "listener DICOM")
        .expect("the listener's check");
    assert_eq!(listener.1, "fail", "{all:?}");

    // A config that does not parse is one failed check naming the key.
    std::fs::write(&config, "[gateway]\nid = 3\n").unwrap();
    let out = doctor(&config, true);
    assert_eq!(out.status.code(), Some(1));
    let all = checks(&out);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!((all[0].0.as_str(), all[0].1.as_str()), ("config", "fail"));
    drop(dir);
}

/// A disk below `storage.min_free_mb` and an expired certificate: each named, exit 1.
#[test]
fn doctor_names_a_full_disk_and_an_expired_certificate() {
    let (dir, mut cfg) = no_reading_site();
    let ca = common::pki::TestCa::new("doctor test CA");
    let (cert, key) = ca
        .issue_expired(&["localhost"])
        .write(dir.path(), "expired");
    cfg.extra_dicom = common::pki::tls_listener_toml(free_port(), &cert, &key, None);
    // More than any disk here has.
    cfg.min_free_mb = 1 << 40;
    let data = dir.path().join("var");
    std::fs::create_dir_all(&data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = cfg.write();

    let out = doctor(&config, true);
    assert_eq!(out.status.code(), Some(1));
    let all = checks(&out);
    let find = |name: &str| {
        all.iter()
            .find(|(c, _, _)| c == name)
            .unwrap_or_else(|| panic!("no check {name} in {all:?}"))
            .clone()
    };
    let disk = find("data dir");
    assert_eq!(disk.1, "fail", "{disk:?}");
    assert!(disk.2.contains("under storage.min_free_mb"), "{disk:?}");
    let tls = find("certificate dicom.tls_cert");
    assert_eq!(tls.1, "fail", "{tls:?}");
    assert!(tls.2.contains("EXPIRED on"), "{tls:?}");
}
