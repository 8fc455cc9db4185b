//! The console's pages of held studies and of one study, and what the other pages share.

use super::{ctx, error, page, param, url, Chrome, Ctx, Q};
use crate::decide::reasons;
use crate::model::{CompletionSignal, EventKind, Lang, StreamState, StudyState};
use crate::web::auth::Role;
use crate::web::WebState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::sync::Arc;

pub(super) type St = State<Arc<WebState>>;

fn offset(state: &WebState) -> i64 {
    crate::time::parse_offset(&state.ledger_config().utc_offset).unwrap_or(9 * 3600)
}

pub(super) fn when(state: &WebState, ms: i64) -> String {
    crate::time::format_ms(ms, offset(state))
        .replace('T', " ")
        .chars()
        .take(19)
        .collect()
}

pub(super) fn internal(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "console: store error");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error (see the log)",
    )
}

/// The patient's name in the hospital's script: the ideographic (kanji) group of the PN
/// value when there is one, else the alphabetic group.
pub fn display_name(pn: &str) -> String {
    let groups: Vec<&str> = pn.split('=').collect();
    let g = groups
        .get(1)
        .filter(|g| !g.trim().is_empty())
        .or(groups.first())
        .copied()
        .unwrap_or("");
    let name = g.split('^').filter(|p| !p.is_empty()).collect::<Vec<_>>();
    let sep = if g.is_ascii() { " " } else { "\u{3000}" };
    name.join(sep)
}

/// The name of a study's patient, from the first instance header that has one.
fn patient_name(store: &crate::store::Store, uid: &str) -> String {
    store
        .dicom_contexts(uid)
        .unwrap_or_default()
        .iter()
        .find_map(|c| c.get("0010,0010").map(|pn| display_name(pn)))
        .unwrap_or_default()
}

/// Runs blocking store work off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f).await.map_err(internal)
}

#[derive(serde::Deserialize)]
struct StoredReason {
    code: String,
    #[serde(default)]
    clause: String,
    #[serde(default)]
    message_en: String,
    #[serde(default)]
    message_ja: String,
}

fn reasons_of(json: Option<&str>) -> Vec<StoredReason> {
    json.and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default()
}

/// One hold reason as the console shows it (`templates/console/reason.html`).
struct ReasonView<'a> {
    /// What is missing and which field fixes it, in one line.
    short: &'a str,
    what: &'a str,
    msg: &'a str,
    code: &'a str,
    clause: &'a str,
    fix: &'static str,
}

fn reason_views<'a>(lang: Lang, stored: &'a [StoredReason]) -> Vec<ReasonView<'a>> {
    stored
        .iter()
        .map(|r| {
            let info = reasons::find(&r.code);
            ReasonView {
                short: info.map(|i| i.short(lang)).unwrap_or(&r.code),
                what: info.map(|i| i.what(lang)).unwrap_or(&r.code),
                msg: match lang {
                    Lang::Ja if !r.message_ja.is_empty() => r.message_ja.as_str(),
                    Lang::En if !r.message_en.is_empty() => r.message_en.as_str(),
                    _ => info.map(|i| i.message(lang)).unwrap_or(""),
                },
                code: &r.code,
                clause: if r.clause.is_empty() {
                    info.map(|i| i.clause).unwrap_or("")
                } else {
                    &r.clause
                },
                fix: info.map(|i| i.fix(lang)).unwrap_or(""),
            }
        })
        .collect()
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct HeldQuery {
    lang: Option<String>,
    modality: Option<String>,
    reason: Option<String>,
    q: Option<String>,
}

struct ReasonOption {
    code: &'static str,
    what: &'static str,
    selected: bool,
}

struct HeldRow<'a> {
    url: String,
    name: String,
    accession: &'a str,
    modalities: &'a str,
    since: String,
    stored: Vec<StoredReason>,
    reasons: Vec<ReasonView<'a>>,
}

#[derive(Template)]
#[template(path = "console/held.html")]
struct HeldPage<'a> {
    c: Chrome<'a>,
    modality: &'a str,
    options: Vec<ReasonOption>,
    q: &'a str,
    rows: Vec<HeldRow<'a>>,
}

pub async fn held(State(state): St, headers: HeaderMap, Q(hq): Q<HeldQuery>) -> Response {
    let c = match ctx(&state, &headers, hq.lang.as_deref()).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    // The query, the filtering and the rendering of up to 5,000 rows run off the async
    // workers, so DICOM and HL7 are answered while the page is built.
    blocking(move || held_page(&state, &c, &hq))
        .await
        .unwrap_or_else(|r| r)
}

