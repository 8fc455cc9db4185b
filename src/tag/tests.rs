//! Unit tests of the tagging stage on synthetic data sets in every syntax. The samples,
//! DCMTK and pydicom are exercised in `tests/tag.rs`.

use std::io::{Cursor, Write};
use std::time::{Duration, UNIX_EPOCH};

use super::encode::{pad_text, Encoder};
use super::scan::{Scanner, Syntax, TopElement};
use super::source::Stored;
use super::*;
use crate::dicom::dataset::{self, Encoding};
use crate::dicom::text::{decode, SpecificCharacterSet, TextKind};
use crate::model::Disposition;

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";
const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";

const CREATOR_10: u32 = 0x0099_0010;

fn syntax_of(ts: &str) -> Syntax {
    Syntax {
        explicit: ts != IMPLICIT_LE,
        big: ts == EXPLICIT_BE,
    }
}

fn acc() -> Accountability {
    Accountability {
        gateway_id: "gw-1".into(),
        sending_facility: "HOSP-A".into(),
        receiving_facility: "RC1".into(),
        policy_id: "default".into(),
        policy_version: "3".into(),
        verdict: Disposition::ForwardedIncomplete,
        reason_codes: vec!["JRS-7.3.1".into(), "OVERRIDE".into()],
        evaluated_at: UNIX_EPOCH + Duration::from_micros(1_743_675_010_123_456),
        audit_ref: "audit:000123".into(),
        prior_of: None,
    }
}

fn ascii_copy() -> ContextCopy {
    ContextCopy {
        exam_purpose: Some("rule out PE".into()),
        clinical_information: Some("chest pain\r\nD-dimer high".into()),
        requesting_physician: Some("Sato^Hanako".into()),
        callback_phone: Some("000-0000-0001".into()),
    }
}

fn japanese_copy() -> ContextCopy {
    ContextCopy {
        exam_purpose: Some("胸痛の精査".into()),
        clinical_information: Some("胸痛あり、精査希望".into()),
        requesting_physician: Some("Sato^Hanako=佐藤^花子=さとう^はなこ".into()),
        callback_phone: Some("000-0000-0003".into()),
    }
}

/// Builds data sets element by element in one syntax.
struct Builder {
    enc: Encoder,
    bytes: Vec<u8>,
}

impl Builder {
    fn new(ts: &str) -> Self {
        Builder {
            enc: Encoder {
                syntax: syntax_of(ts),
            },
            bytes: Vec::new(),
        }
    }
    fn el(mut self, tag: u32, vr: &[u8; 2], value: &[u8]) -> Self {
        let mut v = value.to_vec();
        if v.len() % 2 == 1 {
            v.push(if vr == b"UI" { 0 } else { b' ' });
        }
        self.bytes.extend(self.enc.element(tag, vr, &v));
        self
    }
    fn raw(mut self, bytes: &[u8]) -> Self {
        self.bytes.extend_from_slice(bytes);
        self
    }
    fn u16(&self, v: u16) -> [u8; 2] {
        if self.enc.syntax.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn u32(&self, v: u32) -> [u8; 4] {
        if self.enc.syntax.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn tag(&self, tag: u32) -> Vec<u8> {
        [self.u16((tag >> 16) as u16), self.u16(tag as u16)].concat()
    }
    /// An undefined-length sequence of undefined-length items.
    fn undefined_sq(self, tag: u32, items: &[Vec<u8>]) -> Self {
        let mut v = self.tag(tag);
        if self.enc.syntax.explicit {
            v.extend_from_slice(b"SQ\0\0");
        }
        v.extend(self.u32(0xFFFF_FFFF));
        for item in items {
            v.extend(self.tag(0xFFFE_E000));
            v.extend(self.u32(0xFFFF_FFFF));
            v.extend_from_slice(item);
            v.extend(self.tag(0xFFFE_E00D));
            v.extend(self.u32(0));
        }
        v.extend(self.tag(0xFFFE_E0DD));
        v.extend(self.u32(0));
        self.raw(&v)
    }
    fn defined_sq(mut self, tag: u32, items: &[Vec<u8>]) -> Self {
        let seq = self.enc.sequence(tag, items);
        self.bytes.extend(seq);
        self
    }
    /// Encapsulated pixel data: empty offset table, two fragments.
    fn encapsulated_pixels(self) -> Self {
        let mut v = self.tag(0x7FE0_0010);
        v.extend_from_slice(b"OB\0\0");
        v.extend(self.u32(0xFFFF_FFFF));
        v.extend(self.tag(0xFFFE_E000));
        v.extend(self.u32(0));
        for frag in [
            &[0xFFu8, 0xD8, 0xFF, 0xE0, 1, 2][..],
            &[0xFE, 0xFF, 0xDD, 0xE0],
        ] {
            v.extend(self.tag(0xFFFE_E000));
            v.extend(self.u32(frag.len() as u32));
            v.extend_from_slice(frag);
        }
        v.extend(self.tag(0xFFFE_E0DD));
        v.extend(self.u32(0));
        self.raw(&v)
    }
    fn done(self) -> Vec<u8> {
        self.bytes
    }
}

fn el(ts: &str, tag: u32, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    Builder::new(ts).el(tag, vr, value).done()
}

/// A CT header without any clinical context, then `extra` (tags above (0010,0010)) and
/// 64 bytes of pixels.
fn bare(ts: &str, charset: Option<&str>, extra: impl FnOnce(Builder) -> Builder) -> Vec<u8> {
    let mut b = Builder::new(ts);
    if let Some(cs) = charset {
        b = b.el(0x0008_0005, b"CS", cs.as_bytes());
    }
    b = b
        .el(0x0008_0016, b"UI", b"1.2.840.10008.5.1.4.1.1.2")
        .el(0x0008_0018, b"UI", b"1.2.3.4")
        .el(0x0008_0060, b"CS", b"CT")
        .el(0x0010_0010, b"PN", b"Test^Taro");
    b = extra(b);
    let pixels: Vec<u8> = (0..64u8).collect();
    b.el(0x7FE0_0010, b"OW", &pixels).done()
}

fn tag(input: &[u8], ts: &str, copy: &ContextCopy) -> Result<(Vec<u8>, TagReport), TagError> {
    tag_as(input, ts, &acc(), copy)
}

fn tag_as(
    input: &[u8],
    ts: &str,
    a: &Accountability,
    copy: &ContextCopy,
) -> Result<(Vec<u8>, TagReport), TagError> {
    let mut out = Vec::new();
    let report = tag_dataset(Cursor::new(input), ts, &mut out, a, copy)?;
    Ok((out, report))
}

fn elements_of(bytes: &[u8], ts: &str) -> Vec<TopElement> {
    let (mut src, _, _) = Stored::new(Cursor::new(bytes), 64).unwrap();
    Scanner::new(&mut src, syntax_of(ts))
        .scan(|_| false)
        .unwrap()
        .elements
}

fn element_bytes<'a>(bytes: &'a [u8], e: &TopElement) -> &'a [u8] {
    &bytes[e.start as usize..e.end as usize]
}

