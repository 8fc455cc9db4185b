//! Typed extraction of the messages readgate consumes.
//!
//! Input is text already decoded by [`super::charset`]. Structure is parsed with
//! hl7-parser 0.3; values are taken raw and unescaped by [`Delimiters::unescape`](super::escape::Delimiters::unescape)
//! because hl7-parser's own escape decoding panics on Japanese text. Every call into
//! the parser (and the extraction around it) runs under `catch_unwind`, so a parser
//! bug becomes [`ParseError::Panicked`] instead of killing the daemon (this needs the
//! default `panic = "unwind"`).
//!
//! Supported messages ([`Parsed`]):
//!
//! | MSH-9 | result |
//! |---|---|
//! | `ORM^O01` (2.3.1, IHE SWF), `OMI^O23` (2.5, IHE SWF.b / JAHIS) | [`Order`] |
//! | `ORU^R01` | [`Report`] |
//! | `ADT^A40` | [`Merge`] |
//! | `ADT^A08`, `ADT^A31` | [`PatientUpdate`] |
//! | anything else | [`Parsed::Other`] (the caller decides AR or AA) |
//!
//! Value conventions: every text value is unescaped and trimmed; empty values and
//! the HL7 explicit null `""` are `None`/skipped. Field numbers in docs are HL7's
//! (1-based).
//!
//! This module is the stable public surface of the parser; the code lives in
//! `types` (values), `error` (errors), `parse` (entry
//! points), `extract` (field extraction) (DTM is read by `crate::time`).

pub use super::error::{ContentError, MessageError, ParseError};
pub use super::parse::{parse, parse_for, parse_within, recover_header, recover_header_from_bytes};
pub use super::types::*;
pub use crate::time::hl7_dtm_to_iso as dtm_to_iso;
