//! `readgate check`: the offline verdict PACS administrators use to tune the policy.

mod common;

use common::{code_stdout_stderr, readgate_bin, repo_path, run_output};

/// Exit code, stdout, stdout + stderr.
fn check_out(args: &[&str]) -> (i32, String, String) {
    let mut cmd = readgate_bin();
    cmd.arg("check")
        .arg("--config")
        .arg(repo_path("config/readgate.toml"))
        .args(args);
    let (code, stdout, stderr) = code_stdout_stderr(&run_output(&mut cmd, "readgate check"));
    let all = stdout.clone() + &stderr;
    (code, stdout, all)
}

fn check(args: &[&str]) -> (i32, String) {
    let (code, _, all) = check_out(args);
    (code, all)
}

#[test]
fn complete_study_passes_and_missing_context_holds_with_reasons_in_both_languages() {
    let ct = repo_path("sample-dicom/ct-chest");
    let mr = repo_path("sample-dicom/mr-head");
    let (code, text) = check(&[ct.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("PASS"), "{text}");

    let (code, text) = check(&[mr.to_str().unwrap(), "--lang", "ja"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("EXAM_PURPOSE_MISSING") && text.contains("検査目的が記載されていません"),
        "{text}"
    );
    let (code, text) = check(&[mr.to_str().unwrap(), "--lang", "en"]);
    assert_eq!(code, 2);
    assert!(text.contains("The exam purpose is missing"), "{text}");
}

#[test]
fn an_order_file_supplies_the_missing_context() {
    let dir = tempfile::tempdir().unwrap();
    let order = dir.path().join("order.hl7");
    // SYNACC0002 is the accession of sample-dicom/mr-head.
    std::fs::write(
        &order,
        "MSH|^~\\&|RIS|HOSP|READGATE|RAD|20240601090000||ORM^O01|K1|P|2.3.1||||||UNICODE UTF-8\r\
         PID|||SYN-0002^^^HOSP^MR||TEST^HANAKO\r\
         ORC|NW|PL-2|FL-2||SC||^^^^^R||20240601090000|||9001^佐藤^花子||03-1234-5678\r\
         OBR|1|PL-2|FL-2|MRHEAD^MR head^LOCAL|||||||||頭痛が3週間続く|||9001^佐藤^花子|03-1234-5678|SYNACC0002||||||MR|||^^^^^R||||^脳腫瘍の除外\r",
    )
    .unwrap();
    let mr = repo_path("sample-dicom/mr-head");
    let (code, text) = check(&[
        mr.to_str().unwrap(),
        "--hl7",
        order.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v[0]["verdict"], "PASS");
    let sources = serde_json::to_string(&v[0]["checks"]).unwrap();
    assert!(
        sources.contains("OBR-31"),
        "the exam purpose came from the order: {sources}"
    );
}

#[test]
fn bad_input_is_named() {
    let (code, text) = check(&["/nonexistent/folder"]);
    assert_eq!(code, 1);
    assert!(text.contains("/nonexistent/folder"), "{text}");
    let (code, text) = check(&[repo_path("sample-dicom").to_str().unwrap(), "--lang", "fr"]);
    assert_eq!(code, 1);
    assert!(text.contains("--lang"), "{text}");
}