fn value_of(bytes: &[u8], ts: &str, tag: u32) -> Option<Vec<u8>> {
    elements_of(bytes, ts)
        .iter()
        .find(|e| e.tag == tag)
        .map(|e| bytes[e.value_start as usize..e.end as usize].to_vec())
}

/// Every source element whose tag is not in `changed` is in the output, byte for byte,
/// in the same order; the output's tags ascend.
fn assert_untouched(src: &[u8], out: &[u8], ts: &str, changed: &[u32]) {
    let out_elements = elements_of(out, ts);
    let tags: Vec<u32> = out_elements.iter().map(|e| e.tag).collect();
    assert!(
        tags.windows(2).all(|w| w[0] < w[1]),
        "tags not ascending: {tags:08X?}"
    );
    for e in elements_of(src, ts) {
        if changed.contains(&e.tag) {
            continue;
        }
        let o = out_elements
            .iter()
            .find(|o| o.tag == e.tag)
            .unwrap_or_else(|| panic!("({:08X}) lost", e.tag));
        assert_eq!(
            element_bytes(src, &e),
            element_bytes(out, o),
            "({:08X}) changed",
            e.tag
        );
    }
    // And the result is a structurally valid data set.
    let encoding = Encoding::for_transfer_syntax(ts).unwrap();
    dataset::walk(Cursor::new(out), encoding).expect("output walks");
}

fn private(slot: u8, n: u8) -> u32 {
    0x0099_0000 | (u32::from(slot) << 8) | u32::from(n)
}

fn lo(s: &str) -> Vec<u8> {
    pad_text(s.as_bytes().to_vec())
}