fn held_page(state: &WebState, c: &Ctx, hq: &HeldQuery) -> Response {
    // One query for every row and name: the page costs the same with 5,000 held studies.
    let rows = match state.store.held_studies(5000) {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    let modality = param(&hq.modality);
    let reason = param(&hq.reason);
    let text = param(&hq.q).map(|s| s.to_lowercase());
    let mut shown = Vec::new();
    for held in &rows {
        let s = &held.study;
        if let Some(m) = modality {
            if !s.modalities.to_lowercase().contains(&m.to_lowercase()) {
                continue;
            }
        }
        let codes = reasons_of(s.reasons.as_deref());
        if let Some(r) = reason {
            if !codes.iter().any(|x| x.code == r) {
                continue;
            }
        }
        let name = held
            .patient_name
            .as_deref()
            .map(display_name)
            .unwrap_or_default();
        if let Some(t) = &text {
            // Name, accession, UID (not the reasons' text, which names other studies).
            let hay = format!(
                "{} {} {}",
                name,
                s.accession.as_deref().unwrap_or(""),
                s.study_uid,
            )
            .to_lowercase();
            if !hay.contains(t.as_str()) {
                continue;
            }
        }
        shown.push(HeldRow {
            url: url(&s.study_uid),
            name: if name.is_empty() {
                s.study_uid.clone()
            } else {
                name
            },
            accession: s.accession.as_deref().unwrap_or("—"),
            modalities: &s.modalities,
            since: when(state, s.updated_at),
            stored: codes,
            reasons: Vec::new(),
        });
    }
    // The views borrow the parsed reasons: build them once every row owns its own.
    let stored: Vec<Vec<StoredReason>> = shown
        .iter_mut()
        .map(|r| std::mem::take(&mut r.stored))
        .collect();
    for (row, st) in shown.iter_mut().zip(&stored) {
        row.reasons = reason_views(c.lang, st);
    }
    let title = c.tx().held_studies;
    page(
        c,
        &HeldPage {
            c: c.chrome(title),
            modality: modality.unwrap_or(""),
            options: reasons::catalogue()
                .iter()
                .map(|r| ReasonOption {
                    code: r.code,
                    what: r.short(c.lang),
                    selected: reason == Some(r.code),
                })
                .collect(),
            q: param(&hq.q).unwrap_or(""),
            rows: shown,
        },
    )
}

fn event_label(c: &Ctx, kind: EventKind) -> &'static str {
    let t = c.tx();
    match kind {
        EventKind::Received => t.ev_received,
        EventKind::Held => t.ev_held,
        EventKind::Context => t.ev_context,
        EventKind::Queued => t.ev_released,
        EventKind::ReleasedOverride => t.ev_released_override,
        EventKind::Rejected => t.ev_rejected,
        EventKind::Forwarded => t.ev_forwarded,
        EventKind::Failed => t.ev_failed,
        EventKind::Retry => t.ev_retry,
        EventKind::Streaming => t.ev_streaming,
        EventKind::StreamStopped => t.ev_stream_stopped,
        EventKind::Reopened => t.ev_reopened,
        EventKind::Emptied => t.ev_emptied,
    }
}

/// What a check of the evaluation record looks for, in the page's language; its id
/// (`labs.<rule>` for each lab rule) stays beside it on the page.
fn check_label(c: &Ctx, check: &str) -> &'static str {
    let t = c.tx();
    use crate::decide::policy::check_id as id;
    match check {
        id::EXAM_PURPOSE => t.check_exam_purpose,
        id::CLINICAL_INFORMATION => t.check_clinical_information,
        id::PRIOR_REPORTS => t.check_prior_reports,
        id::PRIOR_REPORTS_PACS => t.check_prior_reports_pacs,
        id::ORDERING_PHYSICIAN => t.check_ordering_physician,
        id::ORDERING_CALLBACK => t.check_ordering_callback,
        id::ROUTE => t.check_route,
        lab if lab.starts_with(id::LABS_PREFIX) => t.check_labs,
        _ => "",
    }
}

/// A study's state in the page's language (the queue page shows it too).
pub(super) fn state_label(c: &Ctx, state: StudyState) -> &'static str {
    let t = c.tx();
    match state {
        StudyState::Receiving => t.state_receiving,
        StudyState::Held => t.state_held,
        StudyState::Queued => t.state_queued,
        StudyState::Forwarded => t.state_forwarded,
        StudyState::Failed => t.state_failed,
        StudyState::Rejected => t.state_rejected,
    }
}

fn stream_label(c: &Ctx, stream: StreamState) -> &'static str {
    let t = c.tx();
    match stream {
        StreamState::Streaming => t.stream_streaming,
        StreamState::Stopped => t.stream_stopped,
    }
}

struct EventView {
    when: String,
    label: &'static str,
    detail: String,
}

