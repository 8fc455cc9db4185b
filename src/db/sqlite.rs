//! SQLite through rusqlite: statements prepared once per connection (`prepare_cached`),
//! values bound and read without conversion beyond the neutral [`Value`].

use super::row::Row;
use super::value::{Params, Value, ValueRef};
use super::Result;
use rusqlite::types::{ToSqlOutput, ValueRef as SqliteRef};
use rusqlite::Connection;
use std::sync::Arc;

impl rusqlite::ToSql for ValueRef<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            ValueRef::Null => SqliteRef::Null,
            ValueRef::Integer(i) => SqliteRef::Integer(i),
            ValueRef::Real(f) => SqliteRef::Real(f),
            ValueRef::Text(s) => SqliteRef::Text(s.as_bytes()),
            ValueRef::Blob(b) => SqliteRef::Blob(b),
        }))
    }
}

fn bind<'a>(params: &'a Params<'a>) -> impl Iterator<Item = &'a ValueRef<'a>> {
    params.iter()
}

pub(super) fn execute(c: &Connection, sql: &str, params: &Params) -> Result<usize> {
    let mut stmt = c.prepare_cached(sql)?;
    Ok(stmt.execute(rusqlite::params_from_iter(bind(params)))?)
}

/// At most `limit` rows of `sql`.
pub(super) fn query(c: &Connection, sql: &str, params: &Params, limit: usize) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    query_each(c, sql, params, &mut |r| {
        out.push(r.clone());
        Ok(out.len() < limit)
    })?;
    Ok(out)
}

/// Calls `f` on each row of `sql` until it returns `false`.
pub(super) fn query_each(
    c: &Connection,
    sql: &str,
    params: &Params,
    f: &mut dyn FnMut(&Row) -> Result<bool>,
) -> Result<()> {
    let mut stmt = c.prepare_cached(sql)?;
    let columns: Arc<[String]> = stmt.column_names().into_iter().map(String::from).collect();
    let width = columns.len();
    let mut rows = stmt.query(rusqlite::params_from_iter(bind(params)))?;
    while let Some(r) = rows.next()? {
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(match r.get_ref(i)? {
                SqliteRef::Null => Value::Null,
                SqliteRef::Integer(i) => Value::Integer(i),
                SqliteRef::Real(f) => Value::Real(f),
                SqliteRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                SqliteRef::Blob(b) => Value::Blob(b.to_vec()),
            });
        }
        let row = Row {
            columns: columns.clone(),
            values,
        };
        if !f(&row)? {
            break;
        }
    }
    Ok(())
}
