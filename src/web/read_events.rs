//! `POST /api/v1/read-events`: a reading system reports that a reader opened, closed,
//! wrote, signed, confirmed or amended a study's report. Each event is resolved against
//! the roster and places and stored with that resolution; unknown readers and places are
//! stored as such (never dropped) and show up in the ledger report.

use super::{ApiError, WebState};
use crate::ledger::events::ReadAction;
use crate::ledger::evidence;
use crate::ledger::places::PlaceClues;
use crate::store::NewReadEvent;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use std::sync::Arc;

/// The request's fields (all strings).
pub const FIELDS: [&str; 7] = [
    "study_uid",
    "accession",
    "reader_id",
    "action",
    "workstation",
    "client_ip",
    "at",
];

/// A validated event.
#[derive(Debug, Clone)]
pub struct ReadEventInput {
    pub study_uid: Option<String>,
    pub accession: Option<String>,
    pub reader_id: String,
    pub action: ReadAction,
    pub workstation: Option<String>,
    pub client_ip: Option<String>,
    pub at: i64,
}

fn string_field(
    obj: &serde_json::Map<String, serde_json::Value>,
    name: &str,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match obj.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            if s.chars().count() > max {
                return Err(ApiError::invalid(
                    name,
                    format!("`{name}` is longer than {max} characters"),
                ));
            }
            if s.chars().any(char::is_control) {
                return Err(ApiError::invalid(
                    name,
                    format!("`{name}` contains control characters"),
                ));
            }
            Ok(Some(s.to_string()))
        }
        Some(other) => Err(ApiError::bad(
            name,
            format!("`{name}` must be a string, got {}", json_type(other)),
        )),
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Validates a request body; the error names the first bad field.
pub fn validate(body: &[u8], now: i64) -> Result<ReadEventInput, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {e}"),
            Some("body"),
        )
    })?;
    let serde_json::Value::Object(obj) = value else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
            Some("body"),
        ));
    };
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::bad(
            unknown,
            format!(
                "unknown field `{unknown}` (expected: {})",
                FIELDS.join(", ")
            ),
        ));
    }
    let study_uid = string_field(&obj, "study_uid", 64)?;
    if let Some(uid) = &study_uid {
        let ok = uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && !uid.starts_with('.')
            && !uid.ends_with('.')
            && !uid.contains("..");
        if !ok {
            return Err(ApiError::invalid(
                "study_uid",
                "`study_uid` must be a DICOM UID (digits and dots, at most 64 characters)",
            ));
        }
    }
    let accession = string_field(&obj, "accession", 64)?;
    if study_uid.is_none() && accession.is_none() {
        return Err(ApiError::bad(
            "study_uid",
            "`study_uid` or `accession` is required",
        ));
    }
    let reader_id = string_field(&obj, "reader_id", 128)?
        .ok_or_else(|| ApiError::bad("reader_id", "`reader_id` is required"))?;
    let action_s = string_field(&obj, "action", 32)?
        .ok_or_else(|| ApiError::bad("action", "`action` is required"))?;
    let action = action_s.parse::<ReadAction>().map_err(|_| {
        ApiError::invalid(
            "action",
            format!(
                "`action` must be one of {}, got {action_s:?}",
                ReadAction::NAMES.join(", ")
            ),
        )
    })?;
    let workstation = string_field(&obj, "workstation", 128)?;
    let client_ip = string_field(&obj, "client_ip", 64)?;
    if let Some(ip) = &client_ip {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(ApiError::invalid(
                "client_ip",
                format!("`client_ip` must be an IPv4 or IPv6 address, got {ip:?}"),
            ));
        }
    }
    let at_s = string_field(&obj, "at", 64)?.ok_or_else(|| {
        ApiError::bad(
            "at",
            "`at` is required (RFC 3339, e.g. 2026-06-01T09:30:00+09:00)",
        )
    })?;
    let at = crate::time::parse_rfc3339_ms(&at_s)
        .map_err(|m| ApiError::invalid("at", format!("`at`: {m}")))?;
    if at > now + 5 * 60 * 1000 {
        return Err(ApiError::invalid(
            "at",
            "`at` is more than 5 minutes in the future: check the reading system's clock",
        ));
    }
    Ok(ReadEventInput {
        study_uid,
        accession,
        reader_id,
        action,
        workstation,
        client_ip,
        at,
    })
}

#[derive(Debug, Serialize)]
struct Created {
    id: i64,
    study_uid: String,
    accession: Option<String>,
    action: &'static str,
    at: String,
    resolution: crate::ledger::Resolution,
}

