//! The tagging stage on every sample instance, checked by real readers: DCMTK's dcmdump
//! and pydicom read the results, untouched elements are compared byte for byte with an
//! element splitter written independently of `readgate::tag`, and a 200 MB instance is
//! tagged in a child process whose peak RSS is measured.
//!
//! The benchmark against a plain copy is `examples/tag_bench.rs` (run by bench/relay.sh):
//! `cargo test --release --test tag -- --ignored --nocapture bench_`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::{big_instance, dataset_of, dcmtk, repo_path, run_ok, run_output, vm_hwm_kib};
use readgate::dicom::part10;
use readgate::model::Disposition as Verdict;
use readgate::tag::{self, Accountability, ContextCopy, TagReport};

const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

/// The context attributes a modality may lack, and Request Attributes Sequence, whose
/// (0040,1002) also counts as the exam purpose.
const CONTEXT_TAGS: [u32; 5] = [
    0x0010_21B0,
    0x0032_1032,
    0x0040_0275,
    0x0040_1002,
    0x0040_2010,
];

fn acc() -> Accountability {
    Accountability {
        gateway_id: "gw-1".into(),
        sending_facility: "HOSP-A".into(),
        receiving_facility: "RC1".into(),
        policy_id: "jrs-2024".into(),
        policy_version: "7".into(),
        verdict: Verdict::ForwardedIncomplete,
        reason_codes: vec!["JRS-7.3.2".into(), "OVERRIDE-BY-DR1".into()],
        evaluated_at: UNIX_EPOCH + Duration::from_micros(1_743_675_010_123_456),
        audit_ref: "audit/2025/000123".into(),
        prior_of: None,
    }
}

const EVALUATED_AT: &str = "20250403101010.123456+0000";

/// An order's context: exam purpose, clinical information, requesting physician, callback.
fn order(purpose: &str, clinical: &str, physician: &str, phone: &str) -> ContextCopy {
    ContextCopy {
        exam_purpose: Some(purpose.into()),
        clinical_information: Some(clinical.into()),
        requesting_physician: Some(physician.into()),
        callback_phone: Some(phone.into()),
    }
}

fn ascii_order() -> ContextCopy {
    order(
        "Rule out pulmonary embolism",
        "Chest pain since 3 days.\r\nD-dimer 2.1",
        "Order^Doctor",
        "000-0000-0009",
    )
}

/// The Japanese sample's own context (PS3.5 Annex H style names).
fn japanese_order() -> ContextCopy {
    order(
        "胸痛の精査",
        "胸痛あり、精査希望",
        "Sato^Hanako=佐藤^花子=さとう^はなこ",
        "000-0000-0003",
    )
}

use common::elements::{inflate, split, syntax};

fn deflate(b: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(b).expect("deflate");
    z.finish().expect("deflate")
}

/// A Part 10 file's transfer syntax and its data set as plain (inflated) bytes.
fn plain_dataset(path: &Path) -> (String, Vec<u8>) {
    let (meta, ds) = dataset_of(path);
    let ds = if meta.transfer_syntax == DEFLATED {
        inflate(&ds)
    } else {
        ds
    };
    (meta.transfer_syntax, ds)
}

/// `path` without the elements `drop`, as a new Part 10 file (same meta values).
fn without(path: &Path, drop: &[u32], dest: &Path) {
    let (meta, _) = dataset_of(path);
    let (ts, ds) = plain_dataset(path);
    let kept: Vec<u8> = split(&ds, syntax(&ts))
        .iter()
        .filter(|e| !drop.contains(&e.tag))
        .flat_map(|e| ds[e.start..e.end].to_vec())
        .collect();
    let kept = if ts == DEFLATED { deflate(&kept) } else { kept };
    let mut file = part10::encode_file_meta(&meta.sop_class_uid, &meta.sop_instance_uid, &ts, "");
    file.extend(kept);
    std::fs::write(dest, file).expect("write stripped sample");
}

