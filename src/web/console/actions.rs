//! The administrators' actions on a study (release, reject, re-evaluate, retry): POST
//! forms carrying the session's CSRF token, answered with a redirect.

use super::pages::{internal, St};
use super::{error, form_ctx, url, ClientIp, CsrfForm, F};
use crate::actions::{ActionError, Actor, Done, Operator};
use crate::web::WebState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use std::sync::Arc;

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

/// Runs an operator action off the async workers as the session's user. Unknown and
/// wrong-state studies are both a conflict here (the button should not have been shown).
async fn act(
    state: &Arc<WebState>,
    user: &str,
    ip: String,
    f: impl FnOnce(&Operator<'_>, &Actor) -> crate::actions::Result<Done> + Send + 'static,
) -> Result<Done, Response> {
    let st = state.clone();
    let actor = Actor {
        id: format!("web:{user}"),
        by: format!("web:{user}"),
        via: "web console",
        client_ip: Some(ip),
    };
    let outcome = tokio::task::spawn_blocking(move || f(&st.operator(), &actor)).await;
    match outcome {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(ActionError::Store(e))) => Err(internal(e)),
        Ok(Err(e)) => Err(error(StatusCode::CONFLICT, &e.to_string())),
        Err(e) => Err(internal(e)),
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
    match act(&state, &c.session.user, ip, move |op, a| {
        op.release(&uid, a, &j)
    })
    .await
    {
        Ok(done) => back(&done.study_uid),
        Err(r) => r,
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
    match act(&state, &c.session.user, ip, move |op, a| {
        op.reject(&uid, a, &reason)
    })
    .await
    {
        Ok(done) => back(&done.study_uid),
        Err(r) => r,
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
    match act(&state, &c.session.user, ip, move |op, a| {
        op.reevaluate(&uid, a)
    })
    .await
    {
        Ok(done) => back(&done.study_uid),
        Err(r) => r,
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
    match act(&state, &c.session.user, ip, move |op, a| op.retry(&uid, a)).await {
        Ok(_) => Redirect::to("/queue").into_response(),
        Err(r) => r,
    }
}
