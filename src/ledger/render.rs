//! The ledger report as JSON (documented schema), CSV (one row per study) or one
//! self-contained HTML file (inline CSS and SVG, no script, nothing external), in
//! Japanese or English.

use super::compute::{LedgerReport, ReaderCategory, ReasonCount, Share, ShareLevel, StudyLedger};
use super::places::Location;
use super::reasons;
use super::roster::csv_cell;
use crate::i18n::{self, Texts};
use crate::model::Lang;
use askama::Template;

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

fn pct(v: f64) -> String {
    format!("{v:.1}%")
}

#[derive(Template)]
#[template(path = "ledger/gauge.svg")]
struct Gauge<'a> {
    label: &'a str,
    bar: String,
    color: &'a str,
    wx: String,
    cx: String,
    wl: String,
    cl: String,
    val: String,
}

fn share_gauge(s: &Share, t: &Texts) -> String {
    let w = 600.0;
    let x = |p: f64| 10.0 + (p.clamp(0.0, 100.0) / 100.0) * w;
    let color = match s.level {
        ShareLevel::Critical => "#c0392b",
        ShareLevel::Warning => "#e67e22",
        ShareLevel::Ok => "#27ae60",
    };
    Gauge {
        label: t.share,
        bar: format!("{:.1}", x(s.share_percent) - 10.0),
        color,
        wx: format!("{:.1}", x(s.warning_percent)),
        cx: format!("{:.1}", x(s.critical_percent)),
        wl: pct(s.warning_percent),
        cl: pct(s.critical_percent),
        val: pct(s.share_percent),
    }
    .render()
    .unwrap_or_default()
}

struct Bar {
    y: usize,
    ty: usize,
    bw: String,
    tx: String,
    label: String,
    n: usize,
}

#[derive(Template)]
#[template(path = "ledger/bars.svg")]
struct BarChart<'a> {
    h: usize,
    rows: Vec<Bar>,
    color: &'a str,
}

fn bar_chart(rows: &[(String, usize)], color: &str) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1) as f64;
    let bars = rows
        .iter()
        .enumerate()
        .map(|(i, (label, n))| {
            let y = 5 + i * 24;
            let bw = (*n as f64 / max) * 360.0;
            Bar {
                y,
                ty: y + 14,
                bw: format!("{bw:.1}"),
                tx: format!("{:.1}", 240.0 + bw),
                label: label.clone(),
                n: *n,
            }
        })
        .collect();
    BarChart {
        h: rows.len() * 24 + 10,
        rows: bars,
        color,
    }
    .render()
    .unwrap_or_default()
}

/// A reader category in the language of `t`, as the report and the console show it.
pub fn category_label(t: &'static Texts, c: ReaderCategory) -> &'static str {
    match c {
        ReaderCategory::FullTime => t.full_time,
        ReaderCategory::PartTime => t.part_time,
        ReaderCategory::Trainee => t.trainee,
        ReaderCategory::Unknown => t.unknown,
    }
}

/// A place (inside, outside, unknown) in the language of `t`.
pub fn place_label(t: &'static Texts, p: Location) -> &'static str {
    match p {
        Location::Inside => t.inside,
        Location::Outside => t.outside,
        Location::Unknown => t.place_unknown,
    }
}

struct FormalView<'a> {
    study_uid: &'a str,
    accession: &'a str,
    author: &'a str,
    signer: &'a str,
    similarity: String,
    open: String,
    why: String,
}

struct HeldView<'a> {
    study_uid: &'a str,
    accession: &'a str,
    state: String,
    reasons: String,
    held_at: &'a str,
    released_at: &'a str,
    over: String,
}

struct StudyView<'a> {
    study_uid: &'a str,
    accession: &'a str,
    facility: &'a str,
    eligible: bool,
    first_reader: String,
    signer: String,
    reasons: &'a [&'static str],
}

type UnknownRows = Vec<(String, usize, usize, String)>;

