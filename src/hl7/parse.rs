//! The parser: decoded text → [`Parsed`]. Reads the delimiters from MSH-1/MSH-2,
//! normalises segment separators, parses structure with hl7-parser 0.3 under
//! `catch_unwind`, rejects what hl7-parser would silently drop, builds the
//! [`Header`] and hands the segments to the extractor by message type.

use hl7_parser::Message;

use crate::config::{FieldPath, Hl7Limits};

use super::charset;
use super::error::{ContentError, MessageError, ParseError};
use super::escape::Delimiters;
use super::extract::{Extractor, Segments};
use super::types::{
    Header, HierarchicDesignator, Merge, MessageType, Order, Parsed, PatientUpdate, Report,
    Timestamp,
};

/// Parse decoded message text into a [`Parsed`] value, within the default
/// [`Hl7Limits`]. Segment separators may be CR, LF or CRLF; blank lines are ignored.
/// Never panics.
pub fn parse(text: &str) -> Result<Parsed, MessageError> {
    parse_within(text, &Hl7Limits::default())
}

/// [`parse`] within `limits`: a message with more structure than they allow is refused
/// before the parser allocates anything per element.
pub fn parse_within(text: &str, limits: &Hl7Limits) -> Result<Parsed, MessageError> {
    parse_guarded(text, limits, None)
}

/// [`parse`] as an interface's [`Config`](super::Config) says: within its limits, and
/// reading its configured fields (the expected image count of orders).
pub fn parse_for(text: &str, config: &super::Config) -> Result<Parsed, MessageError> {
    parse_guarded(text, &config.limits, config.expected_images.as_ref())
}

