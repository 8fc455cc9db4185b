//! The HL7 intake service: accepts MLLP connections, stores each message durably,
//! acks, and matches orders/reports to studies.
//!
//! Parsing, charsets and ACK text come from the pure library in [`crate::hl7`]; this
//! module adds the sockets, the store and the metrics around it:
//!
//! * [`listener`]: the MLLP server, one task per connection; answers only after the
//!   message is durable;
//! * [`Intake`] (`writer.rs`): group commit of received messages to the store, then
//!   re-evaluation of the held studies they give context to;
//! * [`mllp`]: reading and writing frames on an async stream;
//! * [`view`]: what readgate knows about one study from HL7 (`readgate orders`).

mod evidence;
pub mod listener;
pub mod mllp;
pub mod view;
mod writer;

pub use writer::{DiskBounds, Intake, IntakeError};