#[derive(Template)]
#[template(path = "ledger/report.html")]
struct ReportPage<'a> {
    t: &'static Texts,
    lang: Lang,
    r: &'a LedgerReport,
    s: &'a Share,
    meta: Vec<(&'static str, String)>,
    cards: Vec<(&'static str, usize, &'static str)>,
    gauge: String,
    reason_bars: String,
    reasons: Vec<(&'a ReasonCount, &'static str, &'static str)>,
    places: Vec<&'static str>,
    reads: Vec<(&'static str, Vec<(usize, bool)>)>,
    read_bars: String,
    formal: Vec<FormalView<'a>>,
    unknown: Vec<(&'static str, UnknownRows)>,
    held: Vec<(&'static str, Vec<HeldView<'a>>)>,
    studies: Vec<StudyView<'a>>,
    omitted: Option<usize>,
    rules_formal: String,
    glossary: Vec<(&'static str, &'static str, &'static str, &'static str)>,
}

impl ReportPage<'_> {
    fn pct(&self, v: &f64) -> String {
        pct(*v)
    }

    fn level_label(&self, level: &ShareLevel) -> &'static str {
        match level {
            ShareLevel::Critical => self.t.level_critical,
            ShareLevel::Warning => self.t.level_warning,
            ShareLevel::Ok => self.t.level_ok,
        }
    }
}

pub fn html(report: &LedgerReport, lang: Lang) -> Vec<u8> {
    let t = i18n::texts(lang);
    let tt = &report.totals;
    let meta = vec![
        (t.sending, report.sending_facility.clone()),
        (
            t.month,
            format!("{} (UTC{})", report.month, report.utc_offset),
        ),
        (
            t.facility_filter,
            report
                .receiving_facility_filter
                .clone()
                .unwrap_or_else(|| t.all.to_string()),
        ),
        (t.gateway, report.gateway.clone()),
        (t.generated, report.generated_at.clone()),
    ];
    let cards = vec![
        (t.studies, tt.studies, ""),
        (t.forwarded, tt.forwarded, ""),
        (t.with_final, tt.with_final_report, ""),
        (t.eligible, tt.eligible, "ok"),
        (
            t.not_eligible,
            tt.not_eligible,
            if tt.not_eligible > 0 { "warning" } else { "" },
        ),
        (
            t.formal,
            tt.formal_confirmations,
            if tt.formal_confirmations > 0 {
                "warning"
            } else {
                ""
            },
        ),
        (t.held_in_month, tt.ever_held, ""),
        (t.released_override, tt.released_override, ""),
        (t.incomplete, tt.forwarded_incomplete, ""),
    ];
    let reason_bars: Vec<(String, usize)> = report
        .reasons
        .iter()
        .map(|r| (r.code.to_string(), r.studies))
        .collect();
    let reason_rows = report
        .reasons
        .iter()
        .map(|rc| {
            let info = reasons::find(rc.code);
            (
                rc,
                info.map(|i| i.meaning(lang)).unwrap_or(""),
                info.map(|i| i.todo(lang)).unwrap_or(""),
            )
        })
        .collect();

    // Reads by category and place.
    let places = [Location::Inside, Location::Outside, Location::Unknown];
    let get = |c: ReaderCategory, p: Location| {
        report
            .reads_by_category_place
            .iter()
            .find(|r| r.category == c && r.place == p)
            .map(|r| r.reads)
            .unwrap_or(0)
    };
    let mut read_bars = Vec::new();
    let reads = ReaderCategory::ALL
        .iter()
        .map(|&c| {
            let cells = places
                .iter()
                .map(|&p| {
                    let n = get(c, p);
                    if n > 0 {
                        read_bars.push((
                            format!("{} / {}", category_label(t, c), place_label(t, p)),
                            n,
                        ));
                    }
                    (
                        n,
                        p == Location::Outside && n > 0 && c != ReaderCategory::FullTime,
                    )
                })
                .collect();
            (category_label(t, c), cells)
        })
        .collect();

    let formal = report
        .formal_confirmations
        .iter()
        .take(HTML_STUDY_ROWS)
        .map(|f| FormalView {
            study_uid: &f.study_uid,
            accession: f.accession.as_deref().unwrap_or(""),
            author: &f.author,
            signer: &f.signer,
            similarity: f
                .similarity
                .map(|s| format!("{:.1}%", s * 100.0))
                .unwrap_or_else(|| "—".into()),
            open: format!("{:.0}", f.signer_open_secs),
            why: f.why.join(", "),
        })
        .collect();
    // Readers and places the roster does not know: one row each, a blank id shown as such.
    let unknown_row = |id: &str, events, studies, examples: &[String]| {
        let id = if id.is_empty() { "(blank)" } else { id };
        (id.to_string(), events, studies, examples.join(" "))
    };
    let unknown = vec![
        (
            t.unknown_readers,
            report
                .unknown_readers
                .iter()
                .map(|u| unknown_row(&u.reader_id, u.events, u.studies, &u.example_studies))
                .collect(),
        ),
        (
            t.unknown_places,
            report
                .unknown_places
                .iter()
                .map(|u| unknown_row(&u.reader_id, u.events, u.studies, &u.example_studies))
                .collect(),
        ),
    ];
    fn held_view(rows: &[super::compute::HeldRow]) -> Vec<HeldView<'_>> {
        rows.iter()
            .take(HTML_STUDY_ROWS)
            .map(|r| HeldView {
                study_uid: &r.study_uid,
                accession: r.accession.as_deref().unwrap_or(""),
                state: format!(
                    "{}{}",
                    r.state,
                    r.verdict.map(|v| format!(" ({v})")).unwrap_or_default()
                ),
                reasons: r.reasons.join(", "),
                held_at: r.held_at.as_deref().unwrap_or(""),
                released_at: r.released_at.as_deref().unwrap_or(""),
                over: match (&r.override_by, &r.override_reason) {
                    (Some(b), Some(w)) => format!("{b}: {w}"),
                    (Some(b), None) => b.clone(),
                    _ => String::new(),
                },
            })
            .collect()
    }
    let held = vec![
        (t.held_list, held_view(&report.held)),
        (t.incomplete_list, held_view(&report.forwarded_incomplete)),
    ];
    let who = |r: &Option<super::compute::ReaderOnStudy>| {
        r.as_ref()
            .map(|r| {
                format!(
                    "{} ({}, {})",
                    r.reader_id,
                    category_label(t, r.category),
                    place_label(t, r.place)
                )
            })
            .unwrap_or_default()
    };
    let studies = report
        .studies
        .iter()
        .take(HTML_STUDY_ROWS)
        .map(|s: &StudyLedger| StudyView {
            study_uid: &s.study_uid,
            accession: s.accession.as_deref().unwrap_or(""),
            facility: s.receiving_facility.as_deref().unwrap_or(""),
            eligible: s.eligible,
            first_reader: who(&s.first_reader),
            signer: who(&s.signer),
            reasons: &s.reasons,
        })
        .collect();
    let p = &report.policy;
    let page = ReportPage {
        t,
        lang,
        r: report,
        s: &report.part_time_share,
        meta,
        cards,
        gauge: share_gauge(&report.part_time_share, t),
        reason_bars: bar_chart(&reason_bars, "#c0392b"),
        reasons: reason_rows,
        places: places.iter().map(|&p| place_label(t, p)).collect(),
        reads,
        read_bars: bar_chart(&read_bars, "#2c3e50"),
        formal,
        unknown,
        held,
        studies,
        omitted: (report.studies.len() > HTML_STUDY_ROWS)
            .then(|| report.studies.len() - HTML_STUDY_ROWS),
        rules_formal: i18n::fill(
            t.rules_formal,
            &[
                ("s", &p.unchanged_similarity.to_string()),
                ("o", &p.min_open_secs.to_string()),
                ("n", &p.burst_count.to_string()),
                ("b", &p.burst_window_secs.to_string()),
            ],
        ),
        glossary: reasons::catalogue()
            .iter()
            .map(|r| (r.code, r.clause, r.meaning(lang), r.todo(lang)))
            .collect(),
    };
    match page.render() {
        Ok(h) => h.into_bytes(),
        Err(e) => {
            tracing::warn!(error = %e, "ledger report: template error");
            Vec::new()
        }
    }
}
