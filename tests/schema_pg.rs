//! The PostgreSQL schema (`store::schema_pg`) is SQLite's (`store::schema`) in the other
//! dialect: after every migration N, a real SQLite database and a real PostgreSQL server
//! (`readgate::pgtest::TempPostgres`) migrated to N have the same tables, columns (name,
//! order, type class, NOT NULL, default), primary keys, unique constraints, foreign keys,
//! CHECK constraints, indexes (name, uniqueness, columns, predicate) and triggers; and the
//! PostgreSQL audit trail refuses UPDATE, DELETE and TRUNCATE.
//!
//! Documented differences the comparison allows, and checks separately:
//! - PostgreSQL's `studies` has a `rowid` identity column (SQLite's implicit rowid, which
//!   the ledger reads); it is left out of the column list and its unique constraint.
//! - SQLite's `INTEGER PRIMARY KEY` (rowid alias) and PostgreSQL's identity column are
//!   both "assigned when not given" (default `<auto>`).
//! - A PRIMARY KEY column is NOT NULL in both (SQLite's `PRAGMA table_info` says 0 for
//!   them; PostgreSQL enforces it).
//! - PostgreSQL's audit_log has a TRUNCATE guard SQLite has no use for.

use readgate::pgtest::TempPostgres;
use readgate::store::{schema, schema_pg};
use rusqlite::Connection;
use std::collections::{BTreeMap, BTreeSet};
use tokio_postgres::Client;

