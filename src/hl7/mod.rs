//! HL7 v2 as a pure library: MLLP framing, character sets, escapes, typed
//! extraction of orders/reports/merges, and original-mode ACKs.
//!
//! Everything here is pure: no sockets, no files, no storage, no configuration
//! file (the receiving side's choices come in as [`Config`]). The MLLP service that
//! puts this on the network and stores messages is [`crate::intake`]. The pieces, in
//! the order a listener uses them:
//!
//! 1. [`mllp::Decoder`]: bytes from the socket → payloads.
//! 2. [`charset::decode`]: payload bytes → `String`, per MSH-18 (ISO-2022-JP, UTF-8,
//!    Shift_JIS, ASCII; a configured default when MSH-18 is empty).
//! 3. [`message::parse`]: text → [`message::Parsed`] (`Order`, `Report`, `Merge`,
//!    `PatientUpdate`, `Other`), or a typed error: [`message::ParseError`] (answer AR)
//!    or [`message::ContentError`] (answer AE with an ERR segment).
//! 4. [`ack::build`] + [`charset::encode`] + [`mllp::encode_frame`]: the reply.
//!
//! Inside, `message` is the public face of the parser, whose code is split by
//! concern: `types` (the values), `error` (errors and HL7 error codes, shared with
//! `ack`), `parse` (entry points), `extract` (field extraction, one file per
//! message family); HL7 DTM times are read and written by the one clock,
//! [`crate::time`]. Imports go one way: `escape`, `charset` ← `types` ← `error` ←
//! `extract` ← `parse`; `ack` uses `types` and `error`, never the parser.
//!
//! [`process`] runs steps 2-4 for one payload and never panics; a listener needs
//! only (the socket helpers are in [`crate::intake::mllp`]):
//!
//! ```no_run
//! # async fn serve(mut sock: tokio::net::TcpStream) -> std::io::Result<()> {
//! use readgate::hl7::{self, mllp};
//! use readgate::intake::mllp::{read_frame, write_frame};
//! let config = hl7::Config::default();
//! let mut decoder = mllp::Decoder::default();
//! let mut n = 0u64;
//! while let Some(item) = read_frame(&mut sock, &mut decoder).await? {
//!     let Ok(frame) = item else { continue }; // framing errors: log and go on
//!     n += 1;
//!     let now = hl7::ack::timestamp(std::time::SystemTime::now());
//!     let outcome = hl7::process(&frame, &config, &format!("RG{n}"), &now);
//!     // store outcome.result (serde-serialisable) ...
//!     if outcome.should_reply() {
//!         write_frame(&mut sock, &outcome.ack_bytes).await?;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Wrap `read_frame` in `tokio::time::timeout` (the helpers have no timers). The
//! panic guards rely on the default `panic = "unwind"`; a contained panic still
//! prints through the panic hook.
//!
//! # Known gaps
//!
//! * One message per frame: batches (FHS/BHS) are not split.
//! * Original-mode ACKs only; MSH-15/16 (enhanced mode) are exposed in the
//!   [`Header`] but not acted on.
//! * Charsets: no ISO 8859 (answered AR, error 103), no JIS X 0212 (`ISO IR159`)
//!   characters, no 8-bit katakana mixed into ISO 2022 text (`ISO IR13~ISO IR87`).
//!   `\Xhh\` escapes are expanded only when they form UTF-8.
//! * Patients: PID-3, PID-5, PID-7, PID-8 only (not PID-2/PID-4, addresses,
//!   phones).
//! * Orders: the first IPC of a group gives accession, study UID, modality; later
//!   IPCs add protocol codes only. DG1/OBX before the first ORC are copied into
//!   every request. Coded OBX-5 values are kept as `code^text^system` text.
//! * Reports: accession from OBR-18 only; study UID from ZDS-1 or an OBX naming
//!   the Study Instance UID. An OBR-32/33 whose first component has no
//!   subcomponents is read as `id^family^given` unless component 2 starts with a
//!   digit (then as NDL `id^start^end`). Embedded documents (ED) are not decoded.
//! * Merges: ADT^A40 only (not A18/A30/A34/A35/A36/A39); ADT^A31 is read like A08.

