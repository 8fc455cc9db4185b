//! The one catalogue of the words readgate shows people, in Japanese and English: the
//! console's pages, the ledger's HTML report and the login messages. Each text has a
//! static id (a field of [`Texts`]); code reads `i18n::texts(lang).held_studies`, a
//! template reads `{{ t.held_studies }}`, so a missing or misspelt id does not compile.
//! The hold reasons' and ledger reasons' long texts stay beside their codes
//! (`decide::reasons`, `ledger::reasons`), where `docs/checks.md` is generated from.
//!
//! Texts with a `{name}` placeholder are filled with [`fill`].

use crate::model::Lang;

macro_rules! catalogue {
    ($($id:ident: $ja:literal, $en:literal;)*) => {
        /// Every text, in one language.
        #[derive(Debug)]
        pub struct Texts {
            $(pub $id: &'static str,)*
        }
        /// Japanese.
        pub static JA: Texts = Texts { $($id: $ja,)* };
        /// English.
        pub static EN: Texts = Texts { $($id: $en,)* };
    };
}

catalogue! {
    // Console: navigation and login.
    held_studies: "保留中の検査", "Held studies";
    queue_nav: "送信キュー", "Queue and links";
    accountability_nav: "読影責任台帳", "Accountability";
    audit_trail: "監査証跡", "Audit trail";
    log_out: "ログアウト", "Log out";
    log_in: "ログイン", "Log in";
    user_name: "ユーザー名", "User name";
    password: "パスワード", "Password";
    login_fields_missing: "ユーザー名とパスワードを入力してください (user, password)", "enter a user name and a password (fields user, password)";
    login_locked: "ログインの失敗が続いたため、{minutes} 分間ロックされています。しばらくしてからお試しください。", "Too many failed logins: locked for {minutes} more minute(s). Try again later.";
    login_wrong: "ユーザー名またはパスワードが違います。", "Wrong user name or password.";
    // Console: held studies.
    how_to_fix: "対処", "How to fix";
    modality: "モダリティ", "Modality";
    hold_reason: "保留理由", "Reason";
    search: "検索", "Search";
    filter: "絞り込み", "Filter";
    patient: "患者氏名", "Patient";
    accession: "受付番号", "Accession";
    held_since: "保留開始", "Held since";
    what_is_missing: "不足している情報", "What is missing";
    no_held_studies: "保留中の検査はありません。", "No held studies.";
    // Console: a study's timeline events.
    ev_received: "受信", "Received";
    ev_evaluated: "評価", "Evaluated";
    ev_held: "保留", "Held";
    ev_context: "臨床情報の到着", "Context arrived";
    ev_released: "送信許可", "Released";
    ev_released_override: "管理者による送信許可", "Released by an administrator";
    ev_rejected: "却下", "Rejected";
    ev_forwarded: "送信完了", "Forwarded";
    ev_failed: "送信失敗", "Forwarding failed";
    ev_retry: "再送", "Retry";
    // Console: a study.
    study: "検査", "Study";
    state: "状態", "State";
    admin_actions: "操作（管理者）", "Actions (administrators)";
    justification_required: "送信する理由（必須）", "Justification (required)";
    release: "送信を許可する", "Release";
    reject_reason_required: "却下の理由（必須）", "Reason for rejecting (required)";
    reject: "却下する", "Reject";
    reevaluate_now: "今すぐ再評価する", "Re-evaluate now";
    retry_study: "再送する", "Retry";
    timeline: "経過", "Timeline";
    when: "日時", "When";
    event: "出来事", "Event";
    detail: "詳細", "Detail";
    forwarding_tags: "送信時のタグ", "Forwarding tags";
    reading_facility: "読影施設", "Facility";
    destination: "送信先", "Destination";
    audit_reference: "監査証跡の参照", "Audit reference";
    instances_forwarded: "送信済みインスタンス", "Instances forwarded";
    check_results: "確認結果と情報源", "Check results and their sources";
    check: "確認項目", "Check";
    check_clause: "条項", "Clause";
    result: "結果", "Result";
    check_detail: "内容", "Detail";
    sources: "情報源", "Sources";
    passed: "充足", "passed";
    missing: "不足", "missing";
    evaluation_record: "評価の記録（JSON）", "Evaluation record (JSON)";
    reports_heading: "読影レポート", "Reports";
    eligibility_heading: "読影責任（算定可否）", "Reading accountability (eligibility)";
    what_to_do: "対処", "What to do";
    reader: "読影医", "Reader";
    place: "読影場所", "Place";
    read_events: "読影イベント数", "Read events";
    this_months_ledger: "この月の読影責任台帳", "This month's ledger";
    ledger_eligibility: "読影責任台帳（適格性）", "Accountability ledger (eligibility)";
    audit_of_study: "この検査の監査証跡", "Audit trail of this study";
    // Console: queue.
    queue_title: "送信キューと接続", "Queue and links";
    queue: "キュー", "Queue";
    instances: "インスタンス", "instances";
    last_success: "最後の送信成功", "Last success";
    attempts: "試行回数", "Attempts";
    error: "エラー", "Error";
    retry: "再送", "Retry";
    // Console: accountability and audit.
    reading_accountability: "読影責任台帳", "Reading accountability";
    show: "表示", "Show";
    download: "ダウンロード", "Download";
    chain_intact: "ハッシュチェーンは改ざんされていません", "Hash chain intact";
    entries: "件", "entries";
    tampering: "改ざんを検出しました。最初の不正な記録", "Tampering detected; first bad entry";
    study_lower: "検査", "study";
    text: "テキスト", "text";
    newer: "新しい", "newer";
    older: "古い", "older";
    // Ledger report (also shared with the console).
    title: "遠隔画像診断 読影台帳 月次報告", "Reading accountability ledger — monthly report";
    sending: "送信側医療機関", "Sending facility";
    month: "対象月", "Month";
    generated: "作成日時", "Generated";
    gateway: "ゲートウェイ", "Gateway";
    facility_filter: "受信施設（絞り込み）", "Receiving facility (filter)";
    all: "すべて", "all";
    summary: "概要", "Summary";
    studies: "検査数", "Studies";
    forwarded: "送信済み", "Forwarded";
    with_final: "確定報告あり", "With final report";
    eligible: "算定可", "Eligible";
    not_eligible: "算定不可", "Not eligible";
    formal: "形式的確定", "Formal confirmations";
    held_in_month: "保留（期間中）", "Held (in the month)";
    released_override: "操作者判断で送信", "Released by override";
    incomplete: "情報不足のまま送信", "Forwarded incomplete";
    share: "非常勤医・研修医の初回読影割合（ATS-3 注2）", "Part-time / trainee first-read share (ATS-3-note2)";
    claimed: "算定対象", "Claimed";
    full_time: "常勤", "Full-time";
    part_time: "非常勤", "Part-time";
    trainee: "研修医", "Trainee";
    unknown: "不明", "Unknown";
    level_ok: "基準内", "within threshold";
    level_warning: "警告：基準超過", "WARNING: above threshold";
    level_critical: "重大：上限超過", "CRITICAL: above the upper threshold";
    thresholds: "警告 / 重大", "warning / critical";
    by_facility: "受信施設別", "By receiving facility";
    facility: "施設", "Facility";
    reasons: "算定不可の理由", "Why studies are not eligible";
    code: "コード", "Code";
    clause: "根拠", "Clause";
    count: "件数", "Studies";
    meaning: "意味", "Meaning";
    todo: "対応", "What to do";
    reads: "読影者区分・読影場所別の読影数", "Reads by reader category and place";
    category: "区分", "Category";
    inside: "施設内", "Inside";
    outside: "施設外", "Outside";
    place_unknown: "場所不明", "Place unknown";
    formal_list: "形式的確定の疑い（ATS-3 注1）", "Formal (rubber-stamp) confirmations (ATS-3-note1)";
    study_uid: "Study Instance UID", "Study Instance UID";
    author: "初回読影", "First reader";
    signer: "確定医", "Signer";
    similarity: "本文一致率", "Text similarity";
    open_secs: "確定前の画像閲覧（秒）", "Image access before signing (s)";
    why: "判定", "Why";
    unknown_readers: "名簿にない読影医", "Readers not in the roster";
    unknown_places: "読影場所が不明な読影医", "Readers whose reading place is unknown";
    reader_id: "読影医ID", "Reader id";
    events: "イベント", "Events";
    examples: "例", "Examples";
    held_list: "保留・操作者判断・却下", "Held, released by override, rejected";
    hold_reasons: "保留理由", "Hold reasons";
    held_at: "保留日時", "Held at";
    released_at: "送信日時（判断）", "Released at";
    override_by: "判断者・理由", "Override by / reason";
    incomplete_list: "臨床情報不足のまま送信した検査", "Studies forwarded without full context";
    per_study: "検査別の判定", "Per-study eligibility";
    yes: "可", "yes";
    no: "不可", "no";
    none: "なし", "none";
    glossary: "理由コード一覧", "Reason codes";
    truncated: "以降は省略（CSV・JSON に全件）", "more rows omitted (all rows are in the CSV and JSON)";
    policy: "判定ルール", "Rules applied";
    ft_remote: "常勤医の施設外読影を算定対象とする", "Full-time remote reads eligible";
    rules_formal: "形式的確定：本文一致率 ≥ {s} かつ閲覧 < {o} 秒、または {b} 秒内に {n} 件以上の確定", "Formal: similarity ≥ {s} and image access < {o} s, or ≥ {n} sign-offs within {b} s";
    footer: "本報告は readgate が受信・送信・読影記録から自動作成したものです。送信側医療機関が算定の責任を負います（ATS-5）。", "Generated by readgate from what it received, forwarded and recorded. The sending facility bears the liability for claims (ATS-5).";
}

/// The catalogue in `lang`.
pub fn texts(lang: Lang) -> &'static Texts {
    match lang {
        Lang::Ja => &JA,
        Lang::En => &EN,
    }
}

/// Fills `{name}` placeholders of a catalogue text.
pub fn fill(text: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(text.to_string(), |acc, (k, v)| {
        acc.replace(&format!("{{{k}}}"), v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_placeholders() {
        assert_eq!(
            fill(EN.login_locked, &[("minutes", "3")]),
            "Too many failed logins: locked for 3 more minute(s). Try again later."
        );
        assert_eq!(texts(Lang::Ja).held_studies, "保留中の検査");
    }
}
