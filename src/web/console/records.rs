//! The console's pages of records: the forwarding queue, the month's accountability
//! ledger (with its downloads) and the audit trail.

use super::pages::{internal, when, St};
use super::{ctx, error, page, param, url, Chrome, Q};
use crate::ledger::compute::LedgerReport;
use crate::model::Lang;
use crate::model::StudyState;
use crate::web::auth::Role;
use crate::web::WebState;
use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// Per destination: studies queued, instances queued, last success, failures.
type DestSummary<'a> = (i64, i64, Option<i64>, Vec<&'a crate::store::StudyRow>);

struct FailedView {
    url: String,
    label: String,
    state: &'static str,
    attempts: i64,
    error: String,
    retry: bool,
}

struct DestView {
    name: String,
    studies: i64,
    instances: i64,
    last: String,
    failed: Vec<FailedView>,
}

#[derive(Template)]
#[template(path = "console/queue.html")]
struct QueuePage<'a> {
    c: Chrome<'a>,
    dests: Vec<DestView>,
}

pub async fn queue(State(state): St, headers: HeaderMap, Q(lq): Q<super::LangQuery>) -> Response {
    let c = match ctx(&state, &headers, lq.lang.as_deref()).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let st = state.clone();
    let rows = match super::pages::blocking(move || st.store.list_studies(None, 100_000)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return internal(e),
        Err(r) => return r,
    };
    let mut dests: std::collections::BTreeMap<String, DestSummary> = Default::default();
    for r in &rows {
        let Some(d) = &r.destination else { continue };
        let e = dests.entry(d.clone()).or_default();
        if r.state == StudyState::Queued {
            e.0 += 1;
            e.1 += r.instance_count - r.instances_forwarded;
        }
        if let Some(f) = r.forwarded_at {
            e.2 = Some(e.2.map_or(f, |x: i64| x.max(f)));
        }
        if r.state == StudyState::Failed
            || r.last_error.is_some() && r.state != StudyState::Forwarded
        {
            e.3.push(r);
        }
    }
    let admin = c.session.role == Role::Admin;
    let dests = dests
        .into_iter()
        .map(|(name, (studies, instances, last, failed))| DestView {
            name,
            studies,
            instances,
            last: last.map(|l| when(&state, l)).unwrap_or_else(|| "—".into()),
            failed: failed
                .into_iter()
                .map(|r| FailedView {
                    url: url(&r.study_uid),
                    label: r.accession.clone().unwrap_or_else(|| r.study_uid.clone()),
                    state: super::pages::state_label(&c, r.state),
                    attempts: r.attempts,
                    error: r.last_error.clone().unwrap_or_default(),
                    retry: admin && r.state == StudyState::Failed,
                })
                .collect(),
        })
        .collect();
    let title = c.tx().queue_title;
    page(
        &c,
        &QueuePage {
            c: c.chrome(title),
            dests,
        },
    )
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct MonthQuery {
    lang: Option<String>,
    month: Option<String>,
    format: Option<String>,
}

fn month_of(q: &MonthQuery, state: &WebState) -> Result<crate::time::Month, Response> {
    let m = match param(&q.month) {
        Some(m) => m.to_string(),
        None => when(state, crate::store::now_ms())
            .chars()
            .take(7)
            .collect(),
    };
    crate::time::Month::parse(&m).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("month: {e} (expected YYYY-MM)"),
        )
    })
}

fn build_report(state: &WebState, month: crate::time::Month) -> Result<LedgerReport, Response> {
    let ledger = state.ledger();
    let scope = crate::ledger::compute::ReportScope {
        month,
        facility: None,
        gateway_id: state.gateway.0.clone(),
        sending_facility: state.gateway.1.clone(),
    };
    crate::ledger::compute::build(&state.store, &ledger, &scope).map_err(internal)
}

#[derive(Template)]
#[template(path = "console/accountability.html")]
struct AccountabilityPage<'a> {
    c: Chrome<'a>,
    month: String,
    report_style: Option<&'a str>,
    /// The report's own body, rendered (and escaped) by `ledger::render::html`.
    report_body: &'a str,
}

/// The session, the month a ledger page is about and that month's report (built off the
/// async workers).
async fn month_report(
    state: &std::sync::Arc<WebState>,
    headers: &HeaderMap,
    mq: &MonthQuery,
) -> Result<(super::Ctx, crate::time::Month, LedgerReport), Response> {
    let c = ctx(state, headers, mq.lang.as_deref()).await?;
    let month = month_of(mq, state)?;
    let st = state.clone();
    match tokio::task::spawn_blocking(move || build_report(&st, month)).await {
        Ok(Ok(report)) => Ok((c, month, report)),
        Ok(Err(r)) => Err(r),
        Err(e) => Err(internal(e)),
    }
}

pub async fn accountability(
    State(state): St,
    headers: HeaderMap,
    Q(mq): Q<MonthQuery>,
) -> Result<Response, Response> {
    let (c, month, report) = month_report(&state, &headers, &mq).await?;
    let html = String::from_utf8_lossy(&crate::ledger::render::html(&report, c.lang)).into_owned();
    // The report is a whole document: show its body inside the console's page.
    let (report_style, report_body) = match html.split_once("<body>") {
        Some((head, rest)) => (
            head.split_once("<style>")
                .and_then(|(_, s)| s.split_once("</style>"))
                .map(|(s, _)| s),
            rest.split("</body>").next().unwrap_or(rest),
        ),
        None => (None, html.as_str()),
    };
    let title = c.tx().reading_accountability;
    Ok(page(
        &c,
        &AccountabilityPage {
            c: c.chrome(title),
            month: month.to_string(),
            report_style,
            report_body,
        },
    ))
}

