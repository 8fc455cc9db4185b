//! The one catalogue of the words readgate shows people, in Japanese and English: the
//! console's pages, the ledger's HTML report and the login messages. Each text has a
//! static id (a field of [`Texts`]); code reads `i18n::texts(lang).held_studies`, a
//! template reads `{{ t.held_studies }}`, so a missing or misspelt id does not compile.
//! The hold reasons' and ledger reasons' texts are here too (`hold_*`, `ledger_*`); their
//! catalogues (`decide::reasons`, `ledger::reasons`, which `docs/checks.md` and
//! `docs/ledger.md` are generated from) point at them.
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
        pub const JA: Texts = Texts { $($id: $ja,)* };
        /// English.
        pub const EN: Texts = Texts { $($id: $en,)* };
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
    ev_held: "保留", "Held";
    ev_context: "臨床情報の到着", "Context arrived";
    ev_released: "送信許可", "Released";
    ev_released_override: "管理者による送信許可", "Released by an administrator";
    ev_rejected: "却下", "Rejected";
    ev_forwarded: "送信完了", "Forwarded";
    ev_failed: "送信失敗", "Forwarding failed";
    ev_retry: "再送", "Retry";
    ev_streaming: "ストリーミング送信", "Streaming";
    ev_stream_stopped: "ストリーミング停止", "Streaming stopped";
    ev_reopened: "判定後に画像を追加受信", "More images after the decision";
    ev_emptied: "全画像が別の検査として再送", "Every image re-sent under another study";
    stream_state: "ストリーミング", "Streaming";
    stream_streaming: "送信中（受信と並行）", "Sending as images arrive";
    stream_stopped: "停止（残りは検査完了時の判定待ち）", "Stopped (the rest waits for the decision at completion)";
    // A study's state, as the console shows it.
    state_receiving: "受信中", "Receiving";
    state_held: "保留中", "Held";
    state_queued: "送信待ち", "Queued";
    state_forwarded: "送信済み", "Forwarded";
    state_failed: "送信失敗", "Forwarding failed";
    state_rejected: "却下", "Rejected";
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
    verdict: "判定 (verdict)", "Verdict";
    // A study's checks (the evaluation record's `check`), by what they look for.
    check_exam_purpose: "検査目的", "Exam purpose";
    check_clinical_information: "臨床情報", "Clinical information";
    check_labs: "検査値", "Lab values";
    check_prior_reports: "過去検査のレポート", "Prior reports";
    check_prior_reports_pacs: "PACS の過去検査", "Priors in the PACS";
    check_ordering_physician: "依頼医", "Ordering physician";
    check_ordering_callback: "依頼医の連絡先", "Callback number (ordering physician)";
    check_route: "送信先（読影施設）", "Route (reading facility)";
    audit_at: "日時 (UTC)", "At (UTC)";
    audit_kind: "種別 (kind)", "Kind";
    audit_actor: "実行者 (actor)", "Actor";
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
    priors_heading: "過去検査（比較読影）", "Prior studies (for comparison)";
    prior_date: "検査日", "Date";
    prior_modalities: "モダリティ", "Modalities";
    prior_reports: "確定レポート (HL7)", "Final reports (HL7)";
    prior_documents: "PACS のレポート文書", "Report documents in the PACS";
    prior_source: "情報源", "Source";
    prior_chosen: "送信対象", "Goes with the study";
    prior_retrieved: "PACS から取得", "Retrieved";
    mpps_step: "実施済み手順 (MPPS)", "Performed step (MPPS)";
    expected_images: "オーダの予定画像数", "Images expected by the order";
    completed_by: "画像がそろったと判断した根拠", "Known complete by";
    completed_quiet_period: "待ち時間の経過（dicom.stable_after_secs の間、新しい画像なし）", "Quiet period (no new image for dicom.stable_after_secs)";
    completed_mpps: "モダリティの MPPS（実施済み手順が COMPLETED、記載の画像がすべて到着）", "The modality's MPPS (its step COMPLETED, every image it lists in)";
    completed_expected_images: "オーダの予定画像数に到達（{count} 枚）", "The order's expected image count reached ({count} images)";
    time_to_reader: "最終画像から読影施設到着まで", "Time to reader (last image received → at the facility)";
    prior_sent_to: "送信先", "Sent to";
    pacs_answers: "PACS の応答", "PACS answers";
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
    // Hold reasons (decide::reasons): what is checked, the usual message, how to fix it.
    hold_exam_purpose_missing_short: "検査目的がない → RIS オーダの検査目的（OBR-31）", "No exam purpose → the RIS order's reason for study (OBR-31)";
    hold_exam_purpose_missing_what: "検査目的が記載されていること（定型句だけでないこと）。", "An exam purpose is stated, and it is more than a placeholder.";
    hold_exam_purpose_missing_message: "検査目的が記載されていません。RISのオーダ（OBR-31）に検査目的を入力して再送してください。", "The exam purpose is missing. Enter it in the RIS order (OBR-31) and send the order again.";
    hold_exam_purpose_missing_fix: "RISのオーダに検査目的（疑う疾患や確認したいこと）を入力して再送してください。「精査」「-」などの定型句は検査目的になりません。", "Enter the exam purpose (the suspected disease or the question the exam should answer) in the RIS order and send the order again; placeholders (`policy.placeholders`, e.g. \"-\", \"n/a\") do not count.";
    hold_clinical_info_missing_short: "臨床情報がない → RIS オーダの臨床情報または病名（OBR-13、NTE、DG1）", "No clinical information → the RIS order's clinical information or diagnosis (OBR-13, NTE, DG1)";
    hold_clinical_info_missing_what: "臨床情報（症状・経過・既往）または病名が記載されていること（定型句だけでないこと）。", "Clinical information (symptoms, history) or a diagnosis is stated, and it is more than a placeholder.";
    hold_clinical_info_missing_message: "臨床情報が記載されていません。RISのオーダの臨床情報（OBR-13）に症状・経過・既往を、または病名（DG1）を入力して再送してください。", "The clinical information is missing. Enter symptoms, history or a diagnosis in the RIS order (OBR-13, or a DG1 diagnosis) and send the order again.";
    hold_clinical_info_missing_fix: "RISのオーダの臨床情報欄に症状・経過・既往を、または病名を入力して再送してください。", "Enter symptoms, course and history (relevant clinical information) or a diagnosis in the RIS order and send the order again.";
    hold_lab_missing_short: "必要な検査値がない → 検査システムの結果（ORU^R01 の OBX）", "A required lab value is missing → the lab result from the laboratory system (OBX)";
    hold_lab_missing_what: "検査値の規則（例：造影検査）に該当し、必要な臨床検査値がないこと。", "A `[[policy.lab_rules]]` rule applies (e.g. contrast study) and none of its lab values is on file.";
    hold_lab_missing_message: "造影検査ですが、90日以内のeGFRまたはクレアチニン値がありません。検査システムから結果（OBX）を送信するか、RISのオーダに添付して再送してください。", "This is a contrast study, but no eGFR or creatinine value from the last 90 days is on file. Send the result from the laboratory system (OBX) or attach it to the RIS order and send the order again.";
    hold_lab_missing_fix: "検査システムから結果（ORU^R01）を送信するか、RISのオーダにOBXとして添付して再送してください。JLAC10コードまたは項目名と検査日時（OBX-14）が必要です。", "Send the lab result (ORU^R01 from the laboratory system, or OBX segments in the RIS order) with its JLAC10 code or name and its observation time (OBX-14).";
    hold_lab_too_old_short: "検査値が古い → 期限内の検査結果（OBX-14 検査日時付き）", "The lab value is too old → a recent result with its time (OBX-14)";
    hold_lab_too_old_what: "検査値の規則に該当し、値はあるが期限内のものがないこと（古い、または検査日時がない）。", "A lab rule applies and its lab values are on file, but none is shown to be within the rule's age limit (older, or without an observation time).";
    hold_lab_too_old_message: "造影検査ですが、eGFRまたはクレアチニンの最新値が90日より前のものです。期限内の結果を検査システムから送信するか、RISのオーダに添付して再送してください。", "This is a contrast study, but the newest eGFR or creatinine value is older than 90 days. Send a recent result from the laboratory system (OBX) or attach it to the RIS order and send the order again.";
    hold_lab_too_old_fix: "期限内に測定した値を検査日時（OBX-14）付きで送信してください。検査日時のない値は期限内か確認できません。", "Measure or look up a recent value and send it with its observation time (OBX-14); a value without a time cannot be shown to be recent.";
    hold_prior_report_missing_short: "過去検査のレポートがない → その確定レポート（ORU^R01、OBR-25 = F）", "A prior has no report → its final report (ORU^R01, OBR-25 = F)";
    hold_prior_report_missing_what: "参照期間内の過去検査（全件または直近の検査）に確定（または修正）済みの読影レポートがあること。", "The patient's prior studies within the look-back period (all, or the most recent ones) have a final or corrected report on file.";
    hold_prior_report_missing_message: "過去検査1件の確定した読影レポートが参照できません。レポートシステムから確定レポート（ORU^R01、OBR-25 F）を送信すると再判定されます。", "1 prior study of this patient has no final report on file. Send its final report from the reporting system (ORU^R01, OBR-25 F) and the study will be re-checked.";
    hold_prior_report_missing_fix: "一覧の過去検査の確定レポートをレポートシステムから送信してください（ORU^R01、OBR-25 = F または C）。", "Send the final reports of the listed prior studies from the reporting system (ORU^R01, OBR-25 = F or C).";
    hold_priors_unavailable_short: "過去検査を PACS から取得できない → PACS の稼働と登録を確認（RIS では直せません）", "A prior cannot be had from the PACS → check the PACS and readgate's registration (not a RIS field)";
    hold_priors_unavailable_what: "[[pacs]] を設定しているとき、病院の PACS から患者の過去検査の一覧を取得でき、検査とともに送る過去検査を取得できていること。", "When a `[[pacs]]` is configured, the hospital PACS has answered readgate's question for the patient's prior studies, and delivered the priors chosen to go with the study.";
    hold_priors_unavailable_message: "PACS HOSP-PACS に過去検査を問い合わせできませんでした（association refused）。PACS の稼働と readgate の登録を確認してください。接続が戻ると自動で再判定されます。", "The hospital PACS HOSP-PACS could not be asked for this patient's prior studies (association refused). Check that the PACS is running and knows readgate's AE title; the study is re-checked automatically once it answers.";
    hold_priors_unavailable_fix: "PACS の稼働と readgate の AE タイトル登録（C-MOVE のときは移動先としての登録）を確認してください（readgate pacs find --patient ID で確かめられます）。応答が戻り過去検査を取得できれば自動で再判定されます。急ぐときは理由を記録して手動で送信できます。", "Check that the PACS is running and knows readgate's AE title — for C-MOVE, as a move destination (`readgate pacs find --patient ID` tries it); the study is re-checked once the PACS answers and its priors are retrieved. If it cannot wait, release it by hand with a justification.";
    hold_priors_failed: "PACS {pacs} に過去検査を問い合わせできませんでした（{error}）。PACS の稼働と readgate の AE タイトル登録を確認してください。応答が戻ると自動で再判定されます。", "The hospital PACS {pacs} could not be asked for this patient's prior studies ({error}). Check that the PACS is running and knows readgate's AE title; the study is re-checked automatically once it answers.";
    hold_prior_not_retrieved: "PACS {pacs} から比較する過去検査 {prior} を取得できませんでした（{error}）。PACS の稼働と、C-MOVE のときは readgate が移動先として PACS に登録されていることを確認してください。取得できると自動で再判定され、過去検査とともに送信されます。", "The prior study {prior} could not be retrieved from the hospital PACS {pacs} to send with this study ({error}). Check that the PACS is running and, for C-MOVE, that readgate is registered in it as a move destination; readgate retries, and the study goes with its prior once it can.";
    hold_priors_not_yet: "PACS {pacs} からこの患者の過去検査の応答をまだ受けていません。応答が届くと自動で再判定されます。続くときは PACS の稼働を確認してください。", "The hospital PACS {pacs} has not answered yet for this patient's prior studies; the study is re-checked automatically when it does. If this persists, check that the PACS is running.";
    hold_prior_modality: "{modality} {id}", "{modality} {id}";
    hold_ordering_physician_missing_short: "依頼医がない → RIS オーダの依頼医（ORC-12）", "No ordering physician → the RIS order's ordering provider (ORC-12)";
    hold_ordering_physician_missing_what: "依頼医が記載されていること（所見に対応が必要なとき、読影医が直接連絡するため）。", "An ordering physician is named, so the radiologist can reach them when findings need action.";
    hold_ordering_physician_missing_message: "依頼医が記載されていません。RISのオーダの依頼医（ORC-12/OBR-16）を入力して再送してください。所見に対応が必要なとき、読影医が直接連絡するために必要です。", "The ordering physician is missing. Enter the ordering provider in the RIS order (ORC-12/OBR-16) and send the order again; the radiologist needs it to reach the physician when findings need action.";
    hold_ordering_physician_missing_fix: "RISのオーダに依頼医を入力して再送してください。", "Enter the ordering physician in the RIS order and send the order again.";
    hold_callback_contact_missing_short: "依頼医の連絡先がない → RIS オーダのコールバック番号（ORC-14）", "No callback number → the RIS order's callback phone number (ORC-14)";
    hold_callback_contact_missing_what: "依頼医への連絡先（電話番号・内線など）が記載されていること。", "A callback contact (a phone number or extension, or an address) for the ordering physician is given.";
    hold_callback_contact_missing_message: "依頼医への連絡先が記載されていません。RISのオーダのコールバック電話番号（ORC-14/OBR-17）に電話番号または内線番号を入力して再送してください。", "No callback contact for the ordering physician. Enter the callback phone number or extension in the RIS order (ORC-14/OBR-17) and send the order again.";
    hold_callback_contact_missing_fix: "依頼医（または診療科）に連絡がつく電話番号・内線番号をRISのオーダに入力して再送してください。", "Enter a phone number or extension where the ordering physician (or their department) can be reached in the RIS order and send the order again.";
    hold_no_route_short: "送信先が決まらない → readgate の設定（[[routes]]）", "No destination → readgate's configuration ([[routes]])";
    hold_no_route_what: "送信先ルール（[[routes]]）が一致し、読影責任を負う受信側施設が決まること（常に判定）。", "A `[[routes]]` entry matches the study and names the receiving facility responsible for reading it (always checked).";
    hold_no_route_message: "この検査（モダリティ CT、送信元 CT01）に一致する送信先ルールがなく、読影責任を負う受信側施設が決まりません。readgate の設定に [[routes]] を追加してください。", "No route matches this study (modalities CT, sent by CT01), so no receiving facility is responsible for reading it. Add a [[routes]] entry for it in the readgate configuration.";
    hold_no_route_fix: "readgate の設定に [[routes]]（modalities / calling_ae → destination）を追加し、設定を再読み込みしてください（readgate reload または systemctl reload readgate）。保留中の検査は再判定されます。", "Add a [[routes]] entry (modalities / calling_ae → destination) to the readgate configuration and reload it (`readgate reload` or `systemctl reload readgate`); held studies are decided again.";
    // Hold reasons as built for one study: `{name}` is filled with the study's values.
    hold_exam_purpose_placeholder: "{values}だけでは検査目的になりません。RISのオーダ（OBR-31）に疑う疾患や確認したいことを具体的に入力して再送してください。", "{values} alone is not an exam purpose. Enter what the exam should answer (the suspected disease or question) in the RIS order (OBR-31) and send the order again.";
    hold_exam_purpose_too_short: "検査目的{values}が短すぎます（{min}文字以上）。RISのオーダ（OBR-31）に疑う疾患や確認したいことを具体的に入力して再送してください。", "The exam purpose {values} is too short (at least {min} characters). Enter what the exam should answer in the RIS order (OBR-31) and send the order again.";
    hold_clinical_info_placeholder: "{values}だけでは臨床情報になりません。RISのオーダの臨床情報（OBR-13）に症状・経過・既往を、または病名（DG1）を入力して再送してください。", "{values} alone is not clinical information. Enter symptoms, history or a diagnosis in the RIS order (OBR-13, or a DG1 diagnosis) and send the order again.";
    hold_clinical_info_too_short: "臨床情報{values}が短すぎます（{min}文字以上）。RISのオーダの臨床情報（OBR-13）に症状・経過・既往を、または病名（DG1）を入力して再送してください。", "The clinical information {values} is too short (at least {min} characters). Enter symptoms, history or a diagnosis in the RIS order (OBR-13, or a DG1 diagnosis) and send the order again.";
    hold_lab_codes: "、コード {codes}", ", code {codes}";
    hold_lab_contrast_lead: "造影検査ですが、", "This is a contrast study, but ";
    hold_lab_missing_contrast: "造影検査ですが、{days}日以内の{labels}の値がありません（規則「{rule}」）。検査システムから結果（OBX{codes}）を送信するか、RISのオーダに添付して再送してください。", "This is a contrast study, but no {labels} value from the last {days} days is on file (rule \"{rule}\"). Send the result from the laboratory system (OBX{codes}) or attach it to the RIS order and send the order again.";
    hold_lab_missing_plain: "{days}日以内の{labels}の値がありません（規則「{rule}」）。検査システムから結果（OBX{codes}）を送信するか、RISのオーダに添付して再送してください。", "No {labels} value from the last {days} days is on file (rule \"{rule}\"). Send the result from the laboratory system (OBX{codes}) or attach it to the RIS order and send the order again.";
    hold_lab_too_old_dated: "{lead}{labels}の最新値（{date}）が{days}日より前のものです（規則「{rule}」）。{days}日以内に測定した結果を検査日時付きで検査システムから送信するか、RISのオーダに添付して再送してください。", "{lead}the newest {labels} value ({date}) is older than {days} days (rule \"{rule}\"). Send a result from the last {days} days with its observation time from the laboratory system (OBX{codes}) or attach it to the RIS order and send the order again.";
    hold_lab_too_old_untimed: "{lead}{labels}の値に検査日時（OBX-14）がなく、{days}日以内のものか確認できません（規則「{rule}」）。{days}日以内に測定した結果を検査日時付きで検査システムから送信するか、RISのオーダに添付して再送してください。", "{lead}the {labels} value has no observation time (OBX-14), so it cannot be shown to be within {days} days (rule \"{rule}\"). Send a result from the last {days} days with its observation time from the laboratory system (OBX{codes}) or attach it to the RIS order and send the order again.";
    hold_prior_accession: "受付番号 {accession}", "accession {accession}";
    hold_prior_study: "Study UID {uid}", "study {uid}";
    hold_prior_dated: "{id}（{date}）", "{id} of {date}";
    hold_prior_undated: "{id}（検査日不明）", "{id}, date unknown";
    hold_prior_more: "ほか{more}件", "and {more} more";
    hold_prior_separator: "、", "; ";
    hold_prior_missing_one: "{days}日以内の過去検査{n}件の確定した読影レポートが参照できません（{list}）。比較読影のため、レポートシステムから確定レポート（ORU^R01、OBR-25 F または C）を送信するか、PACS にレポート（SR または PDF）を保存してください。受信後に再判定されます。", "{n} prior study of this patient from the last {days} days has no final report on file ({list}). Send its final report from the reporting system (ORU^R01, OBR-25 F or C) or store it in the PACS (SR or PDF) so the radiologist can compare, and the study will be re-checked; or ask the reading facility to read it first.";
    hold_prior_missing_many: "{days}日以内の過去検査{n}件の確定した読影レポートが参照できません（{list}）。比較読影のため、レポートシステムから確定レポート（ORU^R01、OBR-25 F または C）を送信するか、PACS にレポート（SR または PDF）を保存してください。受信後に再判定されます。", "{n} prior studies of this patient from the last {days} days have no final report on file ({list}). Send their final reports from the reporting system (ORU^R01, OBR-25 F or C) or store them in the PACS (SR or PDF) so the radiologist can compare, and the study will be re-checked; or ask the reading facility to read them first.";
    hold_ordering_physician: "依頼医が記載されていません{note}。RISのオーダの依頼医（ORC-12/OBR-16）を入力して再送してください。所見に対応が必要なとき、読影医が直接連絡するために必要です。", "The ordering physician is missing{note}. Enter the ordering provider in the RIS order (ORC-12/OBR-16) and send the order again; the radiologist needs it to reach the physician when findings need action.";
    hold_callback_contact: "依頼医への連絡先が記載されていません{note}。RISのオーダのコールバック電話番号（ORC-14/OBR-17）に電話番号または内線番号を入力して再送してください。", "No callback contact for the ordering physician{note}. Enter the callback phone number or extension in the RIS order (ORC-14/OBR-17) and send the order again.";
    hold_not_usable: "（{values}は連絡に使えません）", " ({values} is not usable)";
    hold_no_route: "この検査（モダリティ {modalities}、送信元 {aes}）に一致する送信先ルールがなく、読影責任を負う受信側施設が決まりません。readgate の設定に [[routes]] を追加してください。", "No route matches this study (modalities {modalities}, sent by {aes}), so no receiving facility is responsible for reading it. Add a [[routes]] entry for it in the readgate configuration.";
    hold_partly_sent_short: "一部の画像は送信済み → 受信側施設へ連絡", "Part of it already left → tell the reading facility";
    hold_partly_sent_what: "検査判定ではなく事実の記録：ストリーミング送信（[[routes]] forward = \"streaming\"）中の検査が保留になったとき、保留までにどの送信先へ何件の画像が送られたか。", "Not a check but a record: a study that streamed (`[[routes]] forward = \"streaming\"`) is held after some of its instances already left; says how many went to which destination.";
    hold_partly_sent_message: "この検査はストリーミング送信中でした。受信済み120件のうち42件はすでに送信済みです（rc1へ42件）。残りはここで保留しています。受信側施設に、届いている画像は不完全で、上記の理由により保留中であることを連絡してください。", "This study was streaming: 42 of the 120 instances received so far already left (42 to rc1). The rest is held here. Tell the reading facility that the images it has are incomplete and held back for the reasons above.";
    hold_partly_sent_fix: "受信側施設（送信先）に、届いている画像だけで読影しないよう連絡してください。そのうえで上記の理由を解消するか（再判定され残りが送信されます）、理由を記載して送信許可または却下してください。", "Tell the reading facility (the destination named) not to read the images it has as they stand; then fix the reasons above (the study is decided again and the rest leaves), or release or reject it with a written reason.";
    hold_partly_sent: "この検査はストリーミング送信中でした。受信済み{received}件のうち{sent}件はすでに送信済みです（{to}）。残りはここで保留しています。受信側施設に、届いている画像は不完全で、上記の理由により保留中であることを連絡してください。", "This study was streaming: {sent} of the {received} instances received so far already left ({to}). The rest is held here. Tell the reading facility that the images it has are incomplete and held back for the reasons above.";
    hold_partly_sent_to: "{destination}へ{n}件", "{n} to {destination}";
    // Ledger reasons (ledger::reasons): what the code means, what to do.
    ledger_no_final_report_meaning: "確定報告（F/C）も確定の読影イベントもありません。読影が完了していないため、まだ算定できません。", "No final (F) or corrected (C) report and no `final`/`confirmed` read event: the reading is not finished, so nothing can be claimed yet.";
    ledger_no_final_report_todo: "確定報告を待ってください。確定済みなら、読影システムから OBR-25 = F の ORU^R01（または final イベント）を送らせてください。", "Wait for the final report; if it was signed, make the reading system send the ORU^R01 with OBR-25 = F (or the `final` event).";
    ledger_signer_not_full_time_meaning: "確定報告の署名者が常勤医ではありません（非常勤医・研修医）。加算には受信側の常勤放射線科医による読影が必要です。", "The final report was signed by a part-time reader or a trainee: the add-on requires the receiving facility's full-time (常勤) radiologists.";
    ledger_signer_not_full_time_todo: "責任施設の常勤医が実質的に確認・確定する（ATS-3 注1）か、加算を請求しないでください。", "Have a full-time radiologist of the responsible facility confirm the report substantively (ATS-3-note1), or do not claim the add-on.";
    ledger_signer_not_board_certified_meaning: "署名者が放射線診断専門医として登録されていません。", "The signer is not recorded as a board-certified diagnostic radiologist (放射線診断専門医).";
    ledger_signer_not_board_certified_todo: "名簿（board_certified）を確認してください。専門医なら名簿を修正して再集計し、そうでなければ専門医の署名が必要です。", "Check the roster (`board_certified`); if the signer is certified, correct it and run the report again; otherwise the report must be signed by a certified radiologist.";
    ledger_part_time_read_outside_meaning: "非常勤医が受信施設の外（施設内として登録されていないネットワーク・端末）から読影に関与しました。", "A part-time reader took part in reading this study from outside the receiving facility (network or workstation not listed as inside).";
    ledger_part_time_read_outside_todo: "算定できません。非常勤医は受信施設内で読影する必要があります。読影システムの院外アクセスを確認してください。", "Not claimable. Part-time readers must read inside the receiving facility; check the reading system's remote access.";
    ledger_trainee_read_outside_meaning: "研修医（専攻医）が受信施設の外から読影に関与しました。", "A trainee took part in reading this study from outside the receiving facility.";
    ledger_trainee_read_outside_todo: "算定できません。研修医の報告書は施設内の自施設業務として作成され、常勤医が確定した場合に限り認められます。", "Not claimable. Trainees' reports count only when written inside the facility's own work and confirmed by a full-time radiologist.";
    ledger_full_time_read_outside_meaning: "常勤医が施設外から読影しました。ポリシー（ledger.full_time_remote_eligible = false）では施設外読影を算定対象としていません。", "A full-time radiologist read from outside the facility and the policy (`ledger.full_time_remote_eligible = false`) does not count such reads.";
    ledger_full_time_read_outside_todo: "夜間・休日等、常勤医の院外読影の要件を満たす場合は、確認の上で full_time_remote_eligible = true とできます。", "If the read met the conditions for remote reading by full-time staff (e.g. night/holiday), the hospital may set `full_time_remote_eligible = true` after review.";
    ledger_formal_confirmation_meaning: "他の読影医の報告書が形式的に確定されました（本文の変更がなく画像の閲覧がない・短すぎる、または短時間の連続確定）。", "Another reader's report was confirmed formally: text unchanged and the confirmer had the images open too briefly (or not at all), or the sign-off was one of a burst.";
    ledger_formal_confirmation_todo: "このままでは算定できません。確定医が画像と報告書を照合し、ログ（開始・終了イベント）で証明できる必要があります。", "Not claimable as it stands. The confirmer must compare images and report and be able to prove it with logs (opened/closed events).";
    ledger_not_responsible_facility_meaning: "ルートで責任施設とされた施設以外の読影医が読影に関与しました。", "A reader of a facility other than the one the study's route made responsible took part in reading it.";
    ledger_not_responsible_facility_todo: "受信施設間の責任分担（ルート）を明確にするか、名簿の所属施設を修正してください。", "Clarify the responsibility split between receiving facilities (routes) or correct the roster's facility.";
    ledger_unknown_reader_meaning: "読影医IDが当日有効な名簿にありません。誰がどの立場で読影したかを示せません。", "A reader id (OBR-32/33 or a read event) is not in the roster valid on that day: who read, as what, cannot be shown.";
    ledger_unknown_reader_todo: "名簿に読影医（雇用形態・所属・有効期間）を追加（[[ledger.readers]] または readgate roster import）して再集計してください。", "Add the reader to the roster (`[[ledger.readers]]` or `readgate roster import`) with employment, facility and validity, then run the report again.";
    ledger_unknown_place_meaning: "報告書の作成・署名者について、読影場所を示すイベントがありません。施設内であることを証明できません。", "For a reader who wrote or signed the report, no read event says where the reading happened: inside cannot be proven.";
    ledger_unknown_place_todo: "読影システムから client_ip / workstation 付きの読影イベントを送らせ、[[ledger.places]] に施設のネットワークと端末を登録してください。", "Make the reading system send read events with `client_ip`/`workstation`, and list the facility's networks and workstations in `[[ledger.places]]`.";
    ledger_forwarded_incomplete_meaning: "臨床情報が揃わないまま送信されました（緊急のため送信）。指針が求める情報が読影医に提供されていません。", "The study was forwarded without the full clinical context (STAT, forwarded flagged): the reader did not have what the guideline requires.";
    ledger_forwarded_incomplete_todo: "症例を確認し、不足情報を読影医に提供して記録してから請求を検討してください。", "Review the case; supply the missing context to the reader and document it before claiming.";
    ledger_released_override_meaning: "臨床情報不足で保留された検査が、操作者の判断で送信されました（実施者と理由を記載）。", "The study was held for missing context and released by an operator override (who and why are listed).";
    ledger_released_override_todo: "送信理由を確認し、読影医が実際に情報を得られた場合に限り請求してください。", "Review the override's justification; claim only when the context was in fact available to the reader.";
    ledger_not_forwarded_meaning: "読影記録がありますが、readgate から読影施設への送信が完了していません（保留・却下・失敗・送信待ち）。", "Read events or reports exist, but readgate has not delivered the study to the reading facility (held, rejected, failed or still queued).";
    ledger_not_forwarded_todo: "readgate studies で状態を確認してください。読影施設はどの経路で画像を得たのでしょうか。", "Check `readgate studies`: how did the reading facility get the images?";
}

/// The catalogue in `lang`.
pub fn texts(lang: Lang) -> &'static Texts {
    match lang {
        Lang::Ja => &JA,
        Lang::En => &EN,
    }
}

/// Fills the `{name}` placeholders of a catalogue text in one pass (a value is never
/// scanned for placeholders itself); an unknown `{…}` is kept as it is.
pub fn fill(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let value = after.find('}').and_then(|j| {
            let name = &after[..j];
            values
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v, j))
        });
        match value {
            Some((v, j)) => {
                out.push_str(v);
                rest = &after[j + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
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
        assert_eq!(fill("{a}{b} {c}", &[("a", "{b}"), ("b", "x")]), "{b}x {c}");
    }
}
