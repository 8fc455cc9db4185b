//! The domain's vocabulary: the states, verdicts, roles, languages and kinds that every
//! layer speaks of, as enums with exactly one text form each (the form stored in the
//! database, written in the audit trail and shown by the API). Nothing here imports any
//! other module of readgate; every other module may import this one.

mod audit_kind;
mod charset;
mod employment;
mod forward;
mod lang;
mod pacs;
mod priority;
mod read_action;
mod role;
mod state;
mod text;
mod verdict;

pub use audit_kind::AuditKind;
pub use charset::Charset;
pub use employment::Employment;
pub use forward::{ForwardMode, StreamState};
pub use lang::Lang;
pub use pacs::PacsStudy;
pub use priority::Priority;
pub use read_action::ReadAction;
pub use role::Role;
pub use state::{CompletionSignal, EventKind, InstanceState, StepStatus, StudyState};
pub use text::UnknownText;
pub use verdict::{Disposition, Verdict};
