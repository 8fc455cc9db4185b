//! Where a study and its instances are in the pipeline. Each state has exactly one text
//! form: the word stored in `studies.state` / `instances.state`, shown by the CLI and the
//! API, and written in the audit trail.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

/// A text that names no state of the kind asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} state {text:?}: expected one of {expected}")]
pub struct UnknownState {
    /// `study` or `instance`.
    pub kind: &'static str,
    pub text: String,
    pub expected: &'static str,
}

/// Declares a state enum with its one text form, `Display`, `FromStr`, serde and SQL.
macro_rules! state_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $kind:literal, $expected:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every state, in pipeline order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The one text form (database, CLI, API, audit).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownState;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownState {
                        kind: $kind,
                        text: s.to_string(),
                        expected: $expected,
                    }),
                }
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e: UnknownState| FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

state_enum! {
    /// A study's state, as listed by `readgate studies` and stored in `studies.state`.
    StudyState, "study", "receiving, held, queued, forwarded, failed, rejected" {
        /// Instances are arriving; decided once the study is stable.
        Receiving = "receiving",
        /// The decision stage (or an operator's wait) keeps it back.
        Held = "held",
        /// Decided: waiting to be sent to its destination.
        Queued = "queued",
        /// Every instance was delivered.
        Forwarded = "forwarded",
        /// Forwarding gave up after the configured attempts.
        Failed = "failed",
        /// An operator decided the study must not be sent (with a written reason).
        Rejected = "rejected",
    }
}

state_enum! {
    /// An instance's state, stored in `instances.state`: received (waiting for its
    /// study's decision), queued, forwarded, or rejected with its study.
    InstanceState, "instance", "received, queued, forwarded, rejected" {
        Received = "received",
        Queued = "queued",
        Forwarded = "forwarded",
        Rejected = "rejected",
    }
}

impl StudyState {
    /// The text forms of every study state, for help texts and API schemas.
    pub const NAMES: [&'static str; 6] = [
        StudyState::Receiving.as_str(),
        StudyState::Held.as_str(),
        StudyState::Queued.as_str(),
        StudyState::Forwarded.as_str(),
        StudyState::Failed.as_str(),
        StudyState::Rejected.as_str(),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_text_form_each() {
        for s in StudyState::ALL {
            assert_eq!(s.as_str().parse::<StudyState>(), Ok(*s));
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::String(s.as_str().into())
            );
        }
        for s in InstanceState::ALL {
            assert_eq!(s.as_str().parse::<InstanceState>(), Ok(*s));
        }
        assert_eq!(StudyState::NAMES.len(), StudyState::ALL.len());
        let err = "Held".parse::<StudyState>().unwrap_err();
        assert!(
            err.to_string().contains("expected one of receiving"),
            "{err}"
        );
    }

    #[test]
    fn sql_round_trip() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        for s in StudyState::ALL {
            let back: StudyState = c.query_row("SELECT ?1", [s], |r| r.get(0)).unwrap();
            assert_eq!(back, *s);
        }
        let bad: rusqlite::Result<StudyState> = c.query_row("SELECT 'nope'", [], |r| r.get(0));
        assert!(bad.is_err());
    }
}
