//! Tests of the parser and extractor through the public `message` surface.

use super::message::*;
use crate::hl7::charset::{decode, Charset};
use crate::hl7::{ErrorCode, ErrorLocation};

macro_rules! sample {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hl7/", $name))
    };
}

fn parse_sample(raw: &[u8]) -> Result<Parsed, MessageError> {
    let decoded = decode(raw, Charset::Ascii).expect("sample decodes");
    parse(&decoded.text)
}

fn order(raw: &[u8]) -> Order {
    match parse_sample(raw) {
        Ok(Parsed::Order(o)) => o,
        other => panic!("expected an order, got {other:?}"),
    }
}

fn report(raw: &[u8]) -> Report {
    match parse_sample(raw) {
        Ok(Parsed::Report(r)) => r,
        other => panic!("expected a report, got {other:?}"),
    }
}

fn name(family: &str, given: &str, name_type: &str, repr: Option<&str>) -> PersonName {
    PersonName {
        family: Some(family.into()),
        given: Some(given.into()),
        name_type: Some(name_type.into()),
        representation: repr.map(Into::into),
        ..PersonName::default()
    }
}

#[test]
fn omi_o23_jahis_iso2022jp() {
    let raw = sample!("omi_o23_iso2022jp.hl7");
    let decoded = decode(raw, Charset::Ascii).unwrap();
    assert_eq!(decoded.detection.charset, Charset::Iso2022Jp);
    assert!(!decoded.detection.defaulted);
    let o = order(raw);

    let h = &o.header;
    assert_eq!(h.message_type.code, "OMI");
    assert_eq!(h.message_type.trigger, "O23");
    assert_eq!(h.message_type.structure, "OMI_O23");
    assert_eq!(h.control_id, "MSG00001");
    assert_eq!(h.version, "2.5");
    assert_eq!(h.processing_id, "P");
    assert_eq!(h.character_set, "~ISO IR87");
    assert_eq!(h.alternate_charset_handling, "ISO 2022-1994");
    assert_eq!(h.sending_application.namespace_id.as_deref(), Some("HIS"));
    assert_eq!(
        h.sending_facility.namespace_id.as_deref(),
        Some("TOKYO_GEN")
    );
    assert_eq!(
        h.receiving_application.namespace_id.as_deref(),
        Some("READGATE")
    );
    assert_eq!(
        h.message_time.as_ref().and_then(|t| t.iso.as_deref()),
        Some("2024-06-01T09:30:00+09:00")
    );

    let p = &o.patient;
    assert_eq!(
        p.identifiers,
        vec![
            PatientId {
                id: "1234567".into(),
                assigning_authority: Some("TOKYO_GEN".into()),
                identifier_type: Some("PI".into()),
            },
            PatientId {
                id: "99887766".into(),
                // CX.4 with only a universal id (&OID&ISO).
                assigning_authority: Some("1.2.392.100495.9.99.1".into()),
                identifier_type: Some("HC".into()),
            },
        ]
    );
    assert_eq!(
        p.names,
        vec![
            name("山田", "太郎", "L", Some("I")),
            name("ヤマダ", "タロウ", "L", Some("P")),
            name("YAMADA", "TARO", "L", Some("A")),
        ]
    );
    assert_eq!(p.sex.as_deref(), Some("M"));
    assert_eq!(
        p.birth_date.as_ref().and_then(|t| t.iso.as_deref()),
        Some("1965-04-12")
    );

    assert_eq!(o.allergies.len(), 1);
    assert_eq!(o.allergies[0].allergen_type.as_deref(), Some("DA"));
    assert_eq!(
        o.allergies[0].allergen.text.as_deref(),
        Some("ヨード造影剤")
    );
    assert_eq!(o.allergies[0].reaction.as_deref(), Some("じんましん"));

    assert_eq!(o.requests.len(), 1);
    let r = &o.requests[0];
    assert_eq!(r.control, OrderControl::New);
    assert_eq!(r.control_code, "NW");
    assert_eq!(
        r.placer_order_number.as_ref().map(|e| e.id.as_str()),
        Some("ORD-2024-0001")
    );
    assert_eq!(r.accession_number.as_deref(), Some("ACC-0001"));
    assert_eq!(
        r.study_instance_uid.as_deref(),
        Some("1.2.392.200036.9116.2.5.1.37.2417525.20240601.1")
    );
    assert_eq!(r.requested_procedure_id.as_deref(), Some("RP-0001"));
    assert_eq!(r.scheduled_procedure_step_id.as_deref(), Some("SPS-0001"));
    let proc_ = r.requested_procedure.as_ref().unwrap();
    assert_eq!(
        proc_.code.as_deref(),
        Some("32110011000000000000000000000000")
    );
    assert_eq!(proc_.text.as_deref(), Some("CT 胸部 造影"));
    assert_eq!(proc_.coding_system.as_deref(), Some("JJ1017-32"));
    assert_eq!(r.modality.as_deref(), Some("CT"));
    assert_eq!(
        r.protocol_codes
            .iter()
            .map(|c| c.text.as_deref().unwrap_or(""))
            .collect::<Vec<_>>(),
        vec!["肺動脈相", "静脈相"]
    );

    // Ordering provider: kanji and kana repetitions of the same person.
    assert_eq!(r.ordering_provider.len(), 2);
    assert_eq!(r.ordering_provider[0].id.as_deref(), Some("123456"));
    assert_eq!(
        r.ordering_provider[0].name,
        name("佐藤", "花子", "L", Some("I"))
    );
    assert_eq!(
        r.ordering_provider[1].name,
        name("サトウ", "ハナコ", "L", Some("P"))
    );
    // 2.5 XTN without XTN.1: country-area-local and extension.
    assert_eq!(r.callback_phones, vec!["81-3-12345678 ext. 201"]);

    assert_eq!(
        r.clinical_information.as_deref(),
        Some("胸痛、労作時息切れ")
    );
    assert_eq!(r.exam_purpose.len(), 1);
    assert_eq!(r.exam_purpose[0].code.as_deref(), Some("L01"));
    // 除 is 3D 7C in JIS: a '|' byte inside the kanji in the raw message.
    assert_eq!(r.exam_purpose[0].text.as_deref(), Some("肺塞栓の除外"));
    assert_eq!(r.priority, Some(Priority::Stat));
    assert_eq!(r.priority_code.as_deref(), Some("S"));
    assert_eq!(
        r.scheduled_time.as_ref().map(|t| t.raw.as_str()),
        Some("20240601100000+0900")
    );
    // The escape after kanji (hl7-parser's panic case) decoded by our code.
    assert_eq!(r.notes, vec!["造影剤アレルギー歴あり^前投薬済み"]);
    assert_eq!(r.diagnoses.len(), 1);
    let dx = r.diagnoses[0].code.as_ref().unwrap();
    assert_eq!(dx.code.as_deref(), Some("I26.9"));
    assert_eq!(dx.text.as_deref(), Some("肺塞栓症疑い"));
    assert_eq!(r.diagnoses[0].diagnosis_type.as_deref(), Some("W"));

    assert_eq!(r.observations.len(), 2);
    let egfr = &r.observations[0];
    assert_eq!(egfr.value_type.as_deref(), Some("NM"));
    assert_eq!(egfr.code.code.as_deref(), Some("8A065000002391901"));
    assert_eq!(egfr.code.text.as_deref(), Some("eGFR"));
    assert_eq!(egfr.code.coding_system.as_deref(), Some("JC10"));
    assert_eq!(egfr.value.as_deref(), Some("45.2"));
    assert_eq!(egfr.units.as_deref(), Some("mL/min/1.73m2"));
    assert_eq!(egfr.reference_range.as_deref(), Some(">=60"));
    assert_eq!(egfr.abnormal_flags.as_deref(), Some("L"));
    assert_eq!(egfr.status.as_deref(), Some("F"));
    assert_eq!(
        egfr.observation_time
            .as_ref()
            .and_then(|t| t.iso.as_deref()),
        Some("2024-05-30T10:15:00+09:00")
    );
    assert_eq!(r.observations[1].code.text.as_deref(), Some("クレアチニン"));

    // Serialisable for storage, Japanese text intact.
    let json = serde_json::to_string(&Parsed::Order(o.clone())).unwrap();
    assert!(json.contains("\"kind\":\"order\""));
    assert!(json.contains("肺塞栓の除外"));
}

