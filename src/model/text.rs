//! One text form per enum: [`text_enum!`] gives a domain enum its `as_str`, `Display`,
//! `FromStr` (with [`UnknownText`] naming what was expected), serde and SQLite conversions
//! from a single table of `Variant => "text"`, so the form stored, logged and served can
//! never drift from the form parsed.

/// A text that names no variant of the enum it was parsed as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {got:?}: expected one of {expected}")]
pub struct UnknownText {
    /// What was being parsed, e.g. `study state`.
    pub what: &'static str,
    pub got: String,
    /// The accepted texts, comma-separated.
    pub expected: &'static str,
}

/// `text_enum! { /// doc \n pub enum Name ("what it is") { /// doc \n A => "a", B => "b" } }`
#[macro_export]
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text form of every variant, in declaration order (help texts, schemas).
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The one text form (stored, logged, served).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `pad`, so tables can align it with `{:<10}`.
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::model::UnknownText;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::model::UnknownText {
                        what: $what,
                        got: s.to_string(),
                        expected: concat!($($text, ", "),+).trim_end_matches(", "),
                    }),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl $crate::db::ToValue for $name {
            fn to_value(&self) -> $crate::db::ValueRef<'_> {
                $crate::db::ValueRef::Text(self.as_str())
            }
        }

        impl $crate::db::FromValue for $name {
            fn from_value(v: &$crate::db::Value) -> Result<Self, String> {
                match v {
                    $crate::db::Value::Text(s) => s.parse().map_err(|e| format!("{e}")),
                    other => Err(format!("expected text, found {}", other.kind())),
                }
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                v: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                v.as_str()?
                    .parse()
                    .map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    };
}
