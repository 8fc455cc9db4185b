//! DICOM over TLS (PS3.15 Annex B) with DCMTK as the real peer: `storescu +tls` into
//! readgate's TLS listener, with and without the client certificates mutual TLS asks for.

mod common;

use common::pki::{tls_listener_toml, TestCa};
use common::{dcmtk_scu, free_port, no_reading_site, repo_path, Daemon};

/// storescu's exit status and output for one sample file sent with `options`.
fn storescu(port: u16, options: &[&str]) -> (bool, String) {
    let sample = repo_path("sample-dicom/transfer-syntaxes/explicit-le.dcm");
    let out = dcmtk_scu("storescu", "MODALITY", options, port)
        .arg("-xe")
        .arg(&sample)
        .output()
        .expect("storescu runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn storescu_over_mutual_tls_is_received_and_others_are_refused() {
    let (dir, mut cfg) = no_reading_site();
    let ca = TestCa::new("hospital CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let (server_cert, server_key) = ca
        .issue(&["localhost", "127.0.0.1"])
        .write(dir.path(), "readgate");
    let (client_cert, client_key) = ca.issue(&["modality.example"]).write(dir.path(), "ct01");
    let other = TestCa::new("another CA");
    let (other_cert, other_key) = other.issue(&["intruder"]).write(dir.path(), "intruder");
    let tls_port = free_port();
    cfg.extra_dicom = tls_listener_toml(tls_port, &server_cert, &server_key, Some(&ca_pem));
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(tls_port);
    let ca_arg = ca_pem.to_string_lossy().into_owned();
    let key = |p: &std::path::Path| p.to_string_lossy().into_owned();

    // A modality with a certificate from the hospital's CA: stored (0000).
    let (ok, out) = storescu(
        tls_port,
        &[
            "+tls",
            &key(&client_key),
            &key(&client_cert),
            "+cf",
            &ca_arg,
        ],
    );
    assert!(ok, "mutual TLS store failed:\n{out}");

    // No client certificate: refused during the handshake.
    let (ok, out) = storescu(tls_port, &["+tla", "+cf", &ca_arg]);
    assert!(!ok, "a client without a certificate was accepted:\n{out}");

    // A certificate from another CA: refused.
    let (ok, out) = storescu(
        tls_port,
        &["+tls", &key(&other_key), &key(&other_cert), "+cf", &ca_arg],
    );
    assert!(!ok, "a certificate from another CA was accepted:\n{out}");

    // Plain DICOM on the TLS port: refused, and the daemon goes on.
    let (ok, out) = storescu(tls_port, &[]);
    assert!(!ok, "plain DICOM on the TLS port was accepted:\n{out}");

    // The plain listener still works beside the TLS one.
    let (ok, out) = storescu(cfg.dicom_port, &[]);
    assert!(ok, "plain listener:\n{out}");
    daemon.assert_running();
    let log = daemon.log_text();
    assert!(log.contains("receiving DICOM over TLS"), "{log}");
    // Each refusal names the peer and why (rustls' reason, e.g. no certificate); it is
    // logged just after the refusal, so wait for the line.
    common::wait_until(
        "the refusal logged with its reason",
        std::time::Duration::from_secs(10),
        || {
            let log = daemon.log_text();
            log.contains("association rejected peer=127.0.0.1")
                && (log.contains("certificate") || log.contains("Certificate"))
        },
    );
}

/// TLS both ways: storescu +tls into readgate, readgate forwarding over TLS with its own
/// client certificate to `storescp +tls` (which requires one and checks it against the
/// same CA); readgate checks storescp's certificate for `tls_server_name`.
#[test]
fn tls_in_and_out_with_dcmtk_at_both_ends() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new("teleradiology CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let (rg_cert, rg_key) = ca
        .issue(&["localhost", "127.0.0.1"])
        .write(dir.path(), "readgate");
    let (scp_cert, scp_key) = ca.issue(&["rc1.example"]).write(dir.path(), "rc1");
    let (scu_cert, scu_key) = ca.issue(&["ct01"]).write(dir.path(), "ct01");
    let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let scp_port = free_port();
    let scp = common::StoreScp::start_with(
        &dir.path().join("rc1"),
        scp_port,
        &["+tls", &s(&scp_key), &s(&scp_cert), "+cf", &s(&ca_pem)],
    );
    let mut cfg = common::TestConfig::new(dir.path(), scp_port);
    let tls_port = free_port();
    cfg.extra_dicom = tls_listener_toml(tls_port, &rg_cert, &rg_key, None);
    cfg.dest_extra = format!(
        "tls = true\ntls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntls_server_name = \"rc1.example\"",
        ca_pem.display(),
        rg_cert.display(),
        rg_key.display()
    );
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(tls_port);
    let sample = repo_path("sample-dicom/transfer-syntaxes/explicit-le.dcm");
    let (ok, out) = storescu(
        tls_port,
        &["+tls", &s(&scu_key), &s(&scu_cert), "+cf", &s(&ca_pem)],
    );
    assert!(ok, "storescu over TLS:\n{out}");
    let (meta, sent) = common::dataset_of(&sample);
    common::wait_until(
        "the instance reaches storescp over TLS",
        std::time::Duration::from_secs(30),
        || scp.received().contains(&meta.sop_instance_uid),
    );
    let received = scp.file_of(&meta.sop_instance_uid).expect("received file");
    let (_, got) = common::dataset_of(&received);
    // readgate adds its accountability block; the original elements are all there.
    assert!(got.len() > sent.len(), "the forwarded instance is tagged");
    daemon.assert_running();
    // storescp writes the file before it answers; readgate logs after the answer.
    common::wait_until(
        "readgate logs the study forwarded",
        std::time::Duration::from_secs(30),
        || daemon.log_text().contains("study forwarded"),
    );
}

/// `[[dicom.peers]] tls_subject` pins an AE title to a certificate subject: the modality
/// whose certificate says `CN=ct01.example` may send as CT01; the same certificate sending
/// as MR01 (pinned to another subject) is refused before any data, with a log line naming
/// the subject presented; CT01 over plain TCP is refused too.
#[test]
fn a_peer_pinned_to_a_certificate_subject() {
    let (dir, mut cfg) = no_reading_site();
    let ca = TestCa::new("hospital CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let (server_cert, server_key) = ca.issue(&["localhost"]).write(dir.path(), "readgate");
    let (ct_cert, ct_key) = ca.issue(&["ct01.example"]).write(dir.path(), "ct01");
    let tls_port = free_port();
    cfg.extra_dicom = tls_listener_toml(tls_port, &server_cert, &server_key, Some(&ca_pem));
    cfg.peers = Some(
        "[[dicom.peers]]\nae_title = \"CT01\"\ntls_subject = \"cn = ct01.example\"\n\
         [[dicom.peers]]\nae_title = \"MR01\"\ntls_subject = \"CN=mr01.example, O=Hospital\"\n"
            .into(),
    );
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(tls_port);
    let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let tls = ["+tls", &s(&ct_key), &s(&ct_cert), "+cf", &s(&ca_pem)];
    let store_as = |calling: &str, port: u16, options: &[&str]| {
        let out = dcmtk_scu("storescu", calling, options, port)
            .arg("-xe")
            .arg(repo_path("sample-dicom/transfer-syntaxes/explicit-le.dcm"))
            .output()
            .expect("storescu runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out) = store_as("CT01", tls_port, &tls);
    assert!(ok, "the pinned subject was refused:\n{out}");
    let (ok, out) = store_as("MR01", tls_port, &tls);
    assert!(!ok, "another AE's certificate was accepted:\n{out}");
    assert!(out.contains("Association Rejected"), "{out}");
    let (ok, out) = store_as("CT01", cfg.dicom_port, &[]);
    assert!(!ok, "a pinned peer was accepted over plain TCP:\n{out}");
    daemon.assert_running();
    // readgate logs a refusal just after answering it: wait for the lines.
    common::wait_until(
        "the refusals logged",
        std::time::Duration::from_secs(10),
        || {
            let log = daemon.log_text();
            log.contains("it must connect over DICOM TLS")
                && log.contains("presented a certificate")
        },
    );
    let log = daemon.log_text();
    assert!(
        log.contains("calling AE \\\"MR01\\\" presented a certificate for \\\"CN=ct01.example\\\"")
            || log.contains("calling AE \"MR01\" presented a certificate for \"CN=ct01.example\""),
        "{log}"
    );
}
