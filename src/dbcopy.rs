//! `readgate db copy`: moves a single-node installation's SQLite database into an empty
//! PostgreSQL database, with its whole history and its audit chain (#13).
//!
//! - **The source** is opened read-only and read in one read transaction: one consistent
//!   snapshot, whatever else has the file open. It must be at this readgate's schema
//!   version ([`schema::LATEST`]): an older one is refused, naming `readgate migrate`
//!   (the copy never changes its source, and a migration is evidence the source's own
//!   trail records); a newer one too. Its audit chain must verify: a copy must not carry
//!   damage over where it would look like the copy's.
//! - **The target** must hold no rows in any table of its schema (tables readgate or
//!   anything else made; the rows' tables are named otherwise). It is brought to
//!   [`schema::LATEST`] (empty tables of an older readgate are migrated, a newer schema
//!   is refused).
//! - **The copy** runs in one PostgreSQL transaction: every table of the source, parents
//!   before the tables whose foreign keys name them, its rows streamed (never a whole
//!   table in memory) in multi-row INSERTs of the source's columns, which are the
//!   target's (`studies.rowid`, implicit on SQLite, becomes PostgreSQL's column of that
//!   name). Then every identity counter is moved past the largest id copied: PostgreSQL's
//!   sequences do not follow explicit ids, and the next insert would collide. Then the
//!   rows of every table are counted again on the target and compared, the audit chain is
//!   verified there, and the `database_copied` entry is appended after the copied newest
//!   entry. Only then does the transaction commit: a copy that fails anywhere leaves no
//!   row in the target (its schema, created before the copy, stays, empty), and can be
//!   run again.
//!
//! The audit trail's guards forbid UPDATE, DELETE and TRUNCATE of `audit_log` on
//! PostgreSQL too; the copy only inserts.
//!
//! Storage layer: imports the store's schema and the audit trail; only `cli/` imports it.

use crate::audit::{AuditError, EntryRef, NewEntry, Verification};
use crate::db::{Backend, Conn, DbError, Value};
use crate::store::schema::{self, SchemaError, LATEST};
use rusqlite::OpenFlags;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Progress is reported at most this often per table (and at each table's end).
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Rows per INSERT at most, and parameters per INSERT at most (PostgreSQL allows 65,535).
const BATCH_ROWS: usize = 500;
const BATCH_PARAMS: usize = 30_000;
/// Bytes of values held for one INSERT at most (HL7 messages and their ACKs are blobs).
const BATCH_BYTES: usize = 8 << 20;

/// Why a copy was refused or failed. Each says what was found, where.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("no SQLite database at {}: give --from sqlite:PATH the readgate.db of the gateway's data directory", path.display())]
    NoSource { path: PathBuf },
    #[error("database {}: {source}", path.display())]
    Source { path: PathBuf, source: DbError },
    #[error("{} is not a readgate database (it has no tables and no schema version)", path.display())]
    NotReadgate { path: PathBuf },
    #[error(
        "database {}: schema version {found} is older than this readgate's ({needed}): \
         bring it up to date first with `readgate migrate` (on the config whose data directory holds it; \
         readgate serve stopped), then copy",
        path.display()
    )]
    SourceTooOld {
        path: PathBuf,
        found: i64,
        needed: i64,
    },
    #[error("database {}: {source}", path.display())]
    SourceSchema { path: PathBuf, source: SchemaError },
    #[error(
        "the audit trail of {} does not verify ({message}): nothing was copied; see `readgate audit verify`",
        path.display()
    )]
    SourceTrail { path: PathBuf, message: String },
    #[error("--to {url}: {why}")]
    BadUrl { url: String, why: String },
    #[error("database {url}: {source}")]
    Target { url: String, source: DbError },
    #[error("database {url}: {source}")]
    TargetSchema { url: String, source: SchemaError },
    #[error(
        "database {url} is not empty ({}): readgate copies only into an empty database (a new one: \
         CREATE DATABASE … OWNER …)",
        found.iter().map(|(t, n)| format!("{t}: {n} row{}", if *n == 1 { "" } else { "s" })).collect::<Vec<_>>().join(", ")
    )]
    TargetNotEmpty {
        url: String,
        found: Vec<(String, i64)>,
    },
    #[error("table {table} of the source has no counterpart in the PostgreSQL schema")]
    NoTable { table: String },
    #[error("column {table}.{column} of the source has no counterpart in the PostgreSQL schema")]
    NoColumn { table: String, column: String },
    #[error("copying table {table}: {source}")]
    Copy { table: String, source: DbError },
    #[error(
        "the copy does not match its source ({}): nothing was committed",
        tables.iter().map(|t| format!("{}: {} rows in the source, {} copied", t.table, t.source, t.target)).collect::<Vec<_>>().join("; ")
    )]
    Mismatch { tables: Vec<TableCount> },
    #[error(
        "the copied audit trail does not verify on PostgreSQL ({message}): nothing was committed"
    )]
    TargetTrail { message: String },
    #[error("{0}")]
    Audit(#[from] AuditError),
}