/// `path` (explicit VR LE) with Specific Character Set `charset` and without `drop`.
fn with_charset(path: &Path, charset: &str, drop: &[u32], dest: &Path) {
    let (meta, ds) = dataset_of(path);
    assert_eq!(meta.transfer_syntax, "1.2.840.10008.1.2.1");
    let mut value = charset.as_bytes().to_vec();
    if value.len() % 2 == 1 {
        value.push(b' ');
    }
    let mut charset_element = vec![0x08, 0x00, 0x05, 0x00, b'C', b'S'];
    charset_element.extend((value.len() as u16).to_le_bytes());
    charset_element.extend(value);
    let mut kept = Vec::new();
    for e in split(&ds, syntax(&meta.transfer_syntax)) {
        if e.tag == 0x0008_0005 {
            kept.extend_from_slice(&charset_element);
        } else if !drop.contains(&e.tag) {
            kept.extend_from_slice(&ds[e.start..e.end]);
        }
    }
    let mut file = part10::encode_file_meta(
        &meta.sop_class_uid,
        &meta.sop_instance_uid,
        &meta.transfer_syntax,
        "",
    );
    file.extend(kept);
    std::fs::write(dest, file).expect("write sample with new charset");
}

// --- The fixture: every sample, as is and stripped of its context, tagged once.

struct Case {
    name: String,
    input: PathBuf,
    output: PathBuf,
    copy: ContextCopy,
    /// Expected keywords copied.
    copied: usize,
    /// Whether the Japanese values must read back exactly.
    japanese: bool,
    charset_added: bool,
    report: TagReport,
}

fn samples() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in std::fs::read_dir(repo_path("sample-dicom")).expect("sample-dicom") {
        let dir = dir.expect("entry").path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir).expect("sample dir") {
                let f = f.expect("entry").path();
                if f.extension().is_some_and(|e| e == "dcm") {
                    files.push(f);
                }
            }
        }
    }
    files.sort();
    assert!(files.len() >= 17, "sample-dicom has {} files", files.len());
    files
}

fn fixture() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        // One folder per test process: nextest runs each test in its own process, in
        // parallel, and they must not rebuild each other's fixture.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("tag-fixture-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("in")).expect("fixture dir");
        std::fs::create_dir_all(dir.join("out")).expect("fixture dir");
        let mut cases = Vec::new();
        let mut add = |name: String, input: PathBuf, copy: ContextCopy, copied, japanese| {
            let output = dir.join("out").join(format!("{name}.dcm"));
            cases.push((name, input, output, copy, copied, japanese));
        };
        for f in samples() {
            let rel = f
                .strip_prefix(repo_path("sample-dicom"))
                .expect("under sample-dicom")
                .to_string_lossy()
                .replace(['/', '.'], "_");
            let is_ja = rel.starts_with("ja-");
            let order = if is_ja {
                japanese_order()
            } else {
                ascii_order()
            };
            // mr-head, ct-abdomen and prior-ct lack all context: everything is copied;
            // the others have it.
            let copied = if rel.starts_with("mr-head")
                || rel.starts_with("ct-abdomen")
                || rel.starts_with("prior-ct")
            {
                4
            } else {
                0
            };
            add(
                format!("as-is_{rel}"),
                f.clone(),
                order.clone(),
                copied,
                false,
            );
            let stripped = dir.join("in").join(format!("stripped_{rel}.dcm"));
            without(&f, &CONTEXT_TAGS, &stripped);
            add(format!("stripped_{rel}"), stripped, order, 4, is_ja);
        }
        // No character set + Japanese order: \ISO 2022 IR 87 is added (explicit and
        // implicit VR).
        for (name, sample) in [
            ("ct", "sample-dicom/ct-chest/IM0001.dcm"),
            ("mr", "sample-dicom/mr-head/IM0001.dcm"),
        ] {
            let stripped = dir.join("in").join(format!("nocharset_{name}.dcm"));
            without(&repo_path(sample), &CONTEXT_TAGS, &stripped);
            add(
                format!("nocharset-japanese_{name}"),
                stripped,
                japanese_order(),
                4,
                true,
            );
        }
        // ISO 2022 IR 13\ISO 2022 IR 87: JIS X 0201 (with half-width katakana in G1) as
        // the initial sets, JIS X 0208 by escape sequence.
        let ir13 = dir.join("in").join("ir13_ja-iso2022.dcm");
        with_charset(
            &repo_path("sample-dicom/ja-iso2022/IM0001.dcm"),
            "ISO 2022 IR 13\\ISO 2022 IR 87",
            &CONTEXT_TAGS,
            &ir13,
        );
        let mut order = japanese_order();
        order.clinical_information = Some("ｷｮｳﾂｳ(胸痛)あり、精査希望".into());
        add("ir13_stripped_ja-iso2022".into(), ir13, order, 4, true);
        let mut done: Vec<Case> = cases
            .into_iter()
            .map(|(name, input, output, copy, copied, japanese)| {
                let report = tag_to_file(&input, &output, &copy);
                let charset_added = report.character_set_added.is_some();
                Case {
                    name,
                    input,
                    output,
                    copy,
                    copied,
                    japanese,
                    charset_added,
                    report,
                }
            })
            .collect();
        // A second decision on an already tagged instance whose copies went missing
        // again: the Original Attributes Sequence gets a second item after the first,
        // and the private block is reused.
        let first = done
            .iter()
            .find(|c| c.name == "stripped_transfer-syntaxes_explicit-le_dcm")
            .expect("explicit-le case");
        let again = dir.join("in").join("retagged_explicit-le.dcm");
        without(&first.output, &CONTEXT_TAGS, &again);
        let output = dir.join("out").join("retagged_explicit-le.dcm");
        let report = tag_to_file(&again, &output, &ascii_order());
        done.push(Case {
            name: "retagged_explicit-le".into(),
            input: again,
            output,
            copy: ascii_order(),
            copied: 4,
            japanese: false,
            charset_added: false,
            report,
        });
        done
    })
}

