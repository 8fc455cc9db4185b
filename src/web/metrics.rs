//! `GET /metrics`: Prometheus text exposition, open when `[http] metrics = true` (404
//! otherwise). Counters from [`crate::metrics`]; studies by state, held studies by reason
//! and queue depth per destination from the store at scrape time.

use super::WebState;
use crate::metrics as m;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub fn routes() -> Router<Arc<WebState>> {
    Router::new().route("/metrics", get(serve))
}

/// Middleware: times every request into the latency histogram (by route template).
pub async fn track(req: Request, next: Next) -> Response {
    let start = std::time::Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let resp = next.run(req).await;
    m::http_request(
        &method,
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn serve(State(state): State<Arc<WebState>>) -> Response {
    if !state.metrics {
        return (
            StatusCode::NOT_FOUND,
            "metrics are off ([http] metrics = false)\n",
        )
            .into_response();
    }
    let store = state.store.clone();
    let destinations = state.destinations();
    let body = tokio::task::spawn_blocking(move || render(&store, &destinations)).await;
    match body {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "/metrics: the store could not be read");
            (StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n").into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "/metrics: the task failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n").into_response()
        }
    }
}

fn render(
    store: &crate::store::Store,
    destinations: &[String],
) -> Result<String, crate::store::StoreError> {
    let mut o = String::new();
    let _ = writeln!(o, "# HELP readgate_instances_received_total DICOM instances stored (answered 0000) since start.\n# TYPE readgate_instances_received_total counter");
    let _ = writeln!(
        o,
        "readgate_instances_received_total {}",
        m::INSTANCES_RECEIVED.load(Ordering::Relaxed)
    );
    let _ = writeln!(o, "# HELP readgate_bytes_received_total Bytes of DICOM data sets stored since start.\n# TYPE readgate_bytes_received_total counter");
    let _ = writeln!(
        o,
        "readgate_bytes_received_total {}",
        m::BYTES_RECEIVED.load(Ordering::Relaxed)
    );

    if let Some(node) = m::node() {
        // Several nodes on one database: each serves its own /metrics. The counters are
        // this node's; the studies, held and queue gauges are the shared database's.
        let _ = writeln!(o, "# HELP readgate_node This node (gateway.id): counters on this page are its own; studies, held and queue gauges are the whole database's.\n# TYPE readgate_node gauge");
        let _ = writeln!(
            o,
            "readgate_node{{node=\"{}\",version=\"{}\"}} 1",
            label(&node),
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(o, "# HELP readgate_node_runs_timers 1 while this node runs the cluster's timers (study completion, re-evaluation, audit shipping).\n# TYPE readgate_node_runs_timers gauge");
        let _ = writeln!(
            o,
            "readgate_node_runs_timers {}",
            u8::from(m::RUNS_TIMERS_UNTIL.load(Ordering::Relaxed) > crate::time::now_ms())
        );
        let leases = store
            .nodes(crate::time::now_ms())?
            .into_iter()
            .find(|n| n.id == node)
            .map_or(0, |n| n.leases);
        let _ = writeln!(o, "# HELP readgate_node_forwarding_leases Studies whose forwarding this node holds now.\n# TYPE readgate_node_forwarding_leases gauge");
        let _ = writeln!(o, "readgate_node_forwarding_leases {leases}");
    }
    let _ = writeln!(
        o,
        "# HELP readgate_studies Studies by state.\n# TYPE readgate_studies gauge"
    );
    let counts: BTreeMap<crate::model::StudyState, i64> =
        store.count_by_state()?.into_iter().collect();
    for s in crate::model::StudyState::ALL {
        let _ = writeln!(
            o,
            "readgate_studies{{state=\"{s}\"}} {}",
            counts.get(s).copied().unwrap_or(0)
        );
    }

    let mut held: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in store.list_studies(Some(crate::model::StudyState::Held), 100_000)? {
        let reasons: Vec<serde_json::Value> = r
            .reasons
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default();
        for x in reasons {
            let code = x["code"].as_str().unwrap_or("UNKNOWN").to_string();
            let clause = x["clause"].as_str().unwrap_or("").to_string();
            *held.entry((code, clause)).or_default() += 1;
        }
    }
    let mut depth: BTreeMap<String, (u64, u64)> =
        destinations.iter().map(|d| (d.clone(), (0, 0))).collect();
    for (d, studies, instances, _) in store.destination_stats()? {
        depth.insert(d, (studies.max(0) as u64, instances.max(0) as u64));
    }
    let _ = writeln!(o, "# HELP readgate_held_studies Held studies by reason (a study with two reasons counts under both).\n# TYPE readgate_held_studies gauge");
    for ((code, clause), n) in &held {
        let _ = writeln!(
            o,
            "readgate_held_studies{{reason=\"{}\",clause=\"{}\"}} {n}",
            label(code),
            label(clause)
        );
    }
    let _ = writeln!(o, "# HELP readgate_queue_studies Studies queued per destination.\n# TYPE readgate_queue_studies gauge");
    for (d, (s, _)) in &depth {
        let _ = writeln!(
            o,
            "readgate_queue_studies{{destination=\"{}\"}} {s}",
            label(d)
        );
    }
    let _ = writeln!(o, "# HELP readgate_queue_instances Instances waiting per destination.\n# TYPE readgate_queue_instances gauge");
    for (d, (_, i)) in &depth {
        let _ = writeln!(
            o,
            "readgate_queue_instances{{destination=\"{}\"}} {i}",
            label(d)
        );
    }
    let _ = writeln!(o, "# HELP readgate_forward_failures_total Failed forwarding attempts (per study in the batch) since start.\n# TYPE readgate_forward_failures_total counter");
    let failures = m::forward_failures();
    for d in destinations {
        let _ = writeln!(
            o,
            "readgate_forward_failures_total{{destination=\"{}\"}} {}",
            label(d),
            failures.get(d).copied().unwrap_or(0)
        );
    }
    for (d, n) in failures.iter().filter(|(d, _)| !destinations.contains(d)) {
        let _ = writeln!(
            o,
            "readgate_forward_failures_total{{destination=\"{}\"}} {n}",
            label(d)
        );
    }
    let lookups = m::pacs_lookups();
    let _ = writeln!(o, "# HELP readgate_pacs_lookups_total Patients' histories asked of each [[pacs]] since start (one per patient ID), by outcome.\n# TYPE readgate_pacs_lookups_total counter");
    for ((p, outcome), (n, _)) in &lookups {
        let _ = writeln!(
            o,
            "readgate_pacs_lookups_total{{pacs=\"{}\",outcome=\"{outcome}\"}} {n}",
            label(p)
        );
    }
    let _ = writeln!(o, "# HELP readgate_pacs_lookup_seconds_total Time spent asking each [[pacs]] (C-FIND at STUDY, SERIES and IMAGE level) since start.\n# TYPE readgate_pacs_lookup_seconds_total counter");
    let mut seconds: BTreeMap<&str, f64> = BTreeMap::new();
    for ((p, _), (_, secs)) in &lookups {
        *seconds.entry(p.as_str()).or_default() += secs;
    }
    for (p, secs) in seconds {
        let _ = writeln!(
            o,
            "readgate_pacs_lookup_seconds_total{{pacs=\"{}\"}} {secs:.3}",
            label(p)
        );
    }
    let retrieves = m::pacs_retrieves();
    let _ = writeln!(o, "# HELP readgate_pacs_retrieves_total Prior studies retrieved (C-GET) from each [[pacs]] to send with a study, by outcome.\n# TYPE readgate_pacs_retrieves_total counter");
    for ((p, outcome), (n, _)) in &retrieves {
        let _ = writeln!(
            o,
            "readgate_pacs_retrieves_total{{pacs=\"{}\",outcome=\"{outcome}\"}} {n}",
            label(p)
        );
    }
    let _ = writeln!(o, "# HELP readgate_pacs_retrieved_bytes_total Bytes of prior studies retrieved from each [[pacs]].\n# TYPE readgate_pacs_retrieved_bytes_total counter");
    let mut bytes: BTreeMap<&str, u64> = BTreeMap::new();
    for ((p, _), (_, b)) in &retrieves {
        *bytes.entry(p.as_str()).or_default() += b;
    }
    for (p, b) in bytes {
        let _ = writeln!(
            o,
            "readgate_pacs_retrieved_bytes_total{{pacs=\"{}\"}} {b}",
            label(p)
        );
    }
    let sent = m::priors_sent();
    let _ = writeln!(o, "# HELP readgate_priors_sent_total Prior studies sent to each destination with a study.\n# TYPE readgate_priors_sent_total counter");
    for (d, (studies, _)) in &sent {
        let _ = writeln!(
            o,
            "readgate_priors_sent_total{{destination=\"{}\"}} {studies}",
            label(d)
        );
    }
    let _ = writeln!(o, "# HELP readgate_prior_instances_sent_total Instances of prior studies sent to each destination.\n# TYPE readgate_prior_instances_sent_total counter");
    for (d, (_, instances)) in &sent {
        let _ = writeln!(
            o,
            "readgate_prior_instances_sent_total{{destination=\"{}\"}} {instances}",
            label(d)
        );
    }
    let _ = writeln!(o, "# HELP readgate_hl7_messages_total HL7 messages received since start, by type and ACK code.\n# TYPE readgate_hl7_messages_total counter");
    for ((t, a), n) in m::hl7_messages() {
        let _ = writeln!(
            o,
            "readgate_hl7_messages_total{{type=\"{}\",ack=\"{}\"}} {n}",
            label(&t),
            label(&a)
        );
    }
    let _ = writeln!(o, "# HELP readgate_http_request_duration_seconds HTTP request latency.\n# TYPE readgate_http_request_duration_seconds histogram");
    for ((method, route, status), h) in m::http_requests() {
        let l = format!(
            "method=\"{}\",route=\"{}\",status=\"{}\"",
            label(&method),
            label(&route),
            status
        );
        histogram(&mut o, "readgate_http_request_duration_seconds", &l, &h);
    }
    let _ = writeln!(o, "# HELP readgate_time_to_reader_seconds From a study's last instance received to its last instance acknowledged by the destination.\n# TYPE readgate_time_to_reader_seconds histogram");
    for (destination, h) in m::times_to_reader() {
        let l = format!("destination=\"{}\"", label(&destination));
        histogram(&mut o, "readgate_time_to_reader_seconds", &l, &h);
    }
    Ok(o)
}

/// One histogram's series (`_bucket`, `_sum`, `_count`) with the labels `l`.
fn histogram(o: &mut String, name: &str, l: &str, h: &m::Histogram) {
    for (b, n) in h.bounds.iter().zip(&h.buckets) {
        let _ = writeln!(o, "{name}_bucket{{{l},le=\"{b}\"}} {n}");
    }
    let _ = writeln!(o, "{name}_bucket{{{l},le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(o, "{name}_sum{{{l}}} {}", h.sum);
    let _ = writeln!(o, "{name}_count{{{l}}} {}", h.count);
}
