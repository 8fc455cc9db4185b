//! MLLP over TLS with Python's `ssl` module as the sender and the `hl7` package reading
//! the ACK: a sender with a certificate from the hospital's CA gets AA, one without a
//! certificate and one on plain TCP are refused, and the plain listener goes on beside.

mod common;

use common::hl7::{python, require_python_hl7};
use common::pki::{tls_listener_toml, TestCa};
use common::{free_port, no_reading_site, repo_path, Daemon};

fn send(
    port: u16,
    ca: &std::path::Path,
    message: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> String {
    let mut cmd = std::process::Command::new(python());
    cmd.arg(repo_path("tests/peers/mllp_tls.py"))
        .arg(port.to_string())
        .arg(ca)
        .arg(message);
    if let Some((cert, key)) = client {
        cmd.arg(cert).arg(key);
    }
    let out = cmd.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn mllp_over_mutual_tls_from_python() {
    require_python_hl7();
    let (dir, mut cfg) = no_reading_site();
    let ca = TestCa::new("hospital CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let (cert, key) = ca.issue(&["localhost"]).write(dir.path(), "readgate");
    let (ris_cert, ris_key) = ca.issue(&["ris.example"]).write(dir.path(), "ris");
    let port = free_port();
    let tls_port = free_port();
    cfg.hl7_port = Some(port);
    cfg.hl7_extra = tls_listener_toml(tls_port, &cert, &key, Some(&ca_pem));
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(tls_port);
    let message = repo_path("tests/hl7/orm_o01_ihe.hl7");
    assert_eq!(
        send(tls_port, &ca_pem, &message, Some((&ris_cert, &ris_key))),
        "AA"
    );
    let refused = send(tls_port, &ca_pem, &message, None);
    assert!(refused.starts_with("REFUSED"), "{refused}");
    // Plain MLLP on the TLS port gets no ACK.
    let plain = std::net::TcpStream::connect(("127.0.0.1", tls_port)).expect("connect");
    {
        use std::io::{Read, Write};
        let mut plain = plain;
        plain
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut frame = vec![0x0b];
        frame.extend(std::fs::read(&message).unwrap());
        frame.extend([0x1c, 0x0d]);
        let _ = plain.write_all(&frame);
        let mut buf = Vec::new();
        let _ = plain.read_to_end(&mut buf);
        assert!(
            !buf.windows(3).any(|w| w == b"MSA"),
            "an ACK over plain TCP"
        );
    }
    daemon.assert_running();
    let log = daemon.log_text();
    assert!(log.contains("HL7 TLS handshake failed"), "{log}");
}