#[test]
fn explicit_le_gets_private_block_copies_and_original_attributes() {
    let src = bare(EXPLICIT_LE, None, |b| b);
    let (out, report) = tag(&src, EXPLICIT_LE, &ascii_copy()).unwrap();
    assert_eq!(
        report.copied,
        [
            "AdditionalPatientHistory",
            "RequestingPhysician",
            "ReasonForTheRequestedProcedure",
            "OrderCallbackPhoneNumber"
        ]
    );
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.character_set_added, None);
    assert_eq!(report.private_creator_tag, CREATOR_10);
    assert!(!report.private_block_reused);
    assert_untouched(&src, &out, EXPLICIT_LE, &[]);

    let v = |t| value_of(&out, EXPLICIT_LE, t);
    assert_eq!(v(CREATOR_10), Some(lo("READGATE ACCOUNTABILITY")));
    assert_eq!(v(private(0x10, 1)), Some(lo("gw-1")));
    assert_eq!(v(private(0x10, 2)), Some(lo("HOSP-A")));
    assert_eq!(v(private(0x10, 3)), Some(lo("RC1")));
    assert_eq!(v(private(0x10, 4)), Some(lo("default")));
    assert_eq!(v(private(0x10, 5)), Some(lo("3")));
    assert_eq!(v(private(0x10, 6)), Some(lo("FORWARDED_INCOMPLETE")));
    assert_eq!(v(private(0x10, 7)), Some(lo("JRS-7.3.1\\OVERRIDE")));
    assert_eq!(v(private(0x10, 8)), Some(lo("20250403101010.123456+0000")));
    assert_eq!(v(private(0x10, 9)), Some(lo("audit:000123")));
    assert_eq!(v(0x0040_1002), Some(lo("rule out PE")));
    assert_eq!(v(0x0010_21B0), Some(lo("chest pain\r\nD-dimer high")));
    assert_eq!(v(0x0032_1032), Some(lo("Sato^Hanako")));
    assert_eq!(v(0x0040_2010), Some(lo("000-0000-0001")));
    assert_eq!(v(0x0008_0005), None);

    // The Original Attributes item, spelled out (PS3.3 C.12.1).
    let le = |t, vr: &[u8; 2], val: &[u8]| el(EXPLICIT_LE, t, vr, val);
    let previous = [
        le(0x0010_21B0, b"LT", b""),
        le(0x0032_1032, b"PN", b""),
        le(0x0040_1002, b"LO", b""),
        le(0x0040_2010, b"SH", b""),
    ]
    .concat();
    let enc = Encoder {
        syntax: syntax_of(EXPLICIT_LE),
    };
    let content = [
        enc.sequence(0x0400_0550, &[previous]),
        le(0x0400_0562, b"DT", b"20250403101010.123456+0000"),
        le(0x0400_0563, b"LO", b"READGATE gw-1"),
        le(0x0400_0564, b"LO", b""),
        le(0x0400_0565, b"CS", b"COERCE"),
    ]
    .concat();
    assert_eq!(v(0x0400_0561), Some(enc.item(&content)));
}

#[test]
fn every_native_syntax_and_encapsulated_pixels() {
    for ts in [EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, JPEG_BASELINE] {
        let src = if ts == JPEG_BASELINE {
            let mut b = Builder::new(ts)
                .el(0x0008_0016, b"UI", b"1.2.840.10008.5.1.4.1.1.7")
                .el(0x0008_0018, b"UI", b"1.2.3.5")
                .undefined_sq(0x0008_1140, &[el(ts, 0x0008_1150, b"UI", b"1.2")]);
            b = b.encapsulated_pixels();
            b.done()
        } else {
            bare(ts, None, |b| {
                b.undefined_sq(0x0040_0260, &[el(ts, 0x0008_0100, b"SH", b"CODE")])
            })
        };
        let (out, report) = tag(&src, ts, &ascii_copy()).unwrap();
        assert_eq!(report.copied.len(), 4, "{ts}");
        assert_untouched(&src, &out, ts, &[]);
        assert_eq!(
            value_of(&out, ts, private(0x10, 6)),
            Some(lo("FORWARDED_INCOMPLETE")),
            "{ts}"
        );
        assert_eq!(
            value_of(&out, ts, 0x0040_1002),
            Some(lo("rule out PE")),
            "{ts}"
        );
        // Tagging the result again changes nothing: the context is now present and the
        // block is rewritten with the same values.
        let (again, report) = tag(&out, ts, &ascii_copy()).unwrap();
        assert!(report.copied.is_empty());
        assert!(report.private_block_reused);
        assert_eq!(again, out, "{ts}: re-tagging is not idempotent");
    }
}

#[test]
fn deflated_is_tagged_through_inflate_and_deflate() {
    let plain = bare(EXPLICIT_LE, None, |b| b);
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&plain).unwrap();
    let deflated = z.finish().unwrap();
    let (out, report) = tag(&deflated, DEFLATED, &ascii_copy()).unwrap();
    assert_eq!(out.len() % 2, 0, "deflated output is padded to even length");
    assert_eq!(report.copied.len(), 4);
    let mut inflated = Vec::new();
    std::io::copy(
        &mut flate2::read::DeflateDecoder::new(&out[..]),
        &mut inflated,
    )
    .unwrap();
    let (expected, _) = tag(&plain, EXPLICIT_LE, &ascii_copy()).unwrap();
    assert_eq!(inflated, expected);
    // A cut deflate stream is an error, not a panic or a short output.
    assert!(tag(&deflated[..deflated.len() / 2], DEFLATED, &ascii_copy()).is_err());
}

