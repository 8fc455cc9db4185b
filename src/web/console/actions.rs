//! The administrators' actions on a study (release, reject, re-evaluate, retry): POST
//! forms carrying the session's CSRF token, answered with a redirect.

use super::pages::{internal, St};
use super::{error, form_ctx, url, ClientIp, CsrfForm, F};
use crate::web::WebState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

#[derive(Debug, Default, serde::Deserialize)]
pub struct ReleaseForm {
    csrf: Option<String>,
    justification: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct RejectForm {
    csrf: Option<String>,
    reason: Option<String>,
}

fn field_text(value: Option<&str>, field: &str) -> Result<String, Response> {
    let t = value.map(|s| s.trim().to_string()).unwrap_or_default();
    if t.chars().count() < 4 {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("{field}: write at least 4 characters"),
        ));
    }
    if t.chars().count() > 2000 {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("{field}: at most 2000 characters"),
        ));
    }
    Ok(t)
}

/// Wakes the forwarder of the study's destination (they also poll every few seconds).
fn wake_forwarder(state: &WebState, uid: &str) {
    if let (Some(w), Ok(Some(d))) = (&state.wakeups, state.store.decision_of(uid)) {
        if let Some(dest) = d.destination {
            w.wake(&dest);
        }
    }
}

fn back(uid: &str) -> Response {
    Redirect::to(&format!("/studies/{}", url(uid))).into_response()
}

pub async fn release(
    State(state): St,
    Path(uid): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    F(form): F<ReleaseForm>,
) -> Response {
    let c = match form_ctx(&state, &headers, form.csrf.as_deref(), true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let j = match field_text(form.justification.as_deref(), "justification") {
        Ok(j) => j,
        Err(r) => return r,
    };
    let by = format!("web:{}", c.session.user);
    let detail = serde_json::json!({ "justification": j, "client_ip": ip, "via": "web console" });
    match crate::operator::release(
        &state.store,
        state.audit.as_deref(),
        &uid,
        &by,
        &by,
        &j,
        detail,
    ) {
        Ok(Some(destination)) => {
            if let (Some(w), Some(dest)) = (&state.wakeups, destination) {
                w.wake(&dest);
            }
            back(&uid)
        }
        Ok(None) => error(
            StatusCode::CONFLICT,
            "the study is not held (or has no route to release it to)",
        ),
        Err(e) => internal(e),
    }
}

pub async fn reject(
    State(state): St,
    Path(uid): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    F(form): F<RejectForm>,
) -> Response {
    let c = match form_ctx(&state, &headers, form.csrf.as_deref(), true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let reason = match field_text(form.reason.as_deref(), "reason") {
        Ok(j) => j,
        Err(r) => return r,
    };
    let by = format!("web:{}", c.session.user);
    let detail = serde_json::json!({ "reason": reason, "client_ip": ip, "via": "web console" });
    match crate::operator::reject(
        &state.store,
        state.audit.as_deref(),
        state.spool_dir.as_deref(),
        &uid,
        &by,
        &by,
        &reason,
        detail,
    ) {
        Ok(Some(_)) => back(&uid),
        Ok(None) => error(StatusCode::CONFLICT, "the study is neither held nor failed"),
        Err(e) => internal(e),
    }
}

pub async fn reevaluate(
    State(state): St,
    Path(uid): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    F(form): F<CsrfForm>,
) -> Response {
    let c = match form_ctx(&state, &headers, form.csrf.as_deref(), true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let keys = crate::store::ContextKeys {
        study_uids: vec![uid.clone()],
        ..Default::default()
    };
    let why = format!("re-evaluation requested by web:{}", c.session.user);
    match state
        .store
        .reconsider_held(&keys, &why, crate::store::now_ms())
    {
        Ok(uids) if !uids.is_empty() => {
            if let Some(a) = &state.audit {
                a.record(
                    crate::audit::NewEntry::new(
                        crate::audit::kind::QUERY,
                        &format!("web:{}", c.session.user),
                    )
                    .study(&uid)
                    .detail(serde_json::json!({"action": "re-evaluate", "client_ip": ip})),
                );
            }
            if let Some(n) = &state.stored {
                n.notify_one();
            }
            back(&uid)
        }
        Ok(_) => error(StatusCode::CONFLICT, "the study is not held"),
        Err(e) => internal(e),
    }
}

pub async fn retry(
    State(state): St,
    Path(uid): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    F(form): F<CsrfForm>,
) -> Response {
    let c = match form_ctx(&state, &headers, form.csrf.as_deref(), true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match state.store.retry_study(&uid, crate::store::now_ms()) {
        Ok(true) => {
            if let Some(a) = &state.audit {
                a.record(
                    crate::audit::NewEntry::new(
                        crate::audit::kind::QUERY,
                        &format!("web:{}", c.session.user),
                    )
                    .study(&uid)
                    .detail(serde_json::json!({"action": "retry", "client_ip": ip})),
                );
            }
            wake_forwarder(&state, &uid);
            Redirect::to("/queue").into_response()
        }
        Ok(false) => error(StatusCode::CONFLICT, "the study has not failed"),
        Err(e) => internal(e),
    }
}
