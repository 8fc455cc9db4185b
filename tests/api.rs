//! The REST API under `/api/v1` against a live in-process `readgate serve`: studies come in
//! over DICOM, a test gate holds some; the API lists them with reasons, shows detail and the
//! queue, and admins release, reject and re-evaluate — with auth failures, bad input and
//! conflicts answered as `{error, field}`. Every operation of the OpenAPI document is
//! called and its responses checked against the documented schema.

mod common;

use common::http::{post_json, request, HttpResponse};
use common::*;
use readgate::decide::context::StudyContext;
use readgate::decide::{Decide, Decision, Verdict};
use readgate::model::{EventKind, StudyState};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const ADMIN: &str = "rg_test_admin_token_0123456789";
const VIEWER: &str = "rg_test_viewer_token_0123456789";
const BASE: &str = "1.2.826.0.1.3680043.10.5151";

/// Routes everything to rc1; holds accessions starting with ACC-HOLD.
struct TestGate;

impl Decide for TestGate {
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

fn http_config(metrics: bool) -> String {
    format!(
        r#"
[http]
listen = "127.0.0.1:0"
metrics = {metrics}
[[http.tokens]]
name = "pacs-admin"
token_sha256 = "{admin}"
role = "admin"
[[http.tokens]]
name = "ward-viewer"
token_sha256 = "{viewer}"
"#,
        admin = readgate::web::sha256_hex(ADMIN),
        viewer = readgate::web::sha256_hex(VIEWER),
    )
}

async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> HttpResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    request(addr, "GET", path, &headers, b"").await
}

fn expect(r: &HttpResponse, status: u16, what: &str) -> Value {
    assert_eq!(
        r.status,
        status,
        "{what}: {}",
        String::from_utf8_lossy(&r.body)
    );
    if r.header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        r.json()
    } else {
        Value::Null
    }
}