fn tag_to_file(input: &Path, output: &Path, copy: &ContextCopy) -> TagReport {
    let src = std::fs::File::open(input).expect("open sample");
    let dst = std::fs::File::create(output).expect("create output");
    tag::tag_part10_file(src, std::io::BufWriter::new(dst), &acc(), copy)
        .unwrap_or_else(|e| panic!("{}: {e}", input.display()))
}

#[test]
fn every_sample_is_tagged_with_the_expected_copies() {
    for c in fixture() {
        assert_eq!(
            c.report.copied.len(),
            c.copied,
            "{}: {:?}",
            c.name,
            c.report
        );
        assert!(c.report.skipped.is_empty(), "{}: {:?}", c.name, c.report);
        assert_eq!(c.report.private_creator_tag, 0x0099_0010, "{}", c.name);
        let expect_added = c.name.starts_with("nocharset-japanese");
        assert_eq!(c.charset_added, expect_added, "{}", c.name);
        assert_eq!(
            c.report.private_block_reused,
            c.name.starts_with("retagged"),
            "{}",
            c.name
        );
    }
}

// --- (1) DCMTK reads every result and shows the block.

#[test]
fn dcmdump_reads_every_result_and_shows_the_private_block() {
    for c in fixture() {
        // +L: long values in full (the default cuts them at 64 characters).
        let run_raw = |path: &Path| {
            let out = run_output(
                Command::new(dcmtk("dcmdump")).arg("+L").arg(path),
                "dcmdump",
            );
            (out.status.success(), out.stdout, out.stderr)
        };
        let run = |path: &Path| {
            let (ok, stdout, stderr) = run_raw(path);
            (
                ok,
                String::from_utf8_lossy(&stdout).into_owned(),
                String::from_utf8_lossy(&stderr).into_owned(),
            )
        };
        let (ok_in, _, err_in) = run(&c.input);
        let (ok, dump, err) = run(&c.output);
        assert!(ok_in, "{}: dcmdump fails on the input: {err_in}", c.name);
        assert!(ok, "{}: dcmdump fails on the result: {err}\n{dump}", c.name);
        // No complaint about the result that the input did not already cause.
        for line in err.lines() {
            assert!(
                err_in.contains(line),
                "{}: new dcmdump message {line:?}",
                c.name
            );
        }
        let line = |tag: &str| {
            dump.lines()
                .find(|l| l.trim_start().starts_with(tag))
                .unwrap_or_else(|| panic!("{}: no {tag} in\n{dump}", c.name))
                .to_string()
        };
        assert!(line("(0099,0010)").contains("LO [READGATE ACCOUNTABILITY]"));
        let implicit = line("(0002,0010)").contains("LittleEndianImplicit");
        let expected = [
            ("(0099,1001)", "gw-1"),
            ("(0099,1002)", "HOSP-A"),
            ("(0099,1003)", "RC1"),
            ("(0099,1004)", "jrs-2024"),
            ("(0099,1005)", "7"),
            ("(0099,1006)", "FORWARDED_INCOMPLETE"),
            ("(0099,1007)", "JRS-7.3.2\\OVERRIDE-BY-DR1"),
            ("(0099,1008)", EVALUATED_AT),
            ("(0099,1009)", "audit/2025/000123"),
        ];
        for (tag, value) in expected {
            let l = line(tag);
            if implicit {
                // Implicit VR carries no VR and DCMTK has no dictionary for our block:
                // it shows the value as UN bytes.
                let hex: Vec<String> = value.bytes().map(|b| format!("{b:02x}")).collect();
                assert!(l.contains(&hex.join("\\")), "{}: {l}", c.name);
            } else {
                assert!(
                    l.contains(&format!("LO [{value}]"))
                        || (tag == "(0099,1008)" && l.contains(&format!("DT [{value}]"))),
                    "{}: {l}",
                    c.name
                );
            }
        }
        if c.japanese {
            let (_, raw, _) = run_raw(&c.output);
            let purpose = raw
                .split(|&b| b == b'\n')
                .find(|l| l.starts_with(b"(0040,1002)"))
                .expect("(0040,1002) in dump");
            if line("(0008,0005)").contains("ISO_IR 192") {
                // UTF-8 text is shown as it is.
                assert!(line("(0040,1002)").contains("[胸痛の精査]"), "{}", c.name);
            } else {
                // DCMTK 3.6.7 on Debian cannot convert ISO 2022 IR 87 (iconv), so it
                // shows the bytes: JIS X 0208 after ESC $ B, and at the end back to the
                // initial G0 set, ASCII (ESC ( B) or for IR 13 JIS X 0201 (ESC ( J).
                let expected: &[u8] = if line("(0008,0005)").contains("ISO 2022 IR 13") {
                    b"[\x1b$B6;DK$N@:::\x1b(J]"
                } else {
                    b"[\x1b$B6;DK$N@:::\x1b(B]"
                };
                assert!(
                    purpose.windows(expected.len()).any(|w| w == expected),
                    "{}: {}",
                    c.name,
                    String::from_utf8_lossy(purpose)
                );
            }
        }
        if c.report.copied.is_empty() {
            assert!(!dump.contains("(0400,0561)"), "{}", c.name);
        } else {
            assert!(line("(0400,0565)").contains("[COERCE]"), "{}", c.name);
            assert!(line("(0400,0563)").contains("READGATE gw-1"), "{}", c.name);
        }
    }
}

