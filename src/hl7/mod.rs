//! HL7 v2 intake: MLLP framing, charsets, message parsing, ACKs.
pub mod charset;
pub mod escape;
pub mod mllp;
