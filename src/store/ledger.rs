//! The reading ledger's tables: read events from reading systems (REST), the imported
//! roster (every import kept, earlier ones retired, never deleted), and the bulk queries
//! `readgate report` runs over a month.

use super::{Result, Store};
use crate::db::{params, OptionalExtension};
use crate::model::{Employment, EventKind, ReadAction, StudyState};
use serde::{Deserialize, Serialize};

/// A read event to record (validated by the caller).
#[derive(Debug, Clone)]
pub struct NewReadEvent {
    pub study_uid: String,
    pub accession: Option<String>,
    pub reader_id: String,
    pub action: ReadAction,
    pub at: i64,
    pub workstation: Option<String>,
    pub client_ip: Option<String>,
    /// `rest:<token name>`.
    pub source: String,
    pub received_at: i64,
    /// The resolution at recording time (JSON), kept as evidence.
    pub resolved: String,
}

/// A read event's row, answering its id; [`NewReadEvent::columns`] gives its values in
/// this order.
const INSERT_READ_EVENT: &str = "INSERT INTO read_events (study_uid, accession, reader_id, \
     action, at, workstation, client_ip, source, received_at, resolved) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id";

impl NewReadEvent {
    /// The values of [`INSERT_READ_EVENT`], in its order.
    fn columns(&self) -> [&dyn crate::db::ToValue; 10] {
        [
            &self.study_uid,
            &self.accession,
            &self.reader_id,
            &self.action,
            &self.at,
            &self.workstation,
            &self.client_ip,
            &self.source,
            &self.received_at,
            &self.resolved,
        ]
    }
}

/// One entry of an imported roster as stored in the `roster` table. The ledger turns it
/// into a `ledger::roster::Reader` (and back, for an import).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterEntry {
    /// The reader's ids (stored joined with `|`).
    pub ids: Vec<String>,
    pub name: String,
    /// The receiving facility the reader reads for.
    pub facility: String,
    pub employment: Employment,
    pub board_certified: bool,
    /// First and last day of validity (YYYY-MM-DD, inclusive); None: unbounded.
    pub valid_from: Option<String>,
    pub valid_to: Option<String>,
    /// Where the import came from (the file name given to `readgate roster import`).
    pub source: String,
}

/// What a read event needs to know of its study.
#[derive(Debug, Clone, Serialize)]
pub struct ReadTarget {
    pub study_uid: String,
    pub accession: Option<String>,
    pub state: StudyState,
    /// The receiving facility the route made responsible (None while undecided).
    pub facility: Option<String>,
}

/// A study as the ledger sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerStudy {
    /// SQLite rowid of the study row (joins below return it instead of the UID).
    #[serde(skip_serializing)]
    pub rowid: i64,
    pub study_uid: String,
    pub accession: Option<String>,
    pub state: StudyState,
    pub verdict: Option<crate::model::Disposition>,
    pub destination: Option<String>,
    pub facility: Option<String>,
    pub modalities: String,
    pub first_received_at: i64,
    pub forwarded_at: Option<i64>,
    /// Hold / incomplete reasons as stored by the decision stage (JSON array).
    pub reasons: Option<String>,
    pub override_by: Option<String>,
    pub override_reason: Option<String>,
}

/// A stored read event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadEventRow {
    pub id: i64,
    /// The study's rowid (see [`LedgerStudy::rowid`]).
    pub study: i64,
    pub reader_id: String,
    pub action: ReadAction,
    pub at: i64,
    pub workstation: Option<String>,
    pub client_ip: Option<String>,
    pub source: String,
}

/// A stored HL7 report version, as the ledger needs it.
#[derive(Debug, Clone, Deserialize)]
pub struct LedgerReport {
    pub id: i64,
    /// The study's rowid (see [`LedgerStudy::rowid`]).
    pub study: i64,
    pub status: String,
    pub signer_id: Option<String>,
    pub assistant_ids: String,
    pub report_time: Option<String>,
    pub received_at: i64,
    pub text: String,
    pub result: String,
    pub control_id: String,
    pub sender: String,
}

/// A study timeline event (held, released, …).
#[derive(Debug, Clone, Serialize)]
pub struct LedgerTimelineEvent {
    pub study_uid: String,
    pub at: i64,
    pub kind: EventKind,
    pub detail: String,
}

