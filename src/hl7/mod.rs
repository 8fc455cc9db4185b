//! HL7 v2 intake for readgate: MLLP framing, character sets, typed extraction of
//! orders/reports/merges, and original-mode ACKs.
//!
//! Everything here is pure (no sockets, no storage) except the MLLP read/write
//! helpers. The pieces, in the order a listener uses them:
//!
//! 1. [`mllp::Decoder`] / [`mllp::read_frame`]: bytes from the socket → payloads.
//! 2. [`charset::decode`]: payload bytes → `String`, per MSH-18 (ISO-2022-JP, UTF-8,
//!    Shift_JIS, ASCII; a configured default when MSH-18 is empty).
//! 3. [`message::parse`]: text → [`message::Parsed`] (`Order`, `Report`, `Merge`,
//!    `PatientUpdate`, `Other`), or a typed error: [`message::ParseError`] (answer AR)
//!    or [`message::ContentError`] (answer AE with an ERR segment).
//! 4. [`ack::build`] + [`charset::encode`] + [`mllp::encode_frame`]: the reply.
//!
//! [`process`] runs steps 2-4 for one payload and never panics; a listener needs
//! only:
//!
//! ```no_run
//! # async fn serve(mut sock: tokio::net::TcpStream) -> std::io::Result<()> {
//! use readgate::hl7::{self, mllp};
//! let config = hl7::Config::default();
//! let mut decoder = mllp::Decoder::default();
//! let mut n = 0u64;
//! while let Some(item) = mllp::read_frame(&mut sock, &mut decoder).await? {
//!     let Ok(frame) = item else { continue }; // framing errors: log and go on
//!     n += 1;
//!     let now = hl7::ack::timestamp(std::time::SystemTime::now());
//!     let outcome = hl7::process(&frame, &config, &format!("RG{n}"), &now);
//!     // store outcome.result (serde-serialisable) ...
//!     if outcome.should_reply() {
//!         mllp::write_frame(&mut sock, &outcome.ack_bytes).await?;
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod ack;
pub mod charset;
pub mod escape;
pub mod message;
pub mod mllp;

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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_charset: Charset::Ascii,
            accept_unsupported_types: false,
            application: Some("READGATE".to_string()),
            facility: None,
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
        Ok(text) => match message::parse(&text) {
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