/// Validates, resolves and stores one event (the work behind the endpoint, also timed
/// by the benchmark). Returns the status and body.
pub fn record(
    state: &WebState,
    integration: &str,
    body: &[u8],
    now: i64,
) -> Result<(StatusCode, serde_json::Value), ApiError> {
    let input = validate(body, now)?;
    let target = state
        .store
        .read_target(input.study_uid.as_deref(), input.accession.as_deref())
        .map_err(internal)?;
    let Some(target) = target else {
        let (field, key) = match (&input.study_uid, &input.accession) {
            (Some(u), _) => ("study_uid", u.clone()),
            (None, Some(a)) => ("accession", a.clone()),
            (None, None) => ("study_uid", String::new()),
        };
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown study: no study with {field} {key:?} has reached readgate"),
            Some(field),
        ));
    };
    if let (Some(a), Some(ta)) = (&input.accession, &target.accession) {
        if input.study_uid.is_some() && a != ta {
            return Err(ApiError::invalid(
                "accession",
                format!(
                    "`accession` {a:?} does not belong to this study (its accession is {ta:?})"
                ),
            ));
        }
    }
    let ledger = state.ledger();
    let clues = PlaceClues {
        client_ip: input.client_ip.as_deref(),
        workstation: input.workstation.as_deref(),
        ..Default::default()
    };
    let resolution = ledger.resolve(
        &input.reader_id,
        input.at,
        &clues,
        target.facility.as_deref(),
    );
    let resolved = serde_json::to_string(&resolution).unwrap_or_else(|_| "{}".into());
    let source = format!("rest:{integration}");
    let id = state
        .store
        .record_read_event(&NewReadEvent {
            study_uid: target.study_uid.clone(),
            accession: target.accession.clone(),
            reader_id: input.reader_id.clone(),
            action: input.action,
            at: input.at,
            workstation: input.workstation.clone(),
            client_ip: input.client_ip.clone(),
            source: source.clone(),
            received_at: now,
            resolved,
        })
        .map_err(internal)?;
    let created = Created {
        id,
        study_uid: target.study_uid.clone(),
        accession: target.accession.clone(),
        action: input.action.as_str(),
        at: crate::time::format_ms(input.at, ledger.offset),
        resolution,
    };
    let body = serde_json::to_value(&created).unwrap_or_default();
    if let Some(audit) = &state.audit {
        audit.record(evidence::read_event(
            integration,
            &input.reader_id,
            &target.study_uid,
            serde_json::json!({ "event_id": id, "action": input.action.as_str(), "resolution": &body["resolution"] }),
        ));
    }
    Ok((StatusCode::CREATED, body))
}

fn internal(e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "read event not stored");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the event could not be stored; retry",
        None,
    )
}

pub(super) async fn post(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let integration = state.authenticate(&headers)?;
    let now = crate::time::now_ms();
    let (status, json) =
        tokio::task::spawn_blocking(move || record(&state, &integration, &body, now))
            .await
            .map_err(|_| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None)
            })??;
    Ok((status, Json(json)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> (u16, Option<String>) {
        match validate(body.as_bytes(), crate::time::now_ms()) {
            Ok(_) => (200, None),
            Err(e) => (e.status.as_u16(), e.field),
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        let ok = r#"{"study_uid":"1.2.3","reader_id":"1001","action":"opened","at":"2026-01-01T00:00:00Z"}"#;
        assert_eq!(field_of(ok).0, 200);
        for (body, field) in [
            ("not json", "body"),
            ("[1]", "body"),
            (
                r#"{"reader_id":"1","action":"opened","at":"2026-01-01T00:00:00Z"}"#,
                "study_uid",
            ),
            (
                r#"{"study_uid":"1.2.x","reader_id":"1","action":"opened","at":"2026-01-01T00:00:00Z"}"#,
                "study_uid",
            ),
            (
                r#"{"accession":5,"reader_id":"1","action":"opened","at":"2026-01-01T00:00:00Z"}"#,
                "accession",
            ),
            (
                r#"{"study_uid":"1.2","action":"opened","at":"2026-01-01T00:00:00Z"}"#,
                "reader_id",
            ),
            (
                r#"{"study_uid":"1.2","reader_id":"1","action":"peeked","at":"2026-01-01T00:00:00Z"}"#,
                "action",
            ),
            (
                r#"{"study_uid":"1.2","reader_id":"1","at":"2026-01-01T00:00:00Z"}"#,
                "action",
            ),
            (
                r#"{"study_uid":"1.2","reader_id":"1","action":"opened"}"#,
                "at",
            ),
            (
                r#"{"study_uid":"1.2","reader_id":"1","action":"opened","at":"yesterday"}"#,
                "at",
            ),
            (
                r#"{"study_uid":"1.2","reader_id":"1","action":"opened","at":"2999-01-01T00:00:00Z"}"#,
                "at",
            ),
            (
                r#"{"study_uid":"1.2","reader_id":"1","action":"opened","at":"2026-01-01T00:00:00Z","client_ip":"10.1"}"#,
                "client_ip",
            ),
            (
                r#"{"study_uid":"1.2","reader_id":"1","action":"opened","at":"2026-01-01T00:00:00Z","workstation":["a"]}"#,
                "workstation",
            ),
            (
                r#"{"study_uid":"1.2","reader_id":"1","action":"opened","at":"2026-01-01T00:00:00Z","patient_name":"x"}"#,
                "patient_name",
            ),
        ] {
            let (status, f) = field_of(body);
            assert!((400..500).contains(&status), "{body}: {status}");
            assert_eq!(f.as_deref(), Some(field), "{body}");
        }
    }
}
