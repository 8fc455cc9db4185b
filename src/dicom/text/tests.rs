//! Tests. The byte strings marked "pydicom" are the raw values of the
//! character set test files shipped with pydicom 3.0 (`data/charset_files/`),
//! which reproduce the examples of PS3.5 Annex H (Japanese), I (Korean) and
//! J (Chinese); the files themselves are not part of this repository.

use super::*;

fn h(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).expect("test hex is ASCII");
            u8::from_str_radix(s, 16).expect("test hex is valid")
        })
        .collect()
}

fn cs(raw: &str) -> SpecificCharacterSet {
    SpecificCharacterSet::parse(raw).expect("test character set parses")
}

fn roundtrip(raw_cs: &str, kind: TextKind, text: &str, bytes: &[u8]) {
    let cs = cs(raw_cs);
    assert_eq!(decode(bytes, &cs, kind).as_deref(), Ok(text), "decode");
    assert_eq!(encode(text, &cs, kind).as_deref(), Ok(bytes), "encode");
}

// PS3.5 H.3.1 (pydicom chrH31.dcm, PatientName).
const H31_TEXT: &str = "Yamada^Tarou=山田^太郎=やまだ^たろう";
const H31_HEX: &str = "59616d6164615e5461726f753d1b24423b3345441b28425e1b244242404f3a1b28423d\
                       1b24422464245e24401b28425e1b2442243f246d24261b2842";
// PS3.5 H.3.2 (pydicom chrH32.dcm, PatientName).
const H32_TEXT: &str = "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう";
const H32_HEX: &str = "d4cfc0de5ec0dbb33d1b24423b3345441b284a5e1b244242404f3a1b284a3d\
                       1b24422464245e24401b284a5e1b2442243f246d24261b284a";

// ---- Specific Character Set -------------------------------------------

#[test]
fn parse_default_forms() {
    for raw in ["", " ", "\\", "ISO_IR 6", "ISO 2022 IR 6", "\0"] {
        let parsed = cs(raw);
        assert_eq!(
            decode(b"Smith^John", &parsed, TextKind::PersonName).as_deref(),
            Ok("Smith^John"),
            "{raw:?}"
        );
    }
    assert_eq!(cs(""), SpecificCharacterSet::default());
    assert!(!SpecificCharacterSet::default().uses_code_extensions());
}

#[test]
fn parse_japanese_forms_and_display() {
    let ir87 = cs("\\ISO 2022 IR 87");
    assert!(ir87.uses_code_extensions());
    assert_eq!(ir87.to_string(), "\\ISO 2022 IR 87");
    let ir13 = cs("ISO 2022 IR 13\\ISO 2022 IR 87 ");
    assert_eq!(ir13.to_string(), "ISO 2022 IR 13\\ISO 2022 IR 87");
    assert!(!cs("ISO_IR 13").uses_code_extensions());
    assert!(!cs("ISO_IR 192").uses_code_extensions());
}

#[test]
fn parse_unknown_term_names_it() {
    let err = SpecificCharacterSet::parse("\\ISO 2022 IR 999").unwrap_err();
    assert_eq!(err, CharsetError::UnknownTerm("ISO 2022 IR 999".into()));
    assert!(err.to_string().contains("ISO 2022 IR 999"));
    // Not a defined term (dicom-rs accepts it; we do not guess).
    assert!(matches!(
        SpecificCharacterSet::parse("ISO_IR 87"),
        Err(CharsetError::UnknownTerm(t)) if t == "ISO_IR 87"
    ));
}

#[test]
fn parse_rejects_utf8_with_code_extensions() {
    let err = SpecificCharacterSet::parse("ISO_IR 192\\ISO 2022 IR 87").unwrap_err();
    assert!(
        matches!(err, CharsetError::InvalidCombination { ref term, .. } if term == "ISO_IR 192")
    );
}

// ---- PS3.5 Annex H / I / J examples --------------------------------------

#[test]
fn annex_h31_round_trips_byte_exact() {
    roundtrip(
        "\\ISO 2022 IR 87",
        TextKind::PersonName,
        H31_TEXT,
        &h(H31_HEX),
    );
}