// --- (2) pydicom reads every result: block by creator, exact Japanese, provenance.

const PYDICOM_READER: &str = r#"
import json, sys, warnings
import pydicom
from pydicom.multival import MultiValue

def text(v):
    if v is None:
        return None
    if isinstance(v, bytes):  # implicit VR private elements arrive as UN bytes
        s = v.decode("latin-1").rstrip(" \x00")
        return s.split("\\") if "\\" in s else s
    if isinstance(v, (MultiValue, list)):
        return [str(x) for x in v]
    return str(v)

result = {}
for path in sys.argv[1:]:
    r = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = pydicom.dcmread(path)
        for el in ds.iterall():
            _ = el.value  # decode everything, so every warning shows
        r["charset"] = text(ds.get("SpecificCharacterSet"))
        try:
            block = ds.private_block(0x0099, "READGATE ACCOUNTABILITY")
            r["block"] = {str(n): text(block[n].value) for n in range(1, 10) if n in block}
        except KeyError:
            r["block"] = None
        for kw in ("ReasonForTheRequestedProcedure", "AdditionalPatientHistory",
                   "RequestingPhysician", "OrderCallbackPhoneNumber"):
            r[kw] = text(ds.get(kw))
        items = []
        for item in ds.get("OriginalAttributesSequence") or []:
            d = {}
            mas = item.get("ModifiedAttributesSequence")
            d["modified"] = ({e.keyword: text(e.value) for e in mas[0]} if mas else None)
            d["modified_items"] = len(mas) if mas else 0
            for kw in ("AttributeModificationDateTime", "ModifyingSystem",
                       "SourceOfPreviousValues", "ReasonForTheAttributeModification"):
                d[kw] = text(item.get(kw))
                d["has_" + kw] = kw in item
            items.append(d)
        r["oas"] = items
    r["warnings"] = sorted({str(w.message) for w in caught})
    result[path] = r
print(json.dumps(result, ensure_ascii=False))
"#;

