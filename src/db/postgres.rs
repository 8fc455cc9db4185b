//! PostgreSQL through tokio-postgres, the maintained async driver, behind the same
//! blocking calls as SQLite.
//!
//! The driver's connections live on a small runtime of their own (two threads, created
//! on first use). A call sends its statement there and waits on a channel for the answer,
//! so it blocks only its own thread and works from any thread, runtime worker or not
//! (the store is called from `spawn_blocking` threads, the CLI and tests).
//!
//! The connection is plain or TLS as the URL's `sslmode` asks ([`super::pgtls`]).
//!
//! Statements are prepared once per connection and kept. Parameters are bound with the
//! types the server inferred for them, so the neutral values (i64, f64, text, bytes)
//! go into BIGINT, INTEGER, DOUBLE PRECISION, TEXT, JSON or BYTEA as the column needs.

use super::row::Row;
use super::sql;
use super::value::{Params, Value};
use super::{DbError, Result};
use bytes::{BufMut, BytesMut};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};
use tokio_postgres::{Client, NoTls, Statement};

/// The runtime the driver's connections run on.
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> =
        OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("readgate-pg")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the PostgreSQL driver's runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| DbError::Driver(e.clone()))
}

/// Runs `fut` on the driver's runtime and waits for its result.
fn run<T: Send + 'static>(fut: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| {
        DbError::Driver("the PostgreSQL driver's task ended without an answer".into())
    })?
}

/// The server's message, its SQLSTATE and where it points, not only "db error".
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                s.push_str(": ");
                s.push_str(detail);
            }
            s
        }
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// Statements kept prepared per connection, at most.
const MAX_PREPARED: usize = 256;

/// A prepared statement and its column names.
#[derive(Clone)]
struct Prepared {
    statement: Statement,
    columns: Arc<[String]>,
}

/// One connection to a PostgreSQL server. When the server closed it (a restart, a
/// failover, a network cut), the next statement outside a transaction connects again;
/// one inside a transaction fails, as the transaction did.
pub(super) struct PgConn {
    url: String,
    client: Mutex<Arc<Client>>,
    prepared: Mutex<HashMap<String, Prepared>>,
    in_transaction: std::sync::atomic::AtomicBool,
}

impl PgConn {
    pub(super) fn connect(url: &str) -> Result<PgConn> {
        Ok(PgConn {
            url: url.to_string(),
            client: Mutex::new(PgConn::open(url)?),
            prepared: Mutex::new(HashMap::new()),
            in_transaction: Default::default(),
        })
    }

    /// Marks the start or the end of a transaction (see [`PgConn::client`]).
    pub(super) fn set_in_transaction(&self, yes: bool) {
        self.in_transaction
            .store(yes, std::sync::atomic::Ordering::Relaxed);
    }

    /// The client, connected again first if the server closed the connection and no
    /// transaction was open on it.
    fn client(&self) -> Result<Arc<Client>> {
        let mut client = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if client.is_closed() {
            if self
                .in_transaction
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                return Err(DbError::Driver(
                    "the PostgreSQL connection closed inside a transaction".into(),
                ));
            }
            *client = PgConn::open(&self.url)?;
            self.prepared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            tracing::info!(
                database = %super::redact_url(&self.url),
                "connected to PostgreSQL again"
            );
        }
        Ok(client.clone())
    }

    /// Connects, plain or over TLS as the URL's `sslmode` says ([`super::pgtls`]).
    fn open(url: &str) -> Result<Arc<Client>> {
        let target = super::pgtls::parse(url).map_err(DbError::Driver)?;
        let tls = super::pgtls::connector(&target.mode).map_err(DbError::Driver)?;
        let url = target.driver_url;
        let client = run(async move {
            let client = match tls {
                None => {
                    let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
                    tokio::spawn(drive(connection));
                    client
                }
                Some(tls) => {
                    let (client, connection) = tokio_postgres::connect(&url, tls).await?;
                    tokio::spawn(drive(connection));
                    client
                }
            };
            Ok(client)
        })?;
        Ok(Arc::new(client))
    }

    fn prepare(&self, sql: &str) -> Result<Prepared> {
        let cached = self
            .prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sql)
            .cloned();
        if let Some(p) = cached {
            if !self
                .client
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_closed()
            {
                return Ok(p);
            }
        }
        let client = self.client()?;
        let text = sql::to_postgres(sql);
        let statement = run(async move { Ok(client.prepare(&text).await?) })?;
        let columns = statement
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        let p = Prepared { statement, columns };
        let mut prepared = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded as rusqlite's cache is: SQL built at run time (searches with their
        // own limits) must not pile up statements on the server.
        if prepared.len() >= MAX_PREPARED {
            prepared.clear();
        }
        prepared.insert(sql.to_string(), p.clone());
        Ok(p)
    }

    pub(super) fn execute(&self, sql: &str, params: &Params) -> Result<usize> {
        let p = self.prepare(sql)?;
        let args = owned(params);
        let client = self.client()?;
        let n = run(async move {
            let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
            Ok(client.execute(&p.statement, &refs).await?)
        })?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub(super) fn execute_batch(&self, sql: &str) -> Result<()> {
        let client = self.client()?;
        let sql = sql.to_string();
        run(async move { Ok(client.batch_execute(&sql).await?) })
    }

    pub(super) fn query(&self, sql: &str, params: &Params) -> Result<Vec<Row>> {
        let p = self.prepare(sql)?;
        let args = owned(params);
        let client = self.client()?;
        run(async move {
            let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
            let rows = client.query(&p.statement, &refs).await?;
            rows.iter().map(|r| read_row(r, &p.columns)).collect()
        })
    }
}