#[test]
fn annex_h32_round_trips_byte_exact() {
    roundtrip(
        "ISO 2022 IR 13\\ISO 2022 IR 87",
        TextKind::PersonName,
        H32_TEXT,
        &h(H32_HEX),
    );
}

#[test]
fn annex_h32_with_esc_paren_b_decodes() {
    // pydicom chrSQEncoding.dcm: the same name, but returning to G0 with
    // ESC ( B instead of the IR 13 ESC ( J.
    let bytes = h(
        "d4cfc0de5ec0dbb33d1b24423b3345441b28425e1b244242404f3a1b28423d\
                   1b24422464245e24401b28425e1b2442243f246d24261b2842",
    );
    let cs = cs("ISO 2022 IR 13\\ISO 2022 IR 87");
    assert_eq!(
        decode(&bytes, &cs, TextKind::PersonName).as_deref(),
        Ok(H32_TEXT)
    );
}

#[test]
fn annex_i2_korean_round_trips_byte_exact() {
    // pydicom chrI2.dcm: G1 is designated again after every delimiter.
    roundtrip(
        "\\ISO 2022 IR 149",
        TextKind::PersonName,
        "Hong^Gildong=洪^吉洞=홍^길동",
        &h("486f6e675e47696c646f6e673d1b242943fbf35e1b242943d1ced4d73d1b242943c8ab5e1b242943b1e6b5bf"),
    );
}

#[test]
fn korean_multi_valued_decodes() {
    // pydicom chrKoreanMulti.dcm (0010,1001), with a redundant ESC ( B.
    let bytes = h("1b242943b1e8c8f1c1df1b28425c1b242943b1e8c8f1c1df1b284220");
    let text = decode(&bytes, &cs("\\ISO 2022 IR 149"), TextKind::PersonName);
    assert_eq!(text.as_deref(), Ok("김희중\\김희중 "));
}

#[test]
fn japanese_multi_valued_pn_and_lt_decode() {
    // pydicom chrJapMulti.dcm (0010,1001) and (0010,21B0).
    let cs = cs("\\ISO 2022 IR 87");
    let pn = h("1b24422464245e24401b28425e1b2442243f246d24261b28425c\
                1b24422464245e24401b28425e1b2442243f246d24261b284220");
    assert_eq!(
        decode(&pn, &cs, TextKind::PersonName).as_deref(),
        Ok("やまだ^たろう\\やまだ^たろう ")
    );
    let lt = h("1b2442243f246d24261b2842");
    roundtrip("\\ISO 2022 IR 87", TextKind::Text, "たろう", &lt);
    // Same data declared with an explicit ISO 2022 IR 6 (chrJapMultiExplicitIR6).
    let explicit = self::cs("ISO 2022 IR 6\\ISO 2022 IR 87");
    assert_eq!(
        decode(&lt, &explicit, TextKind::Text).as_deref(),
        Ok("たろう")
    );
}

