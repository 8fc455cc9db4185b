//! The ledger report as JSON (documented schema), CSV (one row per study) or one
//! self-contained HTML file (inline CSS and SVG, no script, nothing external), in
//! Japanese or English.

use super::compute::{LedgerReport, Share, StudyLedger};
use super::places::Location;
use super::reasons::{self, Lang};
use super::roster::csv_cell;
use std::fmt::Write as _;

/// At most this many per-study rows go into the HTML (the CSV and JSON have all).
pub const HTML_STUDY_ROWS: usize = 5000;

/// Indented when small enough to be read as it is; compact for big months.
pub fn json(report: &LedgerReport) -> Vec<u8> {
    if report.studies.len() <= 1000 {
        serde_json::to_vec_pretty(report).unwrap_or_default()
    } else {
        serde_json::to_vec(report).unwrap_or_default()
    }
}

pub const CSV_COLUMNS: [&str; 24] = [
    "study_uid",
    "accession",
    "state",
    "verdict",
    "receiving_facility",
    "first_received_at",
    "forwarded_at",
    "eligible",
    "reasons",
    "first_reader_id",
    "first_reader_category",
    "first_reader_place",
    "signer_id",
    "signer_category",
    "signer_board_certified",
    "signer_place",
    "confirmer_differs",
    "similarity",
    "signer_open_secs",
    "prelim_to_final_secs",
    "formal_confirmation",
    "formal_why",
    "readers",
    "read_events",
];