struct CheckView {
    /// What the check looks for, in the page's language (empty for a check this
    /// readgate does not know: an older or newer policy's record).
    label: &'static str,
    check: String,
    clause: String,
    passed: bool,
    detail: String,
    sources: Vec<String>,
}

struct EvaluationView {
    policy_id: String,
    policy_version: String,
    rule: String,
    checks: Vec<CheckView>,
    pretty: String,
}

struct ReportView {
    when: String,
    status: String,
    signer: String,
    sender: String,
    text: String,
}

struct LedgerReasonView {
    code: String,
    meaning: &'static str,
    todo: &'static str,
}

struct ReaderView {
    name: String,
    category: &'static str,
    place: &'static str,
    events: usize,
}

struct EligibilityView {
    eligible: bool,
    reasons: Vec<LedgerReasonView>,
    readers: Vec<ReaderView>,
}

#[derive(Template)]
#[template(path = "console/study.html")]
struct StudyPage<'a> {
    c: Chrome<'a>,
    name: String,
    accession: String,
    state: &'static str,
    uid: String,
    url: String,
    reasons: Vec<ReasonView<'a>>,
    held_actions: bool,
    retry_action: bool,
    events: Vec<EventView>,
    verdict: String,
    facility: String,
    destination: String,
    audit_seq: Option<i64>,
    instances: String,
    /// The modality's performed procedure steps (MPPS), one line each.
    steps: Vec<String>,
    /// Last instance received → acknowledged by the destination, once forwarded.
    time_to_reader: Option<String>,
    /// How many images the order expects (`hl7.expected_images_field`), when it says.
    expected_images: Option<i64>,
    /// What told readgate the images were all in, once decided.
    completed_by: Option<String>,
    /// Its stream (`streaming`, `stopped`), when its route streamed it.
    stream: Option<&'static str>,
    last_error: Option<String>,
    evaluation: Option<EvaluationView>,
    reports: Vec<ReportView>,
    priors: Option<crate::priors::view::PriorsView>,
    month: Option<String>,
    line: Option<EligibilityView>,
}