#[test]
fn utf8_round_trips() {
    // pydicom chrX1.dcm (PS3.5 J.1), trailing pad included.
    roundtrip(
        "ISO_IR 192",
        TextKind::PersonName,
        "Wang^XiaoDong=王^小東= ",
        &h("57616e675e5869616f446f6e673de78e8b5ee5b08fe69db13d20"),
    );
    let err = decode(b"ab\xff", &cs("ISO_IR 192"), TextKind::Text).unwrap_err();
    assert!(
        matches!(err, CharsetError::UnmappedCharacter { offset: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn gb18030_round_trips() {
    // pydicom chrX2.dcm (PS3.5 J.2).
    roundtrip(
        "GB18030",
        TextKind::PersonName,
        "Wang^XiaoDong=王^小东=",
        &h("57616e675e5869616f446f6e673dcdf55ed0a1b6ab3d"),
    );
}

#[test]
fn latin1_round_trips_and_rejects_other_letters() {
    // pydicom chrFren.dcm, chrGerm.dcm.
    roundtrip(
        "ISO_IR 100",
        TextKind::PersonName,
        "Buc^Jérôme",
        &h("4275635e4ae972f46d65"),
    );
    roundtrip(
        "ISO_IR 100",
        TextKind::PersonName,
        "Äneas^Rüdiger ",
        &h("c46e6561735e52fc646967657220"),
    );
    let err = encode("Łukasz", &cs("ISO_IR 100"), TextKind::PersonName).unwrap_err();
    assert_eq!(
        err,
        CharsetError::Unrepresentable {
            ch: 'Ł',
            charset: "ISO_IR 100".into()
        }
    );
    assert!(err.to_string().contains('Ł'));
    // C1 controls (often windows-1252 text mislabelled as Latin-1) are errors.
    assert!(matches!(
        decode(b"O\x92Brien", &cs("ISO_IR 100"), TextKind::PersonName),
        Err(CharsetError::InvalidByte {
            offset: 1,
            byte: 0x92,
            ..
        })
    ));
}

#[test]
fn other_single_byte_sets_decode() {
    // pydicom chrRuss, chrGreek, chrHbrw, chrArab.
    let cases = [
        (
            "ISO_IR 144",
            "bbeeda6365dcd17970d3",
            "\u{41b}\u{44e}\u{43a}ce\u{43c}\u{431}yp\u{433}",
        ),
        ("ISO_IR 126", "c4e9efedf5f3e9eff220", "Διονυσιος "),
        ("ISO_IR 138", "f9f8e5ef5ee3e1e5f8e4", "שרון^דבורה"),
        ("ISO_IR 127", "e2c8c7e6ea5ee4e6d2c7d120", "قباني^لنزار "),
    ];
    for (raw, hex, text) in cases {
        roundtrip(raw, TextKind::PersonName, text, &h(hex));
    }
}

// ---- Japanese details ----------------------------------------------------

#[test]
fn mixed_ascii_and_kanji_multi_valued_text() {
    // ぼ is `$\` and ま is `$^` in JIS X 0208: neither may be taken for a
    // delimiter inside a two-byte run.
    let text = "CT\\胸部 造影\\ぼうこう^ま";
    let expected = [
        &b"CT\\"[..],
        b"\x1b$B6;It\x1b(B \x1b$BB$1F\x1b(B\\",
        b"\x1b$B$\\$&$3$&\x1b(B^\x1b$B$^\x1b(B",
    ]
    .concat();
    roundtrip("\\ISO 2022 IR 87", TextKind::Text, text, &expected);
    let decoded = decode(&expected, &cs("\\ISO 2022 IR 87"), TextKind::Text).unwrap();
    assert_eq!(
        decoded.split('\\').collect::<Vec<_>>(),
        ["CT", "胸部 造影", "ぼうこう^ま"]
    );
}

#[test]
fn text_resets_at_line_breaks_not_at_caret() {
    let cs = cs("\\ISO 2022 IR 87");
    let bytes = encode("所見^なし\r\n異常", &cs, TextKind::Text).unwrap();
    assert_eq!(
        bytes,
        b"\x1b$B=j8+\x1b(B^\x1b$B$J$7\x1b(B\r\n\x1b$B0[>o\x1b(B".to_vec()
    );
    assert_eq!(
        decode(&bytes, &cs, TextKind::Text).as_deref(),
        Ok("所見^なし\r\n異常")
    );
}

#[test]
fn lone_ir87_value_one_starts_in_ascii() {
    // Not the standard form, but common: value 1 = ISO 2022 IR 87.
    let cs = cs("ISO 2022 IR 87");
    assert_eq!(
        decode(&h(H31_HEX), &cs, TextKind::PersonName).as_deref(),
        Ok(H31_TEXT)
    );
    assert_eq!(encode(H31_TEXT, &cs, TextKind::PersonName), Ok(h(H31_HEX)));
}

#[test]
fn iso_ir_13_without_extensions() {
    roundtrip(
        "ISO_IR 13",
        TextKind::PersonName,
        "ﾔﾏﾀﾞ^ﾀﾛｳ",
        &h("d4cfc0de5ec0dbb3"),
    );
    // Kanji need ISO 2022 IR 87.
    assert!(matches!(
        encode("山田", &cs("ISO_IR 13"), TextKind::PersonName),
        Err(CharsetError::Unrepresentable { ch: '山', .. })
    ));
}

#[test]
fn half_width_katakana_after_kanji_returns_to_g0_first() {
    let cs = cs("ISO 2022 IR 13\\ISO 2022 IR 87");
    let bytes = encode("山ｱ", &cs, TextKind::PersonName).unwrap();
    assert_eq!(bytes, b"\x1b$B;3\x1b(J\xb1".to_vec());
    assert_eq!(
        decode(&bytes, &cs, TextKind::PersonName).as_deref(),
        Ok("山ｱ")
    );
    // Without IR 13 declared, half-width katakana cannot be written.
    assert!(matches!(
        encode("ｱ", &self::cs("\\ISO 2022 IR 87"), TextKind::PersonName),
        Err(CharsetError::Unrepresentable { ch: 'ｱ', .. })
    ));
}

#[test]
fn jis_x0212_decodes_and_encodes() {
    // 丂 is JIS X 0212 0x3021; it is not in JIS X 0208.
    let cs = cs("\\ISO 2022 IR 87\\ISO 2022 IR 159");
    roundtrip(
        "\\ISO 2022 IR 87\\ISO 2022 IR 159",
        TextKind::PersonName,
        "山丂^A",
        b"\x1b$B;3\x1b$(D0!\x1b(B^A",
    );
    assert!(matches!(
        encode("丂", &self::cs("\\ISO 2022 IR 87"), TextKind::PersonName),
        Err(CharsetError::Unrepresentable { ch: '丂', .. })
    ));
    assert_eq!(
        decode(b"\x1b$(D0!\x1b(B", &cs, TextKind::Text).as_deref(),
        Ok("丂")
    );
}

#[test]
fn vendor_extensions_are_read_but_not_written() {
    let cs = cs("\\ISO 2022 IR 87");
    // NEC row 13: ① is 0x2D21.
    assert_eq!(
        decode(b"\x1b$B-!\x1b(B", &cs, TextKind::Text).as_deref(),
        Ok("①")
    );
    for ch in ["①", "髙"] {
        let err = encode(ch, &cs, TextKind::PersonName).unwrap_err();
        assert!(err.to_string().contains(ch), "{err}");
    }
}

#[test]
fn literal_escape_in_text_is_refused() {
    assert!(matches!(
        encode("a\x1bb", &cs("\\ISO 2022 IR 87"), TextKind::Text),
        Err(CharsetError::Unrepresentable { ch: '\x1b', .. })
    ));
}

// ---- malformed input -------------------------------------------------------

#[test]
fn invalid_escape_sequences_are_errors() {
    let cs = cs("\\ISO 2022 IR 87");
    let err = decode(b"ab\x1b(Zcd", &cs, TextKind::Text).unwrap_err();
    assert_eq!(
        err,
        CharsetError::InvalidEscape {
            offset: 2,
            sequence: "1B 28 5A 63".into()
        }
    );
    for bytes in [&b"\x1b"[..], b"x\x1b$", b"\x1b$(", b"\x1b-", b"\x1b-Z"] {
        assert!(
            matches!(
                decode(bytes, &cs, TextKind::Text),
                Err(CharsetError::InvalidEscape { .. })
            ),
            "{bytes:?}"
        );
    }
}

#[test]
fn truncated_two_byte_run_is_an_error() {
    let cs = cs("\\ISO 2022 IR 87");
    assert_eq!(
        decode(b"\x1b$B;3E", &cs, TextKind::Text),
        Err(CharsetError::TruncatedCharacter {
            offset: 5,
            set: "JIS X 0208"
        })
    );
    assert!(matches!(
        decode(b"\x1b$B;3E\x1b(B", &cs, TextKind::Text),
        Err(CharsetError::TruncatedCharacter { offset: 5, .. })
    ));
    // Korean G1 pair cut short.
    assert!(matches!(
        decode(
            b"\x1b$)C\xb1",
            &self::cs("\\ISO 2022 IR 149"),
            TextKind::Text
        ),
        Err(CharsetError::TruncatedCharacter { offset: 4, .. })
    ));
}

#[test]
fn unassigned_two_byte_code_is_an_error() {
    // Row 9 of JIS X 0208 is empty, even in the vendor tables.
    let err = decode(b"\x1b$B;3)!\x1b(B", &cs("\\ISO 2022 IR 87"), TextKind::Text).unwrap_err();
    assert_eq!(
        err,
        CharsetError::UnmappedCharacter {
            offset: 5,
            bytes: "29 21".into(),
            set: "JIS X 0208"
        }
    );
}

#[test]
fn high_bytes_without_g1_are_errors() {
    assert!(matches!(
        decode(b"abc\xe9", &SpecificCharacterSet::default(), TextKind::Text),
        Err(CharsetError::InvalidByte {
            offset: 3,
            byte: 0xe9,
            ..
        })
    ));
    // 0xE0 is outside JIS X 0201 katakana (e.g. Shift_JIS mislabelled as IR 13).
    assert!(matches!(
        decode(b"\x88\xe4", &cs("ISO_IR 13"), TextKind::Text),
        Err(CharsetError::InvalidByte { offset: 0, .. })
    ));
}

// ---- fuzzing -----------------------------------------------------------------

#[test]
fn fuzz_random_bytes_never_panic_and_reencode_consistently() {
    // Bytes biased towards escape-sequence material so the state machine is
    // exercised, not just the "invalid byte" exit.
    const INTERESTING: &[u8] = b"\x1b$()-BJIDCAT!~^=\\\r\n\t ;3a\xa1\xb1\xdf\xe0\xfe\xff\x80";
    let charsets: Vec<_> = super::CHARSET_EXAMPLES.iter().map(|raw| cs(raw)).collect();
    let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
    let mut decoded_ok = 0;
    for round in 0..4000 {
        let len = rng.usize(..24);
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if rng.usize(..3) == 0 {
                    rng.u8(..)
                } else {
                    INTERESTING[rng.usize(..INTERESTING.len())]
                }
            })
            .collect();
        let cs = &charsets[round % charsets.len()];
        for kind in [TextKind::PersonName, TextKind::Text] {
            if let Ok(text) = decode(&bytes, cs, kind) {
                decoded_ok += 1;
                // Whatever decodes must survive encode → decode unchanged
                // when it can be encoded at all.
                if let Ok(again) = encode(&text, cs, kind) {
                    assert_eq!(
                        decode(&again, cs, kind).as_deref(),
                        Ok(text.as_str()),
                        "{cs} {bytes:02X?}"
                    );
                }
            }
        }
    }
    assert!(decoded_ok > 500, "fuzz decoded too little: {decoded_ok}");
}

#[test]
fn fuzz_random_text_round_trips() {
    const POOL: &[char] = &[
        'A', 'z', '0', ' ', '^', '=', '\\', '\r', '\n', '\t', '~', 'é', 'Ω', 'ｱ', 'ﾞ', '山', '田',
        'ぼ', 'ま', 'そ', 'ー', '丂', '홍', '洪', 'ก', '€', '①',
    ];
    let charsets: Vec<_> = super::CHARSET_EXAMPLES.iter().map(|raw| cs(raw)).collect();
    let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
    let mut encoded_ok = 0;
    for round in 0..4000 {
        let len = rng.usize(..12);
        let text: String = (0..len).map(|_| POOL[rng.usize(..POOL.len())]).collect();
        let cs = &charsets[round % charsets.len()];
        for kind in [TextKind::PersonName, TextKind::Text] {
            match encode(&text, cs, kind) {
                Ok(bytes) => {
                    encoded_ok += 1;
                    assert_eq!(decode(&bytes, cs, kind), Ok(text.clone()), "{cs} {text:?}");
                }
                Err(CharsetError::Unrepresentable { ch, .. }) => {
                    assert!(text.contains(ch));
                }
                Err(e) => panic!("unexpected encode error {e:?} for {text:?} in {cs}"),
            }
        }
    }
    assert!(encoded_ok > 500, "fuzz encoded too little: {encoded_ok}");
}

// ---- InMemDicomObject helper ---------------------------------------------------

mod element_helper {
    use super::*;
    use dicom_core::value::PrimitiveValue;
    use dicom_core::Tag;
    use dicom_encoding::text::{SpecificCharacterSet as DicomRsCharset, TextCodec};
    use dicom_object::InMemDicomObject;

    const SCS: (u16, u16) = (0x0008, 0x0005);
    const PATIENT_NAME: (u16, u16) = (0x0010, 0x0010);
    const STUDY_DESCRIPTION: (u16, u16) = (0x0008, 0x1030);
    const HISTORY: (u16, u16) = (0x0010, 0x21b0);
    const REFERENCED_STUDY_SEQ: (u16, u16) = (0x0008, 0x1110);

    fn tag(t: (u16, u16)) -> Tag {
        Tag(t.0, t.1)
    }

    /// One explicit VR little endian element, padded to even length.
    fn el(t: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut value = value.to_vec();
        if value.len() % 2 == 1 {
            value.push(if vr == b"UI" { 0 } else { b' ' });
        }
        let mut out = Vec::new();
        out.extend(t.0.to_le_bytes());
        out.extend(t.1.to_le_bytes());
        out.extend(vr);
        if matches!(vr, b"OB" | b"UN" | b"UT" | b"UC") {
            out.extend([0, 0]);
            out.extend(u32::try_from(value.len()).unwrap().to_le_bytes());
        } else {
            out.extend(u16::try_from(value.len()).unwrap().to_le_bytes());
        }
        out.extend(value);
        out
    }

    /// A sequence of undefined length with items of undefined length.
    fn seq(t: (u16, u16), items: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(t.0.to_le_bytes());
        out.extend(t.1.to_le_bytes());
        out.extend(b"SQ\0\0\xff\xff\xff\xff");
        for item in items {
            out.extend(b"\xfe\xff\x00\xe0\xff\xff\xff\xff");
            out.extend(item);
            out.extend(b"\xfe\xff\x0d\xe0\0\0\0\0");
        }
        out.extend(b"\xfe\xff\xdd\xe0\0\0\0\0");
        out
    }

    /// Read a data set the way readgate does: a Part 10 stream through
    /// dicom-object.
    fn read(elements: &[Vec<u8>]) -> InMemDicomObject {
        let mut file = vec![0u8; 128];
        file.extend(b"DICM");
        file.extend(el((0x0002, 0x0000), b"UL", &28u32.to_le_bytes()));
        file.extend(el((0x0002, 0x0010), b"UI", b"1.2.840.10008.1.2.1"));
        for e in elements {
            file.extend(e);
        }
        dicom_object::from_reader(&file[..])
            .expect("test file parses")
            .into_inner()
    }

    fn dicom_rs_text(obj: &InMemDicomObject, t: (u16, u16)) -> String {
        obj.get(tag(t))
            .expect("element present")
            .value()
            .to_multi_str()
            .expect("string value")
            .join("\\")
    }

    fn ours(obj: &InMemDicomObject, t: (u16, u16)) -> Result<String, CharsetError> {
        decode_element_str(obj, tag(t)).expect("element present")
    }

    #[test]
    fn annex_h_names_come_out_right_where_dicom_rs_is_wrong() {
        for (raw_cs, hex, text) in [
            ("\\ISO 2022 IR 87", H31_HEX, H31_TEXT),
            ("ISO 2022 IR 13\\ISO 2022 IR 87", H32_HEX, H32_TEXT),
        ] {
            let obj = read(&[
                el(SCS, b"CS", raw_cs.as_bytes()),
                el(PATIENT_NAME, b"PN", &h(hex)),
            ]);
            // The bug this module exists for: no error, wrong text.
            assert_ne!(dicom_rs_text(&obj, PATIENT_NAME).trim_end(), text);
            assert_eq!(ours(&obj, PATIENT_NAME).unwrap().trim_end(), text);
        }
    }

    #[test]
    fn a_0x5c_inside_a_kanji_is_not_a_value_delimiter() {
        // ぼ is `$\`: dicom-rs splits this two-valued LO into three values.
        let obj = read(&[
            el(SCS, b"CS", b"\\ISO 2022 IR 87"),
            el(STUDY_DESCRIPTION, b"LO", b"\x1b$B$\\\x1b(B\\CT"),
        ]);
        let dicom_rs = obj
            .get(tag(STUDY_DESCRIPTION))
            .unwrap()
            .value()
            .to_multi_str()
            .unwrap()
            .len();
        assert_eq!(dicom_rs, 3);
        assert_eq!(ours(&obj, STUDY_DESCRIPTION).unwrap().trim_end(), "ぼ\\CT");
    }

    #[test]
    fn item_charset_applies_inside_and_its_leak_is_undone_outside() {
        // Like pydicom chrSQEncoding.dcm: UTF-8 outside, Japanese in the
        // item. dicom-parser 0.10 keeps the item's codec after the item ends,
        // so the top-level name after the sequence is misread too.
        let item = [
            el(SCS, b"CS", b"ISO 2022 IR 13\\ISO 2022 IR 87"),
            el(PATIENT_NAME, b"PN", &h(H32_HEX)),
        ]
        .concat();
        let obj = read(&[
            el(SCS, b"CS", b"ISO_IR 192"),
            seq(REFERENCED_STUDY_SEQ, &[item]),
            el(PATIENT_NAME, b"PN", "Yamada^山田".as_bytes()),
        ]);
        assert_ne!(dicom_rs_text(&obj, PATIENT_NAME).trim_end(), "Yamada^山田");
        assert_eq!(ours(&obj, PATIENT_NAME).unwrap().trim_end(), "Yamada^山田");
        let nested = decode_element_str_at(&obj, (tag(REFERENCED_STUDY_SEQ), 0, tag(PATIENT_NAME)))
            .expect("nested element present");
        assert_eq!(nested.as_deref(), Ok(H32_TEXT));
        assert!(
            decode_element_str_at(&obj, (tag(REFERENCED_STUDY_SEQ), 1, tag(PATIENT_NAME)))
                .is_none()
        );
    }

    #[test]
    fn lone_ir87_value_one_uses_dicom_rs_strings_part_by_part() {
        let obj = read(&[
            el(SCS, b"CS", b"ISO 2022 IR 87"),
            el(PATIENT_NAME, b"PN", &h(H31_HEX)),
            el(STUDY_DESCRIPTION, b"LO", b"\x1b$B$\\\x1b(B\\CT"),
        ]);
        assert_eq!(ours(&obj, PATIENT_NAME).unwrap().trim_end(), H31_TEXT);
        // dicom-rs cut ぼ in half and substituted the lone byte: refuse.
        assert!(matches!(
            ours(&obj, STUDY_DESCRIPTION),
            Err(CharsetError::RawBytesLost { .. })
        ));
    }

    #[test]
    fn undecodable_bytes_in_long_text_are_refused_not_guessed() {
        let ir13 = el(SCS, b"CS", b"ISO 2022 IR 13\\ISO 2022 IR 87");
        // windows-31j has no 0xA0: dicom-rs wrote `\240` in its place.
        let obj = read(&[ir13.clone(), el(HISTORY, b"LT", b"\x1b$B6;It\x1b(J \xa0")]);
        let got = ours(&obj, HISTORY);
        assert!(
            matches!(got, Err(CharsetError::RawBytesLost { .. })),
            "{got:?}"
        );
        // windows-31j keeps 0x80 as U+0080, so the byte comes back and is
        // rejected as invalid in IR 13.
        let obj = read(&[ir13, el(HISTORY, b"LT", b"\x1b$B6;It\x1b(J \x80")]);
        let got = ours(&obj, HISTORY);
        assert!(
            matches!(got, Err(CharsetError::InvalidByte { byte: 0x80, .. })),
            "{got:?}"
        );
        let obj = read(&[
            el(SCS, b"CS", b"ISO 2022 IR 13\\ISO 2022 IR 87"),
            el(HISTORY, b"LT", b"\x1b$B6;It\x1b(J\r\n\xb6\xde\xdd"),
        ]);
        assert_eq!(ours(&obj, HISTORY).unwrap().trim_end(), "胸部\r\nｶﾞﾝ");
    }

    #[test]
    fn missing_default_repertoire_and_raw_byte_elements() {
        let obj = read(&[
            el(SCS, b"CS", b"\\ISO 2022 IR 87"),
            el((0x0008, 0x0060), b"CS", b"CT"),
            el((0x0009, 0x0010), b"LO", b"READGATE"),
            el((0x0009, 0x1010), b"UN", b"\x1b$B;3ED\x1b(B"),
            el((0x0009, 0x1011), b"OB", b"\x01\x02"),
        ]);
        assert!(decode_element_str(&obj, tag(PATIENT_NAME)).is_none());
        assert!(matches!(
            decode_element_str(&obj, Tag(0x0009, 0x1011)),
            Some(Err(CharsetError::NotText { vr: "OB", .. }))
        ));
        assert_eq!(
            decode_element_str(&obj, Tag(0x0008, 0x0060))
                .unwrap()
                .as_deref(),
            Ok("CT")
        );
        assert!(matches!(
            obj.get(Tag(0x0009, 0x1010)).unwrap().value().primitive(),
            Some(PrimitiveValue::U8(_))
        ));
        assert_eq!(
            decode_element_str(&obj, Tag(0x0009, 0x1010))
                .unwrap()
                .as_deref(),
            Ok("山田")
        );
    }

    /// The recovery relies on these dicom-rs codecs mapping bytes one to one;
    /// fail loudly if a dicom-rs upgrade changes that.
    #[test]
    fn dicom_rs_codecs_round_trip_the_bytes_we_rely_on() {
        let latin1 = [DicomRsCharset::default(), DicomRsCharset::ISO_IR_100];
        for codec in &latin1 {
            let all: Vec<u8> = (0..=255).collect();
            let text = codec.decode(&all).unwrap();
            assert_eq!(codec.encode(&text).unwrap(), all, "{}", codec.name());
        }
        let ir13 = DicomRsCharset::from_code("ISO 2022 IR 13").unwrap();
        let valid: Vec<u8> = (0x00..=0x7f).chain(0xa1..=0xdf).collect();
        let text = ir13.decode(&valid).unwrap();
        assert!(!text.contains("\\0") && !text.contains("\\1"));
        assert_eq!(ir13.encode(&text).unwrap(), valid);
    }

    /// Reads pydicom's character set files (pydicom is a test peer installed by
    /// scripts/install-test-deps; READGATE_PYDICOM_CHARSET_DIR overrides where they are).
    #[test]
    fn pydicom_charset_files() {
        let dir = std::env::var("READGATE_PYDICOM_CHARSET_DIR").unwrap_or_else(|_| {
            let out = std::process::Command::new("python3")
                .args([
                    "-c",
                    "import os, pydicom; print(os.path.join(os.path.dirname(pydicom.__file__), 'data', 'charset_files'))",
                ])
                .output()
                .expect("python3 with pydicom (scripts/install-test-deps installs it)");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        });
        assert!(
            std::path::Path::new(&dir).join("chrH31.dcm").exists(),
            "pydicom's charset files not found in {dir:?}"
        );
        let expected = [
            ("chrH31.dcm", H31_TEXT),
            ("chrH32.dcm", H32_TEXT),
            ("chrI2.dcm", "Hong^Gildong=洪^吉洞=홍^길동"),
            ("chrX1.dcm", "Wang^XiaoDong=王^小東="),
            ("chrX2.dcm", "Wang^XiaoDong=王^小东="),
            ("chrFren.dcm", "Buc^Jérôme"),
            ("chrJapMulti.dcm", "やまだ^たろう"),
            ("chrKoreanMulti.dcm", "김희중"),
            ("chrSQEncoding1.dcm", "Doctor^Who^^MD"),
        ];
        for (file, text) in expected {
            let path = std::path::Path::new(&dir).join(file);
            let obj = dicom_object::open_file(&path).expect("pydicom file opens");
            let name = decode_element_str(&obj, tag(PATIENT_NAME))
                .or_else(|| decode_element_str(&obj, Tag(0x0032, 0x1032)))
                .expect("a name");
            assert_eq!(name.unwrap().trim_end(), text, "{file}");
        }
        let obj =
            dicom_object::open_file(std::path::Path::new(&dir).join("chrSQEncoding.dcm")).unwrap();
        let nested =
            decode_element_str_at(&obj, (Tag(0x0032, 0x1064), 0, tag(PATIENT_NAME))).unwrap();
        assert_eq!(nested.unwrap().trim_end(), H32_TEXT);
    }
}
