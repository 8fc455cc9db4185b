//! The web console: server-rendered pages (Japanese by default, `?lang=en` or the `lang`
//! cookie for English), a login with server-side sessions, and the administrators' actions
//! (release, reject, re-evaluate, retry) as POST forms carrying the session's CSRF token.

// Helpers return the error page itself (`Result<_, Response>`), sent as is: boxing it
// would only add an allocation on the error path.
#![allow(clippy::result_large_err)]

mod pages;

use super::auth::{LoginError, Role, Session};
use super::WebState;
use crate::decide::reasons::Lang;
use axum::extract::{ConnectInfo, FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

pub fn routes<S: Clone + Send + Sync + 'static>(state: Arc<WebState>) -> Router<S> {
    Router::new()
        .route("/login", get(login_page).post(login_post))
        .route("/logout", post(logout))
        .route("/", get(pages::held))
        .route("/held", get(pages::held))
        .route("/studies/{uid}", get(pages::study))
        .route("/studies/{uid}/release", post(pages::release))
        .route("/studies/{uid}/reject", post(pages::reject))
        .route("/studies/{uid}/reevaluate", post(pages::reevaluate))
        .route("/studies/{uid}/retry", post(pages::retry))
        .route("/queue", get(pages::queue))
        .route("/accountability", get(pages::accountability))
        .route(
            "/accountability/report",
            get(pages::accountability_download),
        )
        .route("/audit", get(pages::audit))
        .with_state(state)
}

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a value for a URL path segment or query.
pub fn url(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses `application/x-www-form-urlencoded` (query strings and form bodies).
pub fn parse_form(s: &str) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    match std::str::from_utf8(&b[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The client's address (from the connection), for login throttling and the audit trail.
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_else(|| "unknown".into()),
        ))
    }
}

/// What every page needs: language, query parameters, the session.
pub struct Ctx {
    pub lang: Lang,
    pub q: HashMap<String, String>,
    pub session: Session,
    pub set_lang: Option<&'static str>,
}

impl Ctx {
    pub fn t<'a>(&self, ja: &'a str, en: &'a str) -> &'a str {
        match self.lang {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }
    pub fn param(&self, k: &str) -> Option<&str> {
        self.q.get(k).map(|s| s.trim()).filter(|s| !s.is_empty())
    }
}

fn lang_of(headers: &HeaderMap, q: &HashMap<String, String>) -> (Lang, Option<&'static str>) {
    match q.get("lang").map(|s| s.as_str()) {
        Some("en") => (Lang::En, Some("en")),
        Some("ja") => (Lang::Ja, Some("ja")),
        _ => match super::auth::cookie(headers, "lang").as_deref() {
            Some("en") => (Lang::En, None),
            _ => (Lang::Ja, None),
        },
    }
}

/// The request's session, or a redirect to the login page.
pub fn ctx(state: &WebState, headers: &HeaderMap, raw: Option<String>) -> Result<Ctx, Response> {
    let q = parse_form(raw.as_deref().unwrap_or(""));
    let (lang, set_lang) = lang_of(headers, &q);
    match state.auth.session(headers) {
        Some((_, session)) => Ok(Ctx {
            lang,
            q,
            session,
            set_lang,
        }),
        None => Err(Redirect::to("/login").into_response()),
    }
}

/// A plain error page with a status.
pub fn error(status: StatusCode, msg: &str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html><meta charset=utf-8><title>{0}</title><p class=error>{1}</p><p><a href=\"/\">readgate</a></p>",
            status.as_u16(),
            esc(msg)
        )),
    )
        .into_response()
}

/// Checks a POST form: session, CSRF token, and (for admin actions) the role.
pub fn form_ctx(
    state: &WebState,
    headers: &HeaderMap,
    body: &[u8],
    admin: bool,
) -> Result<(Ctx, HashMap<String, String>), Response> {
    let c = ctx(state, headers, None)?;
    let form = parse_form(&String::from_utf8_lossy(body));
    let ok = form
        .get("csrf")
        .is_some_and(|t| super::auth::same(t, &c.session.csrf));
    if !ok {
        return Err(error(
            StatusCode::FORBIDDEN,
            "invalid or missing CSRF token (field csrf): reload the page and try again",
        ));
    }
    if admin && c.session.role != Role::Admin {
        return Err(error(StatusCode::FORBIDDEN, "administrators only"));
    }
    Ok((c, form))
}