#[test]
fn context_already_in_the_image_is_not_copied() {
    let src = bare(EXPLICIT_LE, None, |b| {
        b.el(0x0010_21B0, b"LT", b"known history")
            .el(0x0032_1032, b"PN", b"Doc^Tor")
            .defined_sq(
                0x0040_0275,
                &[[
                    el(EXPLICIT_LE, 0x0040_1001, b"SH", b"RP1"),
                    el(EXPLICIT_LE, 0x0040_1002, b"LO", b"nested purpose"),
                ]
                .concat()],
            )
            .el(0x0040_2010, b"SH", b"123")
    });
    let (out, report) = tag(&src, EXPLICIT_LE, &ascii_copy()).unwrap();
    assert!(report.copied.is_empty());
    assert_eq!(
        report.already_present,
        [
            "AdditionalPatientHistory",
            "RequestingPhysician",
            "ReasonForTheRequestedProcedure",
            "OrderCallbackPhoneNumber"
        ]
    );
    assert_eq!(value_of(&out, EXPLICIT_LE, 0x0400_0561), None);
    assert_eq!(value_of(&out, EXPLICIT_LE, 0x0040_1002), None);
    assert_untouched(&src, &out, EXPLICIT_LE, &[]);

    // The same nested purpose in undefined-length form, implicit VR.
    let src = bare(IMPLICIT_LE, None, |b| {
        b.undefined_sq(
            0x0040_0275,
            &[el(IMPLICIT_LE, 0x0040_1002, b"LO", b"nested purpose")],
        )
    });
    let (_, report) = tag(&src, IMPLICIT_LE, &ascii_copy()).unwrap();
    assert_eq!(report.already_present, ["ReasonForTheRequestedProcedure"]);
    // An empty nested reason does not count.
    let src = bare(EXPLICIT_LE, None, |b| {
        b.undefined_sq(0x0040_0275, &[el(EXPLICIT_LE, 0x0040_1002, b"LO", b"")])
    });
    let (_, report) = tag(&src, EXPLICIT_LE, &ascii_copy()).unwrap();
    assert!(report
        .copied
        .contains(&"ReasonForTheRequestedProcedure".into()));
}

