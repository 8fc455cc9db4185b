//! The errors of the HL7 library and their HL7 codes: table 0357 codes and ERR
//! locations ([`ErrorCode`], [`ErrorLocation`]), used both by the parser
//! ([`ParseError`], [`ContentError`], [`MessageError`]) and by ACK building. They
//! live below both so that the parser and `ack` do not import each other.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::types::Header;

/// HL7 table 0357 (message error condition codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// 100 Segment sequence error (a required segment is missing or misplaced).
    SegmentSequenceError,
    /// 101 Required field missing.
    RequiredFieldMissing,
    /// 102 Data type error.
    DataTypeError,
    /// 103 Table value not found.
    TableValueNotFound,
    /// 200 Unsupported message type.
    UnsupportedMessageType,
    /// 201 Unsupported event code.
    UnsupportedEventCode,
    /// 202 Unsupported processing id.
    UnsupportedProcessingId,
    /// 203 Unsupported version id.
    UnsupportedVersionId,
    /// 204 Unknown key identifier.
    UnknownKeyIdentifier,
    /// 205 Duplicate key identifier.
    DuplicateKeyIdentifier,
    /// 206 Application record locked.
    ApplicationRecordLocked,
    /// 207 Application internal error.
    ApplicationInternalError,
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::SegmentSequenceError => 100,
            ErrorCode::RequiredFieldMissing => 101,
            ErrorCode::DataTypeError => 102,
            ErrorCode::TableValueNotFound => 103,
            ErrorCode::UnsupportedMessageType => 200,
            ErrorCode::UnsupportedEventCode => 201,
            ErrorCode::UnsupportedProcessingId => 202,
            ErrorCode::UnsupportedVersionId => 203,
            ErrorCode::UnknownKeyIdentifier => 204,
            ErrorCode::DuplicateKeyIdentifier => 205,
            ErrorCode::ApplicationRecordLocked => 206,
            ErrorCode::ApplicationInternalError => 207,
        }
    }

    /// The table's text for the code.
    pub fn text(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequenceError => "Segment sequence error",
            ErrorCode::RequiredFieldMissing => "Required field missing",
            ErrorCode::DataTypeError => "Data type error",
            ErrorCode::TableValueNotFound => "Table value not found",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::UnsupportedEventCode => "Unsupported event code",
            ErrorCode::UnsupportedProcessingId => "Unsupported processing id",
            ErrorCode::UnsupportedVersionId => "Unsupported version id",
            ErrorCode::UnknownKeyIdentifier => "Unknown key identifier",
            ErrorCode::DuplicateKeyIdentifier => "Duplicate key identifier",
            ErrorCode::ApplicationRecordLocked => "Application record locked",
            ErrorCode::ApplicationInternalError => "Application internal error",
        }
    }
}

/// Where an error is: segment id, its occurrence in the message (1-based), and the
/// field number when one field is at fault.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ErrorLocation {
    /// Segment id, e.g. `OBR`.
    pub segment: String,
    /// Occurrence of that segment in the message, 1-based.
    pub sequence: u32,
    /// Field number, when one field is at fault.
    pub field: Option<u32>,
}

impl ErrorLocation {
    /// A location at a field of the `sequence`-th `segment`.
    pub fn field(segment: &str, sequence: u32, field: u32) -> Self {
        ErrorLocation {
            segment: segment.to_string(),
            sequence,
            field: Some(field),
        }
    }

    /// A location naming a whole segment (e.g. a missing one).
    pub fn segment(segment: &str, sequence: u32) -> Self {
        ErrorLocation {
            segment: segment.to_string(),
            sequence,
            field: None,
        }
    }
}

impl fmt::Display for ErrorLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "{}[{}]-{}", self.segment, self.sequence, field),
            None => write!(f, "{}[{}]", self.segment, self.sequence),
        }
    }
}