#[test]
fn orm_o01_ihe_2_3_1() {
    let o = order(sample!("orm_o01_ihe.hl7"));
    assert_eq!(o.header.version, "2.3.1");
    assert_eq!(o.header.character_set, "");
    assert_eq!(o.patient.identifiers[0].id, "PAT-1001");
    assert_eq!(
        o.patient.identifiers[0].assigning_authority.as_deref(),
        Some("GENHOSP")
    );
    assert_eq!(o.patient.names[0].family.as_deref(), Some("DOE"));
    assert_eq!(o.patient.names[0].middle.as_deref(), Some("Q"));
    assert_eq!(o.patient.sex.as_deref(), Some("F"));
    let r = &o.requests[0];
    assert_eq!(r.control, OrderControl::New);
    assert_eq!(r.accession_number.as_deref(), Some("ACC-1001"));
    assert_eq!(
        r.study_instance_uid.as_deref(),
        Some("1.2.840.99999.1.1001")
    );
    assert_eq!(
        r.filler_order_number.as_ref().map(|e| e.id.as_str()),
        Some("FIL-2001")
    );
    assert_eq!(r.requested_procedure_id.as_deref(), Some("RP-1001"));
    assert_eq!(r.scheduled_procedure_step_id.as_deref(), Some("SPS-1001"));
    assert_eq!(r.modality.as_deref(), Some("MR"));
    assert_eq!(r.priority, Some(Priority::Routine));
    assert_eq!(
        r.scheduled_time.as_ref().and_then(|t| t.iso.as_deref()),
        Some("2024-06-02T09:00:00")
    );
    assert_eq!(r.ordering_provider[0].id.as_deref(), Some("9001"));
    assert_eq!(r.ordering_provider[0].name.family.as_deref(), Some("SMITH"));
    assert_eq!(r.ordering_provider[0].name.given.as_deref(), Some("JOHN"));
    assert_eq!(r.callback_phones, vec!["555-0100"]);
    assert_eq!(
        r.clinical_information.as_deref(),
        Some("Headache for 3 weeks & nausea")
    );
    assert_eq!(
        r.exam_purpose[0].text.as_deref(),
        Some("Rule out mass lesion")
    );
    assert_eq!(r.notes, vec!["Patient is claustrophobic"]);
    assert_eq!(r.diagnoses[0].coding_method.as_deref(), Some("I9"));
    assert_eq!(r.diagnoses[0].description.as_deref(), Some("Headache"));
    assert_eq!(r.observations[0].code.code.as_deref(), Some("2160-0"));
    assert_eq!(r.observations[0].value.as_deref(), Some("0.9"));
    assert_eq!(o.allergies[0].allergen.text.as_deref(), Some("Penicillin"));
}