pub fn csv(report: &LedgerReport) -> Vec<u8> {
    let mut out = String::with_capacity(report.studies.len() * 200 + 512);
    out.push_str(&CSV_COLUMNS.join(","));
    out.push('\n');
    let opt = |v: Option<String>| v.unwrap_or_default();
    for s in &report.studies {
        let c = s.confirmation.as_ref();
        let cells = [
            s.study_uid.clone(),
            opt(s.accession.clone()),
            s.state.to_string(),
            opt(s.verdict.map(|v| v.to_string())),
            opt(s.receiving_facility.clone()),
            s.first_received_at.clone(),
            opt(s.forwarded_at.clone()),
            s.eligible.to_string(),
            s.reasons.join(";"),
            opt(s.first_reader.as_ref().map(|r| r.reader_id.clone())),
            opt(s.first_reader.as_ref().map(|r| r.category.to_string())),
            opt(s
                .first_reader
                .as_ref()
                .map(|r| r.place.as_str().to_string())),
            opt(s.signer.as_ref().map(|r| r.reader_id.clone())),
            opt(s.signer.as_ref().map(|r| r.category.to_string())),
            opt(s
                .signer
                .as_ref()
                .and_then(|r| r.board_certified)
                .map(|b| b.to_string())),
            opt(s.signer.as_ref().map(|r| r.place.as_str().to_string())),
            c.is_some().to_string(),
            opt(c.and_then(|c| c.similarity).map(|v| v.to_string())),
            opt(c.map(|c| c.signer_open_secs.to_string())),
            opt(c
                .and_then(|c| c.prelim_to_final_secs)
                .map(|v| v.to_string())),
            opt(c.map(|c| c.formal.to_string())),
            opt(c.map(|c| c.formal_why.join(";"))),
            s.readers
                .iter()
                .map(|r| format!("{}:{}:{}", r.reader_id, r.category, r.place.as_str()))
                .collect::<Vec<_>>()
                .join(";"),
            s.read_events.to_string(),
        ];
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&csv_cell(cell));
        }
        out.push('\n');
    }
    out.into_bytes()
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// Labels in both languages.
fn t(lang: Lang, key: &str) -> &'static str {
    let (ja, en) = match key {
        "title" => ("遠隔画像診断 読影台帳 月次報告", "Reading accountability ledger — monthly report"),
        "sending" => ("送信側医療機関", "Sending facility"),
        "month" => ("対象月", "Month"),
        "generated" => ("作成日時", "Generated"),
        "gateway" => ("ゲートウェイ", "Gateway"),
        "filter" => ("受信施設（絞り込み）", "Receiving facility (filter)"),
        "all" => ("すべて", "all"),
        "summary" => ("概要", "Summary"),
        "studies" => ("検査数", "Studies"),
        "forwarded" => ("送信済み", "Forwarded"),
        "with_final" => ("確定報告あり", "With final report"),
        "eligible" => ("算定可", "Eligible"),
        "not_eligible" => ("算定不可", "Not eligible"),
        "formal" => ("形式的確定", "Formal confirmations"),
        "held" => ("保留（期間中）", "Held (in the month)"),
        "released" => ("操作者判断で送信", "Released by override"),
        "incomplete" => ("情報不足のまま送信", "Forwarded incomplete"),
        "share" => ("非常勤医・研修医の初回読影割合（ATS-3 注2）", "Part-time / trainee first-read share (ATS-3-note2)"),
        "claimed" => ("算定対象", "Claimed"),
        "ft" => ("常勤", "Full-time"),
        "pt" => ("非常勤", "Part-time"),
        "tr" => ("研修医", "Trainee"),
        "unknown" => ("不明", "Unknown"),
        "level_ok" => ("基準内", "within threshold"),
        "level_warning" => ("警告：基準超過", "WARNING: above threshold"),
        "level_critical" => ("重大：上限超過", "CRITICAL: above the upper threshold"),
        "thresholds" => ("警告 / 重大", "warning / critical"),
        "by_facility" => ("受信施設別", "By receiving facility"),
        "facility" => ("施設", "Facility"),
        "reasons" => ("算定不可の理由", "Why studies are not eligible"),
        "code" => ("コード", "Code"),
        "clause" => ("根拠", "Clause"),
        "count" => ("件数", "Studies"),
        "meaning" => ("意味", "Meaning"),
        "todo" => ("対応", "What to do"),
        "reads" => ("読影者区分・読影場所別の読影数", "Reads by reader category and place"),
        "category" => ("区分", "Category"),
        "inside" => ("施設内", "Inside"),
        "outside" => ("施設外", "Outside"),
        "place_unknown" => ("場所不明", "Place unknown"),
        "formal_list" => ("形式的確定の疑い（ATS-3 注1）", "Formal (rubber-stamp) confirmations (ATS-3-note1)"),
        "study" => ("Study Instance UID", "Study Instance UID"),
        "accession" => ("受付番号", "Accession"),
        "author" => ("初回読影", "First reader"),
        "signer" => ("確定医", "Signer"),
        "similarity" => ("本文一致率", "Text similarity"),
        "open" => ("確定前の画像閲覧（秒）", "Image access before signing (s)"),
        "why" => ("判定", "Why"),
        "unknown_readers" => ("名簿にない読影医", "Readers not in the roster"),
        "unknown_places" => ("読影場所が不明な読影医", "Readers whose reading place is unknown"),
        "reader" => ("読影医ID", "Reader id"),
        "events" => ("イベント", "Events"),
        "examples" => ("例", "Examples"),
        "held_list" => ("保留・操作者判断・却下", "Held, released by override, rejected"),
        "state" => ("状態", "State"),
        "hold_reasons" => ("保留理由", "Hold reasons"),
        "held_at" => ("保留日時", "Held at"),
        "released_at" => ("送信日時（判断）", "Released at"),
        "override" => ("判断者・理由", "Override by / reason"),
        "incomplete_list" => ("臨床情報不足のまま送信した検査", "Studies forwarded without full context"),
        "per_study" => ("検査別の判定", "Per-study eligibility"),
        "yes" => ("可", "yes"),
        "no" => ("不可", "no"),
        "none" => ("なし", "none"),
        "glossary" => ("理由コード一覧", "Reason codes"),
        "truncated" => ("以降は省略（CSV・JSON に全件）", "more rows omitted (all rows are in the CSV and JSON)"),
        "policy" => ("判定ルール", "Rules applied"),
        "ft_remote" => ("常勤医の施設外読影を算定対象とする", "Full-time remote reads eligible"),
        "rules_formal" => ("形式的確定：本文一致率 ≥ {s} かつ閲覧 < {o} 秒、または {b} 秒内に {n} 件以上の確定", "Formal: similarity ≥ {s} and image access < {o} s, or ≥ {n} sign-offs within {b} s"),
        "footer" => ("本報告は readgate が受信・送信・読影記録から自動作成したものです。送信側医療機関が算定の責任を負います（ATS-5）。", "Generated by readgate from what it received, forwarded and recorded. The sending facility bears the liability for claims (ATS-5)."),
        _ => ("", ""),
    };
    match lang {
        Lang::Ja => ja,
        Lang::En => en,
    }
}

