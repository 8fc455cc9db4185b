//! The administrators' actions on a study (release, reject, re-evaluate, retry): POST
//! forms carrying the session's CSRF token, answered with a redirect.

use super::pages::{internal, St};
use super::{error, form_ctx, url, ClientIp, F};
use crate::actions::{ActionError, Actor, Done, Operator};
use crate::web::WebState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use std::sync::Arc;

/// Every action's form: the session's CSRF token, and the written words an action needs
/// (a release's justification, a rejection's reason).
#[derive(Debug, Default, serde::Deserialize)]
pub struct ActionForm {
    csrf: Option<String>,
    justification: Option<String>,
    reason: Option<String>,
}

/// The four actions, as the console's routes name them.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Release,
    Reject,
    Reevaluate,
    Retry,
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
        Ok(Err(e @ ActionError::Unaudited(_))) => {
            Err(error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()))
        }
        Ok(Err(e)) => Err(error(StatusCode::CONFLICT, &e.to_string())),
        Err(e) => Err(internal(e)),
    }
}

fn back(uid: &str) -> Response {
    Redirect::to(&format!("/studies/{}", url(uid))).into_response()
}

/// One action: CSRF and role, the written words, the action off the runtime, then back to
/// the study (or, after a retry, to the queue).
async fn handle(
    state: Arc<WebState>,
    uid: String,
    ip: String,
    headers: &HeaderMap,
    form: ActionForm,
    kind: Kind,
) -> Response {
    let c = match form_ctx(&state, headers, form.csrf.as_deref(), true).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let words = match kind {
        Kind::Release => field_text(form.justification.as_deref(), "justification"),
        Kind::Reject => field_text(form.reason.as_deref(), "reason"),
        Kind::Reevaluate | Kind::Retry => Ok(String::new()),
    };
    let words = match words {
        Ok(w) => w,
        Err(r) => return r,
    };
    let done = act(&state, &c.session.user, ip, move |op, a| match kind {
        Kind::Release => op.release(&uid, a, &words),
        Kind::Reject => op.reject(&uid, a, &words),
        Kind::Reevaluate => op.reevaluate(&uid, a),
        Kind::Retry => op.retry(&uid, a),
    })
    .await;
    match (done, kind) {
        (Ok(_), Kind::Retry) => Redirect::to("/queue").into_response(),
        (Ok(done), _) => back(&done.study_uid),
        (Err(r), _) => r,
    }
}

/// The route handlers: `POST /studies/{uid}/<action>`.
macro_rules! action_routes {
    ($($name:ident => $kind:ident),+ $(,)?) => {
        $(
            pub async fn $name(
                State(state): St,
                Path(uid): Path<String>,
                ClientIp(ip): ClientIp,
                headers: HeaderMap,
                F(form): F<ActionForm>,
            ) -> Response {
                handle(state, uid, ip, &headers, form, Kind::$kind).await
            }
        )+
    };
}

action_routes! {
    release => Release,
    reject => Reject,
    reevaluate => Reevaluate,
    retry => Retry,
}