pub fn layout(c: &Ctx, title: &str, body: &str) -> Response {
    let nav = [
        ("/", c.t("保留中の検査", "Held studies")),
        ("/queue", c.t("送信キュー", "Queue and links")),
        ("/accountability", c.t("読影責任台帳", "Accountability")),
        ("/audit", c.t("監査証跡", "Audit trail")),
    ]
    .iter()
    .map(|(h, t)| format!("<a href=\"{h}\">{}</a>", esc(t)))
    .collect::<Vec<_>>()
    .join(" ");
    let other = match c.lang {
        Lang::Ja => "<a href=\"?lang=en\">English</a>",
        Lang::En => "<a href=\"?lang=ja\">日本語</a>",
    };
    let html = format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{title} — readgate</title><style>{css}</style></head><body><header><b>readgate</b> {nav} <span class=right>{other} · {user} ({role}) \
<form method=post action=\"/logout\" class=inline><input type=hidden name=csrf value=\"{csrf}\"><button>{logout}</button></form></span></header>\
<main><h1>{title}</h1>{body}</main></body></html>",
        lang = match c.lang {
            Lang::Ja => "ja",
            Lang::En => "en",
        },
        title = esc(title),
        css = CSS,
        user = esc(&c.session.user),
        role = c.session.role.as_str(),
        csrf = esc(&c.session.csrf),
        logout = esc(c.t("ログアウト", "Log out")),
    );
    let mut resp = Html(html).into_response();
    if let Some(l) = c.set_lang {
        if let Ok(v) = format!("lang={l}; Path=/; SameSite=Strict; Max-Age=31536000").parse() {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    resp
}

pub const CSS: &str = "body{font-family:'Noto Sans CJK JP','Hiragino Sans','Yu Gothic',Meiryo,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}\
header{background:#0b3d5c;color:#fff;padding:.6em 1em}header a{color:#fff;margin-right:1em}.right{float:right}\
main{padding:1em 1.5em}table{border-collapse:collapse;background:#fff;width:100%}td,th{border:1px solid #ccc;padding:.35em .5em;text-align:left;vertical-align:top}\
th{background:#e8eef2}.reason{margin:.2em 0}.fix{color:#05603a}.clause{color:#555;font-size:.9em}.error{color:#b00020;font-weight:bold}\
.inline{display:inline}.ok{color:#05603a;font-weight:bold}.bad{color:#b00020;font-weight:bold}form.filter input,form.filter select{margin-right:.5em}\
.box{background:#fff;border:1px solid #ccc;padding:.8em;margin:.8em 0}textarea{width:100%;max-width:40em}pre{white-space:pre-wrap;font-size:.85em}td:first-child{white-space:nowrap}td code{word-break:break-all;white-space:pre-wrap}";

async fn login_page(headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let q = parse_form(raw.as_deref().unwrap_or(""));
    let (lang, _) = lang_of(&headers, &q);
    login_html(lang, None, StatusCode::OK)
}

fn login_html(lang: Lang, msg: Option<&str>, status: StatusCode) -> Response {
    let t = |ja: &'static str, en: &'static str| if lang == Lang::Ja { ja } else { en };
    let msg = msg
        .map(|m| format!("<p class=error>{}</p>", esc(m)))
        .unwrap_or_default();
    (
        status,
        Html(format!(
            "<!doctype html><html><head><meta charset=utf-8><title>readgate — {title}</title><style>{CSS}</style></head><body>\
<header><b>readgate</b></header><main><h1>{title}</h1>{msg}<form method=post action=\"/login\" class=box>\
<p><label>{user}<br><input name=user autocomplete=username required></label></p>\
<p><label>{pw}<br><input name=password type=password autocomplete=current-password required></label></p>\
<p><button type=submit>{title}</button></p></form></main></body></html>",
            title = t("ログイン", "Log in"),
            user = t("ユーザー名", "User name"),
            pw = t("パスワード", "Password"),
        )),
    )
        .into_response()
}

async fn login_post(
    State(state): State<Arc<WebState>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (lang, _) = lang_of(&headers, &HashMap::new());
    let form = parse_form(&String::from_utf8_lossy(&body));
    let user = form
        .get("user")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    if user.is_empty() || password.is_empty() {
        return login_html(
            lang,
            Some(if lang == Lang::Ja {
                "ユーザー名とパスワードを入力してください (user, password)"
            } else {
                "enter a user name and a password (fields user, password)"
            }),
            StatusCode::BAD_REQUEST,
        );
    }
    let st = state.clone();
    let (u, p, i) = (user.clone(), password, ip.clone());
    let result = tokio::task::spawn_blocking(move || st.auth.login(&u, &p, &i)).await;
    let audit = |outcome: &str| {
        if let Some(a) = &state.audit {
            a.record(
                crate::audit::NewEntry::new(
                    crate::audit::kind::OPERATOR_LOGIN,
                    &format!("web:{user}"),
                )
                .detail(serde_json::json!({"outcome": outcome, "client_ip": ip})),
            );
        }
    };
    match result {
        Ok(Ok((id, _))) => {
            audit("success");
            let mut r = Redirect::to("/").into_response();
            if let Ok(v) = state.auth.set_cookie(&id).parse() {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Ok(Err(LoginError::Locked(secs))) => {
            audit("locked");
            let m = if lang == Lang::Ja {
                format!("ログインの失敗が続いたため、{} 分間ロックされています。しばらくしてからお試しください。", secs.div_ceil(60))
            } else {
                format!(
                    "Too many failed logins: locked for {} more minute(s). Try again later.",
                    secs.div_ceil(60)
                )
            };
            login_html(lang, Some(&m), StatusCode::TOO_MANY_REQUESTS)
        }
        Ok(Err(LoginError::Invalid)) => {
            audit("failure");
            login_html(
                lang,
                Some(if lang == Lang::Ja {
                    "ユーザー名またはパスワードが違います。"
                } else {
                    "Wrong user name or password."
                }),
                StatusCode::UNAUTHORIZED,
            )
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "login failed"),
    }
}

async fn logout(
    State(state): State<Arc<WebState>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (c, _) = match form_ctx(&state, &headers, &body, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Some((id, _)) = state.auth.session(&headers) {
        state.auth.logout(&id);
    }
    if let Some(a) = &state.audit {
        a.record(
            crate::audit::NewEntry::new(
                crate::audit::kind::OPERATOR_LOGOUT,
                &format!("web:{}", c.session.user),
            )
            .detail(serde_json::json!({"client_ip": ip})),
        );
    }
    let mut r = Redirect::to("/login").into_response();
    if let Ok(v) = state.auth.clear_cookie().parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