impl Store {
    /// The study a read event names: by Study Instance UID, else by accession number.
    pub fn read_target(
        &self,
        study_uid: Option<&str>,
        accession: Option<&str>,
    ) -> Result<Option<ReadTarget>> {
        let conn = self.conn();
        let map = |r: &crate::db::Row| {
            Ok(ReadTarget {
                study_uid: r.get(0)?,
                accession: r.get(1)?,
                state: r.get(2)?,
                facility: r.get(3)?,
            })
        };
        if let Some(uid) = study_uid {
            let found = conn
                .prepare_cached(
                    "SELECT study_uid, accession, state, facility FROM studies WHERE study_uid = ?1",
                )?
                .query_row([uid], map)
                .optional()?;
            return Ok(found);
        }
        let Some(acc) = accession else {
            return Ok(None);
        };
        let found = conn
            .prepare_cached(
                "SELECT study_uid, accession, state, facility FROM studies WHERE accession = ?1 \
                 ORDER BY last_received_at DESC LIMIT 1",
            )?
            .query_row([acc], map)
            .optional()?;
        Ok(found)
    }

    /// Records one read event; returns its id.
    pub fn record_read_event(&self, e: &NewReadEvent) -> Result<i64> {
        Ok(self
            .conn()
            .query_row(INSERT_READ_EVENT, &e.columns()[..], |r| r.get(0))?)
    }