fn pydicom_read(paths: &[&Path]) -> serde_json::Value {
    let mut python = Command::new("python3");
    python.arg("-c").arg(PYDICOM_READER).args(paths);
    let out = run_ok(&mut python, "pydicom");
    serde_json::from_slice(&out.stdout).expect("pydicom JSON")
}

#[test]
fn pydicom_reads_block_copies_and_original_attributes() {
    let cases = fixture();
    let mut paths: Vec<&Path> = Vec::new();
    for c in cases {
        paths.push(&c.input);
        paths.push(&c.output);
    }
    let read = pydicom_read(&paths);
    let get = |p: &Path| read[p.to_string_lossy().as_ref()].clone();
    let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
    for c in cases {
        let input = get(&c.input);
        let r = get(&c.output);
        let name = &c.name;
        // No pydicom warning the input did not already cause.
        let old: BTreeSet<String> = serde_json::from_value(input["warnings"].clone()).unwrap();
        let new: BTreeSet<String> = serde_json::from_value(r["warnings"].clone()).unwrap();
        assert!(
            new.is_subset(&old),
            "{name}: new warnings {:?}",
            &new - &old
        );

        let block = &r["block"];
        assert_eq!(s(&block["1"]).as_deref(), Some("gw-1"), "{name}: {block}");
        assert_eq!(s(&block["2"]).as_deref(), Some("HOSP-A"));
        assert_eq!(s(&block["3"]).as_deref(), Some("RC1"));
        assert_eq!(s(&block["4"]).as_deref(), Some("jrs-2024"));
        assert_eq!(s(&block["5"]).as_deref(), Some("7"));
        assert_eq!(s(&block["6"]).as_deref(), Some("FORWARDED_INCOMPLETE"));
        assert_eq!(
            block["7"],
            serde_json::json!(["JRS-7.3.2", "OVERRIDE-BY-DR1"]),
            "{name}"
        );
        assert_eq!(s(&block["8"]).as_deref(), Some(EVALUATED_AT));
        assert_eq!(s(&block["9"]).as_deref(), Some("audit/2025/000123"));

        // Copied values read back as exactly what the order said.
        let order = [
            ("ReasonForTheRequestedProcedure", &c.copy.exam_purpose),
            ("AdditionalPatientHistory", &c.copy.clinical_information),
            ("RequestingPhysician", &c.copy.requesting_physician),
            ("OrderCallbackPhoneNumber", &c.copy.callback_phone),
        ];
        for (kw, value) in order {
            if c.report.copied.iter().any(|k| k == kw) {
                assert_eq!(s(&r[kw]).as_ref(), value.as_ref(), "{name}: {kw}");
            } else {
                assert_eq!(r[kw], input[kw], "{name}: {kw} changed");
            }
        }
        if c.japanese {
            assert!(
                s(&r["ReasonForTheRequestedProcedure"]).is_some_and(|v| v == "胸痛の精査"),
                "{name}"
            );
        }
        if c.charset_added {
            assert_eq!(r["charset"], serde_json::json!(["", "ISO 2022 IR 87"]));
        } else {
            assert_eq!(r["charset"], input["charset"], "{name}");
        }

        // Original Attributes Sequence: one new item when something changed.
        let before = input["oas"].as_array().map_or(0, Vec::len);
        let items = r["oas"].as_array().expect("oas list");
        if c.report.copied.is_empty() && !c.charset_added {
            assert_eq!(items.len(), before, "{name}");
            continue;
        }
        assert_eq!(items.len(), before + 1, "{name}");
        assert_eq!(
            &items[..before],
            &input["oas"].as_array().unwrap()[..],
            "{name}"
        );
        let ours = &items[before];
        assert_eq!(
            s(&ours["ReasonForTheAttributeModification"]).as_deref(),
            Some("COERCE")
        );
        assert_eq!(
            s(&ours["ModifyingSystem"]).as_deref(),
            Some("READGATE gw-1")
        );
        assert_eq!(
            s(&ours["AttributeModificationDateTime"]).as_deref(),
            Some(EVALUATED_AT)
        );
        assert_eq!(ours["has_SourceOfPreviousValues"], true, "{name}");
        assert_eq!(
            s(&ours["SourceOfPreviousValues"]).as_deref(),
            Some(""),
            "{name}"
        );
        assert_eq!(ours["modified_items"], 1, "{name}");
        // The previous values: every changed attribute, empty (it was absent).
        let modified: BTreeMap<String, serde_json::Value> =
            serde_json::from_value(ours["modified"].clone()).expect("modified item");
        let mut expected: BTreeSet<String> = c.report.copied.iter().cloned().collect();
        if c.charset_added {
            expected.insert("SpecificCharacterSet".into());
        }
        assert_eq!(
            modified.keys().cloned().collect::<BTreeSet<_>>(),
            expected,
            "{name}"
        );
        for (kw, v) in &modified {
            assert!(
                v.is_null() || v == "" || v == &serde_json::json!([]),
                "{name}: {kw} = {v}"
            );
        }
    }
}