fn expect_error(r: &HttpResponse, status: u16, field: Option<&str>, what: &str) {
    let v = expect(r, status, what);
    assert!(
        v["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: no error text in {v}"
    );
    assert_eq!(v["field"].as_str(), field, "{what}: {v}");
}

struct Setup {
    _dir: tempfile::TempDir,
    _scp: StoreScp,
    rg: readgate::serve::Running,
    http: SocketAddr,
}

async fn setup(metrics: bool) -> Setup {
    let (dir, scp, mut cfg) = reading_site();
    cfg.extra = http_config(metrics);
    let rg = readgate::serve::start_with(cfg.parse(), Some(Arc::new(TestGate)))
        .await
        .unwrap();
    let http = rg.http_addr.expect("HTTP listener");
    let studies: Vec<(String, String)> = ["ACC-PASS", "ACC-HOLD1", "ACC-HOLD2", "ACC-HOLD3"]
        .iter()
        .enumerate()
        .map(|(i, acc)| (format!("{BASE}.{}", i + 1), acc.to_string()))
        .collect();
    send_accessions(cfg.dicom_port, &studies).await;
    let store = rg.store.clone();
    wait_until("1 forwarded, 3 held", Duration::from_secs(30), || {
        studies_in(&store, StudyState::Forwarded, 10) == 1
            && studies_in(&store, StudyState::Held, 10) == 3
    });
    Setup {
        _dir: dir,
        _scp: scp,
        rg,
        http,
    }
}

fn uid(n: usize) -> String {
    format!("{BASE}.{n}")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_lists_explains_and_acts_on_studies() {
    let s = setup(true).await;
    let http = s.http;

    // Auth: no token, a wrong token, a viewer acting.
    expect_error(
        &get(http, "/api/v1/studies", None).await,
        401,
        Some("authorization"),
        "no token",
    );
    expect_error(
        &get(http, "/api/v1/studies", Some("rg_wrong")).await,
        401,
        Some("authorization"),
        "wrong token",
    );
    let body = r#"{"by": "技師 山本", "justification": "臨床情報は電話で伝達済み"}"#;
    expect_error(
        &post_json(
            http,
            &format!("/api/v1/studies/{}/release", uid(2)),
            Some(VIEWER),
            body,
        )
        .await,
        403,
        Some("authorization"),
        "viewer releasing",
    );

    // Listing: held studies with reasons in both languages, counts by state.
    let v = expect(
        &get(http, "/api/v1/studies?state=held", Some(VIEWER)).await,
        200,
        "held list",
    );
    let studies = v["studies"].as_array().unwrap();
    assert_eq!(studies.len(), 3);
    let r = &studies[0]["reasons"][0];
    assert_eq!(r["code"], "EXAM_PURPOSE_MISSING");
    assert_eq!(r["clause"], "JRS-7.3.1");
    assert_eq!(r["message_ja"], "検査目的が記載されていません");
    assert_eq!(r["message_en"], "exam purpose missing");
    assert_eq!(studies[0]["destination"], "rc1");
    assert_eq!(studies[0]["facility"], "RC1");
    assert_eq!(v["counts"]["held"], 3);
    assert_eq!(v["counts"]["forwarded"], 1);
    let v = expect(
        &get(http, "/api/v1/studies?limit=2", Some(VIEWER)).await,
        200,
        "limit",
    );
    assert_eq!(v["studies"].as_array().unwrap().len(), 2);
    expect_error(
        &get(http, "/api/v1/studies?state=lost", Some(VIEWER)).await,
        422,
        Some("state"),
        "unknown state",
    );
    expect_error(
        &get(http, "/api/v1/studies?limit=0", Some(VIEWER)).await,
        422,
        Some("limit"),
        "bad limit",
    );

    // Detail: by UID or accession; timeline, instances, decision.
    let v = expect(
        &get(http, &format!("/api/v1/studies/{}", uid(1)), Some(VIEWER)).await,
        200,
        "detail",
    );
    assert_eq!(v["state"], "forwarded");
    assert_eq!(v["decision"]["verdict"], "PASS");
    // The priors the decision saw: the patient's other studies received here (the
    // synthetic instances share a patient), none from a PACS (none is configured).
    let priors = v["priors"]["priors"].as_array().expect("priors");
    assert!(!priors.is_empty(), "{v:#}");
    assert!(priors.iter().all(|p| p["source"] == "readgate"), "{v:#}");
    assert_eq!(v["priors"]["pacs"], serde_json::json!([]), "{v:#}");
    assert_eq!(v["instances"][0]["state"], "forwarded");
    assert_eq!(v["instances"][0]["last_status"], 0);
    let kinds = timeline_kinds(&v);
    assert!(kinds.contains(&"queued"), "{kinds:?}");
    let v = expect(
        &get(http, "/api/v1/studies/ACC-HOLD1", Some(VIEWER)).await,
        200,
        "detail by accession",
    );
    assert_eq!(v["study_uid"], uid(2).as_str());
    assert_eq!(v["decision"]["verdict"], "HELD");
    expect_error(
        &get(http, "/api/v1/studies/1.2.3.404", Some(VIEWER)).await,
        404,
        Some("uid"),
        "unknown study",
    );

    // Queue.
    let v = expect(
        &get(http, "/api/v1/queue", Some(VIEWER)).await,
        200,
        "queue",
    );
    let q = &v["destinations"][0];
    assert_eq!(q["destination"], "rc1");
    assert!(q["last_success_at"].as_i64().is_some(), "{v}");

    // Actions: bad bodies, conflicts, then a release that is forwarded.
    let release = |n: usize| format!("/api/v1/studies/{}/release", uid(n));
    expect_error(
        &post_json(http, &release(2), Some(ADMIN), "not json").await,
        400,
        Some("body"),
        "bad JSON",
    );
    expect_error(
        &post_json(http, &release(2), Some(ADMIN), r#"{"by": "x"}"#).await,
        422,
        Some("justification"),
        "no justification",
    );
    expect_error(
        &post_json(
            http,
            &release(2),
            Some(ADMIN),
            r#"{"by": 5, "justification": "y"}"#,
        )
        .await,
        400,
        Some("by"),
        "by not a string",
    );
    expect_error(
        &post_json(http, &release(1), Some(ADMIN), body).await,
        409,
        Some("state"),
        "releasing a forwarded study",
    );
    expect_error(
        &post_json(http, "/api/v1/studies/1.2.3.404/release", Some(ADMIN), body).await,
        404,
        Some("uid"),
        "releasing an unknown study",
    );
    let v = expect(
        &post_json(http, &release(2), Some(ADMIN), body).await,
        200,
        "release",
    );
    assert_eq!(v["verdict"], "RELEASED_OVERRIDE");
    let store = s.rg.store.clone();
    let u2 = uid(2);
    wait_until("released study forwarded", Duration::from_secs(30), || {
        store.find_study(&u2).unwrap().unwrap().state == StudyState::Forwarded
    });

    // Reject.
    let reject = format!("/api/v1/studies/{}/reject", uid(3));
    expect_error(
        &post_json(http, &reject, Some(ADMIN), r#"{"by": "医師 佐藤"}"#).await,
        422,
        Some("reason"),
        "reject without a reason",
    );
    let v = expect(
        &post_json(
            http,
            &reject,
            Some(ADMIN),
            r#"{"by": "医師 佐藤", "reason": "検査中止"}"#,
        )
        .await,
        200,
        "reject",
    );
    assert_eq!(v["state"], "rejected");
    expect_error(
        &post_json(
            http,
            &reject,
            Some(ADMIN),
            r#"{"by": "医師 佐藤", "reason": "again"}"#,
        )
        .await,
        409,
        Some("state"),
        "rejecting twice",
    );

    // Re-evaluate: the gate holds it again (no new context).
    let v = expect(
        &post_json(
            http,
            &format!("/api/v1/studies/{}/reevaluate", uid(4)),
            Some(ADMIN),
            "",
        )
        .await,
        202,
        "reevaluate",
    );
    assert_eq!(v["study_uid"], uid(4).as_str());
    let u4 = uid(4);
    wait_until(
        "re-evaluated and held again",
        Duration::from_secs(30),
        || {
            store
                .events_of(&u4)
                .unwrap()
                .iter()
                .filter(|e| e.kind == EventKind::Held)
                .count()
                >= 2
                && store.find_study(&u4).unwrap().unwrap().state == StudyState::Held
        },
    );
    expect_error(
        &post_json(
            http,
            &format!("/api/v1/studies/{}/reevaluate", uid(1)),
            Some(ADMIN),
            "",
        )
        .await,
        409,
        Some("state"),
        "re-evaluating a forwarded study",
    );
    expect_error(
        &post_json(
            http,
            &format!("/api/v1/studies/{}/retry", uid(1)),
            Some(ADMIN),
            "",
        )
        .await,
        409,
        Some("state"),
        "retrying a forwarded study",
    );

    // The audit trail has the actions, and verifies.
    let v = expect(
        &get(http, "/api/v1/audit?kind=study_overridden", Some(VIEWER)).await,
        200,
        "audit search",
    );
    let e = &v["entries"][0];
    assert_eq!(e["actor"], "rest:pacs-admin");
    assert_eq!(e["study_uid"], uid(2).as_str());
    let v = expect(
        &get(
            http,
            &format!("/api/v1/audit?study={}", uid(3)),
            Some(VIEWER),
        )
        .await,
        200,
        "audit by study",
    );
    assert!(v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "study_rejected"));
    // Operator entries carry the accession too (finding A3): auditors search by it.
    let v = expect(
        &get(http, "/api/v1/audit?study=ACC-HOLD2", Some(VIEWER)).await,
        200,
        "audit by accession",
    );
    assert!(
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "study_rejected" && e["accession"] == "ACC-HOLD2"),
        "{v}"
    );
    let v = expect(
        &get(http, "/api/v1/audit/verify", Some(VIEWER)).await,
        200,
        "verify",
    );
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["entries"].as_u64().unwrap() > 5);

    // Metrics (open, no token).
    let r = get(http, "/metrics", None).await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body.clone()).unwrap();
    for line in [
        "readgate_studies{state=\"held\"} 1",
        "readgate_studies{state=\"forwarded\"} 2",
        "readgate_studies{state=\"rejected\"} 1",
        "readgate_held_studies{reason=\"EXAM_PURPOSE_MISSING\",clause=\"JRS-7.3.1\"} 1",
        "readgate_queue_studies{destination=\"rc1\"} 0",
        "readgate_forward_failures_total{destination=\"rc1\"} 0",
        "# TYPE readgate_http_request_duration_seconds histogram",
        "readgate_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/studies\",status=\"2xx\"}",
        "readgate_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/v1/studies/{uid}/release\",status=\"4xx\",le=\"+Inf\"}",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    let bytes: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("readgate_bytes_received_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(bytes > 4 * 100, "{bytes}");
    // Process-wide counters: other tests in this binary count too.
    let instances: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("readgate_instances_received_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(instances >= 4, "{instances}");

    s.rg.stop().await;
}

/// Resolves `$ref` (local only).
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let path = r.trim_start_matches("#/");
            let mut v = doc;
            for p in path.split('/') {
                v = &v[p];
            }
            assert!(!v.is_null(), "dangling $ref {r}");
            resolve(doc, v)
        }
        None => schema,
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "null" => v.is_null(),
        other => panic!("unknown type {other} in the document"),
    }
}