    /// Replaces the imported roster with `entries` (earlier imports are retired, kept).
    pub fn import_roster(&self, entries: &[RosterEntry], source: &str, now: i64) -> Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE roster SET retired_at = ?1 WHERE retired_at IS NULL",
            [now],
        )?;
        for r in entries {
            tx.execute(
                "INSERT INTO roster (ids, name, facility, employment, board_certified, valid_from, \
                 valid_to, source, imported_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    r.ids.join("|"),
                    r.name,
                    r.facility,
                    r.employment,
                    r.board_certified,
                    r.valid_from.as_deref().filter(|s| !s.is_empty()),
                    r.valid_to.as_deref().filter(|s| !s.is_empty()),
                    source,
                    now
                ],
            )?;
        }
        tx.commit()?;
        Ok(entries.len())
    }

    /// The current imported roster, as stored (the ledger turns entries into readers).
    pub fn imported_roster(&self) -> Result<Vec<RosterEntry>> {
        self.query_all(
            "SELECT ids, name, facility, employment, board_certified, valid_from, valid_to, source \
             FROM roster WHERE retired_at IS NULL ORDER BY id",
            [],
            |r| {
            Ok(RosterEntry {
                ids: r
                    .get::<_, String>(0)?
                    .split('|')
                    .map(str::to_string)
                    .collect(),
                name: r.get(1)?,
                facility: r.get(2)?,
                employment: r.get(3)?,
                board_certified: r.get(4)?,
                valid_from: r.get(5)?,
                valid_to: r.get(6)?,
                source: r.get(7)?,
            })
        },
        )
    }

    /// Changes whenever a roster is imported (the server reloads its roster then).
    pub fn roster_version(&self) -> Result<(i64, i64)> {
        let conn = self.conn();
        let v = conn
            .prepare_cached(
                "SELECT COALESCE(MAX(id), 0), COALESCE(MAX(retired_at), 0) FROM roster",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(v)
    }

    /// Memory-maps the database and enlarges the page cache of both connections for a
    /// month-sized scan (`readgate report`): without it every page is a read() call.
    pub fn prepare_bulk_read(&self) -> Result<()> {
        for conn in [self.conn(), self.hl7_conn()] {
            // SQLite only: a PostgreSQL server has its own shared buffers.
            if let Some(c) = conn.as_sqlite() {
                c.pragma_update(None, "mmap_size", 1_i64 << 30)
                    .map_err(crate::db::DbError::from)?;
                c.pragma_update(None, "cache_size", -131_072_i64)
                    .map_err(crate::db::DbError::from)?;
            }
        }
        Ok(())
    }

    /// Studies first received in [start, end).
    pub fn ledger_studies(&self, start: i64, end: i64) -> Result<Vec<LedgerStudy>> {
        self.query_as(
            "SELECT study_uid, accession, state, verdict, destination, facility, modalities, \
             first_received_at, forwarded_at, reasons, override_by, override_reason, rowid AS rowid \
             FROM studies WHERE first_received_at >= ?1 AND first_received_at < ?2 \
             ORDER BY first_received_at, study_uid",
            [start, end],
        )
    }

    /// Read events of the studies first received in [start, end), by study then time.
    pub fn ledger_read_events(&self, start: i64, end: i64) -> Result<Vec<ReadEventRow>> {
        let join = studies_first(self.conn().backend());
        self.query_as(
            &format!(
                "SELECT e.id, s.rowid AS study, e.reader_id, e.action, e.at, e.workstation, \
                 e.client_ip, e.source \
                 FROM studies s {join} read_events e ON e.study_uid = s.study_uid \
                 WHERE s.first_received_at >= ?1 AND s.first_received_at < ?2"
            ),
            [start, end],
        )
    }

    /// HL7 report versions of the studies first received in [start, end), matched by
    /// study UID, else by accession number (as `readgate orders` matches them).
    ///
    /// Runs on the HL7 connection, so that `readgate report` can read reports and read
    /// events at the same time.
    pub fn ledger_reports(&self, start: i64, end: i64) -> Result<Vec<LedgerReport>> {
        let conn = self.hl7_conn();
        let join = studies_first(conn.backend());
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for sql in [
            format!(
                "SELECT r.id, s.rowid AS study, r.status, r.signer_id, r.assistant_ids, r.report_time, \
                 r.received_at, r.text, r.result, m.control_id, m.sender \
                 FROM studies s {join} reports r ON r.study_uid = s.study_uid \
                 JOIN hl7_messages m ON m.id = r.message_id \
                 WHERE s.first_received_at >= ?1 AND s.first_received_at < ?2"
            ),
            format!(
                "SELECT r.id, s.rowid AS study, r.status, r.signer_id, r.assistant_ids, r.report_time, \
                 r.received_at, r.text, r.result, m.control_id, m.sender \
                 FROM studies s {join} reports r ON r.accession = s.accession \
                 JOIN hl7_messages m ON m.id = r.message_id \
                 WHERE s.first_received_at >= ?1 AND s.first_received_at < ?2 \
                 AND s.accession IS NOT NULL AND s.accession != '' \
                 AND COALESCE(r.study_uid, '') = ''"
            ),
        ] {
            for row in conn.query_as::<LedgerReport>(&sql, [start, end])? {
                if seen.insert((row.id, row.study)) {
                    out.push(row);
                }
            }
        }
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    /// Timeline events (hold, release, override, reject, incomplete) of the studies first
    /// received in [start, end).
    pub fn ledger_timeline(&self, start: i64, end: i64) -> Result<Vec<LedgerTimelineEvent>> {
        let join = studies_first(self.conn().backend());
        self.query_all(
            &format!(
                "SELECT e.study_uid, e.at, e.kind, e.detail FROM studies s \
                 {join} events e ON e.study_uid = s.study_uid \
                 WHERE s.first_received_at >= ?1 AND s.first_received_at < ?2 \
                 AND e.kind IN ('held', 'released-override', 'rejected', 'context', 'failed') \
                 ORDER BY e.id"
            ),
            [start, end],
            |r| {
                Ok(LedgerTimelineEvent {
                    study_uid: r.get(0)?,
                    at: r.get(1)?,
                    kind: r.get(2)?,
                    detail: r.get(3)?,
                })
            },
        )
    }

    /// Runs `f` inside one transaction on the main connection (bulk loads).
    pub fn with_transaction<T>(
        &self,
        f: impl FnOnce(&crate::db::Tx<'_>) -> crate::db::Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let v = f(&tx)?;
        tx.commit()?;
        Ok(v)
    }
}

/// The join of a month's studies to their rows elsewhere: on SQLite `CROSS JOIN`, which
/// makes its planner read the month's studies first (by `first_received_at`) rather than
/// scan the other table; PostgreSQL plans by statistics and has no such form (`CROSS
/// JOIN … ON` is a syntax error there).
fn studies_first(backend: crate::db::Backend) -> &'static str {
    match backend {
        crate::db::Backend::Sqlite => "CROSS JOIN",
        crate::db::Backend::Postgres => "JOIN",
    }
}
