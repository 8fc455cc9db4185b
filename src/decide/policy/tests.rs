use super::*;
use crate::decide::context::{CodedFact, Fact, LabFact, Prior, Priority, Source, StudyContext};
use crate::decide::reasons::{
    self, CALLBACK_CONTACT_MISSING, CLINICAL_INFO_MISSING, EXAM_PURPOSE_MISSING, LAB_MISSING,
    LAB_TOO_OLD, NO_ROUTE, ORDERING_PHYSICIAN_MISSING, PRIORS_UNAVAILABLE, PRIOR_REPORT_MISSING,
};

// The calendar these tests use, on `crate::time` (the policy no longer has its own).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    time::day_of_ymd(y, m as u32, d as u32).expect("a valid test date")
}

fn hl7(field: &str) -> Source {
    Source::hl7("MSG0001", "ORM^O01", field)
}

fn dcm(tag: &str) -> Source {
    Source::dicom(tag)
}

/// Local (JST) date/time in ms since the epoch.
fn jst(y: i64, m: i64, d: i64, h: i64, min: i64) -> i64 {
    days_from_civil(y, m, d) * DAY_MS + (h * 60 + min) * 60_000 - 540 * 60_000
}

/// The study is 2024-06-01 10:15 JST.
fn study_ms() -> i64 {
    jst(2024, 6, 1, 10, 15)
}

fn now() -> i64 {
    jst(2024, 6, 1, 11, 0)
}

fn egfr(value: &str, observed_at: Option<i64>) -> LabFact {
    LabFact {
        code: Some(JLAC10_EGFR_CREAT.into()),
        system: Some("JLAC10".into()),
        name: Some("eGFR".into()),
        value: value.into(),
        units: Some("mL/min/1.73m2".into()),
        observed_at,
        source: Source::hl7("LAB0042", "ORU^R01", "OBX-5"),
    }
}

fn prior(uid: &str, acc: &str, at: Option<i64>, reports: u32) -> Prior {
    Prior {
        study_uid: uid.into(),
        accession: Some(acc.into()),
        study_time_ms: at,
        reports,
        documents: 0,
        modalities: vec!["CT".into()],
        source: Source::Cfind {
            ae: "HOSPPACS".into(),
        },
        body_parts: Vec::new(),
        unavailable: None,
    }
}

/// A contrast CT that satisfies every check of the default policy.
fn complete() -> StudyContext {
    StudyContext {
        study_uid: "1.2.392.200036.9116.2.1.1".into(),
        accession: Some("A2024060101".into()),
        modalities: vec!["CT".into()],
        calling_aes: vec!["CT01".into()],
        body_parts: Vec::new(),
        study_date: Some("20240601".into()),
        study_time: Some("101500".into()),
        priority: Some(Priority::Routine),
        exam_purpose: vec![Fact::new("肺塞栓症の除外", hl7("OBR-31"))],
        clinical_information: vec![Fact::new(
            "3日前から胸痛と呼吸困難。Dダイマー高値。",
            hl7("OBR-13"),
        )],
        diagnoses: vec![Fact::new("肺塞栓症疑い", hl7("DG1-4"))],
        procedure_codes: vec![CodedFact {
            code: "320000000000000".into(),
            system: Some("JJ1017-16P".into()),
            text: Some("胸部造影CT".into()),
            source: hl7("OBR-4"),
        }],
        contrast_agent: vec![Fact::new("Iopamidol", dcm("(0018,0010)"))],
        ordering_physician: vec![Fact::new("Yamada^Tarou=山田^太郎", hl7("ORC-12"))],
        callback_phone: vec![Fact::new("03-1234-5678 内線2345", hl7("ORC-14"))],
        labs: vec![egfr("65", Some(jst(2024, 5, 20, 9, 0)))],
        priors: vec![prior(
            "1.2.3.9",
            "A2024011001",
            Some(jst(2024, 1, 10, 9, 0)),
            1,
        )],
        pacs: Vec::new(),
        destination: Some("rc1".into()),
        facility: Some("RC1 Reading Center".into()),
    }
}

fn eval(ctx: &StudyContext) -> Evaluation {
    evaluate(ctx, &PolicyConfig::default(), now())
}

fn codes(e: &Evaluation) -> Vec<&str> {
    e.reasons.iter().map(|r| r.code.as_str()).collect()
}

fn check<'e>(e: &'e Evaluation, name: &str) -> &'e CheckResult {
    e.checks
        .iter()
        .find(|c| c.check == name)
        .unwrap_or_else(|| panic!("no check {name} in {:#?}", e.checks))
}

fn policy(toml: &str) -> PolicyConfig {
    PolicyConfig::from_toml(toml).unwrap_or_else(|e| panic!("{e:?}"))
}

// --- the whole ------------------------------------------------------------

