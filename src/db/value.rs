//! What crosses between readgate and its database: the five kinds of value both SQLite
//! and PostgreSQL store for readgate (64-bit integers, doubles, text, bytes, null), and
//! the conversions from and to Rust types.

/// A value read from the database (a column of a [`super::Row`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Integer(i)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Real(f)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_string())
    }
}

/// A value bound to a statement's parameter, borrowed from the caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl Value {
    /// The kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Integer(_) => "integer",
            Value::Real(_) => "real",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
        }
    }
}

impl ValueRef<'_> {
    /// The owned value.
    pub fn into_owned(self) -> Value {
        match self {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(s) => Value::Text(s.to_string()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

/// A Rust value that can be bound to a statement's parameter.
pub trait ToValue {
    fn to_value(&self) -> ValueRef<'_>;
}

/// A Rust value a column can be read as.
pub trait FromValue: Sized {
    /// `v` as `Self`, or why not (the caller adds the column).
    fn from_value(v: &Value) -> Result<Self, String>;
}

/// The parameters of one statement, bound: what [`IntoParams::bind`] gives.
pub type Params<'a> = [ValueRef<'a>];

/// What a statement's parameters can be given as: `params![a, b]`, an array `[&a, &b]`
/// (of one type), `[]` for none, or a `Vec<Value>` built at run time.
pub trait IntoParams {
    fn bind(&self) -> Vec<ValueRef<'_>>;
}

impl IntoParams for &[&dyn ToValue] {
    fn bind(&self) -> Vec<ValueRef<'_>> {
        self.iter().map(|p| p.to_value()).collect()
    }
}

impl IntoParams for [&dyn ToValue; 0] {
    fn bind(&self) -> Vec<ValueRef<'_>> {
        Vec::new()
    }
}

impl IntoParams for Vec<Value> {
    fn bind(&self) -> Vec<ValueRef<'_>> {
        self.iter().map(|p| p.to_value()).collect()
    }
}

impl IntoParams for &Vec<Value> {
    fn bind(&self) -> Vec<ValueRef<'_>> {
        self.iter().map(|p| p.to_value()).collect()
    }
}

/// Arrays of one type, as rusqlite takes them (`[&uid]`, `[id, limit]`); 0 is `[]` above.
macro_rules! array_params {
    ($($n:literal),*) => {$(
        impl<T: ToValue> IntoParams for [T; $n] {
            fn bind(&self) -> Vec<ValueRef<'_>> {
                self.iter().map(|p| p.to_value()).collect()
            }
        }
    )*};
}
array_params!(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> ValueRef<'_> {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> ValueRef<'_> {
        match self {
            Some(v) => v.to_value(),
            None => ValueRef::Null,
        }
    }
}

impl ToValue for str {
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}

impl ToValue for String {
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}

impl ToValue for f64 {
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Real(*self)
    }
}

impl ToValue for bool {
    fn to_value(&self) -> ValueRef<'_> {
        ValueRef::Integer(i64::from(*self))
    }
}

impl ToValue for Value {
    fn to_value(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s),
            Value::Blob(b) => ValueRef::Blob(b),
        }
    }
}

/// Integers that always fit in a 64-bit signed integer.
macro_rules! small_integer {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> ValueRef<'_> {
                ValueRef::Integer(i64::from(*self))
            }
        }
    )*};
}
small_integer!(i64, i32, u32, i16, u16, u8);

/// Sizes and counts: stored as i64; one beyond i64 (never in practice) is stored as the
/// largest i64 rather than wrapping.
macro_rules! wide_integer {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> ValueRef<'_> {
                ValueRef::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
wide_integer!(u64, usize);

impl FromValue for Value {
    fn from_value(v: &Value) -> Result<Self, String> {
        Ok(v.clone())
    }
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Integer(i) => Ok(*i),
            other => Err(format!("expected an integer, found {}", other.kind())),
        }
    }
}

/// Integers narrower than i64: read as i64, refused when out of range.
macro_rules! narrow_integer {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value) -> Result<Self, String> {
                let i = i64::from_value(v)?;
                <$t>::try_from(i).map_err(|_| format!("{i} is out of range for {}", stringify!($t)))
            }
        }
    )*};
}
narrow_integer!(i32, u32, u64, usize, i16, u16, u8);

impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, String> {
        Ok(i64::from_value(v)? != 0)
    }
}

impl FromValue for f64 {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Real(f) => Ok(*f),
            // SQLite stores a REAL with no fraction as an integer when it can.
            Value::Integer(i) => Ok(*i as f64),
            other => Err(format!("expected a real, found {}", other.kind())),
        }
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            other => Err(format!("expected text, found {}", other.kind())),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            Value::Text(s) => Ok(s.as_bytes().to_vec()),
            other => Err(format!("expected a blob, found {}", other.kind())),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// A column that holds JSON text, parsed (NULL reads as JSON null).
impl FromValue for serde_json::Value {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(serde_json::Value::Null),
            Value::Text(s) => serde_json::from_str(s).map_err(|e| format!("invalid JSON: {e}")),
            other => Err(format!("expected JSON text, found {}", other.kind())),
        }
    }
}
