//! Original-mode acknowledgements (ACK) for received messages.
//!
//! [`build`] works from the received [`Header`] when there is one and from defaults
//! (`|^~\&`, version 2.5, no control id) when the input could not be read at all, so a
//! sender always gets an answer. The result is text; encode it with
//! [`charset::encode`](super::charset::encode) in the sender's charset.
//!
//! Error segment layout follows the version the sender declared in MSH-12:
//! * before 2.5: `ERR|SEG^seq^field^code&text&HL70357` (ERR-1, ELD);
//! * 2.5 and later (and unknown versions): `ERR||SEG^seq^field|code^text^HL70357|E||||message`
//!   (ERR-2 ERL, ERR-3 HL7 error code, ERR-4 severity, ERR-8 user message).

use std::fmt;

use serde::{Deserialize, Serialize};

pub use super::error::{ErrorCode, ErrorLocation};
use super::escape::Delimiters;
use super::types::{Header, HierarchicDesignator};
pub use crate::time::format_hl7_dtm_utc as timestamp;

/// MSA-1 acknowledgement code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AckCode {
    /// AA: accepted and processed.
    Accept,
    /// AE: understood but the content is unusable (missing/invalid fields).
    Error,
    /// AR: rejected: unreadable, or a message type/version/processing id not handled.
    Reject,
}

impl AckCode {
    /// `AA`, `AE` or `AR`.
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::Accept => "AA",
            AckCode::Error => "AE",
            AckCode::Reject => "AR",
        }
    }
}

impl fmt::Display for AckCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What goes into the ERR segment (and MSA-3) of an AE/AR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckError {
    /// HL7 error code.
    pub code: ErrorCode,
    /// Where, when known.
    pub location: Option<ErrorLocation>,
    /// Human-readable explanation (MSA-3, ERR-8).
    pub message: String,
}

/// What the receiver adds to every ACK.
#[derive(Debug, Clone, Default)]
pub struct AckOptions {
    /// MSH-10 of the ACK: a new control id, unique per ACK.
    pub control_id: String,
    /// MSH-7 of the ACK, HL7 DTM (see [`timestamp`]).
    pub timestamp: String,
    /// MSH-3 of the ACK when the received MSH-5 is empty (e.g. `READGATE`).
    pub application: Option<String>,
    /// MSH-4 of the ACK when the received MSH-6 is empty.
    pub facility: Option<String>,
}

/// MSA-3 is 80 characters in 2.3.1/2.5; ERR-8 is 250.
const MSA3_MAX: usize = 80;
const ERR8_MAX: usize = 250;

fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// True when `version` (MSH-12, e.g. `2.3.1`) is known and older than 2.5.
fn before_2_5(version: &str) -> bool {
    let mut parts = version.trim().split('.');
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts
        .next()
        .map(|p| p.parse::<u32>().ok())
        .unwrap_or(Some(0));
    match (major, minor) {
        (Some(major), Some(minor)) => (major, minor) < (2, 5),
        _ => false,
    }
}

fn hd(d: &Delimiters, v: &HierarchicDesignator) -> String {
    let parts = [&v.namespace_id, &v.universal_id, &v.universal_id_type]
        .map(|p| p.as_deref().map(|s| d.escape(s)).unwrap_or_default());
    let mut s = parts.join(&d.component.to_string());
    while s.ends_with(d.component) {
        s.pop();
    }
    s
}