#[test]
fn empty_attributes_are_replaced_and_their_old_bytes_recorded() {
    let src = bare(EXPLICIT_LE, None, |b| {
        b.el(0x0010_21B0, b"LT", b"  ").el(0x0040_1002, b"LO", b"")
    });
    let copy = ContextCopy {
        exam_purpose: Some("rule out PE".into()),
        clinical_information: Some("history".into()),
        ..ContextCopy::default()
    };
    let (out, report) = tag(&src, EXPLICIT_LE, &copy).unwrap();
    assert_eq!(
        report.copied,
        ["AdditionalPatientHistory", "ReasonForTheRequestedProcedure"]
    );
    assert_untouched(&src, &out, EXPLICIT_LE, &[0x0010_21B0, 0x0040_1002]);
    assert_eq!(
        elements_of(&out, EXPLICIT_LE)
            .iter()
            .filter(|e| e.tag == 0x0040_1002)
            .count(),
        1
    );
    let oas = value_of(&out, EXPLICIT_LE, 0x0400_0561).unwrap();
    let previous = [
        el(EXPLICIT_LE, 0x0010_21B0, b"LT", b"  "),
        el(EXPLICIT_LE, 0x0040_1002, b"LO", b""),
    ]
    .concat();
    assert!(contains(&oas, &previous), "previous values not recorded");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn decoded(bytes: &[u8], cs: &str, kind: TextKind) -> String {
    let cs = SpecificCharacterSet::parse(cs).unwrap();
    decode(bytes, &cs, kind)
        .unwrap()
        .trim_end_matches(' ')
        .to_string()
}

#[test]
fn japanese_copies_under_each_japanese_character_set() {
    for cs in [
        "\\ISO 2022 IR 87",
        "ISO 2022 IR 13\\ISO 2022 IR 87",
        "ISO_IR 192",
    ] {
        let src = bare(EXPLICIT_LE, Some(cs), |b| b);
        let (out, report) = tag(&src, EXPLICIT_LE, &japanese_copy()).unwrap();
        assert_eq!(report.copied.len(), 4, "{cs}: {:?}", report.skipped);
        assert_eq!(report.character_set_added, None);
        assert_untouched(&src, &out, EXPLICIT_LE, &[]);
        let v = |t| value_of(&out, EXPLICIT_LE, t).unwrap();
        assert_eq!(v(0x0040_1002).len() % 2, 0);
        assert_eq!(
            decoded(&v(0x0040_1002), cs, TextKind::Text),
            "胸痛の精査",
            "{cs}"
        );
        assert_eq!(
            decoded(&v(0x0010_21B0), cs, TextKind::Text),
            "胸痛あり、精査希望"
        );
        assert_eq!(
            decoded(&v(0x0032_1032), cs, TextKind::PersonName),
            "Sato^Hanako=佐藤^花子=さとう^はなこ"
        );
    }
    // PS3.5 Annex H: the ISO 2022 value ends back in ASCII, padding after the escape.
    let src = bare(EXPLICIT_LE, Some("\\ISO 2022 IR 87"), |b| b);
    let (out, _) = tag(&src, EXPLICIT_LE, &japanese_copy()).unwrap();
    let purpose = value_of(&out, EXPLICIT_LE, 0x0040_1002).unwrap();
    assert_eq!(
        purpose, b"\x1b$B6;DK$N@:::\x1b(B",
        "胸痛の精査 as in the sample"
    );
}

#[test]
fn japanese_into_a_data_set_without_character_set_adds_iso_2022_ir_87() {
    for ts in [EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE] {
        let src = bare(ts, None, |b| b);
        let (out, report) = tag(&src, ts, &japanese_copy()).unwrap();
        assert_eq!(report.copied.len(), 4);
        assert_eq!(
            report.character_set_added.as_deref(),
            Some("\\ISO 2022 IR 87")
        );
        assert_eq!(
            value_of(&out, ts, 0x0008_0005),
            Some(lo("\\ISO 2022 IR 87"))
        );
        assert_untouched(&src, &out, ts, &[]);
        let oas = value_of(&out, ts, 0x0400_0561).unwrap();
        assert!(
            contains(&oas, &el(ts, 0x0008_0005, b"CS", b"")),
            "{ts}: the added character set is recorded as previously absent"
        );
        assert_eq!(
            decoded(
                &value_of(&out, ts, 0x0040_1002).unwrap(),
                "\\ISO 2022 IR 87",
                TextKind::Text
            ),
            "胸痛の精査"
        );
    }
    // An empty (0008,0005) is replaced, not duplicated.
    let src = bare(EXPLICIT_LE, Some(""), |b| b);
    let (out, report) = tag(&src, EXPLICIT_LE, &japanese_copy()).unwrap();
    assert!(report.character_set_added.is_some());
    let n = elements_of(&out, EXPLICIT_LE)
        .iter()
        .filter(|e| e.tag == 0x0008_0005)
        .count();
    assert_eq!(n, 1);
    // ASCII copies never add a character set.
    let src = bare(EXPLICIT_LE, None, |b| b);
    let (_, report) = tag(&src, EXPLICIT_LE, &ascii_copy()).unwrap();
    assert_eq!(report.character_set_added, None);
}

#[test]
fn text_the_character_set_cannot_hold_is_skipped_and_reported() {
    let src = bare(EXPLICIT_LE, Some("ISO_IR 100"), |b| b);
    let (out, report) = tag(&src, EXPLICIT_LE, &japanese_copy()).unwrap();
    assert_eq!(report.copied, ["OrderCallbackPhoneNumber"]);
    let skipped: Vec<&str> = report.skipped.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        skipped,
        [
            "AdditionalPatientHistory",
            "RequestingPhysician",
            "ReasonForTheRequestedProcedure"
        ]
    );
    assert!(report.skipped[0].1.contains("not representable"));
    assert_eq!(value_of(&out, EXPLICIT_LE, 0x0040_1002), None);
    assert_eq!(
        value_of(&out, EXPLICIT_LE, 0x0008_0005),
        Some(lo("ISO_IR 100"))
    );
    // Latin-1 text does fit ISO_IR 100.
    let copy = ContextCopy {
        exam_purpose: Some("Verdacht auf Lungenembolie, Schmerz über Sternum".into()),
        ..ContextCopy::default()
    };
    let (out, report) = tag(&src, EXPLICIT_LE, &copy).unwrap();
    assert_eq!(report.copied, ["ReasonForTheRequestedProcedure"]);
    assert!(contains(
        &value_of(&out, EXPLICIT_LE, 0x0040_1002).unwrap(),
        b"\xfcber"
    ));
    // No character set, and text JIS X 0208 does not have either: skipped, no change.
    let src = bare(EXPLICIT_LE, None, |b| b);
    let (_, report) = tag(&src, EXPLICIT_LE, &copy).unwrap();
    assert!(report.copied.is_empty());
    assert_eq!(report.character_set_added, None);
    // An unknown character set: ASCII goes in, anything else is skipped.
    let src = bare(EXPLICIT_LE, Some("ISO_IR 999"), |b| b);
    let (_, report) = tag(&src, EXPLICIT_LE, &japanese_copy()).unwrap();
    assert_eq!(report.copied, ["OrderCallbackPhoneNumber"]);
    assert!(report.skipped[0].1.contains("ISO_IR 999"));
}

#[test]
fn order_values_that_break_their_vr_are_skipped() {
    let src = bare(EXPLICIT_LE, None, |b| b);
    let copy = ContextCopy {
        exam_purpose: Some("a\\b".into()),
        clinical_information: Some("x".repeat(10_241)),
        requesting_physician: Some("A=B=C=D".into()),
        callback_phone: Some("+81-3-0000-0000-0000".into()),
    };
    let (out, report) = tag(&src, EXPLICIT_LE, &copy).unwrap();
    assert!(report.copied.is_empty());
    assert_eq!(report.skipped.len(), 4, "{:?}", report.skipped);
    assert_eq!(value_of(&out, EXPLICIT_LE, 0x0400_0561), None);
    // Blank offers are no offers.
    let blank = ContextCopy {
        exam_purpose: Some("  ".into()),
        ..ContextCopy::default()
    };
    let (_, report) = tag(&src, EXPLICIT_LE, &blank).unwrap();
    assert!(report.skipped.is_empty() && report.copied.is_empty());
}