fn evaluation_view(c: &Ctx, ev: &str) -> EvaluationView {
    let v: serde_json::Value = serde_json::from_str(ev).unwrap_or(serde_json::Value::Null);
    let s = |x: &serde_json::Value, dash: bool| {
        x.as_str()
            .unwrap_or(if dash { "—" } else { "" })
            .to_string()
    };
    let checks = v["checks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|ch| CheckView {
            label: check_label(c, ch["check"].as_str().unwrap_or("")),
            check: s(&ch["check"], false),
            clause: s(&ch["clause"], false),
            passed: ch["passed"].as_bool().unwrap_or(false),
            detail: s(&ch["detail"], false),
            sources: ch["sources"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| match s {
                            serde_json::Value::String(t) => t.clone(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    EvaluationView {
        policy_id: s(&v["policy_id"], true),
        policy_version: s(&v["policy_version"], true),
        rule: s(&v["rule"], true),
        checks,
        pretty: serde_json::to_string_pretty(&v).unwrap_or_else(|_| ev.to_string()),
    }
}

pub async fn study(
    State(state): St,
    Path(uid): Path<String>,
    headers: HeaderMap,
    Q(lq): Q<super::LangQuery>,
) -> Response {
    let c = match ctx(&state, &headers, lq.lang.as_deref()).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let st = state.clone();
    let found = blocking(move || {
        let Some(keys) = st.store.find_study(&uid)? else {
            return Ok(None);
        };
        let uid = keys.study_uid.clone();
        let events = st.store.events_of(&uid).unwrap_or_default();
        let decision = st
            .store
            .decision_of(&uid)
            .ok()
            .flatten()
            .unwrap_or_default();
        let row = st.store.study_row(&uid).ok().flatten();
        let name = patient_name(&st.store, &uid);
        let reports = st
            .store
            .reports_for(Some(&uid), keys.accession.as_deref(), &[])
            .unwrap_or_default();
        let priors = crate::priors::view::PriorsView::read(
            &st.store,
            decision.context_json.as_deref(),
            offset(&st),
            st.prior_choice.as_ref(),
        )?;
        let steps = (st.store.steps_of(&uid)?, st.store.expected_images_of(&uid)?);
        Ok::<_, crate::store::StoreError>(Some((
            keys, events, decision, row, name, reports, priors, steps,
        )))
    })
    .await;
    let (keys, events, decision, row, name, reports, priors, (steps, expected)) = match found {
        Ok(Ok(Some(x))) => x,
        Ok(Ok(None)) => {
            return error(
                StatusCode::NOT_FOUND,
                "no such study (study uid or accession)",
            )
        }
        Ok(Err(e)) => return internal(e),
        Err(r) => return r,
    };
    let uid = keys.study_uid.clone();
    let stored = if keys.state == StudyState::Held {
        reasons_of(decision.reasons_json.as_deref())
    } else {
        Vec::new()
    };
    let admin = c.session.role == Role::Admin;
    // Eligibility, from the month's ledger (the study's month, its receiving facility).
    let month: String = row
        .as_ref()
        .map(|r| when(&state, r.first_received_at).chars().take(7).collect())
        .unwrap_or_default();
    let mut line = None;
    let month = match crate::time::Month::parse(&month) {
        Ok(m) => {
            let st = state.clone();
            let facility = decision.facility.clone();
            let u2 = uid.clone();
            line = tokio::task::spawn_blocking(move || {
                let ledger = st.ledger();
                let scope = crate::ledger::compute::ReportScope {
                    month: m,
                    facility,
                    gateway_id: st.gateway.0.clone(),
                    sending_facility: st.gateway.1.clone(),
                };
                crate::ledger::compute::build(&st.store, &ledger, &scope)
                    .ok()
                    .and_then(|r| r.studies.into_iter().find(|s| s.study_uid == u2))
            })
            .await
            .ok()
            .flatten();
            Some(month)
        }
        Err(_) => None,
    };
    let line = line.map(|l| EligibilityView {
        eligible: l.eligible,
        reasons: l
            .reasons
            .iter()
            .map(|code| {
                let info = crate::ledger::reasons::find(code);
                LedgerReasonView {
                    code: code.to_string(),
                    meaning: info.map(|i| i.meaning(c.lang)).unwrap_or(""),
                    todo: info.map(|i| i.todo(c.lang)).unwrap_or(""),
                }
            })
            .collect(),
        readers: l
            .readers
            .iter()
            .map(|r| ReaderView {
                name: r.name.clone().unwrap_or_else(|| r.reader_id.clone()),
                category: crate::ledger::render::category_label(c.tx(), r.category),
                place: crate::ledger::render::place_label(c.tx(), r.place),
                events: r.events,
            })
            .collect(),
    });
    let title = c.tx().study;
    page(
        &c,
        &StudyPage {
            c: c.chrome(title),
            name,
            accession: keys.accession.clone().unwrap_or_else(|| "—".into()),
            state: state_label(&c, keys.state),
            url: url(&uid),
            reasons: reason_views(c.lang, &stored),
            held_actions: admin && keys.state == StudyState::Held,
            retry_action: admin && keys.state == StudyState::Failed,
            events: events
                .iter()
                .map(|e| EventView {
                    when: when(&state, e.at),
                    label: event_label(&c, e.kind),
                    detail: e.detail.clone(),
                })
                .collect(),
            verdict: decision.verdict.map_or("—", |v| v.as_str()).to_string(),
            facility: decision.facility.clone().unwrap_or_else(|| "—".into()),
            destination: decision.destination.clone().unwrap_or_else(|| "—".into()),
            audit_seq: decision.audit_seq,
            instances: row
                .as_ref()
                .map(|r| format!("{} / {}", r.instances_forwarded, r.instance_count))
                .unwrap_or_default(),
            time_to_reader: row
                .as_ref()
                .and_then(|r| r.time_to_reader_secs())
                .map(|s| format!("{s:.1} s")),
            expected_images: expected,
            completed_by: row.as_ref().and_then(|r| {
                let t = c.tx();
                r.completed_by.map(|signal| match signal {
                    CompletionSignal::QuietPeriod => t.completed_quiet_period.to_string(),
                    CompletionSignal::PerformedStep => t.completed_mpps.to_string(),
                    CompletionSignal::ExpectedImages => crate::i18n::fill(
                        t.completed_expected_images,
                        &[("count", &r.instance_count.to_string())],
                    ),
                })
            }),
            stream: row
                .as_ref()
                .and_then(|r| r.stream)
                .map(|s| stream_label(&c, s)),
            steps: steps
                .iter()
                .map(|s| {
                    format!(
                        "{} · {} / {} · {} · {}",
                        s.status,
                        s.received,
                        s.instances,
                        s.calling_ae,
                        when(&state, s.updated_at)
                    )
                })
                .collect(),
            last_error: row.as_ref().and_then(|r| r.last_error.clone()),
            evaluation: decision
                .evaluation_json
                .as_deref()
                .map(|ev| evaluation_view(&c, ev)),
            reports: reports
                .iter()
                .map(|r| ReportView {
                    when: when(&state, r.message.received_at),
                    status: r.status.clone(),
                    signer: r.signer_id.clone().unwrap_or_default(),
                    sender: r.message.sender.clone(),
                    text: r.text.clone(),
                })
                .collect(),
            priors,
            month,
            line,
            uid,
        },
    )
}