impl CopyError {
    fn target(url: &str) -> impl FnOnce(DbError) -> CopyError + '_ {
        move |source| CopyError::Target {
            url: url.to_string(),
            source,
        }
    }
}

/// One table's rows in the source and in the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    pub table: String,
    pub source: i64,
    pub target: i64,
}

/// What a copy reports while it runs.
#[derive(Debug, Clone)]
pub enum Progress {
    /// Rows of `table` copied so far, of `total`.
    Rows {
        table: String,
        done: u64,
        total: u64,
    },
    /// A step after the rows (counting, verifying).
    Step(&'static str),
}

/// What a copy did.
#[derive(Debug)]
pub struct Copied {
    /// The source's schema version (this readgate's).
    pub schema_version: i64,
    /// Every table copied, in the order copied, with its rows on both sides.
    pub tables: Vec<TableCount>,
    /// `(table, column, next id)` of every identity counter moved.
    pub identities: Vec<(String, String, i64)>,
    /// The copied trail's newest entry (none: the trail was empty).
    pub source_head: Option<EntryRef>,
    /// The `database_copied` entry.
    pub entry: EntryRef,
    /// The committed target's trail, verified again (with the new entry).
    pub verification: Verification,
    pub elapsed: Duration,
}

/// Copies the SQLite database at `source` into the empty PostgreSQL database `url`,
/// recording `database_copied` by `actor` there. Blocks (both databases).
pub fn copy(
    source: &Path,
    url: &str,
    actor: &str,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Copied, CopyError> {
    let started = Instant::now();
    let shown = crate::db::redact_url(url);
    crate::config::database::check_postgres_url(url).map_err(|why| CopyError::BadUrl {
        url: shown.clone(),
        why,
    })?;
    let mut src = open_source(source)?;
    let src_err = |e: DbError| CopyError::Source {
        path: source.to_path_buf(),
        source: e,
    };
    let mut dst = Conn::postgres(url).map_err(CopyError::target(&shown))?;
    prepare_target(&mut dst, &shown)?;

    // One snapshot of the source for everything read from it.
    let snapshot = src.read_transaction().map_err(src_err)?;
    progress(&Progress::Step("verifying the source's audit trail"));
    let source_trail = crate::audit::verify_in(&snapshot)?;
    if let Some(f) = &source_trail.finding {
        return Err(CopyError::SourceTrail {
            path: source.to_path_buf(),
            message: f.message.clone(),
        });
    }
    let tables = tables_in_order(&snapshot).map_err(src_err)?;
    let tx = dst.transaction().map_err(CopyError::target(&shown))?;
    let mut counts = Vec::with_capacity(tables.len());
    for table in &tables {
        let total: i64 = snapshot
            .query_row(&format!("SELECT COUNT(*) FROM \"{table}\""), [], |r| {
                r.get(0)
            })
            .map_err(src_err)?;
        let copied = copy_table(&snapshot, &tx, table, total, progress)?;
        counts.push((table.clone(), total, copied));
    }
    progress(&Progress::Step(
        "moving identity counters past the copied ids",
    ));
    let identities = advance_identities(&tx).map_err(CopyError::target(&shown))?;

    progress(&Progress::Step("counting the rows of the copy"));
    let mut tables_counted = Vec::with_capacity(counts.len());
    let mut mismatched = Vec::new();
    for (table, total, copied) in counts {
        let target: i64 = tx
            .query_row(&format!("SELECT COUNT(*) FROM \"{table}\""), [], |r| {
                r.get(0)
            })
            .map_err(CopyError::target(&shown))?;
        let count = TableCount {
            table,
            source: total,
            target,
        };
        if target != total || copied != total as u64 {
            mismatched.push(count.clone());
        }
        tables_counted.push(count);
    }
    if !mismatched.is_empty() {
        return Err(CopyError::Mismatch { tables: mismatched });
    }

    progress(&Progress::Step("verifying the copied audit trail"));
    let copied_trail = crate::audit::verify_in(&tx)?;
    if let Some(f) = &copied_trail.finding {
        return Err(CopyError::TargetTrail {
            message: f.message.clone(),
        });
    }
    if (
        copied_trail.entries,
        copied_trail.last_seq,
        &copied_trail.head_hash,
    ) != (
        source_trail.entries,
        source_trail.last_seq,
        &source_trail.head_hash,
    ) {
        return Err(CopyError::TargetTrail {
            message: format!(
                "{} entries up to {:?} in the source, {} up to {:?} in the copy",
                source_trail.entries,
                source_trail.last_seq,
                copied_trail.entries,
                copied_trail.last_seq
            ),
        });
    }
    let source_head = match (source_trail.last_seq, &source_trail.head_hash) {
        (Some(seq), Some(hash)) => Some(EntryRef {
            seq,
            hash: hash.clone(),
        }),
        _ => None,
    };
    let schema_version = LATEST;
    let entry =
        NewEntry::new(crate::audit::kind::DATABASE_COPIED, actor).detail(serde_json::json!({
            "from": source.display().to_string(),
            "to": shown,
            "schema_version": schema_version,
            "rows": tables_counted
                .iter()
                .map(|t| (t.table.clone(), serde_json::Value::from(t.target)))
                .collect::<serde_json::Map<_, _>>(),
            "source_head": source_head.as_ref().map(|h| format!("{}:{}", h.seq, h.hash)),
        }));
    let entry = crate::audit::append_in(&tx, std::slice::from_ref(&entry))?
        .pop()
        .ok_or(AuditError::Invalid {
            field: "entry",
            message: "nothing appended".into(),
        })?;
    tx.commit().map_err(CopyError::target(&shown))?;
    drop(snapshot);

    // What readgate will open: the committed trail, through the trail's own reader.
    let verification = crate::audit::AuditLog::connect_read_only(url)?.verify()?;
    if let Some(f) = &verification.finding {
        return Err(CopyError::TargetTrail {
            message: f.message.clone(),
        });
    }
    Ok(Copied {
        schema_version,
        tables: tables_counted,
        identities,
        source_head,
        entry,
        verification,
        elapsed: started.elapsed(),
    })
}

/// The source, read-only, at [`LATEST`].
fn open_source(path: &Path) -> Result<Conn, CopyError> {
    if !path.is_file() {
        return Err(CopyError::NoSource {
            path: path.to_path_buf(),
        });
    }
    let err = |e: DbError| CopyError::Source {
        path: path.to_path_buf(),
        source: e,
    };
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| err(e.into()))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| err(e.into()))?;
    let conn = Conn::sqlite(conn);
    let schema_err = |source| CopyError::SourceSchema {
        path: path.to_path_buf(),
        source,
    };
    if schema::is_empty(&conn).map_err(schema_err)? {
        return Err(CopyError::NotReadgate {
            path: path.to_path_buf(),
        });
    }
    let found = schema::check(&conn).map_err(schema_err)?;
    if found < LATEST {
        return Err(CopyError::SourceTooOld {
            path: path.to_path_buf(),
            found,
            needed: LATEST,
        });
    }
    Ok(conn)
}