/// Runs a connection until it closes (the client's requests go through it).
async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = connection.await {
        tracing::warn!(error = %describe(&e), "PostgreSQL connection closed");
    }
}

fn owned(params: &Params) -> Vec<Param> {
    params.iter().map(|p| Param(p.into_owned())).collect()
}

/// A neutral value bound to a parameter of whatever type the server inferred for it.
#[derive(Debug)]
struct Param(Value);

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Param {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        match (&self.0, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Integer(i), &Type::INT8) => i.to_sql(ty, out),
            (Value::Integer(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (Value::Integer(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
            (Value::Integer(i), &Type::TEXT | &Type::VARCHAR) => i.to_string().to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT8) => f.to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT4) => (*f as f32).to_sql(ty, out),
            (Value::Text(s), &Type::JSON) => {
                out.put_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            (Value::Text(s), &Type::JSONB) => {
                // jsonb's binary form: a version byte, then the text.
                out.put_u8(1);
                out.put_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            (Value::Text(s), _) if <&str as ToSql>::accepts(ty) => s.as_str().to_sql(ty, out),
            (Value::Blob(b), &Type::BYTEA) => b.as_slice().to_sql(ty, out),
            (v, ty) => Err(format!(
                "cannot bind a {} value to a parameter of type {ty}",
                v.kind()
            )
            .into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A JSON or JSONB column's text.
struct JsonText(String);

impl<'a> FromSql<'a> for JsonText {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<JsonText, BoxError> {
        let raw = if *ty == Type::JSONB {
            raw.get(1..).ok_or("empty jsonb value")?
        } else {
            raw
        };
        Ok(JsonText(std::str::from_utf8(raw)?.to_string()))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON || *ty == Type::JSONB
    }
}

fn read_row(r: &tokio_postgres::Row, columns: &Arc<[String]>) -> Result<Row> {
    let mut values = Vec::with_capacity(columns.len());
    for (i, c) in r.columns().iter().enumerate() {
        let ty = c.type_();
        let v = match *ty {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Value::Integer),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Integer(v.into())),
            Type::INT2 => r
                .try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Integer(v.into())),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)?
                .map(|v| Value::Integer(v.into())),
            Type::FLOAT8 => r.try_get::<_, Option<f64>>(i)?.map(Value::Real),
            Type::FLOAT4 => r
                .try_get::<_, Option<f32>>(i)?
                .map(|v| Value::Real(v.into())),
            Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob),
            Type::JSON | Type::JSONB => r
                .try_get::<_, Option<JsonText>>(i)?
                .map(|j| Value::Text(j.0)),
            _ if <String as FromSql>::accepts(ty) => {
                r.try_get::<_, Option<String>>(i)?.map(Value::Text)
            }
            _ => {
                return Err(DbError::Column {
                    column: c.name().to_string(),
                    why: format!(
                        "PostgreSQL type {ty} is not one readgate reads (CAST it to BIGINT, \
                         DOUBLE PRECISION or TEXT in the query)"
                    ),
                })
            }
        };
        values.push(v.unwrap_or(Value::Null));
    }
    Ok(Row {
        columns: columns.clone(),
        values,
    })
}