pub mod ack;
pub mod charset;
mod error;
pub mod escape;
mod extract;
mod limits;
pub mod message;
pub mod mllp;
mod parse;
mod types;

#[cfg(test)]
mod message_tests;

use serde::{Deserialize, Serialize};

pub use ack::{AckCode, AckError, AckOptions, ErrorCode, ErrorLocation};
pub use charset::{Charset, CharsetError, Detection};
pub use message::{ContentError, Header, MessageError, ParseError, Parsed};

/// What the receiving side decides once, for all messages of an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Charset for messages whose MSH-18 is empty (many Japanese senders leave it
    /// empty and send Shift_JIS).
    pub default_charset: Charset,
    /// Answer AA (true) or AR with error 200/201 (false) to message types readgate
    /// does not handle. Either way the result is `Ok(Parsed::Other { .. })`.
    pub accept_unsupported_types: bool,
    /// MSH-3 of ACKs when the sender left MSH-5 empty.
    pub application: Option<String>,
    /// MSH-4 of ACKs when the sender left MSH-6 empty.
    pub facility: Option<String>,
    /// How much structure one message may have.
    pub limits: crate::config::Hl7Limits,
    /// The field of an order that states its expected number of images
    /// (`hl7.expected_images_field`); `None`: not read.
    pub expected_images: Option<crate::config::FieldPath>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_charset: Charset::Ascii,
            accept_unsupported_types: false,
            application: Some("READGATE".to_string()),
            facility: None,
            limits: crate::config::Hl7Limits::default(),
            expected_images: None,
        }
    }
}

/// Why a payload was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The bytes could not be decoded (AR).
    #[error(transparent)]
    Charset(#[from] CharsetError),
    /// The text is not a parsable HL7 message (AR).
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The message is unusable (AE).
    #[error(transparent)]
    Content(#[from] ContentError),
}

impl Error {
    /// AR for unreadable input, AE for unusable content.
    pub fn ack_code(&self) -> AckCode {
        match self {
            Error::Charset(_) | Error::Parse(_) => AckCode::Reject,
            Error::Content(_) => AckCode::Error,
        }
    }

    /// The ERR segment content for this error.
    pub fn ack_error(&self) -> AckError {
        let (code, location) = match self {
            Error::Charset(CharsetError::Unsupported { .. }) => (
                ErrorCode::TableValueNotFound,
                Some(ErrorLocation::field("MSH", 1, 18)),
            ),
            Error::Charset(CharsetError::Malformed { .. }) => (
                ErrorCode::DataTypeError,
                Some(ErrorLocation::field("MSH", 1, 18)),
            ),
            Error::Parse(e) => (e.code(), e.location()),
            Error::Content(e) => (e.code, Some(e.location.clone())),
        };
        AckError {
            code,
            location,
            message: match self {
                Error::Content(e) => e.reason.clone(),
                other => other.to_string(),
            },
        }
    }
}

/// Everything [`process`] found out about one payload.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The received MSH, parsed or recovered best-effort (`None` if there is no
    /// readable MSH at all).
    pub header: Option<Header>,
    /// How the charset was chosen (`None` when MSH-18 named an unknown charset).
    pub detection: Option<Detection>,
    /// The parsed message or why not.
    pub result: Result<Parsed, Error>,
    /// MSA-1 of the ACK.
    pub ack_code: AckCode,
    /// The ACK text (segments end with CR).
    pub ack: String,
    /// The ACK encoded in the sender's charset, ready for [`mllp::encode_frame`].
    pub ack_bytes: Vec<u8>,
}

impl Outcome {
    /// False when the received message is itself an acknowledgement: HL7 forbids
    /// acknowledging an ACK (it would make two systems ping-pong).
    pub fn should_reply(&self) -> bool {
        !self
            .header
            .as_ref()
            .is_some_and(|h| h.message_type.code.eq_ignore_ascii_case("ACK"))
    }
}

