//! A prior's report that exists only as HL7 text (ORU^R01), as a DICOM Basic Text SR in
//! the prior study, so the reading facility's viewer shows it beside the prior images.
//!
//! The document belongs to the prior study (its Patient and Study attributes are those
//! of a retrieved instance, decoded with readgate's own character-set codec and written
//! in UTF-8, `ISO_IR 192`), in a series of its own. Its UIDs are readgate's, derived from
//! the gateway, the prior and the HL7 message (`2.25.` + 128 bits of a SHA-256), so the
//! same report always yields the same document. It says where it came from: a
//! "Comment" item names the message, its sender and the signer. Verification Flag is
//! `UNVERIFIED`: the radiologist signed the HL7 report, not this DICOM copy of it.
//!
//! Content (PS3.3 A.35.1, TID 2000 shape): a CONTAINER "Diagnostic Imaging Report"
//! (LOINC 18748-4) holding TEXT "Finding" (DCM 121071, the report text) and TEXT
//! "Comment" (DCM 121106, the provenance).

use crate::dicom::dataset::Header;
use crate::store::StoredReport;
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

/// Series Number of the generated report series (high, out of the modality's way).
const SERIES_NUMBER: &str = "9901";

/// What the document is made from.
pub struct ReportSource<'a> {
    /// Header of one retrieved instance of the prior (Patient and Study attributes).
    pub prior: &'a Header,
    pub report: &'a StoredReport,
    pub gateway_id: &'a str,
    /// The hospital's offset from UTC (seconds east): Content Date/Time of a report
    /// without its own time is when readgate received it, in local time.
    pub utc_offset_secs: i64,
}