#[derive(Debug, PartialEq, Eq)]
struct Column {
    name: String,
    /// integer, real, text, blob; anything else is named as it is (and differs).
    class: String,
    not_null: bool,
    /// The default expression, normalised; `<auto>` for an assigned key.
    default: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
struct Index {
    unique: bool,
    columns: Vec<String>,
    /// A partial index's WHERE, normalised.
    predicate: Option<String>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Table {
    columns: Vec<Column>,
    primary_key: Vec<String>,
    uniques: BTreeSet<Vec<String>>,
    /// `FOREIGN KEY (a) REFERENCES t(b)`.
    foreign_keys: BTreeSet<String>,
    /// CHECK expressions, normalised.
    checks: BTreeSet<String>,
    /// Indexes created by CREATE INDEX (not those behind a key), by name.
    indexes: BTreeMap<String, Index>,
    triggers: BTreeSet<String>,
}

type Schema = BTreeMap<String, Table>;

/// An expression with casts, parentheses and spaces taken out, `!=` as `<>`:
/// `ack_code != 'AA'` and `(ack_code <> 'AA'::text)` are both `ack_code<>'AA'`.
fn normalise(expr: &str) -> String {
    expr.replace("::text", "")
        .replace("::bigint", "")
        .replace("!=", "<>")
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '(' && *c != ')')
        .collect()
}

/// The class of a column's type in either database.
fn sqlite_class(declared: &str) -> String {
    match declared.to_ascii_uppercase().as_str() {
        "INTEGER" => "integer".into(),
        "REAL" => "real".into(),
        "TEXT" => "text".into(),
        "BLOB" => "blob".into(),
        other => format!("sqlite {other}"),
    }
}

fn pg_class(data_type: &str) -> String {
    match data_type {
        // Only BIGINT: the code binds i64, which does not bind to a 4-byte integer.
        "bigint" => "integer".into(),
        "double precision" => "real".into(),
        "text" => "text".into(),
        "bytea" => "blob".into(),
        other => format!("postgresql {other}"),
    }
}

// ---- SQLite ----------------------------------------------------------------------------

fn sqlite_migrate_to(conn: &mut Connection, version: usize) {
    let tx = conn.transaction().unwrap();
    for sql in schema::MIGRATIONS[version - 1] {
        tx.execute_batch(sql)
            .unwrap_or_else(|e| panic!("SQLite migration {version}: {e}"));
    }
    tx.pragma_update(None, "user_version", version as i64)
        .unwrap();
    tx.commit().unwrap();
}

fn strings(conn: &Connection, sql: &str, param: &str) -> Vec<String> {
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt.query_map([param], |r| r.get::<_, String>(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

/// The `CHECK (...)` expressions of a CREATE TABLE statement.
fn checks_in(create: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let upper = create.to_ascii_uppercase();
    let mut from = 0;
    while let Some(at) = upper[from..].find("CHECK") {
        let start = from + at + "CHECK".len();
        // The keyword, not a part of a name (`stream_check`).
        let before = upper[..from + at].chars().next_back();
        let rest = create[start..].trim_start();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') || !rest.starts_with('(') {
            from = start;
            continue;
        }
        let open = create.len() - rest.len();
        let mut depth = 0;
        let mut end = open;
        for (i, c) in create[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.insert(normalise(&create[open + 1..end]));
        from = end;
    }
    out
}

fn sqlite_schema(conn: &Connection) -> Schema {
    let mut schema = Schema::new();
    let tables: Vec<(String, String)> = {
        let mut stmt = conn
            .prepare(
                "SELECT name, sql FROM sqlite_master \
                 WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .unwrap();
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.map(Result::unwrap).collect()
    };
    for (name, create) in tables {
        let mut table = Table::default();
        // cid, name, type, notnull, dflt_value, pk
        let cols: Vec<(String, String, bool, Option<String>, i64)> = {
            let mut stmt = conn
                .prepare(
                    "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1)",
                )
                .unwrap();
            let rows = stmt
                .query_map([&name], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .unwrap();
            rows.map(Result::unwrap).collect()
        };
        let pk_columns = cols.iter().filter(|c| c.4 > 0).count();
        for (col, declared, not_null, default, pk) in &cols {
            let rowid_alias =
                *pk == 1 && pk_columns == 1 && declared.eq_ignore_ascii_case("INTEGER");
            table.columns.push(Column {
                name: col.clone(),
                class: sqlite_class(declared),
                not_null: *not_null || *pk > 0,
                default: if rowid_alias {
                    Some("<auto>".into())
                } else {
                    default.as_deref().map(normalise)
                },
            });
        }
        let mut pk: Vec<(i64, String)> = cols
            .iter()
            .filter(|c| c.4 > 0)
            .map(|c| (c.4, c.0.clone()))
            .collect();
        pk.sort();
        table.primary_key = pk.into_iter().map(|(_, c)| c).collect();

        // seq, name, unique, origin, partial
        let indexes: Vec<(String, bool, String)> = {
            let mut stmt = conn
                .prepare("SELECT name, \"unique\", origin FROM pragma_index_list(?1)")
                .unwrap();
            let rows = stmt
                .query_map([&name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap();
            rows.map(Result::unwrap).collect()
        };
        for (index, unique, origin) in indexes {
            let columns = strings(
                conn,
                "SELECT name FROM pragma_index_info(?1) ORDER BY seqno",
                &index,
            );
            match origin.as_str() {
                "pk" => {} // the primary key, compared above
                "u" => {
                    table.uniques.insert(columns);
                }
                _ => {
                    let sql: String = conn
                        .query_row(
                            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?1",
                            [&index],
                            |r| r.get(0),
                        )
                        .unwrap();
                    let predicate = sql
                        .to_ascii_uppercase()
                        .find(" WHERE ")
                        .map(|at| normalise(&sql[at + " WHERE ".len()..]));
                    table.indexes.insert(
                        index,
                        Index {
                            unique,
                            columns,
                            predicate,
                        },
                    );
                }
            }
        }

        // id, seq, table, from, to
        let fks: Vec<(i64, String, String, String)> = {
            let mut stmt = conn
                .prepare(
                    "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1) \
                     ORDER BY id, seq",
                )
                .unwrap();
            let rows = stmt
                .query_map([&name], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .unwrap();
            rows.map(Result::unwrap).collect()
        };
        let mut by_id: BTreeMap<i64, (String, Vec<String>, Vec<String>)> = BTreeMap::new();
        for (id, target, from, to) in fks {
            let e = by_id.entry(id).or_insert((target, vec![], vec![]));
            e.1.push(from);
            e.2.push(to);
        }
        for (_, (target, from, to)) in by_id {
            table.foreign_keys.insert(format!(
                "FOREIGN KEY ({}) REFERENCES {target}({})",
                from.join(", "),
                to.join(", ")
            ));
        }
        table.checks = checks_in(&create);
        table.triggers = strings(
            conn,
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?1",
            &name,
        )
        .into_iter()
        .collect();
        schema.insert(name, table);
    }
    schema
}

// ---- PostgreSQL ------------------------------------------------------------------------

/// A test-only runner: the version in `schema_version` (one row), each migration in a
/// transaction of its own.
async fn pg_migrate_to(client: &mut Client, version: usize) {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL);
             INSERT INTO schema_version SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM schema_version)",
        )
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    let current: i64 = tx
        .query_one("SELECT version FROM schema_version FOR UPDATE", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(current, version as i64 - 1);
    let batches = schema_pg::migrate_sql_for(version as i64).unwrap();
    for sql in batches {
        tx.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL migration {version}: {e:?}"));
    }
    tx.execute(
        "UPDATE schema_version SET version = $1",
        &[&(version as i64)],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn pg_strings(client: &Client, sql: &str, table: &str) -> Vec<String> {
    client
        .query(sql, &[&table])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The columns of a constraint of `contype` (one list per constraint).
async fn pg_constraint_columns(client: &Client, table: &str, contype: &str) -> Vec<Vec<String>> {
    let rows = client
        .query(
            "SELECT ARRAY(SELECT a.attname::text \
                   FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n) \
                   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum \
                   ORDER BY k.n) \
             FROM pg_constraint c \
             WHERE c.conrelid = $1::text::regclass AND c.contype = $2::text::\"char\" \
             ORDER BY c.conname",
            &[&table, &contype],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

async fn pg_schema(client: &Client) -> Schema {
    let mut schema = Schema::new();
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
               AND table_name <> 'schema_version' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for name in tables {
        let mut table = Table::default();
        let cols = client
            .query(
                "SELECT column_name::text, data_type::text, is_nullable::text, \
                        column_default::text, is_identity::text \
                 FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                &[&name],
            )
            .await
            .unwrap();
        for row in &cols {
            let col: String = row.get(0);
            let data_type: String = row.get(1);
            let nullable: String = row.get(2);
            let default: Option<String> = row.get(3);
            let identity: String = row.get(4);
            let column = Column {
                name: col.clone(),
                class: pg_class(&data_type),
                not_null: nullable == "NO",
                default: if identity == "YES" {
                    Some("<auto>".into())
                } else {
                    default.as_deref().map(normalise)
                },
            };
            if name == "studies" && col == "rowid" {
                // SQLite's implicit rowid, made explicit (see schema_pg's doc).
                assert_eq!(
                    (column.class.as_str(), column.default.as_deref()),
                    ("integer", Some("<auto>")),
                    "studies.rowid must be a BIGINT identity"
                );
                continue;
            }
            table.columns.push(column);
        }
        let mut pks = pg_constraint_columns(client, &name, "p").await;
        assert!(pks.len() <= 1);
        table.primary_key = pks.pop().unwrap_or_default();
        for unique in pg_constraint_columns(client, &name, "u").await {
            if name == "studies" && unique == ["rowid"] {
                continue;
            }
            table.uniques.insert(unique);
        }
        table.foreign_keys = pg_strings(
            client,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = $1::text::regclass AND contype = 'f'",
            &name,
        )
        .await
        .into_iter()
        .collect();
        table.checks = pg_strings(
            client,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = $1::text::regclass AND contype = 'c'",
            &name,
        )
        .await
        .iter()
        .map(|c| normalise(c.strip_prefix("CHECK").unwrap_or(c)))
        .collect();
        let indexes = client
            .query(
                "SELECT i.relname::text, x.indisunique, \
                        ARRAY(SELECT pg_get_indexdef(x.indexrelid, k, true) \
                              FROM generate_series(1, x.indnatts::int) AS k ORDER BY k), \
                        pg_get_expr(x.indpred, x.indrelid) \
                 FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
                 WHERE x.indrelid = $1::text::regclass \
                   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
                &[&name],
            )
            .await
            .unwrap();
        for row in &indexes {
            let predicate: Option<String> = row.get(3);
            table.indexes.insert(
                row.get(0),
                Index {
                    unique: row.get(1),
                    columns: row.get(2),
                    predicate: predicate.as_deref().map(normalise),
                },
            );
        }
        table.triggers = pg_strings(
            client,
            "SELECT tgname::text FROM pg_trigger \
             WHERE tgrelid = $1::text::regclass AND NOT tgisinternal",
            &name,
        )
        .await
        .into_iter()
        .collect();
        if name == "audit_log" && table.triggers.remove("audit_log_no_truncate") {
            // PostgreSQL only (see schema_pg's doc); checked by behaviour below.
        }
        schema.insert(name, table);
    }
    schema
}

/// The first difference between the two schemas, table by table so that it names its
/// table (SQLite first, PostgreSQL second); `None` when they are the same.
fn difference(sqlite: &Schema, pg: &Schema) -> Option<String> {
    let (a, b) = (
        sqlite.keys().collect::<Vec<_>>(),
        pg.keys().collect::<Vec<_>>(),
    );
    if a != b {
        return Some(format!("tables: {a:?} against {b:?}"));
    }
    for (name, lite) in sqlite {
        let theirs = &pg[name];
        if lite.columns.len() != theirs.columns.len() {
            return Some(format!(
                "{name}: {} columns against {}",
                lite.columns.len(),
                theirs.columns.len()
            ));
        }
        for (i, (a, b)) in lite.columns.iter().zip(&theirs.columns).enumerate() {
            if a != b {
                return Some(format!("{name} column {i}: {a:?} against {b:?}"));
            }
        }
        if lite != theirs {
            return Some(format!("table {name}: {lite:#?} against {theirs:#?}"));
        }
    }
    None
}

fn assert_same(version: usize, sqlite: &Schema, pg: &Schema) {
    if let Some(d) = difference(sqlite, pg) {
        panic!("after migration {version} (SQLite, then PostgreSQL): {d}");
    }
}

// ---- the test --------------------------------------------------------------------------

async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(conn);
    client
}

fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_migration_gives_postgresql_the_schema_sqlite_has() {
    assert_eq!(
        schema_pg::MIGRATIONS.len(),
        schema::MIGRATIONS.len(),
        "one PostgreSQL migration per SQLite migration"
    );
    assert!(schema_pg::migrate_sql_for(0).is_none());
    assert!(schema_pg::migrate_sql_for(schema::LATEST + 1).is_none());

    let pg = TempPostgres::start().unwrap_or_else(|e| panic!("{e}"));
    let mut client = connect(&pg.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut lite = Connection::open(dir.path().join("readgate.db")).unwrap();
    lite.pragma_update(None, "foreign_keys", "ON").unwrap();

    for version in 1..=schema::MIGRATIONS.len() {
        sqlite_migrate_to(&mut lite, version);
        pg_migrate_to(&mut client, version).await;
        let (s, p) = (sqlite_schema(&lite), pg_schema(&client).await);
        assert!(!s.is_empty());
        assert_same(version, &s, &p);
    }

    // The guards run again (the audit trail re-creates them at open) without a second set.
    client.batch_execute(schema_pg::AUDIT_GUARDS).await.unwrap();
    let guards: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'audit_log'::regclass AND NOT tgisinternal",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(guards, 3);

    // The audit trail is append-only in both.
    let insert = "INSERT INTO audit_log (seq, at_ms, at, boot_id, mono_ns, actor, kind, detail, prev_hash, hash) \
                  VALUES (1, 1, 't', 'b', 1, 'a', 'k', '{}', '', 'h')";
    lite.execute_batch(insert).unwrap();
    client.batch_execute(insert).await.unwrap();
    for statement in [
        "UPDATE audit_log SET actor = 'mallory'",
        "DELETE FROM audit_log",
    ] {
        let e = lite.execute_batch(statement).unwrap_err();
        assert!(
            e.to_string().contains("audit_log is append-only"),
            "SQLite {statement}: {e}"
        );
        let e = client.batch_execute(statement).await.unwrap_err();
        assert_eq!(
            db_message(&e),
            "audit_log is append-only",
            "PostgreSQL {statement}"
        );
    }
    let e = client
        .batch_execute("TRUNCATE audit_log")
        .await
        .unwrap_err();
    assert_eq!(
        db_message(&e),
        "audit_log is append-only",
        "PostgreSQL TRUNCATE"
    );
    let left: i64 = client
        .query_one("SELECT count(*) FROM audit_log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 1);

    // audit_head holds one row, id 1, in both.
    let head = "INSERT INTO audit_head (id, seq, hash) VALUES (2, 1, 'h')";
    assert!(lite.execute_batch(head).is_err());
    assert!(client.batch_execute(head).await.is_err());
    let head = "INSERT INTO audit_head (id, seq, hash) VALUES (1, 1, 'h')";
    lite.execute_batch(head).unwrap();
    client.batch_execute(head).await.unwrap();

    // Keys are assigned when not given; i64 values bind (BIGINT), beyond i32.
    let big: i64 = 1 << 40;
    let id: i64 = client
        .query_one(
            "INSERT INTO events (at, kind) VALUES ($1, 'k') RETURNING id",
            &[&big],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 1);
    let rowids: Vec<i64> = client
        .query(
            "INSERT INTO studies (study_uid, state, first_received_at, last_received_at, updated_at) \
             VALUES ('1.2', 'receiving', $1, $1, $1), ('1.3', 'receiving', $1, $1, $1) RETURNING rowid",
            &[&big],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rowids, [1, 2]);
    let (modalities, check): (String, i64) = {
        let r = client
            .query_one(
                "SELECT modalities, stream_check FROM studies WHERE study_uid = '1.2'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((modalities.as_str(), check), ("", 0));
    client
        .execute(
            "INSERT INTO hl7_messages (received_at, peer, sender, control_id, message_type, raw, ack_code, ack_text, ack) \
             VALUES (1, 'p', 's', 'c', 'ORM', $1, 'AA', '', $1)",
            &[&b"MSH|".to_vec()],
        )
        .await
        .unwrap();

    // Foreign keys hold in both (SQLite: `foreign_keys = ON`, as the store opens it).
    let orphan = "INSERT INTO mpps_instances (mpps_uid, sop_instance_uid) VALUES ('nope', '1')";
    assert!(lite.execute_batch(orphan).is_err());
    assert!(client.batch_execute(orphan).await.is_err());
}

/// The comparison above must be able to fail: each of these edits of the PostgreSQL
/// schema (one kind of difference each) is applied to a database of its own and must be
/// seen against SQLite's schema at the last migration.
#[tokio::test(flavor = "multi_thread")]
async fn the_comparison_sees_each_kind_of_difference() {
    const EDITS: &[(&str, &str, &str)] = &[
        (
            "a 4-byte integer",
            "found       BIGINT NOT NULL DEFAULT 0",
            "found       INTEGER NOT NULL DEFAULT 0",
        ),
        ("a type class", "raw          BYTEA NOT NULL", "raw          TEXT NOT NULL"),
        (
            "a default",
            "modalities        TEXT NOT NULL DEFAULT ''",
            "modalities        TEXT NOT NULL DEFAULT 'x'",
        ),
        (
            "a NOT NULL",
            "error      TEXT NOT NULL\n",
            "error      TEXT\n",
        ),
        (
            "column order",
            "reader_id   TEXT NOT NULL,\n    action      TEXT NOT NULL,",
            "action      TEXT NOT NULL,\n    reader_id   TEXT NOT NULL,",
        ),
        (
            "an assigned key",
            "id                BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n    message_id        BIGINT NOT NULL REFERENCES hl7_messages(id),\n    received_at       BIGINT NOT NULL,\n    order_control",
            "id                BIGINT PRIMARY KEY,\n    message_id        BIGINT NOT NULL REFERENCES hl7_messages(id),\n    received_at       BIGINT NOT NULL,\n    order_control",
        ),
        (
            "a primary key's order",
            "PRIMARY KEY (patient_id, pacs_id)",
            "PRIMARY KEY (pacs_id, patient_id)",
        ),
        ("a CHECK", " CHECK (id = 1)", ""),
        ("a foreign key", " REFERENCES mpps(mpps_uid)", ""),
        (
            "an index name",
            "CREATE INDEX IF NOT EXISTS orders_by_study ",
            "CREATE INDEX IF NOT EXISTS orders_by_study_uid ",
        ),
        (
            "an index's columns",
            "ON studies(state, last_received_at)",
            "ON studies(last_received_at, state)",
        ),
        (
            "an index's predicate",
            "WHERE state = 'queued'",
            "WHERE state = 'sent'",
        ),
        (
            "a unique index",
            "CREATE INDEX mpps_by_study",
            "CREATE UNIQUE INDEX mpps_by_study",
        ),
        (
            "a trigger",
            "CREATE TRIGGER audit_log_no_delete",
            "CREATE TRIGGER audit_log_no_remove",
        ),
    ];

    let dir = tempfile::tempdir().unwrap();
    let mut lite = Connection::open(dir.path().join("readgate.db")).unwrap();
    for version in 1..=schema::MIGRATIONS.len() {
        sqlite_migrate_to(&mut lite, version);
    }
    let sqlite = sqlite_schema(&lite);

    let pg = TempPostgres::start().unwrap_or_else(|e| panic!("{e}"));
    let client = connect(&pg.url()).await;
    // First the schema unedited (edit 0, which changes nothing): no difference, so that
    // the edits below are seen for what they change, not because a schema went unread.
    let unchanged = ("nothing", "CREATE TABLE", "CREATE TABLE");
    for (i, (what, from, to)) in std::iter::once(&unchanged).chain(EDITS).enumerate() {
        let batches: Vec<&str> = schema_pg::MIGRATIONS
            .iter()
            .flat_map(|m| m.iter().copied())
            .collect();
        if i > 0 {
            assert_eq!(
                batches
                    .iter()
                    .map(|b| b.matches(from).count())
                    .sum::<usize>(),
                1,
                "{what}: {from:?} must occur once in schema_pg"
            );
        }
        // A schema of its own per edit (a database each would cost a checkpoint each); one
        // transaction, not waiting on the WAL's fsync: nothing here is about durability.
        let edited_sql: Vec<String> = batches.iter().map(|b| b.replace(from, to)).collect();
        client
            .batch_execute(&format!(
                "SET synchronous_commit = off; CREATE SCHEMA edit{i}; SET search_path TO edit{i}; \
                 BEGIN; {}; COMMIT",
                edited_sql.join(";\n")
            ))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let edited = pg_schema(&client).await;
        if i == 0 {
            assert_eq!(difference(&sqlite, &edited), None);
        } else {
            assert!(
                difference(&sqlite, &edited).is_some(),
                "{what}: the edit went unseen"
            );
        }
    }
}
