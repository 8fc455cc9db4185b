//! Several readgate nodes on one PostgreSQL database (`docs/deploy.md`): two `readgate
//! serve` processes with their own `gateway.id`, data directory and ports, sharing the
//! database (a server started for the test) and the spool, with DCMTK storescu and
//! storescp as the modality and the reading site.
//!
//! - half a study to each node: decided once, forwarded once, every instance at storescp;
//! - kill -9 the node forwarding 300 instances: the other completes after the lease;
//! - an HL7 order to node A releases a study held on node B;
//! - `readgate nodes` lists both; one `audit verify` covers both.

mod common;

use common::hl7::send_hl7;
use common::*;
use readgate::model::{EventKind, StudyState};
use readgate::pgtest::TempPostgres;
use readgate::store::Store;
use std::path::Path;
use std::time::{Duration, Instant};

/// Two nodes' configurations: `a` and `b` under `root`, one database, one spool; a
/// heartbeat every second and leases of `lease_secs`.
fn two_nodes(
    root: &Path,
    pg: &TempPostgres,
    dest_port: u16,
    lease_secs: u64,
) -> (TestConfig, TestConfig) {
    let spool = root.join("shared-spool");
    let node = |id: &str| {
        let dir = root.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = TestConfig::new(&dir, dest_port);
        cfg.gateway_id = id.into();
        cfg.storage_extra = format!("spool_dir = \"{}\"", spool.display());
        cfg.database_url = Some(pg.url());
        cfg.database_extra = format!("heartbeat_secs = 1\nlease_secs = {lease_secs}");
        cfg
    };
    (node("node-a"), node("node-b"))
}

fn storescu(dir: &Path, port: u16) {
    let mut scu = dcmtk_scu("storescu", "CT01", &["-xe", "+sd"], port);
    run_ok(scu.arg(dir), "storescu");
}

fn readgate_cli(args: &[&str], config: &Path) -> (i32, String, String) {
    let mut cmd = readgate_bin();
    cmd.args(args).arg("--config").arg(config);
    code_stdout_stderr(&run_output(&mut cmd, "readgate"))
}

/// A node's `/metrics` page.
fn metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect HTTP");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    page
}

fn event_count(store: &Store, study: &str, kind: EventKind) -> usize {
    event_kinds(store, study)
        .into_iter()
        .filter(|k| *k == kind)
        .count()
}

#[test]
fn half_a_study_to_each_node_is_decided_once_and_forwarded_once() {
    let pg = TempPostgres::start().expect("PostgreSQL for the test");
    let (dir, scp, _) = reading_site();
    // A long lease: on a loaded machine the timers stay with one node for the test.
    let (mut a, mut b) = two_nodes(dir.path(), &pg, scp.port, 20);
    // The halves arrive within the quiet period: one study, complete once.
    a.stable_after_secs = 3;
    b.stable_after_secs = 3;
    let http = [free_port(), free_port()];
    for (cfg, port) in [(&mut a, http[0]), (&mut b, http[1])] {
        cfg.extra.push_str(&format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\nmetrics = true\n"
        ));
    }
    let (a_path, b_path) = (a.write(), b.write());
    let mut node_a = Daemon::start(&a_path, a.dicom_port);
    let mut node_b = Daemon::start(&b_path, b.dicom_port);
    node_a.wait_for_port(http[0]);
    node_b.wait_for_port(http[1]);

    let study = "1.2.826.0.1.3680043.10.1234.131";
    let mut sent = write_ct_files(&dir.path().join("first"), study, 0, 10, 8_000);
    sent.extend(write_ct_files(
        &dir.path().join("second"),
        study,
        10,
        10,
        8_000,
    ));
    storescu(&dir.path().join("first"), a.dicom_port);
    storescu(&dir.path().join("second"), b.dicom_port);
    wait_until(
        "the whole study at storescp",
        Duration::from_secs(60),
        || scp.received() == sent,
    );
    let store = Store::connect(&pg.url(), 4).expect("the store on PostgreSQL");
    wait_until("the study forwarded", Duration::from_secs(20), || {
        studies_in(&store, StudyState::Forwarded, 10) == 1
    });
    let row = store.study_row(study).unwrap().expect("the study");
    assert_eq!(row.instance_count, 20, "one study of both halves");
    assert_eq!(
        event_count(&store, study, EventKind::Queued),
        1,
        "decided once"
    );
    assert_eq!(
        event_count(&store, study, EventKind::Forwarded),
        1,
        "forwarded once"
    );

    // Both nodes alive, one runs the timers.
    let (code, out, err) = readgate_cli(&["nodes", "--format", "json"], &a_path);
    assert_eq!(code, 0, "readgate nodes: {out}{err}");
    let nodes: serde_json::Value = serde_json::from_str(&out).unwrap();
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{out}");
    assert!(nodes.iter().all(|n| n["status"] == "alive"), "{out}");
    assert_eq!(
        nodes.iter().filter(|n| n["runs_timers"] == true).count(),
        1,
        "{out}"
    );
    // Each node's /metrics names it; exactly one of them runs the timers.
    let pages = http.map(metrics);
    assert!(
        pages[0].contains("readgate_node{node=\"node-a\""),
        "{}\n{}",
        pages[0],
        node_a.log_text()
    );
    assert!(
        pages[1].contains("readgate_node{node=\"node-b\""),
        "{}",
        pages[1]
    );
    let leading = pages
        .iter()
        .filter(|p| p.contains("\nreadgate_node_runs_timers 1\n"))
        .count();
    assert_eq!(leading, 1, "{pages:?}");
    let (code, table, _) = readgate_cli(&["nodes"], &b_path);
    assert_eq!(code, 0);
    assert!(
        table.contains("node-a") && table.contains("node-b"),
        "{table}"
    );

    assert_eq!(node_a.terminate().code(), Some(0), "{}", node_a.log_text());
    assert_eq!(node_b.terminate().code(), Some(0), "{}", node_b.log_text());
    // Stopped nodes say so, and gave their leases back.
    let (_, out, _) = readgate_cli(&["nodes", "--format", "json"], &a_path);
    let nodes: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["status"] == "stopped" && n["runs_timers"] == false),
        "{out}"
    );
    // One trail for both nodes, and it verifies.
    let (code, out, err) = readgate_cli(&["audit", "verify"], &b_path);
    assert_eq!(code, 0, "audit verify: {out}{err}");
    // One monthly report: from either node, the study both received is one study.
    let month = &readgate::time::format_ms(row.first_received_at, 9 * 3600)[..7];
    let reports: Vec<serde_json::Value> = [&a_path, &b_path]
        .iter()
        .map(|config| {
            let (code, out, err) =
                readgate_cli(&["report", "--month", month, "--format", "json"], config);
            assert_eq!(code, 0, "readgate report: {err}");
            serde_json::from_str(&out).expect("the report as JSON")
        })
        .collect();
    assert_eq!(reports[0]["totals"]["studies"], 1, "{}", reports[0]);
    assert_eq!(reports[0]["studies"][0]["study_uid"], study);
    assert_eq!(reports[0]["studies"], reports[1]["studies"]);
}