/// Decode, parse and acknowledge one MLLP payload. Never panics and always produces
/// an ACK (for unreadable input: `|^~\&`, no MSA-2, AR). `control_id` becomes MSH-10
/// of the ACK; `timestamp` its MSH-7 (see [`ack::timestamp`]).
pub fn process(frame: &[u8], config: &Config, control_id: &str, timestamp: &str) -> Outcome {
    let options = AckOptions {
        control_id: control_id.to_string(),
        timestamp: timestamp.to_string(),
        application: config.application.clone(),
        facility: config.facility.clone(),
    };
    // The parser is already guarded; this guard covers the rest, so that a bug
    // anywhere still yields an AR instead of a dead connection task.
    std::panic::catch_unwind(|| process_inner(frame, config, &options)).unwrap_or_else(|_| {
        let error = AckError {
            code: ErrorCode::ApplicationInternalError,
            location: None,
            message: "internal error while processing the message".to_string(),
        };
        let ack = ack::build(None, AckCode::Reject, Some(&error), &options);
        Outcome {
            header: None,
            detection: None,
            result: Err(Error::Parse(ParseError::Panicked(error.message.clone()))),
            ack_code: AckCode::Reject,
            ack_bytes: ack.as_bytes().to_vec(),
            ack,
        }
    })
}

