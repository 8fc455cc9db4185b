//! Every audit kind `docs/audit.md` lists is written by the path that should write it.
//!
//! One live in-process `readgate serve` (DCMTK storescp as the reading site, HL7, the API
//! and the console) goes through a day: studies arrive and are held, operators override,
//! reject, re-evaluate and retry, an order releases a study, readers report over REST and
//! HL7, a report is generated, the trail is searched, tampered with and verified, and the
//! gateway stops. Then the trail must hold each kind of the documented table, written by
//! the documented actor — and the table must name every kind readgate has.

mod common;

use common::http::{post_json, request, WebClient};
use common::*;
use readgate::decide::context::StudyContext;
use readgate::decide::{Decide, Decision, Route, Verdict};
use readgate::model::{AuditKind, StudyState};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const ADMIN: &str = "rg_kinds_admin_token_0123456789";
const BASE: &str = "1.2.826.0.1.3680043.10.5152";

/// Holds accessions starting with ACC-HOLD until an order gives them an exam purpose;
/// routes ACC-FAIL to rc2 (nobody listens there); everything else passes to rc1.
struct Gate;

impl Decide for Gate {
    fn decide(&self, study: &StudyContext) -> Decision {
        let accession = study.accession.as_deref().unwrap_or("");
        if accession == "ACC-FAIL" {
            let mut d = rc1_decision("test", Verdict::Pass, None);
            d.route = Some(Route {
                destination: "rc2".into(),
                facility: "RC2".into(),
                because: "test".into(),
            });
            return d;
        }
        if accession.starts_with("ACC-HOLD") && study.exam_purpose.is_empty() {
            rc1_decision("test", Verdict::Hold, Some(PURPOSE_MISSING))
        } else {
            rc1_decision("test", Verdict::Pass, None)
        }
    }
}

/// The kinds in `docs/audit.md`'s table of kinds, with the actor column's text.
fn documented_kinds() -> BTreeMap<String, String> {
    let doc = std::fs::read_to_string(repo_path("docs/audit.md")).expect("docs/audit.md");
    let table = doc
        .split("| kind | when | actor (who) |")
        .nth(1)
        .expect("the table of kinds in docs/audit.md");
    let mut kinds = BTreeMap::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split(" | ").collect();
        for kind in cells[0].split(',') {
            let kind = kind.trim_matches(|c: char| c == '|' || c == ' ' || c == '`');
            kinds.insert(kind.to_string(), cells[cells.len() - 1].to_string());
        }
    }
    kinds
}

/// Whether an actor is the one the docs name for a kind.
type ActorRule = fn(&str) -> bool;

