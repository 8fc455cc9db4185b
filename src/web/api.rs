//! The REST API under `/api/v1`: studies with state and reasons, study detail with its
//! timeline, the forwarding queue, operator actions (release, reject, re-evaluate, retry)
//! and the audit trail. Reads need a `viewer` or `admin` token; actions need `admin`.
//! Every action lands in the audit trail and wakes the pipeline.

use super::{ApiError, WebState};
use crate::model::StudyState;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The states a study can be in (`?state=`).
pub const STATES: &[&str] = crate::model::StudyState::NAMES;

pub fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/api/v1/studies", get(list))
        .route("/api/v1/studies/{uid}", get(detail))
        .route("/api/v1/studies/{uid}/release", post(release))
        .route("/api/v1/studies/{uid}/reject", post(reject))
        .route("/api/v1/studies/{uid}/reevaluate", post(reevaluate))
        .route("/api/v1/studies/{uid}/retry", post(retry))
        .route("/api/v1/queue", get(queue))
        .route("/api/v1/audit", get(audit_search))
        .route("/api/v1/audit/verify", get(audit_verify))
        .route("/api/v1/reports/{month}", get(report))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None)
}

/// The server's audit trail (404 when it runs without one).
fn trail(state: &WebState) -> Result<Arc<crate::audit::AuditLog>, ApiError> {
    state
        .audit
        .clone()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no audit trail in this server", None))
}

/// The audit entry an action needs could not be written: the action does not happen.
fn unaudited(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the audit trail cannot be written: {e}"),
        None,
    )
}

fn not_found(uid: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no study {uid:?} (by Study Instance UID or accession)"),
        Some("uid"),
    )
}

/// Runs blocking store work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

fn reasons_value(reasons: Option<&str>) -> Value {
    reasons
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .unwrap_or_else(|| json!([]))
}

fn study_json(s: &crate::store::StudyRow) -> Value {
    json!({
        "study_uid": s.study_uid,
        "state": s.state,
        "accession": s.accession,
        "modalities": s.modalities,
        "calling_aes": s.calling_aes,
        "destination": s.destination,
        "facility": s.facility,
        "reasons": reasons_value(s.reasons.as_deref()),
        "instance_count": s.instance_count,
        "instances_forwarded": s.instances_forwarded,
        "bytes": s.bytes,
        "attempts": s.attempts,
        "first_received_at": s.first_received_at,
        "last_received_at": s.last_received_at,
        "forwarded_at": s.forwarded_at,
        "last_error": s.last_error,
        "updated_at": s.updated_at,
        "completed_by": s.completed_by,
        "stream": s.stream,
    })
}

fn parse_limit(limit: Option<&str>, default: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(l) => match l.trim().parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid(
                "limit",
                format!("`limit` must be a whole number from 1 to 10000, got {l:?}"),
            )),
        },
    }
}

async fn list(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    state.authorize(&headers, false)?;
    let [state_param, limit] = query_fields(raw.as_deref(), ["state", "limit"])?;
    let filter = match state_param
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(s) => match s.parse::<crate::model::StudyState>() {
            Ok(state) => Some(state),
            Err(_) => {
                return Err(ApiError::invalid(
                    "state",
                    format!("unknown state {s:?}; expected one of {}", STATES.join(", ")),
                ))
            }
        },
    };
    let limit = parse_limit(limit.as_deref(), 200)?;
    let store = state.store.clone();
    let body = blocking(move || {
        let rows = store.list_studies(filter, limit).map_err(internal)?;
        let counts: BTreeMap<String, i64> = store
            .count_by_state()
            .map_err(internal)?
            .into_iter()
            .map(|(s, n)| (s.to_string(), n))
            .collect();
        Ok(json!({
            "studies": rows.iter().map(study_json).collect::<Vec<_>>(),
            "counts": counts,
        }))
    })
    .await?;
    Ok(Json(body).into_response())
}

