//! The console's pages and actions.

use super::{ctx, error, esc, form_ctx, layout, url, ClientIp, Ctx};
use crate::decide::reasons::{self, Lang};
use crate::model::StudyState;
use crate::web::auth::Role;
use crate::web::WebState;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use std::fmt::Write as _;
use std::sync::Arc;

type St = State<Arc<WebState>>;

/// Per destination: studies queued, instances queued, last success, failures.
type DestSummary<'a> = (i64, i64, Option<i64>, Vec<&'a crate::store::StudyRow>);

fn offset(state: &WebState) -> i64 {
    crate::time::parse_offset(&state.ledger_config.utc_offset).unwrap_or(9 * 3600)
}

fn when(state: &WebState, ms: i64) -> String {
    crate::time::format_ms(ms, offset(state))
        .replace('T', " ")
        .chars()
        .take(19)
        .collect()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "console: store error");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error (see the log)",
    )
}

/// The patient's name in the hospital's script: the ideographic (kanji) group of the PN
/// value when there is one, else the alphabetic group.
pub fn patient_name(state: &WebState, uid: &str) -> String {
    let Ok(contexts) = state.store.dicom_contexts(uid) else {
        return String::new();
    };
    for c in contexts {
        if let Some(pn) = c.get("0010,0010") {
            let groups: Vec<&str> = pn.split('=').collect();
            let g = groups
                .get(1)
                .filter(|g| !g.trim().is_empty())
                .or(groups.first())
                .copied()
                .unwrap_or("");
            let name = g.split('^').filter(|p| !p.is_empty()).collect::<Vec<_>>();
            let sep = if g.is_ascii() { " " } else { "\u{3000}" };
            return name.join(sep);
        }
    }
    String::new()
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

fn reasons_html(c: &Ctx, json: Option<&str>) -> String {
    let mut out = String::new();
    for r in reasons_of(json) {
        let info = reasons::find(&r.code);
        let msg = match c.lang {
            Lang::Ja if !r.message_ja.is_empty() => r.message_ja.as_str(),
            Lang::En if !r.message_en.is_empty() => r.message_en.as_str(),
            _ => info.map(|i| i.message(c.lang)).unwrap_or(""),
        };
        let _ = write!(
            out,
            "<div class=reason><b>{what}</b>: {msg} <span class=clause>[{code} · {clause}]</span><br><span class=fix>{fixl}: {fix}</span></div>",
            what = esc(info.map(|i| i.what(c.lang)).unwrap_or(&r.code)),
            msg = esc(msg),
            code = esc(&r.code),
            clause = esc(if r.clause.is_empty() { info.map(|i| i.clause).unwrap_or("") } else { &r.clause }),
            fixl = esc(c.t("対処", "How to fix")),
            fix = esc(info.map(|i| i.fix(c.lang)).unwrap_or("")),
        );
    }
    out
}

pub async fn held(State(state): St, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let c = match ctx(&state, &headers, raw) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let rows = match state.store.list_studies(Some(StudyState::Held), 5000) {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    let modality = c.param("modality");
    let reason = c.param("reason");
    let text = c.param("q").map(|s| s.to_lowercase());
    let mut body = String::new();
    let _ = write!(
        body,
        "<form class=filter method=get><label>{ml} <input name=modality size=4 value=\"{m}\"></label>\
<label>{rl} <select name=reason><option value=\"\">—</option>{opts}</select></label>\
<label>{tl} <input name=q value=\"{q}\"></label><button>{fl}</button></form>",
        ml = esc(c.t("モダリティ", "Modality")),
        m = esc(modality.unwrap_or("")),
        rl = esc(c.t("保留理由", "Reason")),
        opts = reasons::catalogue()
            .iter()
            .map(|r| format!(
                "<option value=\"{0}\"{1}>{0} {2}</option>",
                esc(r.code),
                if reason == Some(r.code) { " selected" } else { "" },
                esc(r.what(c.lang))
            ))
            .collect::<String>(),
        tl = esc(c.t("検索", "Search")),
        q = esc(c.param("q").unwrap_or("")),
        fl = esc(c.t("絞り込み", "Filter")),
    );
    let _ = write!(
        body,
        "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        esc(c.t("患者氏名", "Patient")),
        esc(c.t("受付番号", "Accession")),
        esc(c.t("モダリティ", "Modality")),
        esc(c.t("保留開始", "Held since")),
        esc(c.t("不足している情報", "What is missing")),
    );
    let mut shown = 0;
    for s in &rows {
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
        let name = patient_name(&state, &s.study_uid);
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
        shown += 1;
        let _ = write!(
            body,
            "<tr><td><a href=\"/studies/{u}\">{name}</a></td><td>{acc}</td><td>{m}</td><td>{since}</td><td>{reasons}</td></tr>",
            u = url(&s.study_uid),
            name = esc(if name.is_empty() { &s.study_uid } else { &name }),
            acc = esc(s.accession.as_deref().unwrap_or("—")),
            m = esc(&s.modalities),
            since = esc(&when(&state, s.updated_at)),
            reasons = reasons_html(&c, s.reasons.as_deref()),
        );
    }
    body.push_str("</table>");
    if shown == 0 {
        let _ = write!(
            body,
            "<p>{}</p>",
            esc(c.t("保留中の検査はありません。", "No held studies."))
        );
    }
    layout(&c, c.t("保留中の検査", "Held studies"), &body)
}

fn event_label(c: &Ctx, kind: &str) -> String {
    let (ja, en) = match kind {
        "received" => ("受信", "Received"),
        "evaluated" | "decided" => ("評価", "Evaluated"),
        "held" => ("保留", "Held"),
        "context" => ("臨床情報の到着", "Context arrived"),
        "released" | "queued" => ("送信許可", "Released"),
        "released-override" => ("管理者による送信許可", "Released by an administrator"),
        "rejected" => ("却下", "Rejected"),
        "forwarded" => ("送信完了", "Forwarded"),
        "failed" => ("送信失敗", "Forwarding failed"),
        "retry" => ("再送", "Retry"),
        _ => ("", ""),
    };
    if ja.is_empty() {
        kind.to_string()
    } else {
        c.t(ja, en).to_string()
    }
}

pub async fn study(
    State(state): St,
    Path(uid): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let c = match ctx(&state, &headers, raw) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let keys = match state.store.find_study(&uid) {
        Ok(Some(k)) => k,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "no such study (study uid or accession)",
            )
        }
        Err(e) => return internal(e),
    };
    let uid = keys.study_uid.clone();
    let events = state.store.events_of(&uid).unwrap_or_default();
    let decision = state
        .store
        .decision_of(&uid)
        .ok()
        .flatten()
        .unwrap_or_default();
    let row = state.store.study_row(&uid).ok().flatten();
    let mut b = String::new();
    let name = patient_name(&state, &uid);
    let _ = write!(
        b,
        "<div class=box><p>{pl}: <b>{name}</b> · {al}: {acc} · {sl}: <b>{st}</b></p><p class=clause>Study Instance UID {uid}</p>",
        pl = esc(c.t("患者氏名", "Patient")),
        name = esc(&name),
        al = esc(c.t("受付番号", "Accession")),
        acc = esc(keys.accession.as_deref().unwrap_or("—")),
        sl = esc(c.t("状態", "State")),
        st = esc(keys.state.as_str()),
        uid = esc(&uid),
    );
    if keys.state == StudyState::Held {
        b.push_str(&reasons_html(&c, decision.reasons_json.as_deref()));
    }
    b.push_str("</div>");
    // Actions.
    if c.session.role == Role::Admin {
        let csrf = esc(&c.session.csrf);
        let u = url(&uid);
        if keys.state == StudyState::Held {
            let _ = write!(
                b,
                "<div class=box><h2>{h}</h2><form method=post action=\"/studies/{u}/release\"><input type=hidden name=csrf value=\"{csrf}\">\
<label>{jl}<br><textarea name=justification rows=2 required minlength=4></textarea></label><br><button>{rb}</button></form>\
<form method=post action=\"/studies/{u}/reject\"><input type=hidden name=csrf value=\"{csrf}\"><label>{rl}<br><textarea name=reason rows=2 required minlength=4></textarea></label><br><button>{jb}</button></form>\
<form method=post action=\"/studies/{u}/reevaluate\"><input type=hidden name=csrf value=\"{csrf}\"><button>{eb}</button></form></div>",
                h = esc(c.t("操作（管理者）", "Actions (administrators)")),
                jl = esc(c.t("送信する理由（必須）", "Justification (required)")),
                rb = esc(c.t("送信を許可する", "Release")),
                rl = esc(c.t("却下の理由（必須）", "Reason for rejecting (required)")),
                jb = esc(c.t("却下する", "Reject")),
                eb = esc(c.t("今すぐ再評価する", "Re-evaluate now")),
            );
        } else if keys.state == StudyState::Failed {
            let _ = write!(
                b,
                "<div class=box><form method=post action=\"/studies/{u}/retry\"><input type=hidden name=csrf value=\"{csrf}\"><button>{}</button></form></div>",
                esc(c.t("再送する", "Retry"))
            );
        }
    }
    // Timeline.
    let _ = write!(
        b,
        "<h2>{}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
        esc(c.t("経過", "Timeline")),
        esc(c.t("日時", "When")),
        esc(c.t("出来事", "Event")),
        esc(c.t("詳細", "Detail"))
    );
    for e in &events {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&when(&state, e.at)),
            esc(&event_label(&c, &e.kind)),
            esc(&e.detail)
        );
    }
    b.push_str("</table>");
    // Forwarding tags.
    let _ = write!(
        b,
        "<h2>{}</h2><table><tr><th>verdict</th><td>{}</td></tr><tr><th>{}</th><td>{}</td></tr><tr><th>{}</th><td>{}</td></tr><tr><th>{}</th><td>{}</td></tr><tr><th>{}</th><td>{}</td></tr></table>",
        esc(c.t("送信時のタグ", "Forwarding tags")),
        esc(decision.verdict.map_or("—", |v| v.as_str())),
        esc(c.t("読影施設", "Facility")),
        esc(decision.facility.as_deref().unwrap_or("—")),
        esc(c.t("送信先", "Destination")),
        esc(decision.destination.as_deref().unwrap_or("—")),
        esc(c.t("監査証跡の参照", "Audit reference")),
        decision
            .audit_seq
            .map(|s| format!("<a href=\"/audit?study={}\">#{s}</a>", url(&uid)))
            .unwrap_or_else(|| "—".into()),
        esc(c.t("送信済みインスタンス", "Instances forwarded")),
        row.as_ref()
            .map(|r| format!("{} / {}", r.instances_forwarded, r.instance_count))
            .unwrap_or_default(),
    );
    if let Some(r) = row.as_ref().and_then(|r| r.last_error.clone()) {
        let _ = write!(b, "<p class=bad>{}</p>", esc(&r));
    }
    // Check results with their sources.
    if let Some(ev) = &decision.evaluation_json {
        let v: serde_json::Value = serde_json::from_str(ev).unwrap_or(serde_json::Value::Null);
        let _ = write!(
            b,
            "<h2>{}</h2><p class=clause>policy {} v{} · rule {}</p><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            esc(c.t("確認結果と情報源", "Check results and their sources")),
            esc(v["policy_id"].as_str().unwrap_or("—")),
            esc(v["policy_version"].as_str().unwrap_or("—")),
            esc(v["rule"].as_str().unwrap_or("—")),
            esc(c.t("確認項目", "Check")),
            esc(c.t("条項", "Clause")),
            esc(c.t("結果", "Result")),
            esc(c.t("内容", "Detail")),
            esc(c.t("情報源", "Sources")),
        );
        for ch in v["checks"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let passed = ch["passed"].as_bool().unwrap_or(false);
            let sources = ch["sources"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| match s {
                            serde_json::Value::String(t) => esc(t),
                            other => esc(&other.to_string()),
                        })
                        .collect::<Vec<_>>()
                        .join("<br>")
                })
                .unwrap_or_default();
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td class={}>{}</td><td>{}</td><td>{}</td></tr>",
                esc(ch["check"].as_str().unwrap_or("")),
                esc(ch["clause"].as_str().unwrap_or("")),
                if passed { "ok" } else { "bad" },
                esc(if passed {
                    c.t("充足", "passed")
                } else {
                    c.t("不足", "missing")
                }),
                esc(ch["detail"].as_str().unwrap_or("")),
                if sources.is_empty() {
                    "—".to_string()
                } else {
                    sources
                },
            );
        }
        b.push_str("</table>");
        let pretty = serde_json::to_string_pretty(&v).unwrap_or_else(|_| ev.clone());
        let _ = write!(
            b,
            "<details><summary>{}</summary><pre>{}</pre></details>",
            esc(c.t("評価の記録（JSON）", "Evaluation record (JSON)")),
            esc(&pretty)
        );
    }
    // Reports.
    let reports = state
        .store
        .reports_for(Some(&uid), keys.accession.as_deref(), &[])
        .unwrap_or_default();
    let _ = write!(b, "<h2>{}</h2>", esc(c.t("読影レポート", "Reports")));
    if reports.is_empty() {
        let _ = write!(b, "<p>—</p>");
    }
    for r in &reports {
        let _ = write!(
            b,
            "<div class=box><p>{} · {} · {} · {}</p><pre>{}</pre></div>",
            esc(&when(&state, r.message.received_at)),
            esc(&r.status),
            esc(r.signer_id.as_deref().unwrap_or("")),
            esc(&r.message.sender),
            esc(&r.text)
        );
    }
    // Eligibility, from the month's ledger (the study's month, its receiving facility).
    let month: String = row
        .as_ref()
        .map(|r| when(&state, r.first_received_at).chars().take(7).collect())
        .unwrap_or_default();
    let _ = write!(
        b,
        "<h2>{}</h2>",
        esc(c.t(
            "読影責任（算定可否）",
            "Reading accountability (eligibility)"
        ))
    );
    if let Ok(m) = crate::time::Month::parse(&month) {
        let st = state.clone();
        let facility = decision.facility.clone();
        let u2 = uid.clone();
        let line = tokio::task::spawn_blocking(move || {
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
        match line {
            Some(l) => {
                let _ = write!(
                    b,
                    "<p class={}>{}</p>",
                    if l.eligible { "ok" } else { "bad" },
                    esc(if l.eligible {
                        c.t("算定可", "Eligible")
                    } else {
                        c.t("算定不可", "Not eligible")
                    })
                );
                for code in &l.reasons {
                    let info = crate::ledger::reasons::find(code);
                    let _ = write!(
                        b,
                        "<div class=reason><b>{}</b>: {}<br><span class=fix>{}: {}</span></div>",
                        esc(code),
                        esc(info.map(|i| i.meaning(c.lang)).unwrap_or("")),
                        esc(c.t("対処", "What to do")),
                        esc(info.map(|i| i.todo(c.lang)).unwrap_or(""))
                    );
                }
                if !l.readers.is_empty() {
                    let _ = write!(
                        b,
                        "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
                        esc(c.t("読影医", "Reader")),
                        esc(c.t("区分", "Category")),
                        esc(c.t("読影場所", "Place")),
                        esc(c.t("読影イベント数", "Read events"))
                    );
                    for r in &l.readers {
                        let _ = write!(
                            b,
                            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                            esc(r.name.as_deref().unwrap_or(&r.reader_id)),
                            esc(r.category),
                            esc(r.place.as_str()),
                            r.events
                        );
                    }
                    b.push_str("</table>");
                }
            }
            None => {
                let _ = write!(b, "<p>—</p>");
            }
        }
        let _ = write!(
            b,
            "<p><a href=\"/accountability?month={m}\">{}</a></p>",
            esc(c.t("この月の読影責任台帳", "This month's ledger")),
            m = esc(&month)
        );
    }
    let _ = write!(
        b,
        "<p><a href=\"/accountability\">{}</a> · <a href=\"/audit?study={}\">{}</a></p>",
        esc(c.t(
            "読影責任台帳（適格性）",
            "Accountability ledger (eligibility)"
        )),
        url(&uid),
        esc(c.t("この検査の監査証跡", "Audit trail of this study"))
    );
    layout(&c, c.t("検査", "Study"), &b)
}

fn field_text(
    form: &std::collections::HashMap<String, String>,
    field: &str,
) -> Result<String, Response> {
    let t = form
        .get(field)
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
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
    body: axum::body::Bytes,
) -> Response {
    let (c, form) = match form_ctx(&state, &headers, &body, true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let j = match field_text(&form, "justification") {
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
    body: axum::body::Bytes,
) -> Response {
    let (c, form) = match form_ctx(&state, &headers, &body, true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let reason = match field_text(&form, "reason") {
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
    body: axum::body::Bytes,
) -> Response {
    let (c, _) = match form_ctx(&state, &headers, &body, true) {
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
        .reconsider_held(&keys, &why, crate::time::now_ms())
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
    body: axum::body::Bytes,
) -> Response {
    let (c, _) = match form_ctx(&state, &headers, &body, true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match state.store.retry_study(&uid, crate::time::now_ms()) {
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

pub async fn queue(State(state): St, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let c = match ctx(&state, &headers, raw) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let rows = match state.store.list_studies(None, 100_000) {
        Ok(r) => r,
        Err(e) => return internal(e),
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
    let mut b = String::new();
    if dests.is_empty() {
        let _ = write!(b, "<p>—</p>");
    }
    for (d, (studies, instances, last, failed)) in &dests {
        let _ = write!(
            b,
            "<div class=box><h2>{d}</h2><p>{ql}: <b>{studies}</b> ({instances} {il}) · {ll}: {last}</p>",
            d = esc(d),
            ql = esc(c.t("キュー", "Queue")),
            il = esc(c.t("インスタンス", "instances")),
            ll = esc(c.t("最後の送信成功", "Last success")),
            last = esc(&last.map(|l| when(&state, l)).unwrap_or_else(|| "—".into())),
        );
        if !failed.is_empty() {
            let _ = write!(
                b,
                "<table><tr><th>{}</th><th>{}</th><th>{}</th><th></th></tr>",
                esc(c.t("検査", "Study")),
                esc(c.t("試行回数", "Attempts")),
                esc(c.t("エラー", "Error"))
            );
            for r in failed {
                let action = if c.session.role == Role::Admin && r.state == StudyState::Failed {
                    format!(
                        "<form method=post action=\"/studies/{}/retry\"><input type=hidden name=csrf value=\"{}\"><button>{}</button></form>",
                        url(&r.study_uid),
                        esc(&c.session.csrf),
                        esc(c.t("再送", "Retry"))
                    )
                } else {
                    String::new()
                };
                let _ = write!(
                    b,
                    "<tr><td><a href=\"/studies/{}\">{}</a> ({})</td><td>{}</td><td class=bad>{}</td><td>{}</td></tr>",
                    url(&r.study_uid),
                    esc(r.accession.as_deref().unwrap_or(&r.study_uid)),
                    esc(r.state.as_str()),
                    r.attempts,
                    esc(r.last_error.as_deref().unwrap_or("")),
                    action
                );
            }
            b.push_str("</table>");
        }
        b.push_str("</div>");
    }
    layout(&c, c.t("送信キューと接続", "Queue and links"), &b)
}

fn month_of(c: &Ctx, state: &WebState) -> Result<crate::time::Month, Response> {
    let m = match c.param("month") {
        Some(m) => m.to_string(),
        None => when(state, crate::time::now_ms()).chars().take(7).collect(),
    };
    crate::time::Month::parse(&m).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("month: {e} (expected YYYY-MM)"),
        )
    })
}

fn build_report(
    state: &WebState,
    month: crate::time::Month,
) -> Result<crate::ledger::compute::LedgerReport, Response> {
    let ledger = state.ledger();
    let scope = crate::ledger::compute::ReportScope {
        month,
        facility: None,
        gateway_id: state.gateway.0.clone(),
        sending_facility: state.gateway.1.clone(),
    };
    crate::ledger::compute::build(&state.store, &ledger, &scope).map_err(internal)
}

pub async fn accountability(
    State(state): St,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let c = match ctx(&state, &headers, raw) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let month = match month_of(&c, &state) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let st = state.clone();
    let report = match tokio::task::spawn_blocking(move || build_report(&st, month)).await {
        Ok(Ok(r)) => r,
        Ok(Err(r)) => return r,
        Err(e) => return internal(e),
    };
    let html = String::from_utf8_lossy(&crate::ledger::render::html(&report, c.lang)).into_owned();
    // The report is a whole document: show its body inside the console's page.
    let inner = html
        .split_once("<body>")
        .map(|(head, rest)| {
            let style = head
                .split_once("<style>")
                .and_then(|(_, s)| s.split_once("</style>"))
                .map(|(s, _)| format!("<style>{s}</style>"))
                .unwrap_or_default();
            format!("{style}{}", rest.split("</body>").next().unwrap_or(rest))
        })
        .unwrap_or(html.clone());
    let m = month.to_string();
    let b = format!(
        "<form class=filter method=get><label>{ml} <input name=month value=\"{m}\" size=8></label><button>{sl}</button></form>\
<p>{dl}: <a href=\"/accountability/report?month={m}&amp;format=html\">HTML</a> · <a href=\"/accountability/report?month={m}&amp;format=csv\">CSV</a> · <a href=\"/accountability/report?month={m}&amp;format=json\">JSON</a></p>{inner}",
        ml = esc(c.t("対象月", "Month")),
        m = esc(&m),
        sl = esc(c.t("表示", "Show")),
        dl = esc(c.t("ダウンロード", "Download")),
    );
    layout(&c, c.t("読影責任台帳", "Reading accountability"), &b)
}

pub async fn accountability_download(
    State(state): St,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let c = match ctx(&state, &headers, raw) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let month = match month_of(&c, &state) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let format = c.param("format").unwrap_or("html").to_string();
    if !["html", "csv", "json"].contains(&format.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            "format: expected html, csv or json",
        );
    }
    let st = state.clone();
    let report = match tokio::task::spawn_blocking(move || build_report(&st, month)).await {
        Ok(Ok(r)) => r,
        Ok(Err(r)) => return r,
        Err(e) => return internal(e),
    };
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
    if let Some(a) = &state.audit {
        a.record(
            crate::audit::NewEntry::new(crate::audit::kind::REPORT_GENERATED, &format!("web:{}", c.session.user))
                .detail(serde_json::json!({"month": month.to_string(), "format": format, "via": "web console"})),
        );
    }
    let disp = format!("attachment; filename=\"readgate-ledger-{month}.{format}\"");
    (
        [
            (header::CONTENT_TYPE, ctype.to_string()),
            (header::CONTENT_DISPOSITION, disp),
        ],
        bytes,
    )
        .into_response()
}

pub async fn audit(State(state): St, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let c = match ctx(&state, &headers, raw) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(log) = state.audit.clone() else {
        return layout(&c, c.t("監査証跡", "Audit trail"), "<p>—</p>");
    };
    let page: usize = match c.param("page").map(str::parse) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "page: expected a number"),
    };
    const PER: usize = 50;
    let q = crate::audit::Query {
        kind: c.param("kind").map(str::to_string),
        actor: c.param("actor").map(str::to_string),
        study: c.param("study").map(str::to_string),
        text: c.param("text").map(str::to_string),
        limit: PER,
        offset: page * PER,
        ..Default::default()
    };
    let l2 = log.clone();
    let (verification, entries) =
        match tokio::task::spawn_blocking(move || (l2.verify(), log.search(&q))).await {
            Ok(x) => x,
            Err(e) => return internal(e),
        };
    let mut b = String::new();
    match verification {
        Ok(v) => match &v.finding {
            None => {
                let _ = write!(
                    b,
                    "<p class=ok>{} ({} {}, head {})</p>",
                    esc(c.t(
                        "ハッシュチェーンは改ざんされていません",
                        "Hash chain intact"
                    )),
                    v.entries,
                    esc(c.t("件", "entries")),
                    esc(&v
                        .head_hash
                        .clone()
                        .unwrap_or_default()
                        .chars()
                        .take(16)
                        .collect::<String>())
                );
            }
            Some(f) => {
                let _ = write!(
                    b,
                    "<p class=bad>{} #{}: {}</p>",
                    esc(c.t(
                        "改ざんを検出しました。最初の不正な記録",
                        "Tampering detected; first bad entry"
                    )),
                    f.seq,
                    esc(&f.message)
                );
            }
        },
        Err(e) => {
            let _ = write!(b, "<p class=bad>{}</p>", esc(&e.to_string()));
        }
    }
    let v = |k: &str| esc(c.param(k).unwrap_or(""));
    let _ = write!(
        b,
        "<form class=filter method=get><label>kind <input name=kind value=\"{}\" size=14></label><label>actor <input name=actor value=\"{}\" size=12></label>\
<label>{} <input name=study value=\"{}\"></label><label>{} <input name=text value=\"{}\"></label><button>{}</button></form>",
        v("kind"), v("actor"), esc(c.t("検査", "study")), v("study"), esc(c.t("テキスト", "text")), v("text"), esc(c.t("検索", "Search"))
    );
    let entries = match entries {
        Ok(e) => e,
        Err(e) => return internal(e),
    };
    b.push_str("<table><tr><th>#</th><th>at (UTC)</th><th>kind</th><th>actor</th><th>study</th><th>detail</th></tr>");
    for e in &entries {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            e.seq,
            esc(&e.at),
            esc(&e.kind),
            esc(&e.actor),
            esc(e.accession.as_deref().or(e.study_uid.as_deref()).unwrap_or("")),
            esc(&e.detail)
        );
    }
    b.push_str("</table>");
    let mut qs: Vec<String> = ["kind", "actor", "study", "text"]
        .iter()
        .filter_map(|k| c.param(k).map(|v| format!("{k}={}", url(v))))
        .collect();
    qs.push(String::new());
    let base = qs.join("&amp;");
    if page > 0 {
        let _ = write!(
            b,
            "<a href=\"/audit?{base}page={}\">← {}</a> ",
            page - 1,
            esc(c.t("新しい", "newer"))
        );
    }
    if entries.len() == PER {
        let _ = write!(
            b,
            "<a href=\"/audit?{base}page={}\">{} →</a>",
            page + 1,
            esc(c.t("古い", "older"))
        );
    }
    layout(&c, c.t("監査証跡", "Audit trail"), &b)
}