/// Build an original-mode ACK for `received` (or for an unreadable message when
/// `None`). `error` should be given for AE/AR; it is ignored for AA.
///
/// The ACK's MSH swaps sending/receiving application and facility, keeps the
/// received delimiters, says `ACK^<trigger>^ACK`, echoes MSH-11, MSH-12, MSH-18 and
/// MSH-20. MSA-2 echoes the received MSH-10. Segments end with CR.
pub fn build(
    received: Option<&Header>,
    code: AckCode,
    error: Option<&AckError>,
    options: &AckOptions,
) -> String {
    let default_header;
    let h = match received {
        Some(h) => h,
        None => {
            default_header = Header::default();
            &default_header
        }
    };
    let d = &h.delimiters;
    let fs = d.field.to_string();
    let cs = d.component;

    let own_app = if h.receiving_application.is_empty() {
        options
            .application
            .as_deref()
            .map(|s| d.escape(s))
            .unwrap_or_default()
    } else {
        hd(d, &h.receiving_application)
    };
    let own_facility = if h.receiving_facility.is_empty() {
        options
            .facility
            .as_deref()
            .map(|s| d.escape(s))
            .unwrap_or_default()
    } else {
        hd(d, &h.receiving_facility)
    };
    let trigger = d.escape(&h.message_type.trigger);
    let message_type = if trigger.is_empty() {
        "ACK".to_string()
    } else {
        format!("ACK{cs}{trigger}{cs}ACK")
    };
    let processing_id = if h.processing_id.is_empty() {
        "P".to_string()
    } else {
        d.escape(&h.processing_id)
    };
    let version = if h.version.is_empty() {
        "2.5".to_string()
    } else {
        d.escape(&h.version)
    };

    // MSH-1 is the separator itself, so MSH-2 follows it directly.
    let mut msh: Vec<String> = vec![
        format!("MSH{}{}", d.field, d.encoding_characters()),
        own_app,
        own_facility,
        hd(d, &h.sending_application),
        hd(d, &h.sending_facility),
        d.escape(&options.timestamp),
        String::new(),
        message_type,
        d.escape(&options.control_id),
        processing_id,
        version,
        String::new(), // MSH-13
        String::new(), // MSH-14
        String::new(), // MSH-15
        String::new(), // MSH-16
        String::new(), // MSH-17
        // MSH-18/20 are echoed raw: they were valid in the received message's delimiters.
        h.character_set.clone(),
        String::new(), // MSH-19
        h.alternate_charset_handling.clone(),
    ];
    while msh.len() > 11 && msh.last().is_some_and(String::is_empty) {
        msh.pop();
    }

    // With AA the explanation still goes into MSA-3 (e.g. "not processed"), but there
    // is no error to report in ERR.
    let text = error
        .map(|e| d.escape(truncate_chars(&e.message, MSA3_MAX)))
        .unwrap_or_default();
    let error = error.filter(|_| code != AckCode::Accept);
    let mut msa = vec![
        "MSA".to_string(),
        code.as_str().to_string(),
        d.escape(&h.control_id),
    ];
    if !text.is_empty() {
        msa.push(text);
    }

    let mut out = msh.join(&fs);
    out.push('\r');
    out.push_str(&msa.join(&fs));
    out.push('\r');
    if let Some(e) = error {
        out.push_str(&err_segment(h, d, e));
        out.push('\r');
    }
    out
}

fn err_segment(h: &Header, d: &Delimiters, e: &AckError) -> String {
    let cs = d.component;
    let ss = d.subcomponent;
    let fs = d.field;
    let (seg, seq, field) = match &e.location {
        Some(l) => (
            d.escape(&l.segment),
            l.sequence.to_string(),
            l.field.map(|f| f.to_string()).unwrap_or_default(),
        ),
        None => Default::default(),
    };
    let code = e.code.code();
    let code_text = e.code.text();
    if before_2_5(&h.version) {
        // ELD: segment id ^ sequence ^ field position ^ code identifying error (CE,
        // whose parts are subcomponents here).
        format!("ERR{fs}{seg}{cs}{seq}{cs}{field}{cs}{code}{ss}{code_text}{ss}HL70357")
    } else {
        let location = if seg.is_empty() {
            String::new()
        } else {
            let mut l = format!("{seg}{cs}{seq}{cs}{field}");
            while l.ends_with(cs) {
                l.pop();
            }
            l
        };
        let message = d.escape(truncate_chars(&e.message, ERR8_MAX));
        format!("ERR{fs}{fs}{location}{fs}{code}{cs}{code_text}{cs}HL70357{fs}E{fs}{fs}{fs}{fs}{message}")
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> AckOptions {
        AckOptions {
            control_id: "ACK0001".into(),
            timestamp: "20240601120000+0900".into(),
            application: Some("READGATE".into()),
            facility: None,
        }
    }

    #[test]
    fn version_comparison() {
        assert!(before_2_5("2.3.1"));
        assert!(before_2_5("2.4"));
        assert!(before_2_5("2"));
        assert!(!before_2_5("2.5"));
        assert!(!before_2_5("2.5.1"));
        assert!(!before_2_5("2.10"));
        assert!(!before_2_5(""));
        assert!(!before_2_5("x"));
    }

    #[test]
    fn ack_without_any_received_header() {
        let err = AckError {
            code: ErrorCode::ApplicationInternalError,
            location: None,
            message: "not an HL7 message".into(),
        };
        let ack = build(None, AckCode::Reject, Some(&err), &opts());
        assert_eq!(
            ack,
            "MSH|^~\\&|READGATE||||20240601120000+0900||ACK|ACK0001|P|2.5\r\
             MSA|AR||not an HL7 message\r\
             ERR|||207^Application internal error^HL70357|E||||not an HL7 message\r"
        );
    }

    #[test]
    fn truncation_is_char_safe() {
        let long = "山".repeat(100);
        assert_eq!(truncate_chars(&long, 80).chars().count(), 80);
        assert_eq!(truncate_chars("abc", 80), "abc");
    }
}