#[test]
fn oru_prelim_then_final_for_the_same_accession() {
    let p = report(sample!("oru_r01_prelim.hl7"));
    let f = report(sample!("oru_r01_final.hl7"));
    assert_eq!(p.header.character_set, "UNICODE UTF-8");
    let (p, f) = (&p.results[0], &f.results[0]);
    assert_eq!(p.accession_number.as_deref(), Some("ACC-0001"));
    assert_eq!(f.accession_number, p.accession_number);
    assert_eq!(p.status, ReportStatus::Preliminary);
    assert_eq!(f.status, ReportStatus::Final);
    assert_eq!(f.status_code, "F");
    assert_eq!(
        p.filler_order_number.as_ref().map(|e| e.id.as_str()),
        Some("FIL-0001")
    );

    // Preliminary: trainee in OBR-33 (XCN-like layout), no signer yet.
    assert_eq!(p.principal_interpreter, None);
    assert_eq!(p.assistant_interpreters.len(), 1);
    assert_eq!(p.assistant_interpreters[0].id.as_deref(), Some("2001"));
    assert_eq!(p.assistant_interpreters[0].family.as_deref(), Some("田中"));
    assert_eq!(p.assistant_interpreters[0].given.as_deref(), Some("次郎"));
    assert_eq!(p.assistant_interpreters[0].start, None);
    assert_eq!(
        p.text,
        "所見：両肺動脈に明らかな造影欠損を認めない。\n\
             右下葉に小結節あり^要経過観察。\n\
             印象：肺塞栓症なし。\n（仮報告）"
    );
    assert_eq!(p.study_instance_uid, None);

    // Final: signer in OBR-32 (NDL with CNN subcomponents and period), trainee kept.
    let signer = f.principal_interpreter.as_ref().unwrap();
    assert_eq!(signer.id.as_deref(), Some("1001"));
    assert_eq!(signer.family.as_deref(), Some("鈴木"));
    assert_eq!(signer.given.as_deref(), Some("一郎"));
    assert_eq!(
        signer.start.as_ref().and_then(|t| t.iso.as_deref()),
        Some("2024-06-01T15:00:00+09:00")
    );
    assert_eq!(
        signer.end.as_ref().map(|t| t.raw.as_str()),
        Some("20240601151500+0900")
    );
    assert_eq!(signer.facility.as_deref(), Some("READ_CENTER"));
    let trainee = &f.assistant_interpreters[0];
    assert_eq!(trainee.family.as_deref(), Some("田中"));
    assert_eq!(
        trainee.end.as_ref().map(|t| t.raw.as_str()),
        Some("20240601123000+0900")
    );
    assert_eq!(
        f.results_time.as_ref().map(|t| t.raw.as_str()),
        Some("20240601151500+0900")
    );
    assert_eq!(
        f.observation_time.as_ref().map(|t| t.raw.as_str()),
        Some("20240601101500+0900")
    );
    // The study UID came from the HD OBX, which is not report text.
    assert_eq!(
        f.study_instance_uid.as_deref(),
        Some("1.2.392.200036.9116.2.5.1.37.2417525.20240601.1")
    );
    assert!(f.observations.is_empty());
    assert_eq!(
        f.text,
        "所見：両肺動脈に明らかな造影欠損を認めない。\n\
             右下葉S9に4mm大の小結節あり、要経過観察。\n\
             印象：肺塞栓症なし。\n右下葉小結節。"
    );
}