// --- (3) Untouched elements are byte-identical, pixel data included.

#[test]
fn untouched_elements_are_byte_identical() {
    for c in fixture() {
        let (ts, src) = plain_dataset(&c.input);
        let (ts_out, out) = plain_dataset(&c.output);
        assert_eq!(ts, ts_out, "{}", c.name);
        let s = syntax(&ts);
        let src_el = split(&src, s);
        let out_el = split(&out, s);
        let tags: Vec<u32> = out_el.iter().map(|e| e.tag).collect();
        assert!(
            tags.windows(2).all(|w| w[0] < w[1]),
            "{}: tags out of order",
            c.name
        );
        let mut changed: BTreeSet<u32> = BTreeSet::new();
        for kw in &c.report.copied {
            changed.insert(match kw.as_str() {
                "ReasonForTheRequestedProcedure" => 0x0040_1002,
                "AdditionalPatientHistory" => 0x0010_21B0,
                "RequestingPhysician" => 0x0032_1032,
                "OrderCallbackPhoneNumber" => 0x0040_2010,
                other => panic!("unexpected keyword {other}"),
            });
        }
        if c.charset_added {
            changed.insert(0x0008_0005);
        }
        let block = (c.report.private_creator_tag & 0xFF) << 8;
        let in_our_block =
            |t: u32| t >> 16 == 0x0099 && (t & 0xFF00) == block && t & 0xFFFF >= 0x1000;
        let mut compared = 0;
        for e in &src_el {
            if changed.contains(&e.tag) || in_our_block(e.tag) || e.tag == 0x0400_0561 {
                continue;
            }
            let o = out_el
                .iter()
                .find(|o| o.tag == e.tag)
                .unwrap_or_else(|| panic!("{}: ({:08X}) lost", c.name, e.tag));
            assert!(
                src[e.start..e.end] == out[o.start..o.end],
                "{}: ({:08X}) changed",
                c.name,
                e.tag
            );
            compared += 1;
        }
        assert!(
            src_el.iter().any(|e| e.tag == 0x7FE0_0010),
            "{}: sample without pixel data",
            c.name
        );
        // Only the expected elements are new.
        for o in &out_el {
            if src_el.iter().any(|e| e.tag == o.tag) {
                continue;
            }
            let expected_new = changed.contains(&o.tag)
                || in_our_block(o.tag)
                || o.tag == c.report.private_creator_tag
                || o.tag == 0x0400_0561;
            assert!(expected_new, "{}: unexpected new ({:08X})", c.name, o.tag);
        }
        // Earlier Original Attributes items are kept byte for byte, ours after them.
        if let Some(e) = src_el.iter().find(|e| e.tag == 0x0400_0561) {
            let o = out_el.iter().find(|o| o.tag == 0x0400_0561).unwrap();
            let old = &src[e.value_start..e.end];
            assert_eq!(
                &out[o.value_start..o.value_start + old.len()],
                old,
                "{}",
                c.name
            );
        }
        assert!(
            compared > 30,
            "{}: only {compared} elements compared",
            c.name
        );
    }
}

// --- Robustness on real data: mutated samples give errors, never panics.