fn pct(v: f64) -> String {
    format!("{v:.1}%")
}

fn share_gauge(s: &Share, lang: Lang) -> String {
    let w = 600.0;
    let x = |p: f64| 10.0 + (p.clamp(0.0, 100.0) / 100.0) * w;
    let color = match s.level {
        "critical" => "#c0392b",
        "warning" => "#e67e22",
        _ => "#27ae60",
    };
    format!(
        r##"<svg class="chart" viewBox="0 0 620 70" width="620" height="70" role="img" aria-label="{label}">
<rect x="10" y="15" width="{w}" height="22" fill="#eee"/>
<rect x="10" y="15" width="{bar:.1}" height="22" fill="{color}"/>
<line x1="{wx:.1}" y1="8" x2="{wx:.1}" y2="44" stroke="#e67e22" stroke-width="2" stroke-dasharray="4 2"/>
<line x1="{cx:.1}" y1="8" x2="{cx:.1}" y2="44" stroke="#c0392b" stroke-width="2" stroke-dasharray="4 2"/>
<text x="{wx:.1}" y="60" font-size="11" text-anchor="middle">{wl}</text>
<text x="{cx:.1}" y="60" font-size="11" text-anchor="middle">{cl}</text>
<text x="14" y="31" font-size="12" fill="#000">{val}</text>
</svg>"##,
        label = esc(t(lang, "share")),
        bar = x(s.share_percent) - 10.0,
        wx = x(s.warning_percent),
        cx = x(s.critical_percent),
        wl = pct(s.warning_percent),
        cl = pct(s.critical_percent),
        val = pct(s.share_percent),
    )
}

fn bar_chart(rows: &[(String, usize)], color: &str) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1) as f64;
    let h = rows.len() * 24 + 10;
    let mut svg =
        format!(r#"<svg class="chart" viewBox="0 0 640 {h}" width="640" height="{h}" role="img">"#);
    for (i, (label, n)) in rows.iter().enumerate() {
        let y = 5 + i * 24;
        let bw = (*n as f64 / max) * 360.0;
        let _ = write!(
            svg,
            r#"<text x="230" y="{ty}" font-size="12" text-anchor="end">{l}</text><rect x="236" y="{y}" width="{bw:.1}" height="18" fill="{color}"/><text x="{tx:.1}" y="{ty}" font-size="12">{n}</text>"#,
            ty = y + 14,
            l = esc(label),
            tx = 240.0 + bw,
        );
    }
    svg.push_str("</svg>");
    svg
}

fn cat_label(lang: Lang, c: &str) -> &'static str {
    match c {
        "full_time" => t(lang, "ft"),
        "part_time" => t(lang, "pt"),
        "trainee" => t(lang, "tr"),
        _ => t(lang, "unknown"),
    }
}

fn place_label(lang: Lang, p: Location) -> &'static str {
    match p {
        Location::Inside => t(lang, "inside"),
        Location::Outside => t(lang, "outside"),
        Location::Unknown => t(lang, "place_unknown"),
    }
}

fn level_label(lang: Lang, level: &str) -> &'static str {
    match level {
        "critical" => t(lang, "level_critical"),
        "warning" => t(lang, "level_warning"),
        _ => t(lang, "level_ok"),
    }
}

const CSS: &str = "body{font-family:'Hiragino Sans','Noto Sans CJK JP','Yu Gothic',Meiryo,sans-serif;margin:2em;color:#222;max-width:1200px}\
h1{font-size:1.5em;border-bottom:3px solid #2c3e50;padding-bottom:.3em}h2{font-size:1.15em;margin-top:2em;border-left:6px solid #2c3e50;padding-left:.5em}\
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}th,td{border:1px solid #bbb;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#f0f3f6}td.n{text-align:right}.cards{display:flex;flex-wrap:wrap;gap:.6em}.card{border:1px solid #ccc;border-radius:6px;padding:.5em .9em;min-width:8em}\
.card b{display:block;font-size:1.5em}.ok{color:#1e8449}.warning{color:#d35400;font-weight:bold}.critical{color:#c0392b;font-weight:bold}\
.badge{display:inline-block;padding:.1em .5em;border-radius:4px;color:#fff}.badge.ok{background:#27ae60}.badge.warning{background:#e67e22}.badge.critical{background:#c0392b}\
code{font-size:.9em}.uid{font-family:monospace;font-size:.85em}.meta td:first-child{font-weight:bold}footer{margin-top:3em;font-size:.8em;color:#555}\
@media print{body{margin:0}h2{page-break-after:avoid}}";