/// Refuses a target with rows in any table; brings its schema to [`LATEST`].
fn prepare_target(conn: &mut Conn, shown: &str) -> Result<(), CopyError> {
    let schema_err = |source| CopyError::TargetSchema {
        url: shown.to_string(),
        source,
    };
    schema::check(conn).map_err(schema_err)?;
    let tables: Vec<String> = conn
        .query_map(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
             AND table_name <> 'schema_version' ORDER BY table_name",
            [],
            |r| r.get(0),
        )
        .map_err(CopyError::target(shown))?;
    let mut found = Vec::new();
    for table in tables {
        let rows: i64 = conn
            .query_row(
                &format!("SELECT COUNT(*) FROM \"{}\"", table.replace('"', "\"\"")),
                [],
                |r| r.get(0),
            )
            .map_err(CopyError::target(shown))?;
        if rows > 0 {
            found.push((table, rows));
        }
    }
    if !found.is_empty() {
        return Err(CopyError::TargetNotEmpty {
            url: shown.to_string(),
            found,
        });
    }
    schema::migrate(conn).map_err(schema_err)?;
    Ok(())
}

/// The source's tables, each after the tables its foreign keys name (then by name).
fn tables_in_order(src: &Conn) -> crate::db::Result<Vec<String>> {
    let names: Vec<String> = src.query_map(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
         ORDER BY name",
        [],
        |r| r.get(0),
    )?;
    let mut parents = Vec::with_capacity(names.len());
    for name in &names {
        let named: BTreeSet<String> = src
            .query_map(
                "SELECT \"table\" FROM pragma_foreign_key_list(?1)",
                [name.as_str()],
                |r| r.get(0),
            )?
            .into_iter()
            .filter(|t: &String| t != name && names.contains(t))
            .collect();
        parents.push(named);
    }
    let mut placed: Vec<String> = Vec::with_capacity(names.len());
    while placed.len() < names.len() {
        let before = placed.len();
        for (name, named) in names.iter().zip(&parents) {
            if !placed.contains(name) && named.iter().all(|p| placed.contains(p)) {
                placed.push(name.clone());
            }
        }
        if placed.len() == before {
            // A cycle of foreign keys (readgate's schema has none): the rest by name;
            // PostgreSQL refuses a row whose parent is not there yet, naming it.
            for name in &names {
                if !placed.contains(name) {
                    placed.push(name.clone());
                }
            }
        }
    }
    Ok(placed)
}