#[test]
fn mutated_samples_never_panic() {
    use readgate::dicom::dataset::{walk, Encoding};
    let seeds: Vec<(String, Vec<u8>)> = [
        "sample-dicom/ja-iso2022/IM0001.dcm",
        "sample-dicom/mr-head/IM0001.dcm",
        "sample-dicom/transfer-syntaxes/explicit-be.dcm",
        "sample-dicom/transfer-syntaxes/deflated-le.dcm",
        "sample-dicom/transfer-syntaxes/jpeg-lossless-sv1.dcm",
    ]
    .iter()
    .map(|p| {
        let (meta, ds) = dataset_of(&repo_path(p));
        // Mutate the plain data set; deflate it again afterwards.
        let plain = if meta.transfer_syntax == DEFLATED {
            inflate(&ds)
        } else {
            ds
        };
        // The pixel data adds nothing but time here.
        let cut = split(&plain, syntax(&meta.transfer_syntax))
            .iter()
            .find(|e| e.tag == 0x7FE0_0010)
            .map_or(plain.len(), |e| e.start);
        (meta.transfer_syntax, plain[..cut].to_vec())
    })
    .collect();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut tagged, mut valid) = (0, 0);
    for round in 0..2000 {
        let (ts, seed) = &seeds[round % seeds.len()];
        let mut data = seed.clone();
        for _ in 0..1 + next() % 3 {
            let r = next();
            let i = (r as usize) % data.len();
            match r >> 61 {
                0 => data.truncate(i.max(1)),
                1 => data[i] = 0xFF,
                2 => data.insert(i, (r >> 8) as u8),
                _ => data[i] = (r >> 8) as u8,
            }
        }
        let input = if ts == DEFLATED { deflate(&data) } else { data };
        let encoding = Encoding::for_transfer_syntax(ts).expect("known syntax");
        let input_ok = walk(std::io::Cursor::new(&input), encoding).is_ok();
        let mut out = Vec::new();
        let result = tag::tag_dataset(
            std::io::Cursor::new(&input),
            ts,
            &mut out,
            &acc(),
            &japanese_order(),
        );
        if result.is_ok() {
            tagged += 1;
            if input_ok {
                valid += 1;
                walk(std::io::Cursor::new(&out), encoding)
                    .unwrap_or_else(|e| panic!("round {round} ({ts}): output broken: {e}"));
            }
        }
    }
    assert!(
        tagged > 300 && valid > 100,
        "tagged {tagged}, valid {valid}"
    );
}

// --- (4) Memory: a 200 MB instance in a child process.

const BIG_MB: u32 = 200;

/// Counts what it is given: the tagged data set is checked by size, not kept.
struct CountingSink(u64);

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// In a child process of its own (the test binary run again for this test, with
/// READGATE_TAG_MEMORY_CHILD naming the file), so that the peak RSS is the tagging's
/// alone: tags the file and prints the peak RSS before and after.
fn tag_in_child(path: &str) {
    let before = vm_hwm_kib(std::process::id());
    let file = std::fs::File::open(path).expect("open big instance");
    let size = file.metadata().expect("metadata").len();
    let mut sink = CountingSink(0);
    let start = Instant::now();
    let (meta, report) =
        tag::tag_part10_dataset(file, &mut sink, &acc(), &ascii_order()).expect("tag big");
    let elapsed = start.elapsed();
    assert!(sink.0 > size - meta.dataset_offset, "output too short");
    assert!(report.skipped.is_empty(), "{report:?}");
    println!(
        "READGATE_MEMORY before_kib={before} after_kib={} bytes={} secs={:.3}",
        vm_hwm_kib(std::process::id()),
        sink.0,
        elapsed.as_secs_f64()
    );
}

#[test]
fn tagging_a_200_mb_instance_keeps_rss_small() {
    if let Ok(path) = std::env::var("READGATE_TAG_MEMORY_CHILD") {
        return tag_in_child(&path);
    }
    let big = big_instance(BIG_MB);
    let mut child = Command::new(std::env::current_exe().expect("test binary"));
    child
        .args([
            "--exact",
            "tagging_a_200_mb_instance_keeps_rss_small",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("READGATE_TAG_MEMORY_CHILD", &big);
    let out = run_ok(&mut child, "child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.find("READGATE_MEMORY").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no measurement in {stdout}"));
    let field = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .expect("field")
    };
    let (before, after) = (field("before_kib"), field("after_kib"));
    eprintln!("{line}");
    // The instance is 200 MB; tagging it may cost a few MB over the test harness.
    assert!(
        after - before < 8 * 1024,
        "peak RSS grew by {} KiB while tagging a {BIG_MB} MB instance",
        after - before
    );
    assert!(after < 32 * 1024, "peak RSS {after} KiB");
}

// --- Benchmark: tagging 300 CT instances vs copying them.