pub async fn accountability_download(
    State(state): St,
    headers: HeaderMap,
    Q(mq): Q<MonthQuery>,
) -> Result<Response, Response> {
    let (c, month, report) = month_report(&state, &headers, &mq).await?;
    let format = param(&mq.format).unwrap_or("html").to_string();
    if !["html", "csv", "json"].contains(&format.as_str()) {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "format: expected html, csv or json",
        ));
    }
    let (bytes, ctype) = match format.as_str() {
        "csv" => (
            crate::ledger::render::csv(&report),
            "text/csv; charset=utf-8",
        ),
        "json" => (crate::ledger::render::json(&report), "application/json"),
        _ => (
            crate::ledger::render::html(&report, c.lang),
            "text/html; charset=utf-8",
        ),
    };
    let mut entry = crate::ledger::evidence::report_generated(
        &format!("web:{}", c.session.user),
        &month.to_string(),
        report.receiving_facility_filter.as_deref(),
        &format,
        &bytes,
    );
    entry.detail["via"] = "web console".into();
    // Evidence: no entry, no report.
    if state.audit.is_some() && state.record(entry).await.is_none() {
        return Ok(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the audit trail cannot be written: the report was not given out",
        ));
    }
    let disp = format!("attachment; filename=\"readgate-ledger-{month}.{format}\"");
    Ok((
        [
            (header::CONTENT_TYPE, ctype.to_string()),
            (header::CONTENT_DISPOSITION, disp),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct AuditQuery {
    lang: Option<String>,
    kind: Option<String>,
    actor: Option<String>,
    study: Option<String>,
    text: Option<String>,
    page: Option<String>,
}

/// What the verification of the hash chain found.
enum Verification {
    Intact { entries: u64, head: String },
    Tampered { seq: i64, message: String },
    Failed(String),
    Off,
}

struct EntryView {
    seq: i64,
    at: String,
    kind: String,
    actor: String,
    study: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage<'a> {
    c: Chrome<'a>,
    verification: Verification,
    enabled: bool,
    kind: &'a str,
    actor: &'a str,
    study: &'a str,
    text: &'a str,
    entries: Vec<EntryView>,
    base: String,
    newer: Option<usize>,
    older: Option<usize>,
}

pub async fn audit(State(state): St, headers: HeaderMap, Q(aq): Q<AuditQuery>) -> Response {
    let c = match ctx(&state, &headers, aq.lang.as_deref()).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let title = c.tx().audit_trail;
    let mut view = AuditPage {
        c: c.chrome(title),
        verification: Verification::Off,
        enabled: false,
        kind: param(&aq.kind).unwrap_or(""),
        actor: param(&aq.actor).unwrap_or(""),
        study: param(&aq.study).unwrap_or(""),
        text: param(&aq.text).unwrap_or(""),
        entries: Vec::new(),
        base: String::new(),
        newer: None,
        older: None,
    };
    let Some(log) = state.audit.clone() else {
        return page(&c, &view);
    };
    let page_no: usize = match param(&aq.page).map(str::parse) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "page: expected a number"),
    };
    const PER: usize = 50;
    let q = crate::audit::Query {
        kind: param(&aq.kind).map(str::to_string),
        actor: param(&aq.actor).map(str::to_string),
        study: param(&aq.study).map(str::to_string),
        text: param(&aq.text).map(str::to_string),
        limit: PER,
        offset: page_no * PER,
        ..Default::default()
    };
    let actor = format!("web:{}", c.session.user);
    let alerted = state.alerted.clone();
    let searching = [&q.kind, &q.actor, &q.study, &q.text]
        .iter()
        .any(|f| f.is_some());
    let looked = tokio::task::spawn_blocking(move || {
        let verification = log.verify();
        if let Ok(v) = &verification {
            alerted.alert(&log, &actor, v)?;
        }
        // A search (not the bare page) is evidence too: no entry, no results.
        if searching {
            log.record_query(&actor, &q)?;
        }
        Ok::<_, crate::audit::AuditError>((verification, log.search(&q)))
    })
    .await;
    let (verification, entries) = match looked {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the audit trail cannot be written: {e}"),
            )
        }
        Err(e) => return internal(e),
    };
    view.verification = match verification {
        Ok(v) => match &v.finding {
            None => Verification::Intact {
                entries: v.entries,
                head: v
                    .head_hash
                    .clone()
                    .unwrap_or_default()
                    .chars()
                    .take(16)
                    .collect(),
            },
            Some(f) => Verification::Tampered {
                seq: f.seq,
                message: f.message.clone(),
            },
        },
        Err(e) => Verification::Failed(e.to_string()),
    };
    let entries = match entries {
        Ok(e) => e,
        Err(e) => return internal(e),
    };
    view.enabled = true;
    view.newer = page_no.checked_sub(1);
    view.older = (entries.len() == PER).then_some(page_no + 1);
    view.entries = entries
        .iter()
        .map(|e| EntryView {
            seq: e.seq,
            at: e.at.clone(),
            kind: e.kind.clone(),
            actor: e.actor.clone(),
            study: e
                .accession
                .as_deref()
                .or(e.study_uid.as_deref())
                .unwrap_or("")
                .to_string(),
            detail: e.detail.clone(),
        })
        .collect();
    let mut qs: Vec<String> = [&aq.kind, &aq.actor, &aq.study, &aq.text]
        .iter()
        .zip(["kind", "actor", "study", "text"])
        .filter_map(|(v, k)| param(v).map(|v| format!("{k}={}", url(v))))
        .collect();
    qs.push(String::new());
    view.base = qs.join("&");
    page(&c, &view)
}