pub fn html(report: &LedgerReport, lang: Lang) -> Vec<u8> {
    let mut h = String::with_capacity(64 * 1024 + report.studies.len().min(HTML_STUDY_ROWS) * 400);
    let l = |k| t(lang, k);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{} {}</title><style>{CSS}</style></head><body>\n",
        if lang == Lang::Ja { "ja" } else { "en" },
        esc(l("title")),
        esc(&report.month)
    );
    let _ = write!(h, "<h1>{}</h1>\n<table class=\"meta\">", esc(l("title")));
    for (k, v) in [
        ("sending", report.sending_facility.clone()),
        (
            "month",
            format!("{} (UTC{})", report.month, report.utc_offset),
        ),
        (
            "filter",
            report
                .receiving_facility_filter
                .clone()
                .unwrap_or_else(|| l("all").to_string()),
        ),
        ("gateway", report.gateway.clone()),
        ("generated", report.generated_at.clone()),
    ] {
        let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(l(k)), esc(&v));
    }
    h.push_str("</table>\n");

    // Summary cards.
    let tt = &report.totals;
    let _ = write!(h, "<h2>{}</h2><div class=\"cards\">", esc(l("summary")));
    for (k, v, class) in [
        ("studies", tt.studies, ""),
        ("forwarded", tt.forwarded, ""),
        ("with_final", tt.with_final_report, ""),
        ("eligible", tt.eligible, "ok"),
        (
            "not_eligible",
            tt.not_eligible,
            if tt.not_eligible > 0 { "warning" } else { "" },
        ),
        (
            "formal",
            tt.formal_confirmations,
            if tt.formal_confirmations > 0 {
                "warning"
            } else {
                ""
            },
        ),
        ("held", tt.ever_held, ""),
        ("released", tt.released_override, ""),
        ("incomplete", tt.forwarded_incomplete, ""),
    ] {
        let _ = write!(
            h,
            "<div class=\"card\"><b class=\"{class}\">{v}</b>{}</div>",
            esc(l(k))
        );
    }
    h.push_str("</div>\n");

    // Part-time share.
    let s = &report.part_time_share;
    let _ = write!(
        h,
        "<h2>{}</h2><p><span class=\"badge {lvl}\">{}</span> <b class=\"{lvl}\">{}</b> — {} {} / {} {} / {} {} ({} {} / {})</p>{}",
        esc(l("share")),
        esc(level_label(lang, s.level)),
        pct(s.share_percent),
        esc(l("claimed")),
        s.claimed,
        esc(l("pt")),
        s.first_read_part_time,
        esc(l("tr")),
        s.first_read_trainee,
        esc(l("thresholds")),
        pct(s.warning_percent),
        pct(s.critical_percent),
        share_gauge(s, lang),
        lvl = s.level,
    );
    if !report.by_receiving_facility.is_empty() {
        let _ = write!(
            h,
            "<h3>{}</h3><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>%</th><th></th></tr>",
            esc(l("by_facility")),
            esc(l("facility")),
            esc(l("claimed")),
            esc(l("ft")),
            esc(l("pt")),
            esc(l("tr"))
        );
        for f in &report.by_receiving_facility {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"{lvl}\">{}</td></tr>",
                esc(&f.facility),
                f.claimed,
                f.first_read_full_time,
                f.first_read_part_time,
                f.first_read_trainee,
                pct(f.share_percent),
                esc(level_label(lang, f.level)),
                lvl = f.level
            );
        }
        h.push_str("</table>\n");
    }

    // Reasons.
    let _ = write!(h, "<h2>{}</h2>", esc(l("reasons")));
    if report.reasons.is_empty() {
        let _ = write!(h, "<p>{}</p>", esc(l("none")));
    } else {
        let bars: Vec<(String, usize)> = report
            .reasons
            .iter()
            .map(|r| (r.code.to_string(), r.studies))
            .collect();
        h.push_str(&bar_chart(&bars, "#c0392b"));
        let _ = write!(
            h,
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            esc(l("code")),
            esc(l("clause")),
            esc(l("count")),
            esc(l("meaning")),
            esc(l("todo"))
        );
        for rc in &report.reasons {
            let info = reasons::find(rc.code);
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
                rc.code,
                rc.clause,
                rc.studies,
                esc(info.map(|i| i.meaning(lang)).unwrap_or("")),
                esc(info.map(|i| i.todo(lang)).unwrap_or(""))
            );
        }
        h.push_str("</table>\n");
    }

    // Reads by category and place.
    let _ = write!(h, "<h2>{}</h2>", esc(l("reads")));
    let cats = ["full_time", "part_time", "trainee", "unknown"];
    let places = [Location::Inside, Location::Outside, Location::Unknown];
    let get = |c: &str, p: Location| {
        report
            .reads_by_category_place
            .iter()
            .find(|r| r.category == c && r.place == p)
            .map(|r| r.reads)
            .unwrap_or(0)
    };
    let _ = write!(h, "<table><tr><th>{}</th>", esc(l("category")));
    for p in places {
        let _ = write!(h, "<th>{}</th>", esc(place_label(lang, p)));
    }
    h.push_str("</tr>");
    let mut bars = Vec::new();
    for c in cats {
        let _ = write!(h, "<tr><td>{}</td>", esc(cat_label(lang, c)));
        for p in places {
            let n = get(c, p);
            let class = if p == Location::Outside && n > 0 && c != "full_time" {
                " critical"
            } else {
                ""
            };
            let _ = write!(h, "<td class=\"n{class}\">{n}</td>");
            if n > 0 {
                bars.push((
                    format!("{} / {}", cat_label(lang, c), place_label(lang, p)),
                    n,
                ));
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>\n");
    h.push_str(&bar_chart(&bars, "#2c3e50"));

    // Formal confirmations.
    let _ = write!(h, "<h2>{}</h2>", esc(l("formal_list")));
    if report.formal_confirmations.is_empty() {
        let _ = write!(h, "<p>{}</p>", esc(l("none")));
    } else {
        let _ = write!(
            h,
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            esc(l("study")),
            esc(l("accession")),
            esc(l("author")),
            esc(l("signer")),
            esc(l("similarity")),
            esc(l("open")),
            esc(l("why"))
        );
        for f in report.formal_confirmations.iter().take(HTML_STUDY_ROWS) {
            let _ = write!(
                h,
                "<tr><td class=\"uid\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.0}</td><td>{}</td></tr>",
                esc(&f.study_uid),
                esc(f.accession.as_deref().unwrap_or("")),
                esc(&f.author),
                esc(&f.signer),
                f.similarity.map(|s| format!("{:.1}%", s * 100.0)).unwrap_or_else(|| "—".into()),
                f.signer_open_secs,
                esc(&f.why.join(", "))
            );
        }
        h.push_str("</table>\n");
    }

    // Unknown readers and places.
    for (title, rows) in [
        (
            "unknown_readers",
            report
                .unknown_readers
                .iter()
                .map(|u| {
                    (
                        u.reader_id.clone(),
                        u.events,
                        u.studies,
                        u.example_studies.join(" "),
                    )
                })
                .collect::<Vec<_>>(),
        ),
        (
            "unknown_places",
            report
                .unknown_places
                .iter()
                .map(|u| {
                    (
                        u.reader_id.clone(),
                        u.events,
                        u.studies,
                        u.example_studies.join(" "),
                    )
                })
                .collect(),
        ),
    ] {
        let _ = write!(h, "<h2>{}</h2>", esc(l(title)));
        if rows.is_empty() {
            let _ = write!(h, "<p>{}</p>", esc(l("none")));
            continue;
        }
        let _ = write!(
            h,
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            esc(l("reader")),
            esc(l("events")),
            esc(l("studies")),
            esc(l("examples"))
        );
        for (id, ev, st, ex) in rows {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{ev}</td><td class=\"n\">{st}</td><td class=\"uid\">{}</td></tr>",
                esc(if id.is_empty() { "(blank)" } else { &id }),
                esc(&ex)
            );
        }
        h.push_str("</table>\n");
    }

    // Held / released / incomplete.
    for (title, rows) in [
        ("held_list", &report.held),
        ("incomplete_list", &report.forwarded_incomplete),
    ] {
        let _ = write!(h, "<h2>{}</h2>", esc(l(title)));
        if rows.is_empty() {
            let _ = write!(h, "<p>{}</p>", esc(l("none")));
            continue;
        }
        let _ = write!(
            h,
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            esc(l("study")),
            esc(l("accession")),
            esc(l("state")),
            esc(l("hold_reasons")),
            esc(l("held_at")),
            esc(l("released_at")),
            esc(l("override"))
        );
        for r in rows.iter().take(HTML_STUDY_ROWS) {
            let over = match (&r.override_by, &r.override_reason) {
                (Some(b), Some(w)) => format!("{b}: {w}"),
                (Some(b), None) => b.clone(),
                _ => String::new(),
            };
            let _ = write!(
                h,
                "<tr><td class=\"uid\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.study_uid),
                esc(r.accession.as_deref().unwrap_or("")),
                esc(&format!("{}{}", r.state, r.verdict.map(|v| format!(" ({v})")).unwrap_or_default())),
                esc(&r.reasons.join(", ")),
                esc(r.held_at.as_deref().unwrap_or("")),
                esc(r.released_at.as_deref().unwrap_or("")),
                esc(&over)
            );
        }
        h.push_str("</table>\n");
    }

    // Per study.
    let _ = write!(
        h,
        "<h2>{}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        esc(l("per_study")),
        esc(l("study")),
        esc(l("accession")),
        esc(l("facility")),
        esc(l("eligible")),
        esc(l("author")),
        esc(l("signer")),
        esc(l("reasons"))
    );
    for s in report.studies.iter().take(HTML_STUDY_ROWS) {
        study_row(&mut h, s, lang);
    }
    h.push_str("</table>\n");
    if report.studies.len() > HTML_STUDY_ROWS {
        let _ = write!(
            h,
            "<p>… {} {}</p>",
            report.studies.len() - HTML_STUDY_ROWS,
            esc(l("truncated"))
        );
    }

    // Rules and glossary.
    let p = &report.policy;
    let _ = write!(
        h,
        "<h2>{}</h2><ul><li>{}: {}</li><li>{}</li><li>{}: {} / {}</li></ul>",
        esc(l("policy")),
        esc(l("ft_remote")),
        if p.full_time_remote_eligible {
            l("yes")
        } else {
            l("no")
        },
        esc(&l("rules_formal")
            .replace("{s}", &p.unchanged_similarity.to_string())
            .replace("{o}", &p.min_open_secs.to_string())
            .replace("{n}", &p.burst_count.to_string())
            .replace("{b}", &p.burst_window_secs.to_string())),
        esc(l("thresholds")),
        pct(p.part_time_warning_percent),
        pct(p.part_time_critical_percent)
    );
    let _ = write!(
        h,
        "<h2>{}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        esc(l("glossary")),
        esc(l("code")),
        esc(l("clause")),
        esc(l("meaning")),
        esc(l("todo"))
    );
    for r in reasons::catalogue() {
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.code,
            r.clause,
            esc(r.meaning(lang)),
            esc(r.todo(lang))
        );
    }
    let _ = write!(
        h,
        "</table>\n<footer>{} · {} {}</footer></body></html>\n",
        esc(l("footer")),
        report.schema,
        esc(&report.generated_at)
    );
    h.into_bytes()
}

fn study_row(h: &mut String, s: &StudyLedger, lang: Lang) {
    let who = |r: &Option<super::compute::ReaderOnStudy>| {
        r.as_ref()
            .map(|r| {
                format!(
                    "{} ({}, {})",
                    r.reader_id,
                    cat_label(lang, r.category),
                    place_label(lang, r.place)
                )
            })
            .unwrap_or_default()
    };
    let _ = write!(
        h,
        "<tr><td class=\"uid\">{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        esc(&s.study_uid),
        esc(s.accession.as_deref().unwrap_or("")),
        esc(s.receiving_facility.as_deref().unwrap_or("")),
        if s.eligible { "ok" } else { "critical" },
        if s.eligible { t(lang, "yes") } else { t(lang, "no") },
        esc(&who(&s.first_reader)),
        esc(&who(&s.signer)),
        s.reasons.iter().map(|c| format!("<code>{c}</code>")).collect::<Vec<_>>().join(" ")
    );
}