fn uid(n: usize) -> String {
    format!("{BASE}.{n}")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_audit_kind_is_written_by_its_path() {
    // The documented table names every kind readgate has, and nothing else.
    let documented = documented_kinds();
    let all: Vec<String> = AuditKind::ALL.iter().map(|k| k.to_string()).collect();
    assert_eq!(
        documented.keys().cloned().collect::<Vec<_>>(),
        {
            let mut a = all.clone();
            a.sort();
            a
        },
        "docs/audit.md's table of kinds against AuditKind"
    );

    let (_dir, scp, mut cfg) = reading_site();
    let password = "kinds-password";
    let rg = start(&mut cfg, password).await;
    let http = rg.http_addr.expect("HTTP");
    let hl7 = rg.hl7_addr.expect("HL7");
    let store = rg.store.clone();

    // Studies arrive: one passes, four are held, one cannot be delivered.
    let accessions = [
        "ACC-PASS",
        "ACC-HOLD1",
        "ACC-HOLD2",
        "ACC-HOLD3",
        "ACC-HOLD4",
        "ACC-FAIL",
    ];
    let studies: Vec<(String, String)> = accessions
        .iter()
        .enumerate()
        .map(|(i, a)| (uid(i + 1), a.to_string()))
        .collect();
    send_accessions(cfg.dicom_port, &studies).await;
    wait_until("arrivals decided", Duration::from_secs(60), || {
        studies_in(&store, StudyState::Forwarded, 10) == 1
            && studies_in(&store, StudyState::Held, 10) == 4
            && studies_in(&store, StudyState::Failed, 10) == 1
    });

    // An operator signs in to the console and out again.
    let mut web = WebClient::new(http);
    let r = web.login("sato", password).await;
    assert_eq!(r.status, 303, "login");
    let csrf = web.csrf().await;
    let r = web.post_form("/logout", &[("csrf", &csrf)]).await;
    assert!(r.status < 400, "logout: {}", r.status);

    // Operators act over the API: override, reject, re-evaluate, retry.
    let act = |n: usize, action: &str, body: &'static str| {
        let path = format!("/api/v1/studies/{}/{action}", uid(n));
        async move {
            let r = post_json(http, &path, Some(ADMIN), body).await;
            assert!(
                r.status < 300,
                "{path}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
    };
    act(
        2,
        "release",
        r#"{"by": "dr.sato", "justification": "stroke protocol"}"#,
    )
    .await;
    act(
        3,
        "reject",
        r#"{"by": "dr.sato", "reason": "wrong patient"}"#,
    )
    .await;
    act(4, "reevaluate", "").await;
    act(6, "retry", "").await;

    // The order for ACC-HOLD4 gives it an exam purpose: released by the gate.
    let ack = common::hl7::send_hl7(hl7, &hold4_order()).await;
    assert!(ack.contains("MSA|AA"), "{ack}");
    wait_until("ACC-HOLD4 released", Duration::from_secs(30), || {
        studies_in(&store, StudyState::Held, 10) <= 1
    });

    // Readers report: over REST, and over HL7 (a preliminary and another reader's final).
    let at = readgate::time::format_rfc3339_ms(readgate::time::now_ms());
    let event = serde_json::json!({"study_uid": uid(1), "reader_id": "1001",
        "action": "opened", "at": at})
    .to_string();
    let r = post_json(http, "/api/v1/read-events", Some(ADMIN), &event).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    for sample in ["oru_r01_prelim.hl7", "oru_r01_final.hl7"] {
        let ack = common::hl7::send_hl7(hl7, common::hl7::sample(sample)).await;
        assert!(ack.contains("MSA|AA"), "{sample}: {ack}");
    }

    // A report is generated; the trail is searched; then tampered with and verified.
    let month = &readgate::time::format_rfc3339_ms(readgate::time::now_ms())[..7];
    let auth = format!("Bearer {ADMIN}");
    let headers = [("Authorization", auth.as_str())];
    let r = request(
        http,
        "GET",
        &format!("/api/v1/reports/{month}"),
        &headers,
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = request(http, "GET", "/api/v1/audit?kind=study_held", &headers, b"").await;
    assert_eq!(r.status, 200);
    common::tamper_audit_detail(&cfg.database(), 3, r#"{"tampered":true}"#);
    let r = request(http, "GET", "/api/v1/audit/verify", &headers, b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["ok"], false);
    wait_until("the retry fails again", Duration::from_secs(30), || {
        studies_in(&store, StudyState::Failed, 10) == 1
    });
    rg.stop().await;
    drop(scp);

    // The trail holds each documented kind, written by the documented actor.
    let log = readgate::audit::AuditLog::open_read_only_at(&cfg.parse().database()).expect("trail");
    let entries = log
        .search(&readgate::audit::Query {
            limit: 10_000,
            ..Default::default()
        })
        .expect("entries");
    let mut actors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in &entries {
        actors
            .entry(e.kind.clone())
            .or_default()
            .push(e.actor.clone());
    }
    let expected_actor: &[(&str, ActorRule)] = &[
        ("application_start", |a| a == "system"),
        ("application_stop", |a| a == "system"),
        ("config_loaded", |a| a == "system"),
        ("operator_login", |a| a == "web:sato"),
        ("operator_logout", |a| a == "web:sato"),
        ("instance_received", |a| a == "CT01"),
        ("study_held", |a| a == "system"),
        ("study_released", |a| a == "system"),
        ("study_overridden", |a| {
            a.contains("dr.sato") || a == "rest:pacs-admin"
        }),
        ("study_rejected", |a| {
            a.contains("dr.sato") || a == "rest:pacs-admin"
        }),
        ("study_reevaluated", |a| a.starts_with("rest:pacs-admin")),
        ("study_retried", |a| a.starts_with("rest:pacs-admin")),
        ("study_forwarded", |a| a == "RC1PACS"),
        ("read_event", |a| {
            a.starts_with("rest:pacs-admin/") || a.starts_with("hl7:")
        }),
        ("confirmation", |a| a == "1001"),
        ("report_generated", |a| a == "rest:pacs-admin"),
        ("query", |a| a == "rest:pacs-admin"),
        ("security_alert", |a| a == "rest:pacs-admin"),
    ];
    // Kinds whose path needs a PACS, a reload or a command run beside the gateway:
    // written, with their actor checked, by these tests.
    let elsewhere: &[(&str, &str)] = &[
        (
            "prior_sent",
            "tests/priors.rs chosen_priors_are_sent_first_tagged_and_only_once",
        ),
        (
            "config_rejected",
            "tests/reload.rs reload_applies_peers_and_routes_without_dropping_transfers",
        ),
        (
            "backup_taken",
            "tests/backup.rs backup_while_receiving_restores_the_same_studies",
        ),
        (
            "restored",
            "tests/backup.rs backup_while_receiving_restores_the_same_studies",
        ),
        (
            "schema_migrated",
            "tests/migrate.rs migrate_command_then_serve_on_a_database_of_an_older_readgate",
        ),
        (
            "database_copied",
            "tests/db_copy.rs a_populated_sqlite_gateway_moves_to_postgresql_with_its_history",
        ),
        (
            "procedure_step_created",
            "tests/mpps.rs a_completed_step_with_every_instance_in_completes_its_study_at_once",
        ),
        (
            "procedure_step_updated",
            "tests/mpps.rs a_completed_step_with_every_instance_in_completes_its_study_at_once",
        ),
    ];
    let mut missing = Vec::new();
    for kind in documented.keys() {
        if elsewhere.iter().any(|(k, _)| k == kind) {
            continue;
        }
        let Some(written) = actors.get(kind) else {
            missing.push(kind.clone());
            continue;
        };
        let check = expected_actor
            .iter()
            .find(|(k, _)| k == kind)
            .unwrap_or_else(|| panic!("no actor rule for {kind}"))
            .1;
        assert!(
            written.iter().all(|a| check(a)),
            "{kind} written by {written:?}; docs say {}",
            documented[kind]
        );
    }
    assert!(missing.is_empty(), "kinds never written: {missing:?}");
    let reads = &actors["read_event"];
    assert!(reads.iter().any(|a| a.starts_with("rest:")), "{reads:?}");
    assert!(reads.iter().any(|a| a.starts_with("hl7:")), "{reads:?}");
}

/// Starts the gateway of these tests: HL7, HTTP with the admin token and user `sato`
/// (`password`), and a second destination rc2 where nobody listens (2 attempts).
async fn start(cfg: &mut TestConfig, password: &str) -> readgate::serve::Running {
    cfg.hl7_port = Some(free_port());
    cfg.hl7_default_charset = "utf8".into();
    cfg.extra = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[[http.tokens]]\nname = \"pacs-admin\"\n\
         token_sha256 = \"{}\"\nrole = \"admin\"\n[[http.users]]\nname = \"sato\"\n\
         role = \"admin\"\npassword_hash = \"{}\"\n\n\
         [[destinations]]\nid = \"rc2\"\nfacility = \"RC2\"\nae_title = \"RC2PACS\"\n\
         host = \"127.0.0.1\"\nport = {}\n",
        readgate::web::sha256_hex(ADMIN),
        readgate::web::auth::hash_password(password).expect("hash"),
        free_port(),
    );
    let mut config = cfg.parse();
    config.forward.max_attempts = 2;
    readgate::serve::start_with(config, Some(Arc::new(Gate)))
        .await
        .expect("starts")
}

/// An operator action or search whose audit entry cannot be written does not happen:
/// release, reject and an audit search answer 503 and change nothing; once the trail
/// can be written again, the release goes through.
#[tokio::test(flavor = "multi_thread")]
async fn no_action_without_its_audit_entry() {
    let (dir, _scp, mut cfg) = reading_site();
    let rg = start(&mut cfg, "unused-password").await;
    let http = rg.http_addr.expect("HTTP");
    let store = rg.store.clone();
    send_accessions(cfg.dicom_port, &[(uid(1), "ACC-HOLD1".into())]).await;
    wait_until("held", Duration::from_secs(30), || {
        studies_in(&store, StudyState::Held, 10) == 1
    });
    let db = cfg.database();
    common::refuse_audit_appends(&db);
    let release = format!("/api/v1/studies/{}/release", uid(1));
    let reject = format!("/api/v1/studies/{}/reject", uid(1));
    let body = r#"{"by": "dr.sato", "justification": "stroke", "reason": "x"}"#;
    for path in [&release, &reject] {
        let r = post_json(http, path, Some(ADMIN), body).await;
        assert_eq!(
            r.status,
            503,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let auth = format!("Bearer {ADMIN}");
    let r = request(
        http,
        "GET",
        "/api/v1/audit?kind=query",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 503, "an unaudited search answered");
    assert_eq!(
        studies_in(&store, StudyState::Held, 10),
        1,
        "changed without an entry"
    );
    // No report is given out whose entry cannot be written: REST and CLI.
    let month = readgate::time::format_ms(readgate::time::now_ms(), 9 * 3600)[..7].to_string();
    let r = request(
        http,
        "GET",
        &format!("/api/v1/reports/{month}"),
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 503, "an unaudited report was given out");
    let out = dir.path().join("report.json");
    let report = common::process::readgate_bin()
        .args(["report", "--config"])
        .arg(cfg.write())
        .args(["--month", &month, "--out"])
        .arg(&out)
        .output()
        .expect("readgate report");
    let err = String::from_utf8_lossy(&report.stderr);
    assert!(
        !report.status.success() && err.contains("no report was written"),
        "{err}"
    );
    assert!(!out.exists(), "a report was given out without its entry");
    let stdout = common::process::readgate_bin()
        .args(["report", "--config"])
        .arg(cfg.write())
        .args(["--month", &month])
        .output()
        .expect("readgate report");
    assert!(!stdout.status.success() && stdout.stdout.is_empty());
    common::allow_audit_appends(&db);
    let r = post_json(http, &release, Some(ADMIN), body).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    wait_until("forwarded", Duration::from_secs(30), || {
        studies_in(&store, StudyState::Forwarded, 10) == 1
    });
    rg.stop().await;
}

/// An ORM^O01 for ACC-HOLD4 whose OBR-31 (reason for study) gives the exam purpose.
fn hold4_order() -> String {
    let mut obr = vec![""; 32];
    obr[0] = "OBR";
    obr[1] = "1";
    obr[2] = "ACC-HOLD4";
    obr[4] = "CT^CT chest";
    obr[18] = "ACC-HOLD4";
    obr[31] = "^rule out pulmonary embolism";
    format!(
        "MSH|^~\\&|RIS|HOSP|READGATE|RAD|20260601090000||ORM^O01|K-2|P|2.5.1\r\
         PID|||SYN0001\rORC|NW|ACC-HOLD4\r{}\r",
        obr.join("|")
    )
}