fn process_inner(frame: &[u8], config: &Config, options: &AckOptions) -> Outcome {
    let detection = charset::detect(frame, config.default_charset);
    let decoded = detection
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|d| charset::decode_as(frame, d.charset));
    let (header, result): (Option<Header>, Result<Parsed, Error>) = match decoded {
        Err(e) => (message::recover_header_from_bytes(frame), Err(e.into())),
        Ok(text) => match message::parse_for(&text, config) {
            Ok(parsed) => (Some(parsed.header().clone()), Ok(parsed)),
            Err(MessageError::Content { header, error }) => (Some(*header), Err(error.into())),
            Err(MessageError::Parse(e)) => (message::recover_header(&text), Err(e.into())),
        },
    };
    let detection = detection.ok();

    let (ack_code, ack_error) = match &result {
        Err(e) => (e.ack_code(), Some(e.ack_error())),
        Ok(Parsed::Other {
            header,
            message_type,
        }) if !config.accept_unsupported_types => {
            let known_type = matches!(
                header.message_type.code.to_ascii_uppercase().as_str(),
                "ORM" | "OMI" | "ORU" | "ADT"
            );
            let code = if known_type {
                ErrorCode::UnsupportedEventCode
            } else {
                ErrorCode::UnsupportedMessageType
            };
            (
                AckCode::Reject,
                Some(AckError {
                    code,
                    location: Some(ErrorLocation::field("MSH", 1, 9)),
                    message: format!("message type {message_type} is not supported"),
                }),
            )
        }
        Ok(Parsed::Other { message_type, .. }) => (
            AckCode::Accept,
            Some(AckError {
                code: ErrorCode::UnsupportedMessageType,
                location: Some(ErrorLocation::field("MSH", 1, 9)),
                message: format!(
                    "not processed: readgate stores but does not use {}",
                    message_type.replace('^', " ")
                ),
            }),
        ),
        // An order accepted with a value it could not use (an expected image count that
        // is not a number): AA, the warning in MSA-3.
        Ok(Parsed::Order(order)) => (
            AckCode::Accept,
            order.warnings.first().map(|w| AckError {
                code: ErrorCode::DataTypeError,
                location: Some(ErrorLocation::field(&w.segment, w.sequence, w.field)),
                message: w.reason.clone(),
            }),
        ),
        Ok(_) => (AckCode::Accept, None),
    };

    let ack = ack::build(header.as_ref(), ack_code, ack_error.as_ref(), options);
    // Reply in the charset the message used; ASCII when it could not be determined
    // (the recovered header is ASCII then).
    let reply_charset = detection.as_ref().map_or(Charset::Ascii, |d| d.charset);
    let ack_bytes = charset::encode(&ack, reply_charset);
    Outcome {
        header,
        detection,
        result,
        ack_code,
        ack,
        ack_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! sample {
        ($name:literal) => {
            (
                $name,
                include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hl7/", $name))
                    as &[u8],
            )
        };
    }

    const SAMPLES: [(&str, &[u8]); 8] = [
        sample!("omi_o23_iso2022jp.hl7"),
        sample!("orm_o01_ihe.hl7"),
        sample!("oru_r01_prelim.hl7"),
        sample!("oru_r01_final.hl7"),
        sample!("adt_a40_merge.hl7"),
        sample!("malformed_no_msh.hl7"),
        sample!("malformed_truncated.hl7"),
        sample!("orm_missing_accession.hl7"),
    ];

    const NOW: &str = "20240601120000+0900";

    fn run(raw: &[u8], config: &Config) -> Outcome {
        process(raw, config, "ACK42", NOW)
    }

    fn segments(ack: &str) -> Vec<&str> {
        ack.split_terminator('\r').collect()
    }

    #[test]
    fn every_sample_gets_the_expected_ack() {
        let config = Config::default();
        let expected = [
            ("omi_o23_iso2022jp.hl7", AckCode::Accept, "MSA|AA|MSG00001"),
            ("orm_o01_ihe.hl7", AckCode::Accept, "MSA|AA|ORM0001"),
            ("oru_r01_prelim.hl7", AckCode::Accept, "MSA|AA|ORU0001"),
            ("oru_r01_final.hl7", AckCode::Accept, "MSA|AA|ORU0002"),
            ("adt_a40_merge.hl7", AckCode::Accept, "MSA|AA|ADT0001"),
            (
                "malformed_no_msh.hl7",
                AckCode::Reject,
                "MSA|AR||message does not start with an MSH segment",
            ),
            (
                "malformed_truncated.hl7",
                AckCode::Reject,
                "MSA|AR|ORM0001|segment 6 cannot be parsed: \"OB\"",
            ),
            (
                "orm_missing_accession.hl7",
                AckCode::Error,
                "MSA|AE|ORM0002|order has neither an accession number nor a study instance UID",
            ),
        ];
        for ((name, raw), (expected_name, code, msa)) in SAMPLES.iter().zip(expected) {
            assert_eq!(*name, expected_name);
            let o = run(raw, &config);
            assert_eq!(o.ack_code, code, "{name}");
            assert_eq!(segments(&o.ack)[1], msa, "{name}");
            assert!(o.should_reply());
        }
    }

    #[test]
    fn ack_of_the_jahis_order_echoes_charset_and_swaps_parties() {
        let o = run(SAMPLES[0].1, &Config::default());
        assert!(matches!(o.result, Ok(Parsed::Order(_))));
        assert_eq!(
            o.detection.as_ref().map(|d| d.charset),
            Some(Charset::Iso2022Jp)
        );
        assert_eq!(
            o.ack,
            "MSH|^~\\&|READGATE|RAD|HIS|TOKYO_GEN|20240601120000+0900||ACK^O23^ACK|ACK42|P|2.5\
             ||||||~ISO IR87||ISO 2022-1994\rMSA|AA|MSG00001\r"
        );
        assert_eq!(o.ack_bytes, o.ack.as_bytes());
    }

    #[test]
    fn ack_errors_by_version() {
        // 2.3.1: ERR-1 only.
        let o = run(SAMPLES[7].1, &Config::default());
        assert_eq!(
            segments(&o.ack)[2],
            "ERR|OBR^1^18^101&Required field missing&HL70357"
        );
        // 2.5: ERR-2 location, ERR-3 code, ERR-4 severity, ERR-8 message.
        let raw = b"MSH|^~\\&|S|SF|R|RF|20240101||OMI^O23|C1|P|2.5\rPID|||P1\rORC|NW|PL1\rOBR|1|PL1\rIPC||RP1\r";
        let o = run(raw, &Config::default());
        assert_eq!(o.ack_code, AckCode::Error);
        assert_eq!(
            segments(&o.ack)[2],
            "ERR||IPC^1^1|101^Required field missing^HL70357|E||||\
             order has neither an accession number nor a study instance UID"
        );
    }

    #[test]
    fn ack_in_the_senders_charset() {
        // A kanji MSH-4 in ISO-2022-JP (放 = 4A 7C) and a content error: the ACK names
        // the sender's facility in MSH-6 and must go back as ISO-2022-JP.
        let mut raw = b"MSH|^~\\&|HIS|".to_vec();
        raw.extend(charset::encode("放射線科", Charset::Iso2022Jp));
        raw.extend(b"|READGATE||20240101||ORM^O01|C2|P|2.3.1||||||~ISO IR87\rPID|||P1\r");
        let o = run(&raw, &Config::default());
        assert_eq!(o.ack_code, AckCode::Error);
        let msh = segments(&o.ack)[0];
        assert!(
            msh.starts_with("MSH|^~\\&|READGATE||HIS|放射線科|"),
            "{msh}"
        );
        assert_ne!(o.ack_bytes, o.ack.as_bytes());
        assert_eq!(
            charset::decode_as(&o.ack_bytes, Charset::Iso2022Jp).unwrap(),
            o.ack
        );
        // Shift_JIS default, MSH-18 empty: the ACK goes back in Shift_JIS.
        let mut raw = b"MSH|^~\\&|HIS|".to_vec();
        raw.extend(charset::encode("ポート病院", Charset::ShiftJis));
        raw.extend(b"|READGATE||20240101||ADT^A08|C3|P|2.5\rPID|||P1\r");
        let config = Config {
            default_charset: Charset::ShiftJis,
            ..Config::default()
        };
        let o = run(&raw, &config);
        assert_eq!(o.ack_code, AckCode::Accept);
        assert_eq!(
            charset::decode_as(&o.ack_bytes, Charset::ShiftJis).unwrap(),
            o.ack
        );
        assert!(o.ack.contains("|HIS|ポート病院|"));
    }

    #[test]
    fn unsupported_types() {
        let siu = b"MSH|^~\\&|S|SF|R|RF|20240101||SIU^S12|C4|P|2.5\rSCH|1\r";
        let o = run(siu, &Config::default());
        assert!(matches!(o.result, Ok(Parsed::Other { .. })));
        assert_eq!(o.ack_code, AckCode::Reject);
        assert_eq!(
            segments(&o.ack)[2],
            "ERR||MSH^1^9|200^Unsupported message type^HL70357|E||||message type SIU\\S\\S12 is not supported"
        );
        let orm_o02 = b"MSH|^~\\&|S|SF|R|RF|20240101||ORM^O02|C5|P|2.3.1\rPID|||P1\r";
        let o = run(orm_o02, &Config::default());
        assert_eq!(
            segments(&o.ack)[2],
            "ERR|MSH^1^9^201&Unsupported event code&HL70357"
        );
        let accepting = Config {
            accept_unsupported_types: true,
            ..Config::default()
        };
        assert_eq!(run(siu, &accepting).ack_code, AckCode::Accept);
    }

    #[test]
    fn charset_failures_are_rejected_with_a_recovered_header() {
        let raw = b"MSH|^~\\&|S|SF|R|RF|20240101||ORM^O01|C6|P|2.5||||||8859/1\rPID|||M\xFCller\r";
        let o = run(raw, &Config::default());
        assert!(matches!(
            o.result,
            Err(Error::Charset(CharsetError::Unsupported { .. }))
        ));
        assert_eq!(o.ack_code, AckCode::Reject);
        let segs = segments(&o.ack);
        assert_eq!(
            segs[1],
            "MSA|AR|C6|unsupported character set in MSH-18: \"8859/1\""
        );
        assert!(segs[2].starts_with("ERR||MSH^1^18|103^Table value not found^HL70357|E"));

        let raw =
            b"MSH|^~\\&|S|SF|R|RF|20240101||ORM^O01|C7|P|2.5||||||UNICODE UTF-8\rPID|||\xFF\r";
        let o = run(raw, &Config::default());
        assert!(matches!(
            o.result,
            Err(Error::Charset(CharsetError::Malformed {
                charset: Charset::Utf8,
                ..
            }))
        ));
        assert!(segments(&o.ack)[1].starts_with("MSA|AR|C7|message is not valid UTF-8"));
        assert!(segments(&o.ack)[2].starts_with("ERR||MSH^1^18|102^Data type error^HL70357"));
    }

    #[test]
    fn an_ack_is_not_acknowledged() {
        let raw = b"MSH|^~\\&|S|SF|R|RF|20240101||ACK^O01^ACK|C8|P|2.5\rMSA|AA|X\r";
        let o = run(raw, &Config::default());
        assert!(!o.should_reply());
        assert!(o.ack.starts_with("MSH"));
    }

    #[test]
    fn pipelined_samples_through_mllp() {
        let mut wire = b"\r\nnoise".to_vec();
        for (_, raw) in SAMPLES {
            wire.extend(mllp::encode_frame(raw));
        }
        let mut decoder = mllp::Decoder::default();
        let mut rest = &wire[..];
        let mut acks = Vec::new();
        let mut garbage = 0;
        // Pieces of 1 to 97 bytes, in an order that cuts frames at varied places.
        for piece in 0usize.. {
            if rest.is_empty() {
                break;
            }
            let n = (1 + piece * 37 % 97).min(rest.len());
            decoder.push(&rest[..n]);
            rest = &rest[n..];
            while let Some(item) = decoder.next_frame() {
                match item {
                    Ok(frame) => acks.push(run(&frame, &Config::default()).ack_code),
                    Err(mllp::FrameError::Garbage { skipped, .. }) => garbage += skipped,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        assert_eq!(garbage, 5);
        use AckCode::*;
        assert_eq!(
            acks,
            vec![Accept, Accept, Accept, Accept, Accept, Reject, Reject, Error]
        );
    }

    #[test]
    fn a_malformed_expected_image_count_is_accepted_with_a_warning() {
        // OBR-6 holds the count (as configured), OBR-18 the accession.
        let order = |control: &str, count: &str| {
            format!(
                "MSH|^~\\&|RIS|H|RG|R|20240601||ORM^O01|{control}|P|2.5\rPID|||P9\r\
                 ORC|NW|PL9\rOBR|1|PL9||||{count}{}ACC9\r",
                "|".repeat(12)
            )
        };
        let config = Config {
            expected_images: Some("OBR-6".parse().unwrap()),
            ..Config::default()
        };
        let o = run(order("C9", "abc").as_bytes(), &config);
        assert_eq!(o.ack_code, AckCode::Accept);
        let acked = segments(&o.ack);
        assert_eq!(
            acked[1],
            "MSA|AA|C9|expected image count \"abc\" in OBR-6 is not a positive integer; ignored"
        );
        // AA: the warning is in MSA-3, there is no ERR.
        assert_eq!(acked.len(), 2, "{acked:?}");
        let Ok(Parsed::Order(parsed)) = &o.result else {
            panic!("{:?}", o.result)
        };
        assert_eq!(parsed.requests[0].accession_number.as_deref(), Some("ACC9"));
        assert_eq!(parsed.requests[0].expected_images, None);
        assert_eq!(parsed.warnings.len(), 1);
        // A count: AA without a text.
        let o = run(order("C10", "12").as_bytes(), &config);
        assert_eq!(segments(&o.ack)[1], "MSA|AA|C10");
        let Ok(Parsed::Order(parsed)) = &o.result else {
            panic!("{:?}", o.result)
        };
        assert_eq!(parsed.requests[0].expected_images, Some(12));
    }
}