/// The text is not a parsable HL7 message: answer AR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but whitespace.
    #[error("empty message")]
    Empty,
    /// The first segment is not MSH.
    #[error("message does not start with an MSH segment")]
    NoMsh,
    /// MSH-1/MSH-2 are not usable delimiters.
    #[error("invalid delimiters in MSH-1/MSH-2: {0:?}")]
    BadDelimiters(String),
    /// A segment the parser could not read (bad segment id...).
    #[error("segment {line} cannot be parsed: {fragment:?}")]
    BadSegment {
        /// 1-based segment (line) number.
        line: usize,
        /// The start of the segment.
        fragment: String,
    },
    /// A second MSH (or a batch header) inside the payload: two messages in one
    /// frame would otherwise mix one patient's order with another's.
    #[error("segment {line} starts another message ({segment}); one message per frame")]
    MultipleMessages {
        /// 1-based segment (line) number.
        line: usize,
        /// The segment id found (MSH, FHS, BHS...).
        segment: String,
    },
    /// More structure than `[hl7.limits]` allows.
    #[error("segment {line} ({segment}) field {field}: more than {limit} {what}")]
    TooComplex {
        /// 1-based segment (line) number.
        line: usize,
        /// The segment id, and which occurrence of it this is.
        segment: String,
        sequence: u32,
        /// The field being read when the bound was passed.
        field: usize,
        /// What was counted, e.g. "repetitions in a field".
        what: &'static str,
        limit: usize,
    },
    /// hl7-parser rejected the message.
    #[error("HL7 syntax error: {0}")]
    Syntax(String),
    /// hl7-parser (or the extraction) panicked; the panic was contained.
    #[error("internal parser failure (contained panic): {0}")]
    Panicked(String),
}

impl ParseError {
    /// Location for the ERR segment.
    pub fn location(&self) -> Option<ErrorLocation> {
        match self {
            ParseError::Empty | ParseError::NoMsh => Some(ErrorLocation::segment("MSH", 1)),
            ParseError::BadDelimiters(_) => Some(ErrorLocation::field("MSH", 1, 2)),
            ParseError::TooComplex {
                segment,
                sequence,
                field,
                ..
            } => Some(ErrorLocation::field(
                segment,
                *sequence,
                u32::try_from(*field).unwrap_or(u32::MAX),
            )),
            _ => None,
        }
    }

    /// HL7 error code for the ERR segment.
    pub fn code(&self) -> ErrorCode {
        match self {
            ParseError::Empty
            | ParseError::NoMsh
            | ParseError::BadSegment { .. }
            | ParseError::MultipleMessages { .. } => ErrorCode::SegmentSequenceError,
            ParseError::BadDelimiters(_)
            | ParseError::Syntax(_)
            | ParseError::TooComplex { .. } => ErrorCode::DataTypeError,
            ParseError::Panicked(_) => ErrorCode::ApplicationInternalError,
        }
    }
}

/// The message parsed but its content is unusable: answer AE with an ERR segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{location}: {reason}")]
pub struct ContentError {
    /// Segment, occurrence and field at fault.
    pub location: ErrorLocation,
    /// HL7 error code (101 required field missing, 100 missing segment...).
    pub code: ErrorCode,
    /// Explanation for the log and the ACK.
    pub reason: String,
}

impl ContentError {
    pub(crate) fn missing_field(segment: &str, sequence: u32, field: u32, reason: &str) -> Self {
        ContentError {
            location: ErrorLocation::field(segment, sequence, field),
            code: ErrorCode::RequiredFieldMissing,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn missing_segment(segment: &str, reason: &str) -> Self {
        ContentError {
            location: ErrorLocation::segment(segment, 1),
            code: ErrorCode::SegmentSequenceError,
            reason: reason.to_string(),
        }
    }
}

/// Why [`parse`](super::parse::parse) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Not parsable: AR.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// Parsable but unusable: AE. Carries the header so the ACK can be addressed.
    #[error("{error}")]
    Content {
        /// The message's MSH.
        header: Box<Header>,
        /// What is wrong.
        error: ContentError,
    },
}

impl MessageError {
    /// The header, when the MSH could be read.
    pub fn header(&self) -> Option<&Header> {
        match self {
            MessageError::Parse(_) => None,
            MessageError::Content { header, .. } => Some(header),
        }
    }
}