#[test]
fn private_slot_skips_foreign_creators_and_orphan_blocks() {
    let src = bare(EXPLICIT_LE, None, |b| {
        b.el(0x0099_0010, b"LO", b"OTHER VENDOR")
            .el(0x0099_1001, b"LO", b"theirs")
            .el(0x0099_1101, b"LO", b"orphan without creator")
    });
    let (out, report) = tag(&src, EXPLICIT_LE, &ContextCopy::default()).unwrap();
    assert_eq!(report.private_creator_tag, 0x0099_0012);
    assert_untouched(&src, &out, EXPLICIT_LE, &[]);
    assert_eq!(
        value_of(&out, EXPLICIT_LE, private(0x12, 1)),
        Some(lo("gw-1"))
    );
    assert_eq!(
        value_of(&out, EXPLICIT_LE, 0x0099_0012),
        Some(lo("READGATE ACCOUNTABILITY"))
    );
}

#[test]
fn re_forward_reuses_our_block_and_replaces_its_elements() {
    let src = bare(EXPLICIT_LE, None, |b| {
        b.el(0x0099_0010, b"LO", b"OTHER VENDOR")
            .el(0x0099_0011, b"LO", b"READGATE ACCOUNTABILITY")
            .el(0x0099_1001, b"LO", b"theirs")
            .el(0x0099_1101, b"LO", b"gw-old")
            .el(0x0099_1106, b"LO", b"PASS")
            .el(0x0099_1150, b"LO", b"stale element of an older readgate")
    });
    let mut a = acc();
    a.verdict = Disposition::ReleasedOverride;
    a.reason_codes.clear();
    let (out, report) = tag_as(&src, EXPLICIT_LE, &a, &ContextCopy::default()).unwrap();
    assert!(report.private_block_reused);
    assert_eq!(report.private_creator_tag, 0x0099_0011);
    let changed = [0x0099_1101, 0x0099_1106, 0x0099_1150];
    assert_untouched(&src, &out, EXPLICIT_LE, &changed);
    let v = |t| value_of(&out, EXPLICIT_LE, t);
    assert_eq!(v(private(0x11, 1)), Some(lo("gw-1")));
    assert_eq!(v(private(0x11, 6)), Some(lo("RELEASED_OVERRIDE")));
    assert_eq!(v(private(0x11, 7)), Some(vec![]));
    assert_eq!(v(private(0x11, 0x50)), None);
    assert_eq!(v(0x0099_1001), Some(lo("theirs")));
    let creators = elements_of(&out, EXPLICIT_LE)
        .iter()
        .filter(|e| (0x0099_0010..=0x0099_00FF).contains(&e.tag))
        .count();
    assert_eq!(creators, 2);
}

#[test]
fn no_free_slot_is_an_error() {
    let src = bare(EXPLICIT_LE, None, |mut b| {
        for slot in 0x10..=0xFFu32 {
            b = b.el(0x0099_0000 | slot, b"LO", b"X");
        }
        b
    });
    assert!(matches!(
        tag(&src, EXPLICIT_LE, &ContextCopy::default()),
        Err(TagError::NoFreePrivateBlock)
    ));
}

#[test]
fn existing_original_attributes_items_are_kept_and_ours_appended() {
    for ts in [EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE] {
        let old_item = [
            el(ts, 0x0400_0562, b"DT", b"20200101000000"),
            el(ts, 0x0400_0565, b"CS", b"CORRECT"),
        ]
        .concat();
        for undefined in [false, true] {
            let src = bare(ts, None, |b| {
                if undefined {
                    b.undefined_sq(0x0400_0561, std::slice::from_ref(&old_item))
                } else {
                    b.defined_sq(0x0400_0561, std::slice::from_ref(&old_item))
                }
            });
            let (out, report) = tag(&src, ts, &ascii_copy()).unwrap();
            assert_eq!(report.copied.len(), 4);
            assert_untouched(&src, &out, ts, &[0x0400_0561]);
            let before = value_of(&src, ts, 0x0400_0561).unwrap();
            let after = value_of(&out, ts, 0x0400_0561).unwrap();
            let ours_len = if undefined {
                // old items stay first, ours sits before the sequence delimiter
                assert_eq!(&after[..before.len() - 8], &before[..before.len() - 8]);
                assert_eq!(&after[after.len() - 8..], &before[before.len() - 8..]);
                after.len() - before.len()
            } else {
                assert_eq!(&after[..before.len()], &before[..]);
                after.len() - before.len()
            };
            assert!(ours_len > 100, "{ts} undefined={undefined}");
            assert!(contains(&after, b"READGATE gw-1 "));
            // Nothing copied: no item appended.
            let present = ContextCopy::default();
            let (out, _) = tag(&src, ts, &present).unwrap();
            assert_eq!(value_of(&out, ts, 0x0400_0561).unwrap(), before);
        }
    }
}