#[test]
fn complete_study_passes_every_check() {
    let e = eval(&complete());
    assert_eq!(e.verdict, Verdict::Pass, "{e:#?}");
    assert!(e.reasons.is_empty());
    assert_eq!(e.policy_id, "jrs-2024");
    assert_eq!(e.policy_version, "1");
    assert_eq!(e.rule, "default");
    let names: Vec<&str> = e.checks.iter().map(|c| c.check.as_str()).collect();
    assert_eq!(
        names,
        [
            "exam_purpose",
            "clinical_information",
            "labs.contrast-egfr",
            "prior_reports",
            "ordering_contact.physician",
            "ordering_contact.callback",
            "route"
        ]
    );
    assert!(e.checks.iter().all(|c| c.passed));
    assert_eq!(check(&e, "exam_purpose").sources, [hl7("OBR-31")]);
    assert_eq!(check(&e, "exam_purpose").clause, "JRS-7.3.1");
    assert_eq!(check(&e, "prior_reports").clause, "JRS-7.3.2");
    assert_eq!(check(&e, "ordering_contact.callback").clause, "JRS-7.3.3");
    assert_eq!(check(&e, "route").clause, "ATS-4");
    assert_eq!(
        check(&e, "labs.contrast-egfr").sources,
        [Source::hl7("LAB0042", "ORU^R01", "OBX-5")]
    );
    let json = serde_json::to_string(&e).unwrap();
    assert!(json.contains(r#""verdict":"pass""#), "{json}");
}

#[test]
fn empty_study_names_every_missing_fact() {
    let ctx = StudyContext {
        study_uid: "1.2".into(),
        modalities: vec!["CT".into()],
        calling_aes: vec!["CT01".into()],
        contrast_agent: vec![Fact::new("Iopamidol", dcm("(0018,0010)"))],
        ..Default::default()
    };
    let e = eval(&ctx);
    assert_eq!(e.verdict, Verdict::Hold);
    assert_eq!(
        codes(&e),
        [
            EXAM_PURPOSE_MISSING,
            CLINICAL_INFO_MISSING,
            LAB_MISSING,
            ORDERING_PHYSICIAN_MISSING,
            CALLBACK_CONTACT_MISSING,
            NO_ROUTE
        ]
    );
    for r in &e.reasons {
        let info = reasons::find(&r.code).expect("every code is catalogued");
        assert_eq!(info.clause, r.clause);
        assert!(!r.message_en.is_empty());
        assert!(r.message_ja.chars().any(|c| c > '\u{3000}'), "{r:?}");
    }
}

// --- exam purpose and clinical information ---------------------------------

#[test]
fn missing_exam_purpose_says_where_to_enter_it() {
    let mut ctx = complete();
    ctx.exam_purpose.clear();
    let e = eval(&ctx);
    assert_eq!(codes(&e), [EXAM_PURPOSE_MISSING]);
    let r = &e.reasons[0];
    assert_eq!(r.clause, "JRS-7.3.1");
    assert_eq!(
        r.message_ja,
        "検査目的が記載されていません。RISのオーダ（OBR-31）に検査目的を入力して再送してください。"
    );
    assert_eq!(
        r.message_en,
        "The exam purpose is missing. Enter it in the RIS order (OBR-31) and send the order again."
    );
    assert_eq!(check(&e, "exam_purpose").detail, "no value sent");
    // Blank values are as good as none.
    ctx.exam_purpose = vec![Fact::new(" \u{3000} ", hl7("OBR-31"))];
    assert_eq!(eval(&ctx).reasons[0].message_ja, r.message_ja);
}

#[test]
fn placeholders_are_not_an_exam_purpose() {
    for value in [
        "精査",
        "\u{3000}精査\u{3000}",
        " 精査。",
        "特になし",
        "なし",
        "不明",
        "-",
        "－",
        "n/a",
        "N/A",
        "Ｎ／Ａ",
        "None",
        "ＮＯＮＥ",
        "...",
        "・・・",
        "――",
        "？",
    ] {
        let mut ctx = complete();
        ctx.exam_purpose = vec![Fact::new(value, dcm("(0040,1002)"))];
        let e = eval(&ctx);
        assert_eq!(codes(&e), [EXAM_PURPOSE_MISSING], "{value:?}");
        let c = check(&e, "exam_purpose");
        assert!(!c.passed);
        assert!(
            c.detail.starts_with("only placeholders"),
            "{value:?}: {}",
            c.detail
        );
        // The failing check points at where the placeholder came from.
        assert_eq!(c.sources, [dcm("(0040,1002)")]);
        assert!(
            e.reasons[0]
                .message_ja
                .contains("だけでは検査目的になりません"),
            "{value:?}: {}",
            e.reasons[0].message_ja
        );
    }
    let mut ctx = complete();
    ctx.exam_purpose = vec![Fact::new("精査", hl7("OBR-31"))];
    let r = &eval(&ctx).reasons[0];
    assert!(
        r.message_ja
            .starts_with("「精査」だけでは検査目的になりません。RISのオーダ（OBR-31）"),
        "{}",
        r.message_ja
    );
    assert!(
        r.message_en
            .starts_with("\"精査\" alone is not an exam purpose"),
        "{}",
        r.message_en
    );
}

#[test]
fn placeholder_words_inside_real_text_are_fine() {
    let mut ctx = complete();
    for value in [
        "胸痛精査",
        "精査：肝腫瘤",
        "none of the above: headache",
        "不明熱",
    ] {
        ctx.exam_purpose = vec![Fact::new(value, hl7("OBR-31"))];
        assert_eq!(eval(&ctx).verdict, Verdict::Pass, "{value:?}");
    }
}

#[test]
fn configured_placeholders_replace_the_defaults() {
    let p = policy("[policy]\nplaceholders = [\"ルーチン\", \"F/U\"]\n");
    let mut ctx = complete();
    ctx.exam_purpose = vec![Fact::new("ｆ／ｕ", hl7("OBR-31"))];
    assert_eq!(codes(&evaluate(&ctx, &p, now())), [EXAM_PURPOSE_MISSING]);
    ctx.exam_purpose = vec![Fact::new("精査", hl7("OBR-31"))];
    assert_eq!(evaluate(&ctx, &p, now()).verdict, Verdict::Pass);
}

#[test]
fn text_shorter_than_min_text_chars_is_missing() {
    let mut ctx = complete();
    ctx.exam_purpose = vec![Fact::new("痛", hl7("OBR-31"))];
    let e = eval(&ctx);
    assert_eq!(codes(&e), [EXAM_PURPOSE_MISSING]);
    assert!(
        e.reasons[0]
            .message_ja
            .contains("「痛」が短すぎます（2文字以上）"),
        "{}",
        e.reasons[0].message_ja
    );
    assert!(e.reasons[0].message_en.contains("at least 2 characters"));
    // Two kanji are enough by default: Japanese is dense.
    ctx.exam_purpose = vec![Fact::new("胸痛", hl7("OBR-31"))];
    assert_eq!(eval(&ctx).verdict, Verdict::Pass);
    let strict = policy("[policy]\nmin_text_chars = 3\n");
    assert_eq!(
        codes(&evaluate(&ctx, &strict, now())),
        [EXAM_PURPOSE_MISSING]
    );
    // Surrounding punctuation does not count towards the length.
    ctx.exam_purpose = vec![Fact::new("「痛」", hl7("OBR-31"))];
    assert_eq!(codes(&eval(&ctx)), [EXAM_PURPOSE_MISSING]);
}

#[test]
fn any_usable_source_satisfies_and_is_named() {
    let mut ctx = complete();
    ctx.exam_purpose = vec![
        Fact::new("精査", hl7("OBR-31")),
        Fact::new("肝細胞癌の治療効果判定", dcm("(0040,1002)")),
        Fact::new("HCC f/u", dcm("(0032,1030)")),
    ];
    let e = eval(&ctx);
    assert_eq!(e.verdict, Verdict::Pass);
    assert_eq!(
        check(&e, "exam_purpose").sources,
        [dcm("(0040,1002)"), dcm("(0032,1030)")]
    );
}

#[test]
fn clinical_information_from_order_notes_or_diagnoses() {
    let mut ctx = complete();
    ctx.clinical_information.clear();
    ctx.diagnoses.clear();
    let e = eval(&ctx);
    assert_eq!(codes(&e), [CLINICAL_INFO_MISSING]);
    assert!(e.reasons[0].message_ja.contains("OBR-13"));
    // A diagnosis alone is clinical information.
    ctx.diagnoses = vec![Fact::new("C22.0 肝細胞癌", hl7("DG1-3"))];
    let e = eval(&ctx);
    assert_eq!(e.verdict, Verdict::Pass);
    assert_eq!(check(&e, "clinical_information").sources, [hl7("DG1-3")]);
    // As is the DICOM patient history.
    ctx.diagnoses.clear();
    ctx.clinical_information = vec![Fact::new("腎機能低下あり", dcm("(0010,21B0)"))];
    assert_eq!(eval(&ctx).verdict, Verdict::Pass);
    ctx.clinical_information = vec![
        Fact::new("特になし", hl7("OBR-13")),
        Fact::new("なし", dcm("(0008,1080)")),
    ];
    let e = eval(&ctx);
    assert_eq!(codes(&e), [CLINICAL_INFO_MISSING]);
    assert!(
        e.reasons[0]
            .message_ja
            .starts_with("「特になし」「なし」だけでは臨床情報になりません"),
        "{}",
        e.reasons[0].message_ja
    );
    assert_eq!(
        check(&e, "clinical_information").sources,
        [hl7("OBR-13"), dcm("(0008,1080)")]
    );
}

// --- labs ------------------------------------------------------------------

#[test]
fn contrast_study_without_egfr_is_held() {
    let mut ctx = complete();
    ctx.labs.clear();
    let e = eval(&ctx);
    assert_eq!(codes(&e), [LAB_MISSING]);
    let r = &e.reasons[0];
    assert_eq!(r.clause, "JRS-7.3.1");
    assert!(
        r.message_ja
            .starts_with("造影検査ですが、90日以内のeGFRまたはクレアチニンの値がありません（規則「contrast-egfr」）"),
        "{}",
        r.message_ja
    );
    assert!(r
        .message_ja
        .contains("8A065000002391901 / 3C015000002327101"));
    assert!(
        r.message_en.starts_with(
            "This is a contrast study, but no eGFR or creatinine value from the last 90 days is on file (rule \"contrast-egfr\")"
        ),
        "{}",
        r.message_en
    );
    let c = check(&e, "labs.contrast-egfr");
    assert!(
        c.detail.contains("Iopamidol") && c.detail.contains("(0018,0010)"),
        "{}",
        c.detail
    );
}

#[test]
fn empty_or_none_contrast_agent_is_not_a_contrast_study() {
    let mut ctx = complete();
    ctx.labs.clear();
    for agent in ["", "NONE", "なし", "-"] {
        ctx.contrast_agent = vec![Fact::new(agent, dcm("(0018,0010)"))];
        let e = eval(&ctx);
        assert_eq!(e.verdict, Verdict::Pass, "{agent:?}");
        let c = check(&e, "labs.contrast-egfr");
        assert!(c.passed && c.detail == "does not apply: not a contrast study");
    }
}

#[test]
fn contrast_detected_by_procedure_code() {
    let mut ctx = complete();
    ctx.labs.clear();
    ctx.contrast_agent.clear();
    // Not configured: the procedure code alone says nothing.
    assert_eq!(eval(&ctx).verdict, Verdict::Pass);
    let p = policy("[policy]\ncontrast_procedure_codes = [\"9999\", \"32*\"]\n");
    let e = evaluate(&ctx, &p, now());
    assert_eq!(codes(&e), [LAB_MISSING]);
    assert!(check(&e, "labs.contrast-egfr")
        .detail
        .contains("contrast procedure code 320000000000000"));
    let p = policy("[policy]\ncontrast_procedure_codes = [\"320000000000000\"]\n");
    assert_eq!(codes(&evaluate(&ctx, &p, now())), [LAB_MISSING]);
    let p = policy("[policy]\ncontrast_procedure_codes = [\"33*\"]\n");
    assert_eq!(evaluate(&ctx, &p, now()).verdict, Verdict::Pass);
}

#[test]
fn labs_match_by_code_or_by_name() {
    let mut ctx = complete();
    // By name only (no code sent), Japanese, full-width letters, any case.
    for name in ["クレアチニン", "ｅＧＦＲ", "cre", " CRE "] {
        ctx.labs = vec![LabFact {
            code: None,
            system: None,
            name: Some(name.into()),
            value: "0.8".into(),
            units: Some("mg/dL".into()),
            observed_at: Some(jst(2024, 5, 30, 8, 0)),
            source: hl7("OBX-5"),
        }];
        assert_eq!(eval(&ctx).verdict, Verdict::Pass, "{name:?}");
    }
    // By code, with an unhelpful local name.
    ctx.labs = vec![LabFact {
        code: Some(JLAC10_CREATININE.to_lowercase()),
        system: None,
        name: Some("生化学 項目12".into()),
        value: "0.8".into(),
        units: None,
        observed_at: Some(jst(2024, 5, 30, 8, 0)),
        source: hl7("OBX-5"),
    }];
    assert_eq!(eval(&ctx).verdict, Verdict::Pass);
    // JAHIS and SS-MIX2 call JLAC10 "JC10"; catalogues write the code with hyphens.
    ctx.labs[0].system = Some("JC10".into());
    assert_eq!(eval(&ctx).verdict, Verdict::Pass);
    ctx.labs[0].code = Some("3C015-0000-023-271-01".into());
    assert_eq!(eval(&ctx).verdict, Verdict::Pass);
    // The same digits in another coding system are another test.
    ctx.labs[0].system = Some("LOCAL".into());
    assert_eq!(codes(&eval(&ctx)), [LAB_MISSING]);
    // Other labs do not count.
    ctx.labs = vec![LabFact {
        code: Some("3B035000002327201".into()),
        system: Some("JLAC10".into()),
        name: Some("AST".into()),
        value: "20".into(),
        units: None,
        observed_at: Some(jst(2024, 5, 30, 8, 0)),
        source: hl7("OBX-5"),
    }];
    assert_eq!(codes(&eval(&ctx)), [LAB_MISSING]);
    // A placeholder value is no value.
    ctx.labs = vec![egfr("-", Some(jst(2024, 5, 30, 8, 0)))];
    assert_eq!(codes(&eval(&ctx)), [LAB_MISSING]);
}

#[test]
fn lab_age_is_measured_from_the_study() {
    let mut ctx = complete();
    // 89 days before the study day: fine.
    ctx.labs = vec![egfr("58", Some(study_ms() - 89 * DAY_MS))];
    assert_eq!(eval(&ctx).verdict, Verdict::Pass);
    // Exactly 90 days: fine.
    ctx.labs = vec![egfr("58", Some(study_ms() - 90 * DAY_MS))];
    assert_eq!(eval(&ctx).verdict, Verdict::Pass);
    // 91 days: too old, and the message gives the date of the newest value.
    ctx.labs = vec![
        egfr("58", Some(jst(2024, 3, 2, 9, 0))),
        egfr("61", Some(jst(2023, 12, 1, 9, 0))),
    ];
    let e = eval(&ctx);
    assert_eq!(codes(&e), [LAB_TOO_OLD]);
    let r = &e.reasons[0];
    assert!(
        r.message_ja.starts_with(
            "造影検査ですが、eGFRまたはクレアチニンの最新値（2024-03-02）が90日より前のものです"
        ),
        "{}",
        r.message_ja
    );
    assert!(
        r.message_en.contains("(2024-03-02) is older than 90 days"),
        "{}",
        r.message_en
    );
    assert_eq!(check(&e, "labs.contrast-egfr").sources.len(), 1);
    // A value drawn after the study is there for the reader: it counts.
    ctx.labs = vec![egfr("58", Some(jst(2024, 6, 1, 14, 0)))];
    assert_eq!(eval(&ctx).verdict, Verdict::Pass);
    // Without a time its age is unknown.
    ctx.labs = vec![egfr("58", None)];
    let e = eval(&ctx);
    assert_eq!(codes(&e), [LAB_TOO_OLD]);
    assert!(e.reasons[0].message_ja.contains("検査日時（OBX-14）がなく"));
    // The age limit is the rule's.
    let p = policy(
        r#"
[[policy.lab_rules]]
name = "contrast-egfr-30d"
contrast = true
max_age_days = 30
require_any_of = [{ code = "8A065000002391901", system = "JLAC10", names = ["eGFR"] }]
"#,
    );
    ctx.labs = vec![egfr("58", Some(study_ms() - 31 * DAY_MS))];
    let e = evaluate(&ctx, &p, now());
    assert_eq!(codes(&e), [LAB_TOO_OLD]);
    assert!(e.reasons[0].message_ja.contains("30日より前"));
    assert!(e.reasons[0].message_ja.contains("「contrast-egfr-30d」"));
}

#[test]
fn lab_age_without_study_date_is_measured_from_now() {
    let mut ctx = complete();
    ctx.study_date = None;
    ctx.study_time = None;
    let now = jst(2024, 9, 1, 12, 0);
    ctx.labs = vec![egfr("58", Some(jst(2024, 6, 10, 12, 0)))];
    assert_eq!(
        evaluate(&ctx, &PolicyConfig::default(), now).verdict,
        Verdict::Pass
    );
    ctx.labs = vec![egfr("58", Some(jst(2024, 5, 1, 12, 0)))];
    assert_eq!(
        codes(&evaluate(&ctx, &PolicyConfig::default(), now)),
        [LAB_TOO_OLD]
    );
    // An unreadable date counts as none.
    ctx.study_date = Some("2024-13-45".into());
    assert_eq!(
        codes(&evaluate(&ctx, &PolicyConfig::default(), now)),
        [LAB_TOO_OLD]
    );
}

#[test]
fn lab_rules_filter_by_modality_and_procedure() {
    let p = policy(
        r#"
[[policy.lab_rules]]
name = "mr-gd-egfr"
contrast = true
modalities = ["MR"]
require_any_of = [{ code = "8A065000002391901", names = ["eGFR"] }]

[[policy.lab_rules]]
name = "cardiac-bnp"
procedure_codes = ["CARD*"]
max_age_days = 30
require_any_of = [{ names = ["BNP", "NT-proBNP"], label_ja = "BNP" }]
"#,
    );
    let mut ctx = complete();
    ctx.labs.clear();
    // A contrast CT: neither rule applies.
    let e = evaluate(&ctx, &p, now());
    assert_eq!(e.verdict, Verdict::Pass);
    assert_eq!(
        check(&e, "labs.mr-gd-egfr").detail,
        "does not apply: modality not listed"
    );
    assert_eq!(
        check(&e, "labs.cardiac-bnp").detail,
        "does not apply: procedure code not listed"
    );
    // Contrast MR: the first applies.
    ctx.modalities = vec!["MR".into()];
    assert_eq!(codes(&evaluate(&ctx, &p, now())), [LAB_MISSING]);
    // A cardiac procedure, contrast or not: the second applies and says no "contrast".
    ctx.modalities = vec!["CT".into()];
    ctx.contrast_agent.clear();
    ctx.procedure_codes[0].code = "CARD0001".into();
    let e = evaluate(&ctx, &p, now());
    assert_eq!(codes(&e), [LAB_MISSING]);
    assert!(
        e.reasons[0]
            .message_ja
            .starts_with("30日以内のBNPの値がありません（規則「cardiac-bnp」）"),
        "{}",
        e.reasons[0].message_ja
    );
    assert!(e.reasons[0]
        .message_en
        .starts_with("No BNP value from the last 30 days"));
    // No lab rules at all: nothing is required.
    let none = policy("[policy]\nlab_rules = []\n");
    ctx.contrast_agent = vec![Fact::new("Gadobutrol", dcm("(0018,0010)"))];
    let e = evaluate(&ctx, &none, now());
    assert_eq!(e.verdict, Verdict::Pass);
    assert!(e.checks.iter().all(|c| !c.check.starts_with("labs.")));
}

// --- priors ----------------------------------------------------------------

#[test]
fn most_recent_prior_needs_a_report_by_default() {
    let mut ctx = complete();
    ctx.priors = vec![
        prior("1.1", "A-OLD", Some(jst(2023, 9, 1, 9, 0)), 0),
        prior("1.2", "A-NEW", Some(jst(2024, 4, 1, 9, 0)), 1),
    ];
    let e = eval(&ctx);
    assert_eq!(e.verdict, Verdict::Pass, "{:?}", e.reasons);
    assert!(check(&e, "prior_reports")
        .detail
        .contains("A-NEW (2024-04-01)"));
    ctx.priors[1].reports = 0;
    let e = eval(&ctx);
    assert_eq!(codes(&e), [PRIOR_REPORT_MISSING]);
    let r = &e.reasons[0];
    assert_eq!(r.clause, "JRS-7.3.2");
    assert!(
        r.message_ja
            .starts_with("365日以内の過去検査1件の確定した読影レポートが参照できません（CT 受付番号 A-NEW（2024-04-01））"),
        "{}",
        r.message_ja
    );
    assert!(r.message_en.starts_with("1 prior study of this patient from the last 365 days has no final report on file (CT accession A-NEW of 2024-04-01)"), "{}", r.message_en);
    assert_eq!(
        check(&e, "prior_reports").sources,
        [Source::Cfind {
            ae: "HOSPPACS".into()
        }]
    );
}

#[test]
fn all_priors_in_the_look_back_need_reports_when_configured() {
    let p = policy("[policy.priors]\nrequire = \"all\"\nlookback_days = 180\n");
    let mut ctx = complete();
    ctx.priors = vec![
        prior("1.1", "A-1", Some(jst(2024, 5, 1, 9, 0)), 1),
        prior("1.2", "A-2", Some(jst(2024, 3, 1, 9, 0)), 0),
        prior("1.3", "A-3", Some(jst(2024, 1, 5, 9, 0)), 0),
        // Outside the 180 days: ignored.
        prior("1.4", "A-4", Some(jst(2023, 11, 1, 9, 0)), 0),
        // After this study: not a prior.
        prior("1.5", "A-5", Some(jst(2024, 6, 2, 9, 0)), 0),
        // This study itself.
        prior(&ctx.study_uid.clone(), "A2024060101", Some(study_ms()), 0),
    ];
    let e = evaluate(&ctx, &p, now());
    assert_eq!(codes(&e), [PRIOR_REPORT_MISSING]);
    let r = &e.reasons[0];
    assert!(
        r.message_ja.starts_with(
            "180日以内の過去検査2件の確定した読影レポートが参照できません（CT 受付番号 A-2（2024-03-01）、CT 受付番号 A-3（2024-01-05））"
        ),
        "{}",
        r.message_ja
    );
    assert!(
        r.message_en.starts_with(
            "2 prior studies of this patient from the last 180 days have no final report"
        ),
        "{}",
        r.message_en
    );
    // The default (most recent only) is satisfied by A-1.
    assert_eq!(eval(&ctx).verdict, Verdict::Pass);
    // The two most recent: A-2 lacks its report.
    let p2 = policy("[policy.priors]\nmost_recent_count = 2\n");
    assert_eq!(codes(&evaluate(&ctx, &p2, now())), [PRIOR_REPORT_MISSING]);
}

#[test]
fn priors_known_twice_and_undated_priors() {
    let mut ctx = complete();
    // Known locally without a report, and by C-FIND with one: it has one.
    ctx.priors = vec![
        Prior {
            source: Source::dicom("(0020,000D)"),
            ..prior("1.7", "A-7", Some(jst(2024, 5, 1, 9, 0)), 0)
        },
        prior("1.7", "A-7", None, 2),
    ];
    assert_eq!(eval(&ctx).verdict, Verdict::Pass);
    // An undated prior cannot be shown to be outside the look-back: it is required
    // under "all", but a dated one is "more recent" under "most_recent".
    ctx.priors = vec![
        prior("1.8", "A-8", None, 0),
        prior("1.9", "A-9", Some(jst(2024, 5, 1, 9, 0)), 1),
    ];
    assert_eq!(eval(&ctx).verdict, Verdict::Pass);
    let all = policy("[policy.priors]\nrequire = \"all\"\n");
    let e = evaluate(&ctx, &all, now());
    assert_eq!(codes(&e), [PRIOR_REPORT_MISSING]);
    assert!(e.reasons[0]
        .message_ja
        .contains("受付番号 A-8（検査日不明）"));
    // No priors at all: nothing to compare with.
    ctx.priors.clear();
    let e = eval(&ctx);
    assert_eq!(e.verdict, Verdict::Pass);
    assert_eq!(
        check(&e, "prior_reports").detail,
        "no prior studies within 365 days"
    );
}

#[test]
fn long_prior_lists_are_shortened() {
    let all = policy("[policy.priors]\nrequire = \"all\"\n");
    let mut ctx = complete();
    ctx.priors = (1..=8)
        .map(|i| {
            prior(
                &format!("9.{i}"),
                &format!("P{i}"),
                Some(jst(2024, 5, i, 9, 0)),
                0,
            )
        })
        .collect();
    let r = &evaluate(&ctx, &all, now()).reasons[0];
    assert!(r.message_ja.contains("過去検査8件"), "{}", r.message_ja);
    assert!(r.message_ja.contains("ほか3件"), "{}", r.message_ja);
    assert!(r.message_en.contains("and 3 more"), "{}", r.message_en);
    // Newest first.
    assert!(
        r.message_en.contains("(CT accession P8 of 2024-05-08;"),
        "{}",
        r.message_en
    );
}

// --- ordering contact ------------------------------------------------------

#[test]
fn ordering_physician_and_callback_are_required() {
    let mut ctx = complete();
    ctx.ordering_physician.clear();
    ctx.callback_phone.clear();
    let e = eval(&ctx);
    assert_eq!(
        codes(&e),
        [ORDERING_PHYSICIAN_MISSING, CALLBACK_CONTACT_MISSING]
    );
    assert!(e.reasons.iter().all(|r| r.clause == "JRS-7.3.3"));
    assert!(e.reasons[0].message_ja.contains("ORC-12/OBR-16"));
    assert!(e.reasons[1].message_ja.contains("ORC-14/OBR-17"));
    assert!(e.reasons[1].message_en.contains("ORC-14/OBR-17"));
}

#[test]
fn contacts_from_dicom_and_odd_values() {
    let mut ctx = complete();
    // One kanji is a whole family name; the DICOM requester counts.
    ctx.ordering_physician = vec![Fact::new("林", dcm("(0032,1032)"))];
    ctx.callback_phone = vec![Fact::new("内線１２３４", dcm("(0040,2010)"))];
    let e = eval(&ctx);
    assert_eq!(e.verdict, Verdict::Pass, "{:?}", e.reasons);
    assert_eq!(
        check(&e, "ordering_contact.callback").sources,
        [dcm("(0040,2010)")]
    );
    // Placeholders and numbers without digits are named in the message.
    ctx.ordering_physician = vec![
        Fact::new("不明", hl7("ORC-12")),
        Fact::new("^^", dcm("(0032,1032)")),
    ];
    ctx.callback_phone = vec![Fact::new("病棟", hl7("ORC-14"))];
    let e = eval(&ctx);
    assert_eq!(
        codes(&e),
        [ORDERING_PHYSICIAN_MISSING, CALLBACK_CONTACT_MISSING]
    );
    assert!(
        e.reasons[0]
            .message_ja
            .starts_with("依頼医が記載されていません（「不明」「^^」は連絡に使えません）"),
        "{}",
        e.reasons[0].message_ja
    );
    assert!(e.reasons[1].message_en.contains("(\"病棟\" is not usable)"));
    assert_eq!(
        check(&e, "ordering_contact.physician").sources,
        [hl7("ORC-12"), dcm("(0032,1032)")]
    );
    // An e-mail address reaches someone.
    ctx.callback_phone = vec![Fact::new("rad-order@hosp.example.jp", hl7("ORC-14"))];
    assert_eq!(codes(&eval(&ctx)), [ORDERING_PHYSICIAN_MISSING]);
}

// --- STAT and routes -------------------------------------------------------

#[test]
fn stat_is_forwarded_flagged_by_default() {
    let mut ctx = complete();
    ctx.priority = Some(Priority::Stat);
    ctx.exam_purpose.clear();
    let e = eval(&ctx);
    assert_eq!(e.verdict, Verdict::ForwardIncomplete);
    // The reasons are still listed, so the gateway keeps asking for them.
    assert_eq!(codes(&e), [EXAM_PURPOSE_MISSING]);
    let json = serde_json::to_string(&e).unwrap();
    assert!(json.contains(r#""verdict":"forward_incomplete""#));
    // A complete STAT study simply passes.
    assert_eq!(eval(&complete()).verdict, Verdict::Pass);
}

#[test]
fn stat_can_be_held_by_policy() {
    let p = policy("[policy]\nstat = \"hold\"\n");
    let mut ctx = complete();
    ctx.priority = Some(Priority::Stat);
    ctx.exam_purpose.clear();
    assert_eq!(evaluate(&ctx, &p, now()).verdict, Verdict::Hold);
}

#[test]
fn only_stat_is_forwarded_incomplete() {
    let mut ctx = complete();
    ctx.exam_purpose.clear();
    for priority in [None, Some(Priority::Asap), Some(Priority::Routine)] {
        ctx.priority = priority;
        assert_eq!(eval(&ctx).verdict, Verdict::Hold, "{priority:?}");
    }
}

#[test]
fn no_route_always_holds_even_stat() {
    let mut ctx = complete();
    ctx.destination = None;
    ctx.facility = None;
    ctx.priority = Some(Priority::Stat);
    let e = eval(&ctx);
    assert_eq!(e.verdict, Verdict::Hold);
    assert_eq!(codes(&e), [NO_ROUTE]);
    assert_eq!(e.reasons[0].clause, "ATS-4");
    ctx.exam_purpose.clear();
    let e = eval(&ctx);
    assert_eq!(e.verdict, Verdict::Hold);
    assert_eq!(codes(&e), [EXAM_PURPOSE_MISSING, NO_ROUTE]);
    // Even a rule that turns every check off keeps the route check.
    let p = policy("[[policy.rules]]\nchecks = []\n");
    let e = evaluate(&ctx, &p, now());
    assert_eq!(codes(&e), [NO_ROUTE]);
    assert_eq!(e.checks.len(), 1);
}

#[test]
fn first_matching_rule_wins() {
    let p = policy(
        r#"
[[policy.rules]]
name = "er-ct"
calling_ae = ["ERCT"]
checks = ["exam_purpose"]

[[policy.rules]]
name = "stat"
priorities = ["stat"]
checks = ["exam_purpose", "ordering_contact"]

[[policy.rules]]
name = "ct-to-rc2"
modalities = ["ct"]
destinations = ["rc2"]
checks = ["exam_purpose", "clinical_information"]

[[policy.rules]]
name = "routine-mr"
modalities = ["MR"]
priorities = ["routine"]
checks = ["route"]
"#,
    );
    let mut bare = complete();
    bare.clinical_information.clear();
    bare.diagnoses.clear();
    bare.ordering_physician.clear();
    bare.callback_phone.clear();
    bare.labs.clear();

    // Sent by the ER CT: only the exam purpose is checked, whatever else matches.
    let mut ctx = bare.clone();
    ctx.calling_aes = vec!["ERCT".into()];
    ctx.priority = Some(Priority::Stat);
    let e = evaluate(&ctx, &p, now());
    assert_eq!(e.rule, "rules[0] er-ct");
    assert_eq!(e.verdict, Verdict::Pass);
    assert_eq!(e.checks.len(), 2);

    // STAT from elsewhere: the second rule.
    ctx.calling_aes = vec!["CT01".into()];
    let e = evaluate(&ctx, &p, now());
    assert_eq!(e.rule, "rules[1] stat");
    assert_eq!(
        codes(&e),
        [ORDERING_PHYSICIAN_MISSING, CALLBACK_CONTACT_MISSING]
    );
    assert_eq!(e.verdict, Verdict::ForwardIncomplete);

    // Routine CT to rc2 (modality matched case-insensitively).
    ctx.priority = None;
    ctx.destination = Some("rc2".into());
    let e = evaluate(&ctx, &p, now());
    assert_eq!(e.rule, "rules[2] ct-to-rc2");
    assert_eq!(codes(&e), [CLINICAL_INFO_MISSING]);

    // Routine CT to rc1: no rule matches, every check runs.
    ctx.destination = Some("rc1".into());
    let e = evaluate(&ctx, &p, now());
    assert_eq!(e.rule, "default");
    assert_eq!(
        codes(&e),
        [
            CLINICAL_INFO_MISSING,
            LAB_MISSING,
            ORDERING_PHYSICIAN_MISSING,
            CALLBACK_CONTACT_MISSING
        ]
    );

    // An MR without priority counts as routine.
    ctx.modalities = vec!["MR".into()];
    let e = evaluate(&ctx, &p, now());
    assert_eq!(e.rule, "rules[3] routine-mr");
    assert_eq!(e.verdict, Verdict::Pass);
    // A rule naming destinations never matches an unrouted study.
    ctx.modalities = vec!["CT".into()];
    ctx.destination = None;
    let e = evaluate(&ctx, &p, now());
    assert_eq!(e.rule, "default");
}

// --- configuration ----------------------------------------------------------

#[test]
fn absent_section_is_the_jrs_default() {
    let p = PolicyConfig::from_toml("[gateway]\nid = \"gw\"\n").unwrap();
    assert_eq!(p, PolicyConfig::default());
    assert_eq!(p.id, "jrs-2024");
    assert_eq!(p.version, "1");
    assert_eq!(p.min_text_chars, 2);
    assert_eq!(p.stat, StatHandling::ForwardFlagged);
    assert_eq!(p.priors.lookback_days, 365);
    assert_eq!(p.priors.require, PriorRequirement::MostRecent);
    assert_eq!(p.priors.most_recent_count, 1);
    assert_eq!(p.utc_offset_minutes, 540);
    assert_eq!(p.lab_rules.len(), 1);
    assert_eq!(p.lab_rules[0].name, "contrast-egfr");
    assert_eq!(p.lab_rules[0].max_age_days, 90);
    assert!(p.placeholders.contains(&"特になし".to_string()));
    assert!(p.validate().is_ok());
    // An empty [policy] is the same.
    assert_eq!(PolicyConfig::from_toml("[policy]\n").unwrap(), p);
}

#[test]
fn docs_example_parses_and_means_what_it_says() {
    let docs = include_str!("../../../docs/checks.md");
    let start = docs.find("```toml\n").expect("a toml example") + "```toml\n".len();
    let len = docs[start..].find("```").expect("closed");
    let p = policy(&docs[start..start + len]);
    assert_eq!(p.id, "hospital-a");
    assert!(p.rules.iter().any(|r| !r.modalities.is_empty()));
    assert!(p
        .rules
        .iter()
        .any(|r| r.priorities.contains(&Priority::Stat)));
    assert!(p.validate_destinations(&["rc1", "rc2"]).is_ok());

    // The three outcomes the docs promise.
    let mut stat_ct = complete();
    stat_ct.priority = Some(Priority::Stat);
    stat_ct.exam_purpose.clear();
    let e = evaluate(&stat_ct, &p, now());
    assert_eq!(e.verdict, Verdict::ForwardIncomplete);
    assert_eq!(codes(&e), [EXAM_PURPOSE_MISSING]);

    let mut mammo = complete();
    mammo.modalities = vec!["MG".into()];
    mammo.priors[0].reports = 0;
    mammo.priors[0].modalities = vec!["MG".into()];
    let e = evaluate(&mammo, &p, now());
    assert_eq!(
        (e.verdict, codes(&e)),
        (Verdict::Hold, vec![PRIOR_REPORT_MISSING])
    );

    let mut mr = complete();
    mr.modalities = vec!["MR".into()];
    mr.contrast_agent = vec![Fact::new("Gadobutrol", dcm("(0018,0010)"))];
    mr.labs = vec![egfr("70", Some(study_ms() - 45 * DAY_MS))];
    let e = evaluate(&mr, &p, now());
    assert!(check(&e, "labs.contrast-egfr").passed);
    assert_eq!((e.verdict, codes(&e)), (Verdict::Hold, vec![LAB_TOO_OLD]));
}

#[test]
fn docs_table_is_generated_from_the_catalogue() {
    let docs = include_str!("../../../docs/checks.md");
    assert!(
        docs.contains(&reasons::markdown_table()),
        "docs/checks.md is out of date; paste:\n{}",
        reasons::markdown_table()
    );
}

fn invalid(toml: &str) -> (String, String) {
    let e = PolicyConfig::from_toml(toml).expect_err(toml);
    (e.key, e.message)
}

#[test]
fn validation_names_the_key() {
    for (toml, key) in [
        ("[policy]\nid = \" \"\n", "policy.id"),
        ("[policy]\nversion = \"\"\n", "policy.version"),
        ("[policy]\nmin_text_chars = 0\n", "policy.min_text_chars"),
        ("[policy]\nplaceholders = [\"-\", \"\u{3000}\"]\n", "policy.placeholders[1]"),
        ("[policy]\ncontrast_procedure_codes = [\"3*2\"]\n", "policy.contrast_procedure_codes[0]"),
        ("[policy]\ncontrast_procedure_codes = [\"*\"]\n", "policy.contrast_procedure_codes[0]"),
        ("[policy]\nutc_offset_minutes = 900\n", "policy.utc_offset_minutes"),
        ("[policy.priors]\nlookback_days = 0\n", "policy.priors.lookback_days"),
        ("[policy.priors]\nmost_recent_count = 0\n", "policy.priors.most_recent_count"),
        ("[[policy.rules]]\nchecks = [\"labs\", \"labs\"]\n", "policy.rules[0].checks[1]"),
        ("[[policy.rules]]\nname = \"x\"\n[[policy.rules]]\nmodalities = [\"\"]\n", "policy.rules[1].modalities[0]"),
        ("[[policy.rules]]\nname = \"\"\n", "policy.rules[0].name"),
        ("[[policy.lab_rules]]\nname = \"a\"\nrequire_any_of = []\n", "policy.lab_rules[0].require_any_of"),
        ("[[policy.lab_rules]]\nname = \"a\"\nmax_age_days = 0\nrequire_any_of = [{ names = [\"eGFR\"] }]\n", "policy.lab_rules[0].max_age_days"),
        ("[[policy.lab_rules]]\nname = \"a\"\nrequire_any_of = [{ system = \"JLAC10\" }]\n", "policy.lab_rules[0].require_any_of[0]"),
        ("[[policy.lab_rules]]\nname = \"a\"\nrequire_any_of = [{ code = \"\", names = [\"x\"] }]\n", "policy.lab_rules[0].require_any_of[0].code"),
        ("[[policy.lab_rules]]\nname = \"a\"\nrequire_any_of = [{ names = [\"eGFR\"] }]\n[[policy.lab_rules]]\nname = \"a\"\nrequire_any_of = [{ names = [\"Cre\"] }]\n", "policy.lab_rules[1].name"),
    ] {
        let (got, message) = invalid(toml);
        assert_eq!(got, key, "{toml}: {message}");
        assert!(!message.is_empty());
    }
}

#[test]
fn parse_errors_name_the_key_and_line() {
    let (key, message) = invalid("[policy]\nmin_text_chars = 2\nstat = \"forward\"\n");
    assert_eq!(key, "policy");
    assert!(
        message.contains("line 3") && message.contains("forward_flagged"),
        "{message}"
    );
    let (_, message) = invalid("[policy]\nmin_txt_chars = 2\n");
    assert!(message.contains("min_txt_chars"), "{message}");
    let (_, message) = invalid("[[policy.rules]]\nchecks = [\"lab\"]\n");
    assert!(
        message.contains("lab") && message.contains("line 2"),
        "{message}"
    );
    let (_, message) = invalid("[[policy.rules]]\npriorities = [\"urgent\"]\n");
    assert!(message.contains("urgent"), "{message}");
}

#[test]
fn rule_destinations_must_exist() {
    let p = policy("[[policy.rules]]\ndestinations = [\"rc1\", \"rc9\"]\n");
    let crate::config::Invalid { key, message } =
        p.validate_destinations(&["rc1", "rc2"]).unwrap_err();
    assert_eq!(key, "policy.rules[0].destinations[1]");
    assert!(
        message.contains("rc9") && message.contains("rc1, rc2"),
        "{message}"
    );
}

// --- time -------------------------------------------------------------------

#[test]
fn dates_in_the_hospitals_time() {
    // 2024-06-01 00:30 JST is 2024-05-31 in UTC.
    assert_eq!(format_date(jst(2024, 6, 1, 0, 30), 540), "2024-06-01");
    assert_eq!(format_date(jst(2024, 6, 1, 0, 30), 0), "2024-05-31");
    let ctx = complete();
    assert_eq!(study_reference_ms(&ctx, 540), Some(study_ms()));
    let no_time = StudyContext {
        study_time: None,
        ..complete()
    };
    assert_eq!(
        study_reference_ms(&no_time, 540),
        Some(jst(2024, 6, 2, 0, 0) - 1)
    );
}

#[test]
fn extreme_values_do_not_panic() {
    let mut ctx = complete();
    ctx.labs = vec![egfr("1", Some(i64::MIN)), egfr("2", Some(i64::MAX))];
    ctx.priors = vec![
        prior("8.1", "X", Some(i64::MIN), 0),
        prior("8.2", "Y", Some(i64::MAX), 0),
    ];
    ctx.study_date = Some("99991231".into());
    let p = policy("[policy]\n[[policy.lab_rules]]\nname = \"x\"\nmax_age_days = 4294967295\nrequire_any_of = [{ names = [\"eGFR\"] }]\n[policy.priors]\nlookback_days = 4294967295\nmost_recent_count = 4294967295\nrequire = \"all\"\n");
    // Each gives a verdict with its reasons: extreme values are data, not crashes.
    for e in [
        evaluate(&ctx, &p, i64::MAX),
        evaluate(&ctx, &PolicyConfig::default(), i64::MIN),
        evaluate(&StudyContext::default(), &PolicyConfig::default(), 0),
    ] {
        assert_eq!(e.verdict == Verdict::Hold, !e.reasons.is_empty(), "{e:?}");
    }
    // An empty context lacks everything a study needs: held.
    let empty = evaluate(&StudyContext::default(), &PolicyConfig::default(), 0);
    assert_eq!(empty.verdict, Verdict::Hold, "{empty:?}");
}

// --- speed ------------------------------------------------------------------

/// The cost of one evaluation, printed for `bench/relay.sh` (which runs it in a release
/// build); the time limit is asserted only there, because a debug build on a loaded
/// machine says nothing about it. Every build checks the verdicts.
#[test]
fn evaluation_cost_per_study() {
    // A realistic context: a failing and a passing variant, several labs and priors.
    let mut passing = complete();
    passing.labs.extend((0..20).map(|i| LabFact {
        code: Some(format!("3B0{i:02}000002327201")),
        system: Some("JLAC10".into()),
        name: Some(format!("項目{i}")),
        value: "12.3".into(),
        units: Some("U/L".into()),
        observed_at: Some(jst(2024, 5, 1, 9, 0)),
        source: hl7("OBX-5"),
    }));
    passing.priors.extend((1..=10).map(|i| {
        prior(
            &format!("7.{i}"),
            &format!("P{i}"),
            Some(jst(2024, 2, i, 9, 0)),
            1,
        )
    }));
    let mut failing = passing.clone();
    failing.exam_purpose = vec![Fact::new("精査", hl7("OBR-31"))];
    failing.labs.truncate(0);
    failing.priors[0].reports = 0;
    let policy = PolicyConfig::default();
    let runs = 10_000u32;
    let start = std::time::Instant::now();
    let mut held = 0;
    for i in 0..runs {
        let ctx = if i % 2 == 0 { &passing } else { &failing };
        let e = evaluate(std::hint::black_box(ctx), &policy, now());
        if e.verdict == Verdict::Hold {
            held += 1;
        }
    }
    let per = start.elapsed() / runs;
    println!("policy evaluation: {per:?} per study ({runs} runs, half failing)");
    assert_eq!(held, runs / 2);
    if !cfg!(debug_assertions) {
        assert!(
            per < std::time::Duration::from_millis(1),
            "{per:?} per evaluation"
        );
    }
}

#[test]
fn text_quality_edges() {
    let p = PolicyConfig::default();
    assert_eq!(quality("", &p, 2), TextQuality::Blank);
    assert_eq!(quality("\u{3000}\t", &p, 2), TextQuality::Blank);
    assert_eq!(quality("「」", &p, 2), TextQuality::Placeholder);
    assert_eq!(quality("【精査】", &p, 2), TextQuality::Placeholder);
    assert_eq!(quality("ー", &p, 2), TextQuality::Placeholder);
    // 々 and 〇 are text, not punctuation.
    assert_eq!(quality("諸々", &p, 2), TextQuality::Usable);
    assert_eq!(quality("〇", &p, 1), TextQuality::Usable);
    // Half-width katakana is text too.
    assert_eq!(quality("ｷｮｳﾂｳ", &p, 2), TextQuality::Usable);
}

#[test]
fn priors_of_another_modality_do_not_count_unless_related() {
    let mut ctx = complete();
    ctx.priors = vec![Prior {
        modalities: vec!["MR".into(), "SR".into()],
        ..prior("9.1", "A-MR", Some(jst(2024, 5, 1, 9, 0)), 0)
    }];
    // A knee MR without a report does not hold a chest CT...
    assert_eq!(eval(&ctx).verdict, Verdict::Pass);
    // ...unless same_modality is off, or MR is related to CT.
    let off = policy("[policy.priors]\nsame_modality = false\n");
    assert_eq!(codes(&evaluate(&ctx, &off, now())), [PRIOR_REPORT_MISSING]);
    let related = policy("[policy.priors.related_modalities]\nCT = [\"MR\"]\n");
    let e = evaluate(&ctx, &related, now());
    assert_eq!(codes(&e), [PRIOR_REPORT_MISSING]);
    assert!(
        e.reasons[0].message_en.contains("MR accession A-MR"),
        "{}",
        e.reasons[0].message_en
    );
    // A CR chest prior with a CT study: related one way only when configured so.
    ctx.priors[0].modalities = vec!["CR".into()];
    assert_eq!(eval(&ctx).verdict, Verdict::Pass);
    let chest = policy("[policy.priors.related_modalities]\nCT = [\"CR\", \"DX\"]\n");
    assert_eq!(
        codes(&evaluate(&ctx, &chest, now())),
        [PRIOR_REPORT_MISSING]
    );
}

#[test]
fn a_report_document_in_the_pacs_counts_as_a_report() {
    let mut ctx = complete();
    ctx.priors[0].reports = 0;
    assert_eq!(codes(&eval(&ctx)), [PRIOR_REPORT_MISSING]);
    ctx.priors[0].documents = 1;
    let e = eval(&ctx);
    assert_eq!(e.verdict, Verdict::Pass, "{:?}", e.reasons);
}

#[test]
fn an_unanswered_pacs_holds_or_flags_as_configured() {
    use crate::decide::context::PacsAnswer;
    let mut ctx = complete();
    ctx.pacs = vec![PacsAnswer::Answered {
        pacs: "hosp".into(),
        at: now(),
        found: 3,
    }];
    let e = eval(&ctx);
    assert_eq!(e.verdict, Verdict::Pass);
    assert!(check(&e, "prior_reports.pacs").passed);

    ctx.pacs = vec![PacsAnswer::Failed {
        pacs: "hosp".into(),
        at: now(),
        error: "cannot associate: connection refused".into(),
    }];
    let e = eval(&ctx);
    assert_eq!(
        (e.verdict, codes(&e)),
        (Verdict::Hold, vec![PRIORS_UNAVAILABLE])
    );
    let r = &e.reasons[0];
    assert_eq!(r.clause, "JRS-7.3.2");
    assert!(
        r.message_en.contains("hosp") && r.message_en.contains("connection refused"),
        "{}",
        r.message_en
    );
    assert!(r.message_ja.contains("PACS hosp"), "{}", r.message_ja);

    ctx.pacs = vec![PacsAnswer::NotYet {
        pacs: "hosp".into(),
    }];
    let e = eval(&ctx);
    assert_eq!(codes(&e), [PRIORS_UNAVAILABLE]);
    assert!(
        e.reasons[0].message_en.contains("not answered yet"),
        "{}",
        e.reasons[0].message_en
    );

    // forward_flagged: forwarded incomplete, with the reason; not when more is missing.
    let flagged = policy("[policy.priors]\non_pacs_unreachable = \"forward_flagged\"\n");
    let e = evaluate(&ctx, &flagged, now());
    assert_eq!(
        (e.verdict, codes(&e)),
        (Verdict::ForwardIncomplete, vec![PRIORS_UNAVAILABLE])
    );
    ctx.exam_purpose.clear();
    assert_eq!(evaluate(&ctx, &flagged, now()).verdict, Verdict::Hold);
    // STAT follows policy.stat (forward_flagged by default) whatever on_pacs_unreachable says.
    ctx.priority = Some(Priority::Stat);
    assert_eq!(eval(&ctx).verdict, Verdict::ForwardIncomplete);
}

#[test]
fn a_prior_the_pacs_cannot_deliver_holds_naming_it() {
    use crate::decide::context::PacsAnswer;
    let mut ctx = complete();
    ctx.pacs = vec![PacsAnswer::Answered {
        pacs: "HOSPPACS".into(),
        at: now(),
        found: 1,
    }];
    let mut p = prior("1.9.1", "ACC-OLD-7", Some(jst(2024, 5, 1, 9, 0)), 1);
    p.unavailable = Some("HOSPPACS: C-MOVE refused: move destination unknown".into());
    ctx.priors = vec![p];
    let e = eval(&ctx);
    assert_eq!(
        (e.verdict, codes(&e)),
        (Verdict::Hold, vec![PRIORS_UNAVAILABLE])
    );
    let r = &e.reasons[0];
    for part in [
        "ACC-OLD-7",
        "2024-05-01",
        "CT",
        "move destination unknown",
        "HOSPPACS",
    ] {
        assert!(r.message_en.contains(part), "{part}: {}", r.message_en);
        assert!(r.message_ja.contains(part), "{part}: {}", r.message_ja);
    }
    assert!(
        !check(&e, "prior_reports.pacs").passed,
        "{:?}",
        check(&e, "prior_reports.pacs")
    );
    // A prior outside the look-back is not sent, so its failure does not matter.
    ctx.priors[0].study_time_ms = Some(jst(2010, 5, 1, 9, 0));
    assert_eq!(eval(&ctx).verdict, Verdict::Pass);
    // Retrieved since: the study passes.
    ctx.priors[0].study_time_ms = Some(jst(2024, 5, 1, 9, 0));
    ctx.priors[0].unavailable = None;
    assert_eq!(eval(&ctx).verdict, Verdict::Pass);
    // forward_flagged lets it go flagged.
    ctx.priors[0].unavailable = Some("HOSPPACS: timed out".into());
    let flagged = policy("[policy.priors]\non_pacs_unreachable = \"forward_flagged\"\n");
    assert_eq!(
        evaluate(&ctx, &flagged, now()).verdict,
        Verdict::ForwardIncomplete
    );
}

#[test]
fn priors_of_another_body_part_are_not_compared() {
    let mut ctx = complete();
    ctx.body_parts = vec!["CHEST".into()];
    let mut head = prior("1.8.1", "A-HEAD", Some(jst(2024, 5, 20, 9, 0)), 0);
    head.body_parts = vec!["HEAD".into()];
    let mut chest = prior("1.8.2", "A-CHEST", Some(jst(2024, 3, 1, 9, 0)), 1);
    chest.body_parts = vec!["CHEST".into()];
    ctx.priors = vec![head, chest];
    // The newest comparable prior is the chest CT, which has its report.
    let e = eval(&ctx);
    assert_eq!(e.verdict, Verdict::Pass, "{:?}", e.reasons);
    let chosen = crate::decide::policy::comparable_priors(&ctx, &policy(""), now());
    let uids: Vec<&str> = chosen.iter().map(|p| p.study_uid.as_str()).collect();
    assert_eq!(uids, ["1.8.2"]);

    // Switched off, the head CT is the newest prior and lacks a report.
    let off = policy("[policy.priors]\nsame_body_part = false\n");
    assert_eq!(codes(&evaluate(&ctx, &off, now())), [PRIOR_REPORT_MISSING]);

    // A related body part counts (one direction, case-insensitive).
    ctx.priors[1].body_parts = vec!["thorax".into()];
    assert_eq!(
        codes(&eval(&ctx)),
        Vec::<&str>::new(),
        "THORAX is not CHEST unless related"
    );
    let related = policy("[policy.priors.related_body_parts]\nCHEST = [\"THORAX\"]\n");
    let chosen = crate::decide::policy::comparable_priors(&ctx, &related, now());
    assert_eq!(chosen.len(), 1, "{chosen:?}");

    // An unknown body part on either side always counts.
    ctx.priors[0].body_parts.clear();
    assert_eq!(codes(&eval(&ctx)), [PRIOR_REPORT_MISSING]);
}