#[test]
fn the_other_node_completes_a_forward_when_the_forwarding_node_is_killed() {
    let pg = TempPostgres::start().expect("PostgreSQL for the test");
    let (dir, scp, _) = reading_site();
    let (mut a, mut b) = two_nodes(dir.path(), &pg, scp.port, 3);
    a.stable_after_secs = 0;
    b.stable_after_secs = 0;
    let (a_path, b_path) = (a.write(), b.write());
    let mut nodes = [
        Some(Daemon::start(&a_path, a.dicom_port)),
        Some(Daemon::start(&b_path, b.dicom_port)),
    ];

    let study = "1.2.826.0.1.3680043.10.1234.132";
    let sent = write_ct_files(&dir.path().join("send"), study, 0, 300, 60_000);
    storescu(&dir.path().join("send"), a.dicom_port);
    // Every instance is acknowledged; now find the node that forwards and kill it
    // once some (not all) instances are at storescp.
    let store = Store::connect(&pg.url(), 4).expect("the store on PostgreSQL");
    let started = Instant::now();
    let holder = loop {
        let owner = store.lease_owner_of(study).unwrap();
        let at_scp = scp.received().len();
        if let Some(owner) = owner.filter(|_| at_scp > 0) {
            break owner;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no node began forwarding"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let victim = usize::from(holder == "node-b");
    if let Some(mut node) = nodes[victim].take() {
        node.kill9();
    }
    let at_kill = scp.received().len();
    let killed_at = Instant::now();
    assert!(
        at_kill < sent.len(),
        "the forward ended before the kill: the test saw nothing"
    );

    wait_until(
        "every instance at storescp through the other node",
        Duration::from_secs(60),
        || scp.received() == sent,
    );
    // Within the lease (3 s) plus a retry and the sending itself.
    assert!(
        killed_at.elapsed() < Duration::from_secs(45),
        "took {:?}",
        killed_at.elapsed()
    );
    wait_until("the study forwarded", Duration::from_secs(20), || {
        studies_in(&store, StudyState::Forwarded, 10) == 1
    });
    let survivor = if victim == 0 { "node-b" } else { "node-a" };
    let forwarded = store.events_of(study).unwrap();
    assert!(
        forwarded
            .iter()
            .any(|e| e.kind == EventKind::Forwarded && e.detail.contains("300 instance(s)")),
        "{forwarded:?}"
    );
    assert_eq!(store.lease_owner_of(study).unwrap(), None, "given back");
    let survivor_daemon = nodes[1 - victim].as_mut().expect("the survivor runs");
    survivor_daemon.assert_running();
    assert!(
        survivor_daemon.log_text().contains("study forwarded"),
        "{survivor} forwarded the rest:\n{}",
        survivor_daemon.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_sent_to_one_node_releases_a_study_held_on_the_other() {
    let pg = TempPostgres::start().expect("PostgreSQL for the test");
    let (dir, scp, _) = reading_site();
    let (mut a, mut b) = two_nodes(dir.path(), &pg, scp.port, 20);
    for cfg in [&mut a, &mut b] {
        cfg.hl7_port = Some(free_port());
        cfg.policy = "[[policy.rules]]\nname = \"purpose\"\nchecks = [\"exam_purpose\"]\n".into();
    }
    let (a_path, b_path) = (a.write(), b.write());
    let mut node_a = Daemon::start(&a_path, a.dicom_port);
    node_a.wait_for_port(a.hl7_port.unwrap());
    let _node_b = Daemon::start(&b_path, b.dicom_port);

    let study = "1.2.826.0.1.3680043.10.1234.133";
    let sent = write_ct_files(&dir.path().join("send"), study, 0, 3, 4_000);
    storescu(&dir.path().join("send"), b.dicom_port);
    let store = Store::connect(&pg.url(), 4).expect("the store on PostgreSQL");
    wait_until("the study held", Duration::from_secs(30), || {
        studies_in(&store, StudyState::Held, 10) == 1
    });

    let order = "MSH|^~\\&|RIS|HOSP|READGATE|RAD|20240601090000||ORM^O01|C133|P|2.3.1\r\
         PID|||P-77^^^HOSP^MR||TEST^PATIENT\r\
         ORC|NW|PL-77|FL-77||SC||^^^^^R||20240601090000|||9001^SMITH^JOHN||555-0100\r\
         OBR|1|PL-77|FL-77|CTCHEST^CT chest^LOCAL|||||||||cough for 3 weeks|||9001^SMITH^JOHN|555-0100|ACC0001||||||CT|||^^^^^R||||^rule out pneumonia\r";
    let hl7 = std::net::SocketAddr::from(([127, 0, 0, 1], a.hl7_port.unwrap()));
    let ack = send_hl7(hl7, order.as_bytes()).await;
    assert!(ack.contains("MSA|AA|C133"), "{ack}");
    wait_until(
        "the study released and at storescp",
        Duration::from_secs(30),
        || scp.received() == sent,
    );
    let kinds = event_kinds(&store, study);
    assert!(kinds.contains(&EventKind::Context), "{kinds:?}");
    drop(node_a);
}

#[test]
fn a_second_process_with_a_running_nodes_id_is_refused() {
    let pg = TempPostgres::start().expect("PostgreSQL for the test");
    let (dir, scp, _) = reading_site();
    let (a, mut b) = two_nodes(dir.path(), &pg, scp.port, 20);
    b.gateway_id = a.gateway_id.clone();
    let (a_path, b_path) = (a.write(), b.write());
    let mut node_a = Daemon::start(&a_path, a.dicom_port);
    let out = run_output(
        readgate_bin().args(["serve", "--config"]).arg(&b_path),
        "readgate serve",
    );
    let (code, _, err) = code_stdout_stderr(&out);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("gateway.id \"node-a\"") && err.contains("each node needs its own"),
        "{err}"
    );
    node_a.assert_running();
}

#[test]
fn nodes_acknowledge_nothing_while_postgresql_is_away_and_go_on_after_it_restarts() {
    let mut pg = TempPostgres::start().expect("PostgreSQL for the test");
    let (dir, scp, _) = reading_site();
    let (a, b) = two_nodes(dir.path(), &pg, scp.port, 20);
    let (a_path, b_path) = (a.write(), b.write());
    let mut node_a = Daemon::start(&a_path, a.dicom_port);
    let mut node_b = Daemon::start(&b_path, b.dicom_port);
    let study = "1.2.826.0.1.3680043.10.1234.134";
    let mut sent = write_ct_files(&dir.path().join("before"), study, 0, 5, 4_000);
    storescu(&dir.path().join("before"), a.dicom_port);
    wait_until(
        "the first part at storescp",
        Duration::from_secs(30),
        || scp.received() == sent,
    );

    // The database is away: an instance is refused (never 0000), on either node.
    pg.stop().expect("stop PostgreSQL");
    let away = write_ct_files(&dir.path().join("away"), study, 5, 1, 4_000);
    let mut scu = dcmtk_scu("storescu", "CT01", &["-xe", "+sd", "-v"], b.dicom_port);
    let out = run_output(scu.arg(dir.path().join("away")), "storescu");
    let (_, stdout, stderr) = code_stdout_stderr(&out);
    let said = format!("{stdout}{stderr}");
    assert!(
        !said.contains("Success") && said.contains("Status: 0x110"),
        "storescu while the database is away:\n{said}"
    );

    // Back: both nodes reconnect; the refused instance sent again goes through.
    pg.restart().expect("start PostgreSQL again");
    storescu(&dir.path().join("away"), b.dicom_port);
    sent.extend(away);
    wait_until("the rest at storescp", Duration::from_secs(60), || {
        scp.received() == sent
    });
    node_a.assert_running();
    node_b.assert_running();
}