async fn detail(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Path(uid): Path<String>,
) -> Result<Response, ApiError> {
    state.authorize(&headers, false)?;
    let store = state.store.clone();
    let offset = crate::time::parse_offset(&state.ledger_config().utc_offset).unwrap_or(9 * 3600);
    let choice = state.prior_choice.clone();
    let body = blocking(move || {
        let keys = store
            .find_study(uid.trim())
            .map_err(internal)?
            .ok_or_else(|| not_found(&uid))?;
        let uid = keys.study_uid;
        let row = store
            .study_row(&uid)
            .map_err(internal)?
            .ok_or_else(|| not_found(&uid))?;
        let events = store.events_of(&uid).map_err(internal)?;
        let instances = store.instances_of(&uid).map_err(internal)?;
        let steps = store.steps_of(&uid).map_err(internal)?;
        let expected_images = store.expected_images_of(&uid).map_err(internal)?;
        let decision = store
            .decision_of(&uid)
            .map_err(internal)?
            .unwrap_or_default();
        let parse = |s: &Option<String>| {
            s.as_deref()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .unwrap_or(Value::Null)
        };
        let mut study = study_json(&row);
        if let Value::Object(m) = &mut study {
            m.insert("patient_id".into(), json!(keys.patient_id));
            m.insert("steps".into(), json!(steps));
            m.insert("expected_images".into(), json!(expected_images));
            m.insert(
                "time_to_reader_secs".into(),
                json!(row.time_to_reader_secs()),
            );
            m.insert(
                "timeline".into(),
                json!(events
                    .iter()
                    .map(|e| json!({"at": e.at, "kind": e.kind, "detail": e.detail}))
                    .collect::<Vec<_>>()),
            );
            m.insert(
                "instances".into(),
                json!(instances
                    .iter()
                    .map(|i| json!({
                        "sop_uid": i.sop_uid,
                        "sop_class_uid": i.sop_class_uid,
                        "transfer_syntax": i.transfer_syntax,
                        "state": i.state,
                        "last_status": i.last_status,
                        "last_error": i.last_error,
                    }))
                    .collect::<Vec<_>>()),
            );
            m.insert(
                "decision".into(),
                json!({
                    "verdict": decision.verdict,
                    "reasons": reasons_value(decision.reasons_json.as_deref()),
                    "evaluation": parse(&decision.evaluation_json),
                    "context": parse(&decision.context_json),
                    "evaluated_at": decision.evaluated_at,
                    "audit_seq": decision.audit_seq,
                }),
            );
            m.insert(
                "priors".into(),
                json!(crate::priors::view::PriorsView::read(
                    &store,
                    decision.context_json.as_deref(),
                    offset,
                    choice.as_ref(),
                )
                .map_err(internal)?),
            );
        }
        Ok(study)
    })
    .await?;
    Ok(Json(body).into_response())
}

async fn queue(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.authorize(&headers, false)?;
    let store = state.store.clone();
    let destinations = state.destinations();
    let body = blocking(move || {
        let empty = |d: &str| {
            json!({"destination": d, "depth": 0, "instances_waiting": 0,
                   "last_success_at": null, "failures": []})
        };
        let mut out: BTreeMap<String, Value> =
            destinations.iter().map(|d| (d.clone(), empty(d))).collect();
        for (d, depth, waiting, last) in store.destination_stats().map_err(internal)? {
            let e = out.entry(d.clone()).or_insert_with(|| empty(&d));
            e["depth"] = json!(depth);
            e["instances_waiting"] = json!(waiting);
            e["last_success_at"] = json!(last);
        }
        let mut troubled = store
            .list_studies(Some(crate::model::StudyState::Failed), 1000)
            .map_err(internal)?;
        troubled.extend(
            store
                .list_studies(Some(crate::model::StudyState::Queued), 10_000)
                .map_err(internal)?
                .into_iter()
                .filter(|s| s.last_error.is_some()),
        );
        for s in &troubled {
            let Some(d) = &s.destination else { continue };
            let e = out.entry(d.clone()).or_insert_with(|| empty(d));
            if let Value::Array(f) = &mut e["failures"] {
                f.push(json!({
                    "study_uid": s.study_uid,
                    "accession": s.accession,
                    "state": s.state,
                    "attempts": s.attempts,
                    "error": s.last_error,
                    "updated_at": s.updated_at,
                }));
            }
        }
        Ok(json!({"destinations": out.into_values().collect::<Vec<_>>()}))
    })
    .await?;
    Ok(Json(body).into_response())
}

/// A JSON object body, with a named error for anything else.
fn object_body(body: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    if body.is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad("body", "expected a JSON object")),
        Err(e) => Err(ApiError::bad("body", format!("invalid JSON: {e}"))),
    }
}

