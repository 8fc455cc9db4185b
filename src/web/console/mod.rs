//! The web console: server-rendered pages (Japanese by default, `?lang=en` or the `lang`
//! cookie for English), a login with server-side sessions, and the administrators' actions
//! (release, reject, re-evaluate, retry) as POST forms carrying the session's CSRF token.

// Helpers return the error page itself (`Result<_, Response>`), sent as is: boxing it
// would only add an allocation on the error path.
#![allow(clippy::result_large_err)]

mod actions;
mod pages;
mod records;

use super::auth::{LoginError, Role, Session};
use super::WebState;
use crate::i18n::{self, Texts};
use crate::model::Lang;
use askama::Template;
use axum::extract::{ConnectInfo, Form, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

pub fn routes<S: Clone + Send + Sync + 'static>(state: Arc<WebState>) -> Router<S> {
    Router::new()
        .route("/login", get(login_page).post(login_post))
        .route("/logout", post(logout))
        .route("/", get(pages::held))
        .route("/held", get(pages::held))
        .route("/studies/{uid}", get(pages::study))
        .route("/studies/{uid}/release", post(actions::release))
        .route("/studies/{uid}/reject", post(actions::reject))
        .route("/studies/{uid}/reevaluate", post(actions::reevaluate))
        .route("/studies/{uid}/retry", post(actions::retry))
        .route("/queue", get(records::queue))
        .route("/accountability", get(records::accountability))
        .route(
            "/accountability/report",
            get(records::accountability_download),
        )
        .route("/audit", get(records::audit))
        .with_state(state)
}

/// RFC 3986's unreserved characters: everything else is percent-encoded.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a value for a URL path segment or query.
pub fn url(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// The query or form value of `k`, trimmed, when not empty.
pub fn param(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// axum's `Query`, with a bad query answered by the console's error page (400, naming
/// the field) instead of axum's plain-text rejection.
pub struct Q<T>(pub T);

impl<T, S> FromRequestParts<S> for Q<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Q(v)),
            Err(e) => Err(error(e.status(), &e.body_text())),
        }
    }
}

/// axum's `Form`, with a bad body answered by the console's error page.
pub struct F<T>(pub T);

impl<T, S> FromRequest<S> for F<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Form::<T>::from_request(req, state).await {
            Ok(Form(v)) => Ok(F(v)),
            Err(e) => Err(error(e.status(), &e.body_text())),
        }
    }
}

/// The `?lang=` of every page.
#[derive(Debug, Default, serde::Deserialize)]
pub struct LangQuery {
    pub lang: Option<String>,
}

/// The body of the forms that carry nothing but the CSRF token.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
}

/// The client's address (from the connection), for login throttling and the audit trail.
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<crate::web::serve::ClientAddr>>()
                .map(|c| c.0 .0.ip().to_canonical().to_string())
                .unwrap_or_else(|| "unknown".into()),
        ))
    }
}

/// What every page needs: language and the session.
pub struct Ctx {
    pub lang: Lang,
    pub session: Session,
    pub set_lang: Option<&'static str>,
}

impl Ctx {
    /// The message catalogue in the page's language.
    pub fn tx(&self) -> &'static Texts {
        i18n::texts(self.lang)
    }

    /// The parts of the shared layout (`templates/console/layout.html`).
    pub fn chrome<'a>(&'a self, title: &'a str) -> Chrome<'a> {
        Chrome {
            t: self.tx(),
            lang: self.lang,
            title,
            user: &self.session.user,
            role: self.session.role.as_str(),
            csrf: &self.session.csrf,
        }
    }
}

/// What the shared layout shows: title, navigation, user, logout form.
pub struct Chrome<'a> {
    pub t: &'static Texts,
    pub lang: Lang,
    pub title: &'a str,
    pub user: &'a str,
    pub role: &'a str,
    pub csrf: &'a str,
}

fn lang_of(headers: &HeaderMap, q: Option<&str>) -> (Lang, Option<&'static str>) {
    match q {
        Some("en") => (Lang::En, Some("en")),
        Some("ja") => (Lang::Ja, Some("ja")),
        _ => match super::auth::cookie(headers, "lang").as_deref() {
            Some("en") => (Lang::En, None),
            _ => (Lang::Ja, None),
        },
    }
}

/// The request's session, or a redirect to the login page; 503 when the database cannot
/// tell (a login page would only loop).
pub async fn ctx(
    state: &WebState,
    headers: &HeaderMap,
    lang: Option<&str>,
) -> Result<Ctx, Response> {
    let (lang, set_lang) = lang_of(headers, lang);
    match state.auth.session(headers).await {
        Ok(Some((_, session))) => Ok(Ctx {
            lang,
            session,
            set_lang,
        }),
        Ok(None) => Err(Redirect::to("/login").into_response()),
        Err(e) => Err(session_unavailable(&e)),
    }
}

/// The answer when the session store cannot be asked (logged without the session id).
fn session_unavailable(e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "console: the session store cannot be reached");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database holding console sessions cannot be reached, so readgate cannot tell \
         who you are: try again in a moment (the log says why)",
    )
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    status: u16,
    msg: &'a str,
}

/// Renders a template; a template that fails to render is logged and answered 500.
pub fn render(t: &impl Template) -> Result<Html<String>, Response> {
    t.render().map(Html).map_err(|e| {
        tracing::warn!(error = %e, "console: template error");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (see the log)",
        )
            .into_response()
    })
}