#[test]
fn group_lengths_of_changed_groups_are_recomputed() {
    let src = Builder::new(EXPLICIT_LE)
        .el(0x0008_0000, b"UL", &32u32.to_le_bytes())
        .el(0x0008_0016, b"UI", b"1.2.840.10008.5.1.4.1.1.2")
        .el(0x0040_0000, b"UL", &0u32.to_le_bytes())
        .el(0x7FE0_0010, b"OW", &[0; 4])
        .done();
    let (out, _) = tag(&src, EXPLICIT_LE, &ascii_copy()).unwrap();
    let elements = elements_of(&out, EXPLICIT_LE);
    let group_40: u64 = elements
        .iter()
        .filter(|e| e.tag >> 16 == 0x0040 && e.tag != 0x0040_0000)
        .map(|e| e.end - e.start)
        .sum();
    assert!(group_40 > 0);
    assert_eq!(
        value_of(&out, EXPLICIT_LE, 0x0040_0000),
        Some((group_40 as u32).to_le_bytes().to_vec())
    );
    // Group 0008 is unchanged, so its (stale) group length stays as it was.
    assert_eq!(
        value_of(&out, EXPLICIT_LE, 0x0008_0000),
        Some(32u32.to_le_bytes().to_vec())
    );
}

#[test]
fn accountability_values_are_validated() {
    let src = bare(EXPLICIT_LE, None, |b| b);
    let mut a = acc();
    a.policy_id = "a\\b".into();
    let r = tag_as(&src, EXPLICIT_LE, &a, &ContextCopy::default());
    assert!(matches!(
        r,
        Err(TagError::InvalidAccountability {
            field: "policy_id",
            ..
        })
    ));
    // A Japanese facility name under ISO_IR 100 cannot be stamped faithfully.
    let src = bare(EXPLICIT_LE, Some("ISO_IR 100"), |b| b);
    let mut a = acc();
    a.sending_facility = "山田病院".into();
    let r = tag_as(&src, EXPLICIT_LE, &a, &ContextCopy::default());
    assert!(matches!(
        r,
        Err(TagError::InvalidAccountability {
            field: "sending_facility",
            ..
        })
    ));
    // Without a character set it is written under the added \ISO 2022 IR 87, and that
    // change is recorded although nothing was copied.
    let src = bare(EXPLICIT_LE, None, |b| b);
    let (out, report) = tag_as(&src, EXPLICIT_LE, &a, &ContextCopy::default()).unwrap();
    assert!(report.character_set_added.is_some());
    assert!(value_of(&out, EXPLICIT_LE, 0x0400_0561).is_some());
    assert_eq!(
        decoded(
            &value_of(&out, EXPLICIT_LE, private(0x10, 2)).unwrap(),
            "\\ISO 2022 IR 87",
            TextKind::Text
        ),
        "山田病院"
    );
}

#[test]
fn part10_conveniences() {
    let ds = bare(EXPLICIT_LE, None, |b| b);
    let mut file = crate::dicom::part10::encode_file_meta(
        "1.2.840.10008.5.1.4.1.1.2",
        "1.2.3.4",
        EXPLICIT_LE,
        "CT01",
    );
    file.extend_from_slice(&ds);
    let mut dataset_only = Vec::new();
    let (meta, _) =
        tag_part10_dataset(Cursor::new(&file), &mut dataset_only, &acc(), &ascii_copy()).unwrap();
    assert_eq!(meta.sop_instance_uid, "1.2.3.4");
    let (expected, _) = tag(&ds, EXPLICIT_LE, &ascii_copy()).unwrap();
    assert_eq!(dataset_only, expected);
    let mut whole = Vec::new();
    tag_part10_file(Cursor::new(&file), &mut whole, &acc(), &ascii_copy()).unwrap();
    let meta = crate::dicom::part10::read_file_meta(&mut &whole[..]).unwrap();
    assert_eq!(meta.transfer_syntax, EXPLICIT_LE);
    assert_eq!(meta.source_ae.as_deref(), Some("CT01"));
    assert_eq!(&whole[meta.dataset_offset as usize..], &expected[..]);
    // Not Part 10.
    assert!(matches!(
        tag_part10_file(Cursor::new(&ds), Vec::new(), &acc(), &ascii_copy()),
        Err(TagError::Meta(_))
    ));
}

#[test]
fn truncated_and_unsupported_inputs_are_errors() {
    let src = bare(EXPLICIT_LE, None, |b| b);
    for cut in [3, 10, src.len() - 1] {
        assert!(
            matches!(
                tag(&src[..cut], EXPLICIT_LE, &ascii_copy()),
                Err(TagError::Truncated { .. })
            ),
            "cut at {cut}"
        );
    }
    assert!(matches!(
        tag(&src, "1.2.3.4", &ascii_copy()),
        Err(TagError::UnsupportedTransferSyntax(_))
    ));
}