fn required_text(
    obj: &serde_json::Map<String, Value>,
    name: &str,
    max: usize,
) -> Result<String, ApiError> {
    match obj.get(name) {
        None | Some(Value::Null) => Err(ApiError::invalid(name, format!("`{name}` is required"))),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                return Err(ApiError::invalid(
                    name,
                    format!("`{name}` must not be empty"),
                ));
            }
            if s.chars().count() > max {
                return Err(ApiError::invalid(
                    name,
                    format!("`{name}` is longer than {max} characters"),
                ));
            }
            if s.chars().any(|c| c.is_control() && c != '\n') {
                return Err(ApiError::invalid(
                    name,
                    format!("`{name}` contains control characters"),
                ));
            }
            Ok(s.to_string())
        }
        Some(_) => Err(ApiError::bad(name, format!("`{name}` must be a string"))),
    }
}

fn conflict(error: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, error, Some("state"))
}

/// The operator actions as the API runs them: off the async workers, token as actor.
async fn act(
    state: &Arc<WebState>,
    token: String,
    by: Option<String>,
    f: impl FnOnce(
            &crate::actions::Operator<'_>,
            &crate::actions::Actor,
        ) -> crate::actions::Result<crate::actions::Done>
        + Send
        + 'static,
) -> Result<crate::actions::Done, ApiError> {
    let st = state.clone();
    blocking(move || {
        let actor = crate::actions::Actor {
            id: format!("rest:{token}"),
            by: by.unwrap_or_else(|| format!("rest:{token}")),
            via: "api",
            client_ip: None,
        };
        f(&st.operator(), &actor).map_err(|e| match e {
            crate::actions::ActionError::UnknownStudy(uid) => not_found(&uid),
            e @ crate::actions::ActionError::WrongState { .. } => conflict(e.to_string()),
            crate::actions::ActionError::Store(e) => internal(e),
            e @ crate::actions::ActionError::Unaudited(_) => unaudited(e),
        })
    })
    .await
}

/// Release and reject: an admin token, a JSON body with `by` and the written words in
/// `field` (the justification, the reason).
async fn act_with_words(
    state: &Arc<WebState>,
    headers: &HeaderMap,
    uid: String,
    body: &Bytes,
    field: &'static str,
    f: fn(
        &crate::actions::Operator<'_>,
        &str,
        &crate::actions::Actor,
        &str,
    ) -> crate::actions::Result<crate::actions::Done>,
) -> Result<crate::actions::Done, ApiError> {
    let token = state.authorize(headers, true)?;
    let obj = object_body(body)?;
    let by = required_text(&obj, "by", 200)?;
    let words = required_text(&obj, field, 2000)?;
    act(state, token, Some(by), move |op, actor| {
        f(op, &uid, actor, &words)
    })
    .await
}

async fn release(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Path(uid): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let done = act_with_words(
        &state,
        &headers,
        uid,
        &body,
        "justification",
        |op, uid, a, w| op.release(uid, a, w),
    )
    .await?;
    Ok(Json(json!({
        "study_uid": done.study_uid,
        "state": StudyState::Queued,
        "verdict": crate::model::Disposition::ReleasedOverride,
    }))
    .into_response())
}

async fn reject(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Path(uid): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let done = act_with_words(&state, &headers, uid, &body, "reason", |op, uid, a, w| {
        op.reject(uid, a, w)
    })
    .await?;
    Ok(Json(json!({"study_uid": done.study_uid, "state": StudyState::Rejected})).into_response())
}

async fn reevaluate(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Path(uid): Path<String>,
) -> Result<Response, ApiError> {
    let token = state.authorize(&headers, true)?;
    let done = act(&state, token, None, move |op, actor| {
        op.reevaluate(&uid, actor)
    })
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"study_uid": done.study_uid, "state": StudyState::Receiving})),
    )
        .into_response())
}

async fn retry(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Path(uid): Path<String>,
) -> Result<Response, ApiError> {
    let token = state.authorize(&headers, true)?;
    let done = act(&state, token, None, move |op, actor| op.retry(&uid, actor)).await?;
    Ok(Json(json!({"study_uid": done.study_uid, "state": StudyState::Queued})).into_response())
}

async fn audit_search(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let token = state.authorize(&headers, false)?;
    let [kind, study, limit] = query_fields(raw.as_deref(), ["kind", "study", "limit"])?;
    let limit = parse_limit(limit.as_deref(), 100)?;
    let audit = trail(&state)?;
    let query = crate::audit::Query {
        kind: kind.filter(|s| !s.trim().is_empty()),
        study: study.filter(|s| !s.trim().is_empty()),
        limit,
        ..Default::default()
    };
    let entries = blocking(move || {
        // The search is evidence too: no entry, no answer.
        audit
            .record_query(&format!("rest:{token}"), &query)
            .map_err(unaudited)?;
        audit.search(&query).map_err(internal)
    })
    .await?;
    Ok(Json(json!({"entries": entries})).into_response())
}