/// A plain error page with a status.
pub fn error(status: StatusCode, msg: &str) -> Response {
    match render(&ErrorPage {
        status: status.as_u16(),
        msg,
    }) {
        Ok(h) => (status, h).into_response(),
        Err(r) => r,
    }
}

/// Checks a POST form: session, CSRF token, and (for admin actions) the role.
pub async fn form_ctx(
    state: &WebState,
    headers: &HeaderMap,
    csrf: Option<&str>,
    admin: bool,
) -> Result<Ctx, Response> {
    let c = ctx(state, headers, None).await?;
    let ok = csrf.is_some_and(|t| super::auth::same(t, &c.session.csrf));
    if !ok {
        return Err(error(
            StatusCode::FORBIDDEN,
            "invalid or missing CSRF token (field csrf): reload the page and try again",
        ));
    }
    if admin && c.session.role != Role::Admin {
        return Err(error(StatusCode::FORBIDDEN, "administrators only"));
    }
    Ok(c)
}

/// A page of the console: the template rendered inside the layout, and the `lang`
/// cookie set when the page was asked for with `?lang=`.
pub fn page(c: &Ctx, t: &impl Template) -> Response {
    let mut resp = match render(t) {
        Ok(h) => h.into_response(),
        Err(r) => return r,
    };
    if let Some(l) = c.set_lang {
        if let Ok(v) = format!("lang={l}; Path=/; SameSite=Strict; Max-Age=31536000").parse() {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    resp
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage<'a> {
    t: &'static Texts,
    msg: Option<&'a str>,
}

async fn login_page(headers: HeaderMap, Q(q): Q<LangQuery>) -> Response {
    let (lang, _) = lang_of(&headers, q.lang.as_deref());
    login_html(lang, None, StatusCode::OK)
}

fn login_html(lang: Lang, msg: Option<&str>, status: StatusCode) -> Response {
    match render(&LoginPage {
        t: i18n::texts(lang),
        msg,
    }) {
        Ok(h) => (status, h).into_response(),
        Err(r) => r,
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct LoginForm {
    user: Option<String>,
    password: Option<String>,
}

async fn login_post(
    State(state): State<Arc<WebState>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    F(form): F<LoginForm>,
) -> Response {
    let (lang, _) = lang_of(&headers, None);
    let t = i18n::texts(lang);
    let user = form.user.map(|s| s.trim().to_string()).unwrap_or_default();
    let password = form.password.unwrap_or_default();
    if user.is_empty() || password.is_empty() {
        return login_html(lang, Some(t.login_fields_missing), StatusCode::BAD_REQUEST);
    }
    // A bounded number of password checks run at once (each costs ~19 MiB and a core):
    // a flood of logins waits here, then is refused, instead of exhausting memory.
    let permit = match tokio::time::timeout(
        std::time::Duration::from_secs(10),
        state.login_checks.clone().acquire_owned(),
    )
    .await
    {
        Ok(Ok(permit)) => permit,
        _ => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many logins at once: try again in a moment",
            )
        }
    };
    let st = state.clone();
    let (u, p, i) = (user.clone(), password, ip.clone());
    let result = tokio::task::spawn_blocking(move || {
        let result = st.auth.login(&u, &p, &i);
        drop(permit);
        result
    })
    .await;
    let audit = |outcome: &str| {
        state.record(
            crate::audit::NewEntry::new(crate::audit::kind::OPERATOR_LOGIN, &format!("web:{user}"))
                .detail(serde_json::json!({"outcome": outcome, "client_ip": ip})),
        )
    };
    match result {
        Ok(Ok((id, _))) => {
            // No session without its audit entry (fail closed).
            if audit("success").await.is_none() && state.audit.is_some() {
                if let Err(e) = state.auth.logout(&id).await {
                    // It expires unused: its id was never sent.
                    tracing::warn!(error = %e, "console: an unaudited session could not be deleted");
                }
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the audit trail cannot be written: login refused",
                );
            }
            let mut r = Redirect::to("/").into_response();
            if let Ok(v) = state.auth.set_cookie(&id).parse() {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Ok(Err(LoginError::Locked(secs))) => {
            audit("locked").await;
            let m = i18n::fill(
                t.login_locked,
                &[("minutes", &secs.div_ceil(60).to_string())],
            );
            login_html(lang, Some(&m), StatusCode::TOO_MANY_REQUESTS)
        }
        Ok(Err(LoginError::Invalid)) => {
            audit("failure").await;
            login_html(lang, Some(t.login_wrong), StatusCode::UNAUTHORIZED)
        }
        Ok(Err(LoginError::Store(e))) => {
            audit("error").await;
            session_unavailable(&e)
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "login failed"),
    }
}

async fn logout(
    State(state): State<Arc<WebState>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    F(form): F<CsrfForm>,
) -> Response {
    let c = match form_ctx(&state, &headers, form.csrf.as_deref(), false).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    // form_ctx found the cookie's session valid.
    if let Some(id) = super::auth::cookie(&headers, super::auth::COOKIE) {
        if let Err(e) = state.auth.logout(&id).await {
            return session_unavailable(&e);
        }
    }
    state
        .record(
            crate::audit::NewEntry::new(
                crate::audit::kind::OPERATOR_LOGOUT,
                &format!("web:{}", c.session.user),
            )
            .detail(serde_json::json!({"client_ip": ip})),
        )
        .await;
    let mut r = Redirect::to("/login").into_response();
    if let Ok(v) = state.auth.clear_cookie().parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
