//! A row read from either backend: its values and the names of its columns, read by
//! position ([`Row::get`]) or into a struct by column name ([`Row::to`], serde).

use super::value::{FromValue, Value};
use super::DbError;
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use std::sync::Arc;

/// One row of a result.
#[derive(Debug, Clone)]
pub struct Row {
    pub(super) columns: Arc<[String]>,
    pub(super) values: Vec<Value>,
}

impl Row {
    /// Column `idx` (from 0, or its name) as `T`.
    pub fn get<I: ColumnIndex, T: FromValue>(&self, idx: I) -> Result<T, DbError> {
        let idx = idx.index(&self.columns).ok_or_else(|| DbError::Column {
            column: idx.describe(),
            why: format!("the row has no such column ({} columns)", self.values.len()),
        })?;
        let v = self.values.get(idx).ok_or_else(|| DbError::Column {
            column: self.name(idx),
            why: "the row has no value for it".to_string(),
        })?;
        T::from_value(v).map_err(|why| DbError::Column {
            column: self.name(idx),
            why,
        })
    }

    /// Column `idx` as it is stored, whatever its type (to tell a wrong type apart).
    pub fn get_ref(&self, idx: usize) -> Result<&Value, DbError> {
        self.values.get(idx).ok_or_else(|| DbError::Column {
            column: idx.to_string(),
            why: format!("the row has {} columns", self.values.len()),
        })
    }

    /// The row as `T`: each column goes to the field of its name (the SQL's aliases
    /// name them), so a row type and its query cannot drift apart by position.
    pub fn to<T: DeserializeOwned>(&self) -> Result<T, DbError> {
        T::deserialize(RowDeserializer { row: self }).map_err(|e| DbError::Column {
            column: "*".to_string(),
            why: e.0,
        })
    }

    fn name(&self, idx: usize) -> String {
        self.columns
            .get(idx)
            .cloned()
            .unwrap_or_else(|| idx.to_string())
    }
}

/// How a column is named in [`Row::get`]: by position or by name.
pub trait ColumnIndex {
    fn index(&self, columns: &[String]) -> Option<usize>;
    fn describe(&self) -> String;
}

impl ColumnIndex for usize {
    fn index(&self, columns: &[String]) -> Option<usize> {
        (*self < columns.len()).then_some(*self)
    }
    fn describe(&self) -> String {
        self.to_string()
    }
}

impl ColumnIndex for &str {
    fn index(&self, columns: &[String]) -> Option<usize> {
        columns.iter().position(|c| c == self)
    }
    fn describe(&self) -> String {
        self.to_string()
    }
}

/// Why a row could not be read into a struct.
#[derive(Debug)]
struct RowError(String);

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RowError {}

impl de::Error for RowError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        RowError(msg.to_string())
    }
}

/// A row as a map from column names to values (serde has no deserializer for a row of
/// either driver that does not tie it to that driver; this one is the neutral form).
struct RowDeserializer<'a> {
    row: &'a Row,
}

impl<'de> de::Deserializer<'de> for RowDeserializer<'_> {
    type Error = RowError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RowError> {
        visitor.visit_map(de::value::MapDeserializer::new(
            self.row
                .columns
                .iter()
                .zip(&self.row.values)
                .map(|(name, value)| (name.as_str(), ValueDeserializer { value, name })),
        ))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// One column's value, read as whatever type its field asks for.
struct ValueDeserializer<'a> {
    value: &'a Value,
    name: &'a str,
}

impl<'de> IntoDeserializer<'de, RowError> for ValueDeserializer<'_> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl ValueDeserializer<'_> {
    fn wrong(&self, expected: &str) -> RowError {
        RowError(format!(
            "column {}: expected {expected}, found {}",
            self.name,
            self.value.kind()
        ))
    }
}

impl<'de> de::Deserializer<'de> for ValueDeserializer<'_> {
    type Error = RowError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RowError> {
        let name = self.name;
        let r: Result<V::Value, RowError> = match self.value {
            Value::Null => visitor.visit_none(),
            Value::Integer(i) => visitor.visit_i64(*i),
            Value::Real(f) => visitor.visit_f64(*f),
            Value::Text(s) => visitor.visit_str(s),
            Value::Blob(b) => visitor.visit_bytes(b),
        };
        r.map_err(|e| RowError(format!("column {name}: {e}")))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RowError> {
        match self.value {
            Value::Integer(i) => visitor.visit_bool(*i != 0),
            _ => Err(self.wrong("an integer (boolean)")),
        }
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RowError> {
        match self.value {
            Value::Integer(i) => visitor.visit_f64(*i as f64),
            Value::Real(f) => visitor.visit_f64(*f),
            _ => Err(self.wrong("a number")),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RowError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RowError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, RowError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, RowError> {
        match self.value {
            Value::Text(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            _ => Err(self.wrong("text (an enum)")),
        }
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 char str string
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Example {
        name: String,
        count: i64,
        ratio: f64,
        flag: bool,
        missing: Option<String>,
    }

    fn row() -> Row {
        Row {
            columns: ["name", "count", "ratio", "flag", "missing"]
                .map(String::from)
                .into(),
            values: vec![
                Value::Text("a".into()),
                Value::Integer(3),
                Value::Integer(2),
                Value::Integer(1),
                Value::Null,
            ],
        }
    }

    #[test]
    fn a_row_reads_into_a_struct_by_column_name() {
        let e: Example = row().to().unwrap();
        assert_eq!(
            e,
            Example {
                name: "a".into(),
                count: 3,
                ratio: 2.0,
                flag: true,
                missing: None
            }
        );
    }

    #[test]
    fn a_wrong_type_names_the_column() {
        let r = row();
        let e = r.get::<_, i64>(0).unwrap_err().to_string();
        assert!(e.contains("name") && e.contains("integer"), "{e}");
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Wrong {
            name: i64,
        }
        let e = r.to::<Wrong>().unwrap_err().to_string();
        assert!(e.contains("name"), "{e}");
    }
}