#[test]
fn adt_a40_merge() {
    let m = match parse_sample(sample!("adt_a40_merge.hl7")) {
        Ok(Parsed::Merge(m)) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(m.merges.len(), 1);
    let pair = &m.merges[0];
    assert_eq!(pair.surviving.identifiers[0].id, "1234567");
    assert_eq!(
        pair.prior_identifiers
            .iter()
            .map(|i| (i.id.as_str(), i.assigning_authority.as_deref()))
            .collect::<Vec<_>>(),
        vec![("7654321", Some("TOKYO_GEN")), ("X-55", Some("OLD_SYSTEM"))]
    );
    assert_eq!(pair.prior_names[0].given.as_deref(), Some("TAROU"));
}

#[test]
fn malformed_samples() {
    assert_eq!(
        parse_sample(sample!("malformed_no_msh.hl7")),
        Err(MessageError::Parse(ParseError::NoMsh))
    );
    // hl7-parser would stop quietly before "OB" and return five segments.
    assert_eq!(
        parse_sample(sample!("malformed_truncated.hl7")),
        Err(MessageError::Parse(ParseError::BadSegment {
            line: 6,
            fragment: "OB".into()
        }))
    );
    match parse_sample(sample!("orm_missing_accession.hl7")) {
        Err(MessageError::Content { header, error }) => {
            assert_eq!(header.control_id, "ORM0002");
            assert_eq!(error.location, ErrorLocation::field("OBR", 1, 18));
            assert_eq!(error.code, ErrorCode::RequiredFieldMissing);
        }
        other => panic!("{other:?}"),
    }
}

const MSH_25: &str = "MSH|^~\\&|S|SF|R|RF|20240101||";

#[test]
fn lenient_segment_separators_and_fieldless_segments() {
    let text = format!(
            "{MSH_25}ORM^O01|C1|P|2.3.1\r\n\r\nPID|||P1\nORC|NW|PL1\r\nOBR|1|PL1||||||||||||||||X1\nZDS\n\n"
        );
    match parse(&text) {
        Ok(Parsed::Order(o)) => {
            assert_eq!(o.requests[0].accession_number.as_deref(), Some("X1"));
            assert_eq!(o.requests[0].study_instance_uid, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_messages_in_one_payload_are_refused() {
    let text = format!(
        "{MSH_25}ORM^O01|C1|P|2.3.1\rPID|||P1\rORC|NW|PL1\rOBR|1||||||||||||||||A1\r\
             {MSH_25}ORM^O01|C2|P|2.3.1\rPID|||P2\rORC|NW|PL2\rOBR|1||||||||||||||||A2\r"
    );
    assert_eq!(
        parse(&text),
        Err(MessageError::Parse(ParseError::MultipleMessages {
            line: 5,
            segment: "MSH".into()
        }))
    );
}

#[test]
fn several_order_groups_and_patient_level_segments() {
    let text = format!(
        "{MSH_25}OMI^O23|C2|P|2.5\rPID|||P1\rNTE|1||patient note\rOBX|1|NM|CRE^Cr||0.8\r\
             ORC|NW|PL1\rOBR|1|PL1\rIPC|A1||1.2.3\r\
             ORC|CA|PL2\rOBR|2|PL2\rORC|XO|PL3\rOBR|3|PL3\r"
    );
    let o = match parse(&text) {
        Ok(Parsed::Order(o)) => o,
        other => panic!("{other:?}"),
    };
    assert_eq!(o.patient_notes, vec!["patient note"]);
    assert_eq!(o.requests.len(), 3);
    assert_eq!(o.requests[0].accession_number.as_deref(), Some("A1"));
    assert_eq!(o.requests[2].control, OrderControl::Change);
    // A cancel or change may identify its order by the placer number alone.
    assert_eq!(o.requests[1].control, OrderControl::Cancel);
    assert_eq!(o.requests[1].accession_number, None);
    // The pre-ORC OBX applies to every request.
    assert_eq!(o.requests[0].observations[0].value.as_deref(), Some("0.8"));
    assert_eq!(o.requests[1].observations.len(), 1);
}

#[test]
fn omi_without_accession_points_at_ipc() {
    let text = format!("{MSH_25}OMI^O23|C3|P|2.5\rPID|||P1\rORC|NW|PL1\rOBR|1|PL1\rIPC||RP1\r");
    match parse(&text) {
        Err(MessageError::Content { error, .. }) => {
            assert_eq!(error.location, ErrorLocation::field("IPC", 1, 1));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn content_errors_name_the_field() {
    let cases = [
        (
            format!("{MSH_25}ORM^O01||P|2.3.1\rPID|||P1"),
            ("MSH", Some(10)),
        ),
        (format!("{MSH_25}|C|P|2.3.1"), ("MSH", Some(9))),
        (format!("{MSH_25}ORM^O01|C|P|2.3.1\rORC|NW"), ("PID", None)),
        (
            format!("{MSH_25}ORM^O01|C|P|2.3.1\rPID|1"),
            ("PID", Some(3)),
        ),
        (
            format!("{MSH_25}ORM^O01|C|P|2.3.1\rPID|||P1"),
            ("ORC", None),
        ),
        (
            format!("{MSH_25}ORM^O01|C|P|2.3.1\rPID|||P1\rORC||PL\rOBR|1||||||||||||||||||A"),
            ("ORC", Some(1)),
        ),
        (
            format!("{MSH_25}ORU^R01|C|P|2.5\rPID|||P1\rOBR|1|PL1"),
            ("OBR", Some(25)),
        ),
        (
            format!("{MSH_25}ORU^R01|C|P|2.5\rPID|||P1\rOBR|1||||||||||||||||||||||||F"),
            ("OBR", Some(18)),
        ),
        (format!("{MSH_25}ADT^A40|C|P|2.5\rPID|||P1"), ("MRG", None)),
        (
            format!("{MSH_25}ADT^A40|C|P|2.5\rPID|||P1\rMRG|"),
            ("MRG", Some(1)),
        ),
    ];
    for (text, (segment, field)) in cases {
        match parse(&text) {
            Err(MessageError::Content { error, .. }) => {
                assert_eq!(
                    (error.location.segment.as_str(), error.location.field),
                    (segment, field),
                    "{text:?}"
                );
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn patient_update_and_other_types() {
    let text = format!("{MSH_25}ADT^A08|C4|P|2.5\rEVN|A08\rPID|||P9^^^H^MR||Doe^John");
    match parse(&text) {
        Ok(Parsed::PatientUpdate(u)) => {
            assert_eq!(u.patient.identifiers[0].id, "P9");
            assert_eq!(u.patient.names[0].given.as_deref(), Some("John"));
        }
        other => panic!("{other:?}"),
    }
    let text = format!("{MSH_25}SIU^S12|C5|P|2.5\rSCH|1");
    match parse(&text) {
        Ok(Parsed::Other {
            message_type,
            header,
        }) => {
            assert_eq!(message_type, "SIU^S12");
            assert_eq!(header.control_id, "C5");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn delimiters_are_validated_and_2_7_truncation_is_accepted() {
    assert!(matches!(
        parse("MSH|^~\\|S|SF"),
        Err(MessageError::Parse(ParseError::BadDelimiters(_)))
    ));
    assert!(matches!(
        parse("MSH|^^\\&|S"),
        Err(MessageError::Parse(ParseError::BadDelimiters(_)))
    ));
    assert!(matches!(
        parse("MSHA^~\\&"),
        Err(MessageError::Parse(ParseError::BadDelimiters(_)))
    ));
    assert_eq!(parse("  \r\n"), Err(MessageError::Parse(ParseError::Empty)));
    let text = "MSH|^~\\&#|S|SF|R|RF|20240101||ADT^A08|C6|P|2.7\rPID|||P1||A\\P\\B";
    match parse(text) {
        Ok(Parsed::PatientUpdate(u)) => {
            assert_eq!(u.header.delimiters.truncation, Some('#'));
            assert_eq!(
                u.header.sending_application.namespace_id.as_deref(),
                Some("S")
            );
            assert_eq!(u.patient.names[0].family.as_deref(), Some("A#B"));
        }
        other => panic!("{other:?}"),
    }
    // Non-default delimiters.
    let text = "MSH!@%$*!S!SF!R!RF!20240101!!ADT@A08!C7!P!2.5\rPID!!!P1@@@H$T$X";
    match parse(text) {
        Ok(Parsed::PatientUpdate(u)) => {
            assert_eq!(
                u.patient.identifiers[0].assigning_authority.as_deref(),
                Some("H*X")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn header_recovery() {
    let h = recover_header("MSH|^~\\&|S|SF|R|RF|20240101||ORM^O01|C8|P|2.3.1\rgarbage").unwrap();
    assert_eq!(h.control_id, "C8");
    assert_eq!(h.message_type.trigger, "O01");
    // From bytes in an unsupported charset: non-ASCII bytes become '?'.
    let raw = b"MSH|^~\\&|S\xE9|SF|R|RF|20240101||ORM^O01|C9|P|2.3.1||||||8859/1\rPID";
    let h = recover_header_from_bytes(raw).unwrap();
    assert_eq!(h.sending_application.namespace_id.as_deref(), Some("S?"));
    assert_eq!(h.control_id, "C9");
    assert_eq!(h.character_set, "8859/1");
    assert!(recover_header_from_bytes(b"PID|1").is_none());
}

/// An ORM with `count` at OBR-46.2 of its one group, and `zcount` in PV1-19.4 (before
/// the ORC) and in a ZRS-1 after the OBR.
fn counted_order(count: &str, zcount: &str) -> String {
    // fields[n - 1] is field n.
    let segment = |id: &str, fields: &[(usize, String)]| {
        let mut all = vec![String::new(); fields.iter().map(|f| f.0).max().unwrap_or(0)];
        for (n, v) in fields {
            all[n - 1] = v.clone();
        }
        format!("{id}|{}", all.join("|"))
    };
    format!(
        "MSH|^~\\&|RIS|H|RG|R|20240601||ORM^O01|C7|P|2.5\rPID|||P7\r{}\rORC|NW|PL7\r{}\rZRS|{zcount}\r",
        segment("PV1", &[(2, "O".into()), (19, format!("V1^^^{zcount}"))]),
        segment(
            "OBR",
            &[(1, "1".into()), (18, "ACC-7".into()), (46, format!("X^{count}"))]
        ),
    )
}

fn configured(path: &str) -> crate::hl7::Config {
    crate::hl7::Config {
        expected_images: Some(path.parse().expect("field path")),
        ..crate::hl7::Config::default()
    }
}

fn counted(text: &str, config: &crate::hl7::Config) -> (Vec<Option<u32>>, Vec<ValueWarning>) {
    match parse_for(text, config) {
        Ok(Parsed::Order(o)) => (
            o.requests.iter().map(|r| r.expected_images).collect(),
            o.warnings,
        ),
        other => panic!("expected an order, got {other:?}"),
    }
}

#[test]
fn expected_image_count_from_the_configured_field() {
    let text = counted_order("12", "7");
    assert_eq!(
        counted(&text, &configured("OBR-46.2")),
        (vec![Some(12)], vec![])
    );
    // A whole field, a Z-segment of the group, a component of a segment before the
    // first ORC.
    assert_eq!(counted(&text, &configured("ZRS-1")).0, [Some(7)]);
    assert_eq!(counted(&text, &configured("PV1-19.4")).0, [Some(7)]);
    assert_eq!(counted(&text, &configured("OBR-46.2.1")).0, [Some(12)]);
    // Not configured: not read, whatever the message holds.
    assert_eq!(
        counted(&text, &crate::hl7::Config::default()),
        (vec![None], vec![])
    );
    assert_eq!(
        parse(&text).map(|p| p.header().control_id.clone()),
        Ok("C7".into())
    );
    // A segment, field or component the message does not have: no count, no warning.
    for absent in ["ZZZ-1", "OBR-47", "OBR-46.3", "OBR-18.2"] {
        assert_eq!(
            counted(&text, &configured(absent)),
            (vec![None], vec![]),
            "{absent}"
        );
    }
    // Empty and the explicit null: no count, no warning.
    for empty in ["", "\"\"", " "] {
        let text = counted_order(empty, "");
        assert_eq!(
            counted(&text, &configured("OBR-46.2")),
            (vec![None], vec![])
        );
    }
    // Leading zeros are still a count.
    let text = counted_order("007", "");
    assert_eq!(counted(&text, &configured("OBR-46.2")).0, [Some(7)]);
}

#[test]
fn a_malformed_expected_image_count_is_a_warning_naming_the_field() {
    for bad in ["abc", "-3", "0", "3.5", "+3", "1e3", "99999999999", "3&4"] {
        let text = counted_order(bad, "");
        let (counts, warnings) = counted(&text, &configured("OBR-46.2"));
        assert_eq!(counts, [None], "{bad}");
        assert_eq!(warnings.len(), 1, "{bad}");
        let w = &warnings[0];
        assert_eq!((w.segment.as_str(), w.sequence, w.field), ("OBR", 1, 46));
        assert!(
            w.reason.contains("OBR-46.2")
                && w.reason.contains(&format!("{bad:?}"))
                && w.reason.contains("ignored"),
            "{bad}: {}",
            w.reason
        );
    }
}

#[test]
fn each_order_group_has_its_own_count() {
    let text = "MSH|^~\\&|RIS|H|RG|R|20240601||OMI^O23|C8|P|2.5\r\
                PID|||P8\r\
                ORC|NW|PL1\rOBR|1|PL1\rIPC|ACC-1|RP1|1.2.3|SPS1|CT||||4\r\
                ORC|NW|PL2\rOBR|2|PL2\rIPC|ACC-2|RP2|1.2.4|SPS2|CT||||x\r\
                ORC|NW|PL3\rOBR|3|PL3\rIPC|ACC-3|RP3|1.2.5|SPS3|CT\r";
    let (counts, warnings) = counted(text, &configured("IPC-9"));
    assert_eq!(counts, [Some(4), None, None]);
    assert_eq!(warnings.len(), 1);
    assert_eq!((warnings[0].sequence, warnings[0].field), (2, 9));
}