/// A generated document: its UIDs and its data set (explicit VR little endian).
#[derive(Debug, Clone)]
pub struct ReportSr {
    pub sop_instance_uid: String,
    pub series_instance_uid: String,
    pub dataset: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SrError {
    #[error("the prior's instance has no Study Instance UID")]
    NoStudy,
    #[error("the report has no text")]
    NoText,
    #[error("cannot encode the report SR: {0}")]
    Encode(String),
}

pub use crate::dicom::derived_uid;

/// The Basic Text SR of `source.report` in the prior study.
pub fn build(source: &ReportSource<'_>) -> Result<ReportSr, SrError> {
    let prior = source.prior;
    let study_uid = prior
        .get(tag_u32(tags::STUDY_INSTANCE_UID))
        .ok_or(SrError::NoStudy)?
        .to_string();
    let text = source.report.text.trim();
    if text.is_empty() {
        return Err(SrError::NoText);
    }
    let message = &source.report.message;
    let key = [
        source.gateway_id,
        study_uid.as_str(),
        message.control_id.as_str(),
        &message.id.to_string(),
    ];
    let series_uid = derived_uid(&[&key[..], &["series"]].concat());
    let instance_uid = derived_uid(&[&key[..], &["instance"]].concat());
    let (content_date, content_time) =
        content_datetime(source.report, message.received_at, source.utc_offset_secs);
    let context = prior.context_text();
    let decoded = |tag: Tag| {
        context
            .get(&format!("{:04X},{:04X}", tag.group(), tag.element()))
            .cloned()
            .unwrap_or_default()
    };
    let plain = |tag: Tag| prior.get(tag_u32(tag)).unwrap_or("").to_string();

    let mut obj = InMemDicomObject::new_empty();
    let mut put = |tag: Tag, vr: VR, value: &str| {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    };
    put(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    put(tags::SOP_CLASS_UID, VR::UI, uids::BASIC_TEXT_SR_STORAGE);
    put(tags::SOP_INSTANCE_UID, VR::UI, &instance_uid);
    put(tags::INSTANCE_CREATION_DATE, VR::DA, &content_date);
    put(tags::INSTANCE_CREATION_TIME, VR::TM, &content_time);
    // Patient (type 2: empty when the prior's instance has none).
    put(tags::PATIENT_NAME, VR::PN, &decoded(tags::PATIENT_NAME));
    put(tags::PATIENT_ID, VR::LO, &decoded(tags::PATIENT_ID));
    let issuer = decoded(tags::ISSUER_OF_PATIENT_ID);
    if !issuer.is_empty() {
        put(tags::ISSUER_OF_PATIENT_ID, VR::LO, &issuer);
    }
    put(tags::PATIENT_BIRTH_DATE, VR::DA, "");
    put(tags::PATIENT_SEX, VR::CS, "");
    // General Study: the prior's.
    put(tags::STUDY_INSTANCE_UID, VR::UI, &study_uid);
    put(tags::STUDY_DATE, VR::DA, &plain(tags::STUDY_DATE));
    put(tags::STUDY_TIME, VR::TM, &plain(tags::STUDY_TIME));
    put(
        tags::REFERRING_PHYSICIAN_NAME,
        VR::PN,
        &decoded(tags::REFERRING_PHYSICIAN_NAME),
    );
    put(tags::STUDY_ID, VR::SH, "");
    put(
        tags::ACCESSION_NUMBER,
        VR::SH,
        &plain(tags::ACCESSION_NUMBER),
    );
    // SR Document Series, General Equipment.
    put(tags::MODALITY, VR::CS, "SR");
    put(tags::SERIES_INSTANCE_UID, VR::UI, &series_uid);
    put(tags::SERIES_NUMBER, VR::IS, SERIES_NUMBER);
    put(
        tags::SERIES_DESCRIPTION,
        VR::LO,
        "Report from HL7 (readgate)",
    );
    put(tags::MANUFACTURER, VR::LO, "readgate");
    // SR Document General.
    put(tags::INSTANCE_NUMBER, VR::IS, "1");
    put(tags::COMPLETION_FLAG, VR::CS, "COMPLETE");
    put(tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED");
    put(tags::CONTENT_DATE, VR::DA, &content_date);
    put(tags::CONTENT_TIME, VR::TM, &content_time);
    // SR Document Content: the root container.
    put(tags::VALUE_TYPE, VR::CS, "CONTAINER");
    put(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE");
    obj.put(empty_sequence(
        tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE,
    ));
    obj.put(empty_sequence(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE));
    obj.put(code_sequence(
        tags::CONCEPT_NAME_CODE_SEQUENCE,
        "18748-4",
        "LN",
        "Diagnostic Imaging Report",
    ));
    let provenance = format!(
        "Made by readgate {} from HL7 {} message {} from {}, result status {}{}.",
        source.gateway_id,
        message.message_type,
        message.control_id,
        message.sender,
        source.report.status,
        source
            .report
            .signer_id
            .as_deref()
            .map(|s| format!(", signed by {s}"))
            .unwrap_or_default()
    );
    obj.put(DataElement::new(
        tags::CONTENT_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![
            text_item("121071", "Finding", text),
            text_item("121106", "Comment", &provenance),
        ]),
    ));
    let dataset =
        super::find::encode(&obj, crate::dicom::EXPLICIT_VR_LE).map_err(SrError::Encode)?;
    Ok(ReportSr {
        sop_instance_uid: instance_uid,
        series_instance_uid: series_uid,
        dataset,
    })
}

fn tag_u32(tag: Tag) -> u32 {
    (u32::from(tag.group()) << 16) | u32::from(tag.element())
}

/// Content Date and Time: the report's time (HL7 DTM, local) when it has one, else when
/// readgate received it.
fn content_datetime(report: &StoredReport, received_at: i64, offset: i64) -> (String, String) {
    let digits: String = report
        .report_time
        .as_deref()
        .unwrap_or("")
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    if digits.len() >= 8 {
        let time = if digits.len() >= 14 {
            digits[8..14].to_string()
        } else {
            "000000".to_string()
        };
        return (digits[..8].to_string(), time);
    }
    let local = crate::time::format_ms(received_at, offset);
    // `YYYY-MM-DDTHH:MM:SS…`
    let compact: String = local.chars().filter(|c| c.is_ascii_digit()).collect();
    (
        compact.get(..8).unwrap_or("").to_string(),
        compact.get(8..14).unwrap_or("").to_string(),
    )
}

fn empty_sequence(tag: Tag) -> DataElement<InMemDicomObject> {
    DataElement::new(
        tag,
        VR::SQ,
        DataSetSequence::<InMemDicomObject>::from(Vec::new()),
    )
}

fn code_item(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    item.put(DataElement::new(
        tags::CODE_VALUE,
        VR::SH,
        PrimitiveValue::from(value),
    ));
    item.put(DataElement::new(
        tags::CODING_SCHEME_DESIGNATOR,
        VR::SH,
        PrimitiveValue::from(scheme),
    ));
    item.put(DataElement::new(
        tags::CODE_MEANING,
        VR::LO,
        PrimitiveValue::from(meaning),
    ));
    item
}

fn code_sequence(
    tag: Tag,
    value: &str,
    scheme: &str,
    meaning: &str,
) -> DataElement<InMemDicomObject> {
    DataElement::new(
        tag,
        VR::SQ,
        DataSetSequence::from(vec![code_item(value, scheme, meaning)]),
    )
}

fn text_item(code: &str, meaning: &str, text: &str) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    item.put(DataElement::new(
        tags::RELATIONSHIP_TYPE,
        VR::CS,
        PrimitiveValue::from("CONTAINS"),
    ));
    item.put(DataElement::new(
        tags::VALUE_TYPE,
        VR::CS,
        PrimitiveValue::from("TEXT"),
    ));
    item.put(code_sequence(
        tags::CONCEPT_NAME_CODE_SEQUENCE,
        code,
        "DCM",
        meaning,
    ));
    item.put(DataElement::new(
        tags::TEXT_VALUE,
        VR::UT,
        PrimitiveValue::from(text),
    ));
    item
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicom::text::{encode, SpecificCharacterSet, TextKind};
    use crate::store::MessageRef;

    /// An explicit VR LE element with a short (16-bit) length.
    fn element(out: &mut Vec<u8>, tag: Tag, vr: &[u8; 2], value: &[u8]) {
        let mut value = value.to_vec();
        if value.len() % 2 == 1 {
            value.push(if vr == b"UI" { 0 } else { b' ' });
        }
        out.extend_from_slice(&tag.group().to_le_bytes());
        out.extend_from_slice(&tag.element().to_le_bytes());
        out.extend_from_slice(vr);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(&value);
    }

    fn report(text: &str, time: Option<&str>) -> StoredReport {
        StoredReport {
            message: MessageRef {
                id: 7,
                control_id: "ORU-1".into(),
                message_type: "ORU^R01".into(),
                sender: "RIS|HOSP".into(),
                received_at: 0,
            },
            status: "F".into(),
            signer_id: Some("1001".into()),
            report_time: time.map(str::to_string),
            text: text.into(),
            result: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_japanese_prior_gets_a_utf8_report_in_its_study() {
        // The prior's instance: ISO 2022 IR 87 (what Japanese modalities write).
        let cs = SpecificCharacterSet::parse("\\ISO 2022 IR 87").unwrap();
        let name = encode("Yamada^Taro=山田^太郎", &cs, TextKind::PersonName).unwrap();
        let mut ds = Vec::new();
        element(
            &mut ds,
            tags::SPECIFIC_CHARACTER_SET,
            b"CS",
            b"\\ISO 2022 IR 87",
        );
        element(&mut ds, tags::STUDY_DATE, b"DA", b"20261101");
        element(&mut ds, tags::ACCESSION_NUMBER, b"SH", b"ACC-1");
        element(&mut ds, tags::PATIENT_NAME, b"PN", &name);
        element(&mut ds, tags::PATIENT_ID, b"LO", b"P-1");
        element(&mut ds, tags::STUDY_INSTANCE_UID, b"UI", b"1.2.3.4");
        let header = crate::dicom::dataset::walk(
            std::io::Cursor::new(ds),
            crate::dicom::dataset::Encoding::ExplicitLittle,
        )
        .unwrap();
        let r = report("前回と著変なし。", Some("20261102093000+0900"));
        let source = ReportSource {
            prior: &header,
            report: &r,
            gateway_id: "gw-1",
            utc_offset_secs: 9 * 3600,
        };
        let sr = build(&source).unwrap();
        // The same report makes the same document.
        assert_eq!(
            build(&source).unwrap().sop_instance_uid,
            sr.sop_instance_uid
        );
        assert_ne!(sr.sop_instance_uid, sr.series_instance_uid);

        let ts = {
            use dicom_encoding::TransferSyntaxIndex;
            dicom_transfer_syntax_registry::TransferSyntaxRegistry
                .get(crate::dicom::EXPLICIT_VR_LE)
                .unwrap()
        };
        let obj = InMemDicomObject::read_dataset_with_ts(&sr.dataset[..], ts).unwrap();
        let text = |tag: Tag| {
            obj.element(tag)
                .unwrap()
                .to_str()
                .unwrap()
                .trim()
                .to_string()
        };
        assert_eq!(text(tags::SPECIFIC_CHARACTER_SET), "ISO_IR 192");
        assert_eq!(text(tags::SOP_CLASS_UID), uids::BASIC_TEXT_SR_STORAGE);
        assert_eq!(text(tags::STUDY_INSTANCE_UID), "1.2.3.4");
        assert_eq!(text(tags::PATIENT_NAME), "Yamada^Taro=山田^太郎");
        assert_eq!(text(tags::ACCESSION_NUMBER), "ACC-1");
        assert_eq!(text(tags::CONTENT_DATE), "20261102");
        assert_eq!(text(tags::CONTENT_TIME), "093000");
        let items = obj
            .element(tags::CONTENT_SEQUENCE)
            .unwrap()
            .items()
            .unwrap();
        let item_text = |i: usize| {
            items[i]
                .element(tags::TEXT_VALUE)
                .unwrap()
                .to_str()
                .unwrap()
                .trim()
                .to_string()
        };
        assert_eq!(item_text(0), "前回と著変なし。");
        assert!(
            item_text(1).contains("ORU^R01 message ORU-1") && item_text(1).contains("1001"),
            "{}",
            item_text(1)
        );
    }

    #[test]
    fn a_prior_instance_without_study_uid_is_refused() {
        let header = crate::dicom::dataset::Header::default();
        let r = report("text", None);
        let source = ReportSource {
            prior: &header,
            report: &r,
            gateway_id: "gw-1",
            utc_offset_secs: 9 * 3600,
        };
        assert!(matches!(build(&source), Err(SrError::NoStudy)));
    }

    #[test]
    fn derived_uids_are_stable_valid_and_distinct() {
        let a = derived_uid(&["gw", "1.2.3", "MSG1", "instance"]);
        assert_eq!(a, derived_uid(&["gw", "1.2.3", "MSG1", "instance"]));
        assert_ne!(a, derived_uid(&["gw", "1.2.3", "MSG1", "series"]));
        // Parts are delimited: ("ab","c") is not ("a","bc").
        assert_ne!(derived_uid(&["ab", "c"]), derived_uid(&["a", "bc"]));
        assert!(a.starts_with("2.25.") && a.len() <= 64, "{a}");
        assert!(a[5..].chars().all(|c| c.is_ascii_digit()) && !a[5..].starts_with('0'));
    }
}
