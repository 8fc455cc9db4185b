//! `readgate demo --exit-after`: the outcomes, checked through the REST API while it runs
//! — SYNACC0001 forwarded after its prior from the demo's PACS, SYNACC0002 held and then
//! released by its order,
//! SYNACC0004 read by a part-time reader from outside and so not eligible, SYNACC0006
//! still held when the user first logs in, and released in the console (headless
//! Chromium) with a justification.

mod common;

use common::http::request;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_forwards_holds_releases_and_flags_the_part_time_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_readgate"))
        .args(["demo", "--exit-after", "90", "--port", "0", "--repo"])
        .arg(env!("CARGO_MANIFEST_DIR"))
        .arg("--dir")
        .arg(dir.path().join("demo"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let mut http: Option<SocketAddr> = None;
    let mut token = None;
    let mut admin_password = None;
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(90)) {
        if let Some(rest) = line.split("http://").nth(1) {
            if http.is_none() {
                http = rest.split('/').next().and_then(|a| a.parse().ok());
            }
        }
        if let Some(p) = line.split("log in as admin / ").nth(1) {
            admin_password = p.split_whitespace().next().map(str::to_string);
        }
        if let Some(t) = line.split("role admin: ").nth(1) {
            token = Some(t.trim_end_matches(')').to_string());
        }
        let done = line.starts_with("What to look at");
        lines.push(line);
        if done {
            break;
        }
    }
    let text = lines.join("\n");
    let http = http.unwrap_or_else(|| panic!("no URL in\n{text}"));
    let token = token.unwrap_or_else(|| panic!("no token in\n{text}"));
    assert!(
        text.contains("SYNACC0002 passed with its order and was forwarded"),
        "{text}"
    );
    let auth = format!("Bearer {token}");
    let get = |path: String| {
        let auth = auth.clone();
        async move {
            let r = request(http, "GET", &path, &[("Authorization", auth.as_str())], b"").await;
            assert_eq!(
                r.status,
                200,
                "{path}: {}",
                String::from_utf8_lossy(&r.body)
            );
            r.json()
        }
    };
    // SYNACC0001's prior, in the demo's hospital PACS, was found, moved and sent first.
    assert!(
        text.contains("SYNACC0001 (CT chest) was forwarded after 1 prior(s)"),
        "{text}"
    );
    let a = get("/api/v1/studies/SYNACC0001".into()).await;
    assert_eq!(a["state"], "forwarded");
    assert_eq!(a["decision"]["verdict"], "PASS");
    let prior = &a["priors"]["priors"][0];
    assert_eq!(
        (&prior["accession"], &prior["source"], &prior["sent_to"]),
        (
            &serde_json::json!("SYNACC0000"),
            &serde_json::json!("pacs:hospital"),
            &serde_json::json!(["rc1"])
        ),
        "{a}"
    );
    let b = get("/api/v1/studies/SYNACC0002".into()).await;
    assert_eq!(b["state"], "forwarded", "{b}");
    let kinds = common::timeline_kinds(&b);
    assert!(
        kinds.contains(&"held") && kinds.contains(&"forwarded"),
        "{kinds:?}"
    );
    // The month the demo's studies were received in (JST), not today's: the test may
    // cross a month boundary.
    let received = get("/api/v1/studies/SYNACC0004".into()).await["first_received_at"]
        .as_i64()
        .expect("first_received_at");
    let month = readgate::time::format_ms(received, 9 * 3600)[..7].to_string();
    let report = get(format!("/api/v1/reports/{month}")).await;
    let row = report["studies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["accession"] == "SYNACC0004")
        .unwrap_or_else(|| panic!("no SYNACC0004 in {report}"));
    assert_eq!(row["eligible"], false, "{row}");
    assert!(
        row["reasons"]
            .to_string()
            .contains("PART_TIME_READ_OUTSIDE"),
        "{row}"
    );

    // The first hour: the console's held list shows SYNACC0006 on first login, with one
    // short line per missing item, and it is released there with a justification.
    assert!(
        text.contains("SYNACC0006 (CT abdomen) is HELD and no order will come"),
        "{text}"
    );
    let waiting = get("/api/v1/studies/SYNACC0006".into()).await;
    assert_eq!(waiting["state"], "held", "{waiting}");
    let uid = waiting["study_uid"]
        .as_str()
        .expect("study_uid")
        .to_string();
    let password = admin_password.unwrap_or_else(|| panic!("no admin password in\n{text}"));
    let short = readgate::decide::reasons::find(readgate::decide::reasons::EXAM_PURPOSE_MISSING)
        .expect("catalogue")
        .short_ja;
    let script = common::repo_path("tests/browser/console_browser.py");
    let args: Vec<String> = vec![
        script.display().to_string(),
        "--url".into(),
        format!("http://{http}"),
        "--user".into(),
        "admin".into(),
        "--password".into(),
        password,
        "--study".into(),
        uid,
        "--expect".into(),
        "SYNACC0006".into(),
        "--expect".into(),
        short.into(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        common::run_ok(
            std::process::Command::new("python3").args(&args),
            "browser test of the demo",
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"ok\": true"), "{stdout}");
    let released = get("/api/v1/studies/SYNACC0006".into()).await;
    assert_eq!(released["state"], "forwarded", "{released}");
    assert!(
        common::timeline_kinds(&released).contains(&"released-override"),
        "{released}"
    );

    // Ctrl-C ends the demo cleanly before --exit-after.
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}