async fn audit_verify(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = state.authorize(&headers, false)?;
    let audit = trail(&state)?;
    let alerted = state.alerted.clone();
    let v = blocking(move || {
        let v = audit.verify().map_err(internal)?;
        alerted
            .alert(&audit, &format!("rest:{token}"), &v)
            .map_err(unaudited)?;
        Ok(v)
    })
    .await?;
    let mut body = serde_json::to_value(&v).map_err(internal)?;
    if let Value::Object(m) = &mut body {
        m.insert("ok".into(), json!(v.intact()));
    }
    Ok(Json(body).into_response())
}

async fn report(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Path(month): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    use crate::ledger::{compute, reasons::Lang, render};
    use crate::time::Month;
    let token = state.authorize(&headers, false)?;
    let [format, facility, lang] = query_fields(raw.as_deref(), ["format", "facility", "lang"])?;
    let month =
        Month::parse(month.trim()).map_err(|e| ApiError::invalid("month", e.to_string()))?;
    let format = format.as_deref().unwrap_or("json").trim().to_string();
    if !["json", "csv", "html"].contains(&format.as_str()) {
        return Err(ApiError::invalid(
            "format",
            format!("unknown format {format:?}; expected json, csv or html"),
        ));
    }
    let lang: Lang = lang
        .as_deref()
        .unwrap_or("ja")
        .parse()
        .map_err(|e: String| ApiError::invalid("lang", e))?;
    let facility = facility.filter(|f| !f.trim().is_empty());
    let st = state.clone();
    let (bytes, format) = blocking(move || {
        let ledger = st.ledger();
        let scope = compute::ReportScope {
            month,
            facility: facility.clone(),
            gateway_id: st.gateway_id.clone(),
            sending_facility: st.sending_facility.clone(),
        };
        let report = compute::build(&st.store, &ledger, &scope).map_err(internal)?;
        let bytes = match format.as_str() {
            "csv" => render::csv(&report),
            "html" => render::html(&report, lang),
            _ => render::json(&report),
        };
        // Evidence: no entry, no report.
        if let Some(audit) = &st.audit {
            audit
                .append(&crate::ledger::evidence::report_generated(
                    &format!("rest:{token}"),
                    &report.month,
                    report.receiving_facility_filter.as_deref(),
                    &format,
                    &bytes,
                ))
                .map_err(unaudited)?;
        }
        Ok((bytes, format))
    })
    .await?;
    let ct = match format.as_str() {
        "csv" => "text/csv; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        _ => "application/json",
    };
    Ok(([(axum::http::header::CONTENT_TYPE, ct)], bytes).into_response())
}

/// The values of the query parameters `names`, in that order (the last of repeated
/// ones); a name not listed is refused, naming it.
fn query_fields<const N: usize>(
    raw: Option<&str>,
    names: [&str; N],
) -> Result<[Option<String>; N], ApiError> {
    let mut values = [const { None }; N];
    for (k, v) in query_pairs(raw)? {
        let Some(i) = names.iter().position(|n| *n == k) else {
            return Err(ApiError::invalid(
                &k,
                format!("unknown query parameter {k:?}"),
            ));
        };
        values[i] = Some(v);
    }
    Ok(values)
}

/// `a=b&c=d`, percent- and `+`-decoded (UTF-8).
pub fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let k = decode(k).ok_or_else(|| ApiError::bad("query", "malformed query string"))?;
        let v = decode(v).ok_or_else(|| ApiError::bad(&k, format!("malformed value of {k:?}")))?;
        out.push((k, v));
    }
    Ok(out)
}

fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode() {
        let p = query_pairs(Some("state=held&study=ACC%2D1+x&empty=")).unwrap();
        assert_eq!(
            p,
            vec![
                ("state".to_string(), "held".to_string()),
                ("study".to_string(), "ACC-1 x".to_string()),
                ("empty".to_string(), String::new()),
            ]
        );
        assert!(query_pairs(Some("a=%zz")).is_err());
        assert!(query_pairs(Some("a=%e3%81")).is_err());
        assert_eq!(query_pairs(None).unwrap(), vec![]);
    }
}