/// Mutated data sets never panic the tagging; whenever the input is a structurally
/// valid data set, so is the output, and re-tagging it works.
#[test]
fn mutated_data_sets_never_panic() {
    let mut seeds = Vec::new();
    for ts in [EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE] {
        let old_item = el(ts, 0x0400_0565, b"CS", b"CORRECT");
        seeds.push((
            ts,
            bare(ts, Some("\\ISO 2022 IR 87"), |b| {
                b.el(0x0040_0000, b"UL", &[0, 0, 0, 0])
                    .undefined_sq(0x0040_0275, &[el(ts, 0x0040_1002, b"LO", b"")])
                    .el(0x0099_0010, b"LO", b"READGATE ACCOUNTABILITY")
                    .el(0x0099_1001, b"LO", b"x")
                    .undefined_sq(0x0400_0561, std::slice::from_ref(&old_item))
            }),
        ));
        seeds.push((
            ts,
            bare(ts, None, |b| {
                b.defined_sq(0x0400_0561, std::slice::from_ref(&old_item))
            }),
        ));
    }
    seeds.push((
        JPEG_BASELINE,
        Builder::new(JPEG_BASELINE)
            .el(0x0008_0018, b"UI", b"1.2")
            .encapsulated_pixels()
            .done(),
    ));
    let mut rng = fastrand::Rng::with_seed(0x9E37_79B9_7F4A_7C15);
    let (mut ok, mut valid_ok) = (0, 0);
    for round in 0..3000 {
        let (ts, seed) = &seeds[round % seeds.len()];
        let mut data = seed.clone();
        for _ in 0..rng.usize(1..=4) {
            let i = rng.usize(..data.len());
            match rng.u8(..16) {
                0 => data.truncate(i),
                1 => data.insert(i, rng.u8(..)),
                2 => {
                    data.remove(i);
                }
                3 => data[i] = 0xFF,
                _ => data[i] = rng.u8(..),
            }
            if data.is_empty() {
                data.push(0);
            }
        }
        for try_ts in [*ts, DEFLATED] {
            let input = if try_ts == DEFLATED {
                let mut z =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
                z.write_all(&data).unwrap();
                z.finish().unwrap()
            } else {
                data.clone()
            };
            let result = tag(&input, try_ts, &japanese_copy());
            let encoding = Encoding::for_transfer_syntax(try_ts).unwrap();
            let valid = dataset::walk(Cursor::new(&input), encoding).is_ok();
            if let Ok((out, _)) = result {
                ok += 1;
                if valid {
                    valid_ok += 1;
                    dataset::walk(Cursor::new(&out), encoding).unwrap_or_else(|e| {
                        panic!("round {round}: valid input, invalid output: {e}")
                    });
                    tag(&out, try_ts, &japanese_copy()).unwrap_or_else(|e| {
                        panic!("round {round}: output cannot be re-tagged: {e}")
                    });
                }
            }
        }
    }
    // Mutations must leave enough inputs taggable for the checks above to mean something.
    assert!(
        ok > 500 && valid_ok > 200,
        "ok {ok}, valid and ok {valid_ok}"
    );
}

/// Hostile shapes: many elements cost linear time, too many are refused.
#[test]
fn many_top_level_elements() {
    let group_length = el(EXPLICIT_LE, 0x0040_0000, b"UL", &[0, 0, 0, 0]);
    let mut src = group_length.repeat(100_000);
    let start = std::time::Instant::now();
    let (out, _) = tag(&src, EXPLICIT_LE, &ascii_copy()).unwrap();
    assert!(out.len() > src.len());
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
    src = el(EXPLICIT_LE, 0x0009_0010, b"LO", b"").repeat(super::scan::MAX_TOP_LEVEL_ELEMENTS + 1);
    assert!(matches!(
        tag(&src, EXPLICIT_LE, &ascii_copy()),
        Err(TagError::Unsupported(_))
    ));
}

#[test]
fn a_prior_names_the_study_it_goes_with_and_a_study_does_not() {
    let src = bare(EXPLICIT_LE, None, |b| b);
    let (out, _) = tag_as(&src, EXPLICIT_LE, &acc(), &ContextCopy::default()).unwrap();
    assert_eq!(
        value_of(&out, EXPLICIT_LE, private(0x10, elements::PRIOR_OF)),
        None
    );
    let mut a = acc();
    a.prior_of = Some("ACC-0001".into());
    let (out, _) = tag_as(&src, EXPLICIT_LE, &a, &ContextCopy::default()).unwrap();
    assert_eq!(
        value_of(&out, EXPLICIT_LE, private(0x10, elements::PRIOR_OF)),
        Some(lo("ACC-0001"))
    );
    a.prior_of = Some("x".repeat(65));
    assert!(matches!(
        tag_as(&src, EXPLICIT_LE, &a, &ContextCopy::default()),
        Err(TagError::InvalidAccountability {
            field: "prior_of",
            ..
        })
    ));
}