fn parse_guarded(
    text: &str,
    limits: &Hl7Limits,
    expected_images: Option<&FieldPath>,
) -> Result<Parsed, MessageError> {
    match std::panic::catch_unwind(|| parse_inner(text, limits, expected_images)) {
        Ok(result) => result,
        Err(payload) => Err(MessageError::Parse(ParseError::Panicked(panic_text(
            payload.as_ref(),
        )))),
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Best-effort MSH of decoded text that [`parse`] rejected, for addressing the ACK.
/// `None` when there is no MSH with usable delimiters.
pub fn recover_header(text: &str) -> Option<Header> {
    let text = text.trim_start_matches(['\u{feff}', '\r', '\n', ' ', '\t']);
    let line = text.split(['\r', '\n']).next()?;
    let delimiters = read_delimiters(line).ok()?;
    let fields = split_msh_line(line, &delimiters);
    Some(header_from_fields(&fields, delimiters))
}

/// Best-effort MSH of raw bytes that could not even be decoded (unknown charset,
/// malformed bytes): fields are scanned as bytes and non-ASCII becomes `?`.
pub fn recover_header_from_bytes(raw: &[u8]) -> Option<Header> {
    let msh = charset::scan_msh(raw, false)?;
    let sep = char::from(*msh.field(1).first()?);
    let mut line = String::from("MSH");
    for n in 2..=msh.len() {
        line.push(sep);
        line.extend(msh.field(n).iter().map(|&b| {
            if b.is_ascii() && !b.is_ascii_control() {
                b as char
            } else {
                '?'
            }
        }));
    }
    recover_header(&line)
}

// ---------------------------------------------------------------------------
// Delimiters and normalisation
// ---------------------------------------------------------------------------

fn is_delimiter_char(c: char) -> bool {
    c.is_ascii_graphic() && !c.is_ascii_alphanumeric()
}

/// Read MSH-1/MSH-2 from the MSH line.
fn read_delimiters(line: &str) -> Result<Delimiters, ParseError> {
    let rest = line.strip_prefix("MSH").ok_or(ParseError::NoMsh)?;
    let mut chars = rest.chars();
    let field = chars
        .next()
        .filter(|&c| is_delimiter_char(c))
        .ok_or_else(|| ParseError::BadDelimiters(rest.chars().take(6).collect()))?;
    let enc: Vec<char> = chars.take_while(|&c| c != field).collect();
    let bad = || ParseError::BadDelimiters(format!("{field}{}", enc.iter().collect::<String>()));
    if !(4..=5).contains(&enc.len()) || !enc.iter().all(|&c| is_delimiter_char(c)) {
        return Err(bad());
    }
    let mut all = enc.clone();
    all.push(field);
    all.sort_unstable();
    all.dedup();
    if all.len() != enc.len() + 1 {
        return Err(bad());
    }
    Ok(Delimiters {
        field,
        component: enc[0],
        repetition: enc[1],
        escape: enc[2],
        subcomponent: enc[3],
        truncation: enc.get(4).copied(),
    })
}

/// Split segments on CR, LF or CRLF, drop blank lines, make field-less segments
/// (`ZDS`) parsable, and drop the 2.7 truncation character from MSH-2 (hl7-parser
/// reads exactly four encoding characters). Returns the segments joined by CR.
fn normalise(text: &str, d: &Delimiters) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut first = true;
    for line in text.split(['\r', '\n']) {
        if line.trim().is_empty() {
            continue;
        }
        if !first {
            out.push('\r');
        }
        if first {
            // MSH + field separator + 4 encoding characters, then the rest after MSH-2.
            out.push_str("MSH");
            out.push(d.field);
            out.push(d.component);
            out.push(d.repetition);
            out.push(d.escape);
            out.push(d.subcomponent);
            let skip = 3 + d.field.len_utf8() + d.encoding_characters().len();
            out.push_str(line.get(skip..).unwrap_or(""));
            first = false;
            continue;
        }
        out.push_str(line);
        if line.chars().count() == 3 {
            out.push(d.field);
        }
    }
    out
}

fn split_msh_line(line: &str, d: &Delimiters) -> Vec<String> {
    // fields[0] = MSH-1; fields[1] = MSH-2; fields[n-1] = MSH-n.
    let mut fields = vec![d.field.to_string()];
    let body = line.get(3 + d.field.len_utf8()..).unwrap_or("");
    fields.extend(body.split(d.field).map(str::to_string));
    fields
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

fn parse_inner(
    text: &str,
    limits: &Hl7Limits,
    expected_images: Option<&FieldPath>,
) -> Result<Parsed, MessageError> {
    let trimmed = text.trim_start_matches(['\u{feff}', '\r', '\n', ' ', '\t']);
    if trimmed.trim().is_empty() {
        return Err(ParseError::Empty.into());
    }
    let first_line = trimmed.split(['\r', '\n']).next().unwrap_or("");
    if !first_line.starts_with("MSH") {
        return Err(ParseError::NoMsh.into());
    }
    let d = read_delimiters(first_line)?;
    let normalised = normalise(trimmed, &d);
    super::limits::check(&normalised, &d, limits)?;
    let message = Message::parse(&normalised).map_err(|e| ParseError::Syntax(e.to_string()))?;
    // hl7-parser stops quietly at the first segment it cannot read; refuse instead
    // of silently dropping the rest of the message.
    let consumed = message.raw_value().len();
    if !normalised
        .get(consumed..)
        .unwrap_or("")
        .trim_matches('\r')
        .is_empty()
    {
        let line = message.segments.len() + 1;
        let fragment = normalised
            .split('\r')
            .nth(line - 1)
            .unwrap_or("")
            .chars()
            .take(20)
            .collect();
        return Err(ParseError::BadSegment { line, fragment }.into());
    }

    if let Some((i, seg)) = message
        .segments
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, s)| matches!(s.name, "MSH" | "FHS" | "BHS" | "BTS" | "FTS"))
    {
        return Err(ParseError::MultipleMessages {
            line: i + 1,
            segment: seg.name.to_string(),
        }
        .into());
    }

    let msh_fields: Vec<String> = message
        .segments
        .first()
        .map(|msh| {
            msh.fields
                .iter()
                .map(|f| f.raw_value().to_string())
                .collect()
        })
        .unwrap_or_default();
    let header = header_from_fields(&msh_fields, d);
    let x = Extractor {
        d,
        expected_images: expected_images.cloned(),
    };
    let content = |error: ContentError| MessageError::Content {
        header: Box::new(header.clone()),
        error,
    };
    if header.message_type.code.is_empty() {
        return Err(content(ContentError::missing_field(
            "MSH",
            1,
            9,
            "message type (MSH-9) is empty",
        )));
    }
    if header.control_id.is_empty() {
        return Err(content(ContentError::missing_field(
            "MSH",
            1,
            10,
            "message control id (MSH-10) is empty",
        )));
    }
    let segments = Segments::new(&message.segments);
    let code = header.message_type.code.to_ascii_uppercase();
    let trigger = header.message_type.trigger.to_ascii_uppercase();
    let result = match (code.as_str(), trigger.as_str()) {
        ("ORM", "O01") | ("OMI", "O23") => x.order(&segments, code == "OMI").map(
            |(patient, allergies, patient_notes, requests, warnings)| {
                Parsed::Order(Order {
                    header: header.clone(),
                    patient,
                    allergies,
                    patient_notes,
                    requests,
                    warnings,
                })
            },
        ),
        ("ORU", "R01") => x.report(&segments).map(|(patient, results)| {
            Parsed::Report(Report {
                header: header.clone(),
                patient,
                results,
            })
        }),
        ("ADT", "A40") => x.merge(&segments).map(|merges| {
            Parsed::Merge(Merge {
                header: header.clone(),
                merges,
            })
        }),
        ("ADT", "A08") | ("ADT", "A31") => x.required_patient(&segments).map(|patient| {
            Parsed::PatientUpdate(PatientUpdate {
                header: header.clone(),
                patient,
            })
        }),
        _ => Ok(Parsed::Other {
            message_type: header.message_type.to_string(),
            header: header.clone(),
        }),
    };
    result.map_err(content)
}