/// A column of the target: its name and PostgreSQL type.
struct TargetColumn {
    name: String,
    data_type: String,
}

/// Copies the rows of `table`; how many were inserted.
fn copy_table(
    src: &Conn,
    dst: &Conn,
    table: &str,
    total: i64,
    progress: &mut dyn FnMut(&Progress),
) -> Result<u64, CopyError> {
    let copy_err = |source| CopyError::Copy {
        table: table.to_string(),
        source,
    };
    let source_columns: Vec<String> = src
        .query_map(
            "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
            [table],
            |r| r.get(0),
        )
        .map_err(copy_err)?;
    let target_columns: Vec<TargetColumn> = dst
        .query_map(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = ?1 ORDER BY ordinal_position",
            [table],
            |r| {
                Ok(TargetColumn {
                    name: r.get(0)?,
                    data_type: r.get(1)?,
                })
            },
        )
        .map_err(copy_err)?;
    if target_columns.is_empty() {
        return Err(CopyError::NoTable {
            table: table.to_string(),
        });
    }
    if let Some(missing) = source_columns
        .iter()
        .find(|c| !target_columns.iter().any(|t| &t.name == *c))
    {
        return Err(CopyError::NoColumn {
            table: table.to_string(),
            column: missing.clone(),
        });
    }
    // The source's columns, and PostgreSQL's `rowid` where SQLite's is implicit
    // (`studies`: the ledger's handle on a study keeps its value).
    let mut columns: Vec<&TargetColumn> = Vec::new();
    for t in &target_columns {
        if source_columns.contains(&t.name) || t.name == "rowid" {
            columns.push(t);
        }
    }
    let select = format!(
        "SELECT {} FROM \"{table}\"",
        columns
            .iter()
            .map(|c| format!("\"{}\"", c.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let width = columns.len();
    let per_batch = BATCH_ROWS.min(BATCH_PARAMS / width.max(1)).max(1);
    let column_list = columns
        .iter()
        .map(|c| format!("\"{}\"", c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let insert_sql = |rows: usize| {
        let mut sql = format!("INSERT INTO \"{table}\" ({column_list}) VALUES ");
        for r in 0..rows {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..width {
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("?{}", r * width + c + 1));
            }
            sql.push(')');
        }
        sql
    };
    let full_batch = insert_sql(per_batch);

    let total = u64::try_from(total).unwrap_or(0);
    let mut buffer: Vec<Value> = Vec::with_capacity(per_batch * width);
    let mut buffered_rows = 0usize;
    let mut buffered_bytes = 0usize;
    let mut done = 0u64;
    let mut last_report = Instant::now();
    let mut failure: Option<DbError> = None;
    let flush = |buffer: &mut Vec<Value>, rows: usize| -> crate::db::Result<()> {
        if rows == 0 {
            return Ok(());
        }
        let sql = if rows == per_batch {
            full_batch.clone()
        } else {
            insert_sql(rows)
        };
        dst.execute(&sql, std::mem::take(buffer))?;
        Ok(())
    };
    let scanned = src.query_each(&select, [], |row| {
        for (i, column) in columns.iter().enumerate() {
            let v = coerce(row.get_ref(i)?.clone(), &column.data_type);
            buffered_bytes += match &v {
                Value::Text(s) => s.len(),
                Value::Blob(b) => b.len(),
                _ => 8,
            };
            buffer.push(v);
        }
        buffered_rows += 1;
        if buffered_rows == per_batch || buffered_bytes >= BATCH_BYTES {
            if let Err(e) = flush(&mut buffer, buffered_rows) {
                failure = Some(e);
                return Ok(false);
            }
            done += buffered_rows as u64;
            buffered_rows = 0;
            buffered_bytes = 0;
            if last_report.elapsed() >= PROGRESS_EVERY {
                last_report = Instant::now();
                progress(&Progress::Rows {
                    table: table.to_string(),
                    done,
                    total,
                });
            }
        }
        Ok(true)
    });
    if let Some(e) = failure {
        return Err(copy_err(e));
    }
    scanned.map_err(|e| CopyError::Copy {
        table: table.to_string(),
        source: e,
    })?;
    flush(&mut buffer, buffered_rows).map_err(copy_err)?;
    done += buffered_rows as u64;
    progress(&Progress::Rows {
        table: table.to_string(),
        done,
        total,
    });
    Ok(done)
}

/// A value read from SQLite as the PostgreSQL column of `data_type` takes it: SQLite
/// keeps what it was given, so text may sit in a BLOB column.
fn coerce(v: Value, data_type: &str) -> Value {
    match (v, data_type) {
        (Value::Text(s), "bytea") => Value::Blob(s.into_bytes()),
        (Value::Real(f), "bigint" | "integer")
            if f.fract() == 0.0 && f >= i64::MIN as f64 && f <= i64::MAX as f64 =>
        {
            Value::Integer(f as i64)
        }
        (v, _) => v,
    }
}

/// Moves every identity counter of the target past the largest id its table holds, so
/// the next row readgate inserts without an id gets a fresh one; `(table, column, next)`.
fn advance_identities(tx: &Conn) -> crate::db::Result<Vec<(String, String, i64)>> {
    debug_assert_eq!(tx.backend(), Backend::Postgres);
    let identities: Vec<(String, String)> = tx.query_map(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND is_identity = 'YES' \
         ORDER BY table_name, column_name",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut moved = Vec::with_capacity(identities.len());
    for (table, column) in identities {
        let next: i64 = tx.query_row(
            &format!(
                "SELECT setval(pg_get_serial_sequence(?1, ?2), \
                 COALESCE((SELECT MAX(\"{column}\") FROM \"{table}\"), 0) + 1, false)"
            ),
            [table.as_str(), column.as_str()],
            |r| r.get(0),
        )?;
        moved.push((table, column, next));
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_come_after_the_tables_their_foreign_keys_name() {
        let mut conn = Conn::sqlite(rusqlite::Connection::open_in_memory().unwrap());
        schema::migrate(&mut conn).unwrap();
        let order = tables_in_order(&conn).unwrap();
        let at = |t: &str| order.iter().position(|x| x == t).unwrap();
        assert!(at("hl7_messages") < at("orders"));
        assert!(at("hl7_messages") < at("reports"));
        assert!(at("hl7_messages") < at("patient_merges"));
        assert!(at("mpps") < at("mpps_instances"));
        for t in ["studies", "instances", "audit_log", "audit_head", "events"] {
            assert!(order.contains(&t.to_string()), "{t} in {order:?}");
        }
    }

    #[test]
    fn values_are_read_as_their_target_column_takes_them() {
        assert_eq!(
            coerce(Value::Text("MSH|".into()), "bytea"),
            Value::Blob(b"MSH|".to_vec())
        );
        assert_eq!(coerce(Value::Real(3.0), "bigint"), Value::Integer(3));
        assert_eq!(coerce(Value::Real(3.5), "bigint"), Value::Real(3.5));
        assert_eq!(
            coerce(Value::Text("x".into()), "text"),
            Value::Text("x".into())
        );
    }
}
