//! The domain's vocabulary: the states, verdicts, roles, languages and kinds that every
//! layer speaks of, as enums with exactly one text form each (the form stored in the
//! database, written in the audit trail and shown by the API). Nothing here imports any
//! other module of readgate; every other module may import this one.

mod lang;
pub use lang::Lang;