/// Split a raw field value into (repetition 1) component `c`, subcomponent `s`.
fn raw_part<'a>(raw: &'a str, d: &Delimiters, c: usize, s: usize) -> &'a str {
    raw.split(d.repetition)
        .next()
        .and_then(|r| r.split(d.component).nth(c.saturating_sub(1)))
        .and_then(|comp| comp.split(d.subcomponent).nth(s.saturating_sub(1)))
        .unwrap_or("")
}

/// Build the header from MSH fields given raw (escaped) and numbered like HL7 from
/// index 0 = MSH-1. Shared by the parser path and the recovery paths.
fn header_from_fields(fields: &[String], d: Delimiters) -> Header {
    let x = Extractor {
        d,
        expected_images: None,
    };
    let raw = |n: usize| fields.get(n - 1).map(String::as_str).unwrap_or("");
    let part = |n: usize, c: usize, s: usize| x.clean(raw_part(raw(n), &d, c, s));
    let hd = |n: usize| HierarchicDesignator {
        namespace_id: part(n, 1, 1),
        universal_id: part(n, 2, 1),
        universal_id_type: part(n, 3, 1),
    };
    Header {
        delimiters: d,
        sending_application: hd(3),
        sending_facility: hd(4),
        receiving_application: hd(5),
        receiving_facility: hd(6),
        message_time: part(7, 1, 1).map(|t| Timestamp::new(&t)),
        message_type: MessageType {
            code: part(9, 1, 1).unwrap_or_default(),
            trigger: part(9, 2, 1).unwrap_or_default(),
            structure: part(9, 3, 1).unwrap_or_default(),
        },
        control_id: x.clean(raw(10)).unwrap_or_default(),
        processing_id: part(11, 1, 1).unwrap_or_default(),
        version: part(12, 1, 1).unwrap_or_default(),
        accept_ack_type: part(15, 1, 1),
        application_ack_type: part(16, 1, 1),
        character_set: raw(18).trim().to_string(),
        alternate_charset_handling: raw(20).trim().to_string(),
    }
}