/// A small structural checker: `$ref`, `allOf`, `type` (also lists), `required`,
/// `properties`, `items`, `enum`. Returns the problems found.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str, problems: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            check(doc, s, v, at, problems);
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() && !types.iter().any(|t| type_ok(t, v)) {
        problems.push(format!("{at}: expected {types:?}, got {v}"));
        return;
    }
    if let Some(e) = schema["enum"].as_array() {
        if !e.contains(v) {
            problems.push(format!("{at}: {v} not in {e:?}"));
        }
    }
    if let Value::Object(m) = v {
        for r in schema["required"].as_array().into_iter().flatten() {
            let r = r.as_str().unwrap();
            if !m.contains_key(r) {
                problems.push(format!("{at}: required property {r} missing"));
            }
        }
        if let Some(props) = schema["properties"].as_object() {
            for (k, s) in props {
                if let Some(x) = m.get(k) {
                    check(doc, s, x, &format!("{at}.{k}"), problems);
                }
            }
        }
        if let Some(s) = schema.get("additionalProperties").filter(|s| s.is_object()) {
            for (k, x) in m {
                check(doc, s, x, &format!("{at}.{k}"), problems);
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (v, schema.get("items")) {
        for (i, x) in items.iter().enumerate() {
            check(doc, s, x, &format!("{at}[{i}]"), problems);
        }
    }
}

/// Checks a response against the operation's documented responses.
fn conforms(doc: &Value, op: &Value, r: &HttpResponse, what: &str) {
    let status = r.status.to_string();
    let resp = &op["responses"][&status];
    assert!(
        resp.is_object(),
        "{what}: status {status} is not documented: {}",
        String::from_utf8_lossy(&r.body)
    );
    let ct = r
        .header("content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let media = &resp["content"][&ct];
    assert!(
        media.is_object(),
        "{what}: content type {ct:?} not documented for {status}"
    );
    if ct == "application/json" {
        let mut problems = Vec::new();
        check(doc, &media["schema"], &r.json(), "$", &mut problems);
        assert!(problems.is_empty(), "{what} ({status}): {problems:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_operation_answers_as_documented() {
    let s = setup(false).await;
    assert_eq!(
        get(s.http, "/metrics", None).await.status,
        404,
        "metrics off"
    );
    let http = s.http;
    let r = get(http, "/api/v1/openapi.json", None).await;
    let doc = expect(&r, 200, "openapi.json");
    assert_eq!(doc["openapi"], "3.1.0");
    let month = readgate::time::format_ms(readgate::time::now_ms(), 9 * 3600)[..7].to_string();
    let admin = format!("Bearer {ADMIN}");
    let mut called = 0;
    // Actions first on the studies they apply to; reads after.
    let order = |p: &str| if p.contains("/studies/{uid}/") { 0 } else { 1 };
    let mut paths: Vec<(&String, &Value)> = doc["paths"].as_object().unwrap().iter().collect();
    paths.sort_by_key(|(p, _)| order(p));
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            let (uid, body) = match id {
                "releaseStudy" => (
                    uid(2),
                    json!({"by": "技師", "justification": "電話で確認済み"}),
                ),
                "rejectStudy" => (uid(3), json!({"by": "医師", "reason": "検査中止"})),
                "reevaluateStudy" => (uid(4), Value::Null),
                "retryStudy" => (uid(1), Value::Null),
                "postReadEvent" => (
                    uid(1),
                    json!({"study_uid": uid(1), "reader_id": "1001", "action": "opened",
                    "at": readgate::time::format_ms(readgate::time::now_ms(), 9 * 3600)}),
                ),
                _ => (uid(1), Value::Null),
            };
            let target = path.replace("{uid}", &uid).replace("{month}", &month);
            let body = if body.is_null() {
                String::new()
            } else {
                body.to_string()
            };
            let headers = [
                ("Authorization", admin.as_str()),
                ("Content-Type", "application/json"),
            ];
            let r = request(
                http,
                &method.to_uppercase(),
                &target,
                &headers,
                body.as_bytes(),
            )
            .await;
            let what = format!("{id} {method} {target}");
            conforms(&doc, op, &r, &what);
            assert!(
                r.status < 300 || (id == "retryStudy" && r.status == 409),
                "{what}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            called += 1;
            // Without a token: 401 as documented.
            if op.get("security").is_some() {
                let r = request(http, &method.to_uppercase(), &target, &[], body.as_bytes()).await;
                assert_eq!(r.status, 401, "{what} without a token");
                conforms(&doc, op, &r, &format!("{what} without a token"));
            }
            // An unknown study: 404 as documented.
            if path.contains("{uid}") {
                let t = path.replace("{uid}", "1.2.3.404");
                let r = request(http, &method.to_uppercase(), &t, &headers, body.as_bytes()).await;
                assert_eq!(r.status, 404, "{what} on an unknown study");
                conforms(&doc, op, &r, &format!("{what} on an unknown study"));
            }
        }
    }
    // Every route of the API is documented, and nothing else is: the document's
    // operations against the `/api/v1` routes the router is built with.
    assert_eq!(called, 13, "operations in the document");
    let documented: std::collections::BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    assert_eq!(
        documented,
        api_routes(),
        "documented operations against the router"
    );
    for format in ["csv", "html"] {
        let r = request(
            http,
            "GET",
            &format!("/api/v1/reports/{month}?format={format}"),
            &[("Authorization", admin.as_str())],
            b"",
        )
        .await;
        let op = &doc["paths"]["/api/v1/reports/{month}"]["get"];
        conforms(&doc, op, &r, format);
        assert_eq!(r.status, 200);
    }
    let r = request(
        http,
        "GET",
        "/api/v1/reports/2026-13",
        &[("Authorization", admin.as_str())],
        b"",
    )
    .await;
    expect_error(&r, 422, Some("month"), "bad month");
    s.rg.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_is_served_over_tls_with_a_configured_certificate() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let scp_port = free_port();
    let mut cfg = TestConfig::new(dir.path(), scp_port);
    cfg.extra = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n[[http.tokens]]\nname = \"v\"\ntoken_sha256 = \"{}\"\n",
        cert_path.display(),
        key_path.display(),
        readgate::web::sha256_hex(VIEWER)
    );
    let rg = readgate::serve::start(cfg.parse()).await.unwrap();
    let http = rg.http_addr.unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let https_get = |path: &'static str| {
        let connector = connector.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(http).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {VIEWER}\r\n\r\n"
            );
            tls.write_all(req.as_bytes()).await.unwrap();
            let mut buf = Vec::new();
            let _ = tls.read_to_end(&mut buf).await;
            String::from_utf8_lossy(&buf).into_owned()
        }
    };
    let r = https_get("/healthz").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = https_get("/api/v1/studies").await;
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("\"studies\""),
        "{r}"
    );
    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut s = tokio::net::TcpStream::connect(http).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(!buf.starts_with(b"HTTP/1.1 200"));
    rg.stop().await;
}

/// Every `/api/v1` route (and `/healthz`) the router is built with, as (METHOD, path): read from the
/// `.route("/api/v1/…", get(…))` calls in `src/web/`, so a route added without its
/// OpenAPI entry is found.
fn api_routes() -> std::collections::BTreeSet<(String, String)> {
    let mut routes = std::collections::BTreeSet::new();
    let mut files = vec![repo_path("src/web")];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for call in text.split(".route(\"").skip(1) {
            let Some((route, rest)) = call.split_once('"') else {
                continue;
            };
            // The API and the health check; the console and /metrics are not in it.
            if !(route.starts_with("/api/v1") || route == "/healthz") {
                continue;
            }
            let handlers = rest.split(')').next().unwrap_or("");
            for method in ["get", "post", "put", "delete", "patch"] {
                if handlers.contains(&format!("{method}(")) {
                    routes.insert((method.to_uppercase(), route.to_string()));
                }
            }
        }
    }
    assert!(routes.len() >= 13, "{routes:?}");
    routes
}
