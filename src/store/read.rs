//! Read models for the CLI, the REST API, the console and metrics: study listings and
//! detail (instances, timeline), lookup by UID or accession, per-destination and
//! per-state counts.

use super::{Result, Store};
use crate::db::{params, Backend, OptionalExtension};
use crate::model::{CompletionSignal, EventKind, InstanceState, StudyState};
use serde::{Deserialize, Serialize};

/// A study as listed by `readgate studies`, the API and the console.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudyRow {
    pub study_uid: String,
    pub state: StudyState,
    pub accession: Option<String>,
    pub modalities: String,
    pub calling_aes: String,
    pub instance_count: i64,
    pub bytes: i64,
    pub instances_forwarded: i64,
    pub first_received_at: i64,
    pub last_received_at: i64,
    pub destination: Option<String>,
    pub facility: Option<String>,
    pub reasons: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub forwarded_at: Option<i64>,
    pub last_error: Option<String>,
    pub updated_at: i64,
    /// What completed it (the quiet period, its MPPS step, its order's image count);
    /// `None` while it is receiving.
    pub completed_by: Option<CompletionSignal>,
    /// Its stream, when its route streamed it (`[[routes]] forward`).
    pub stream: Option<crate::model::StreamState>,
}

impl StudyRow {
    /// Its time to reader: from its last instance received to its last instance
    /// acknowledged by the destination, in seconds; `None` until it is forwarded.
    pub fn time_to_reader_secs(&self) -> Option<f64> {
        self.forwarded_at
            .map(|at| (at - self.last_received_at).max(0) as f64 / 1000.0)
    }
}

/// A held study as the held page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct HeldStudy {
    pub study: StudyRow,
    /// Patient's Name (0010,0010) as decoded from the header, `=`-separated groups.
    pub patient_name: Option<String>,
}

/// How a study is found from HL7: its UID, accession and patient.
#[derive(Debug, Clone, Serialize)]
pub struct StudyKeys {
    pub study_uid: String,
    pub accession: Option<String>,
    pub patient_id: Option<String>,
    pub state: StudyState,
}

/// One instance of a study, for its detail view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceRow {
    pub sop_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax: String,
    pub state: InstanceState,
    pub path: String,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

/// One entry of a study's timeline (`events` table).
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at: i64,
    pub study_uid: Option<String>,
    pub kind: EventKind,
    pub detail: String,
}

/// (destination, studies queued, instances waiting, last forwarded at).
pub type DestinationStats = (String, i64, i64, Option<i64>);

impl Store {
    /// One study's row, as [`Store::list_studies`] gives it.
    pub fn study_row(&self, study_uid: &str) -> Result<Option<StudyRow>> {
        let sql = format!("{STUDY_ROW_SELECT} WHERE s.study_uid = ?1");
        Ok(self.query_as(&sql, [study_uid])?.into_iter().next())
    }

    /// Studies, newest first, optionally in one state only.
    pub fn list_studies(&self, state: Option<StudyState>, limit: usize) -> Result<Vec<StudyRow>> {
        let sql = format!(
            "{STUDY_ROW_SELECT} WHERE (CAST(?1 AS TEXT) IS NULL OR s.state = ?1) ORDER BY s.last_received_at DESC LIMIT ?2"
        );
        self.query_as(&sql, params![state, limit.min(i64::MAX as usize) as i64])
    }

    /// The held studies, newest first, each with its patient's name (PN as received, from
    /// the first instance that has one): everything the held page shows, in one query.
    pub fn held_studies(&self, limit: usize) -> Result<Vec<HeldStudy>> {
        let conn = self.conn();
        let name = match conn.backend() {
            Backend::Sqlite => {
                "(SELECT json_extract(i.context, '$.\"0010,0010\"') FROM instances i \
                 WHERE i.study_uid = s.study_uid AND json_valid(i.context) \
                 AND json_extract(i.context, '$.\"0010,0010\"') IS NOT NULL LIMIT 1)"
            }
            // readgate writes `context` with serde_json: it is always JSON.
            Backend::Postgres => {
                "(SELECT CAST(i.context AS jsonb) ->> '0010,0010' FROM instances i \
                 WHERE i.study_uid = s.study_uid \
                 AND CAST(i.context AS jsonb) ->> '0010,0010' IS NOT NULL LIMIT 1)"
            }
        };
        let sql = format!(
            "{STUDY_ROW_COLUMNS}, {name} AS patient_name \
             FROM studies s WHERE s.state = 'held' ORDER BY s.last_received_at DESC LIMIT ?1"
        );
        let rows = conn.query(&sql, [limit.min(i64::MAX as usize) as i64])?;
        let mut out = Vec::new();
        for r in &rows {
            out.push(HeldStudy {
                study: r.to()?,
                patient_name: r.get("patient_name")?,
            });
        }
        Ok(out)
    }

    /// Per destination: studies queued, instances waiting, last forwarding (cheap SQL,
    /// for the queue view and metrics).
    pub fn destination_stats(&self) -> Result<Vec<DestinationStats>> {
        self.query_all(
            "SELECT s.destination, SUM(CASE WHEN s.state = 'queued' THEN 1 ELSE 0 END), \
             (SELECT COUNT(*) FROM instances i JOIN studies t ON t.study_uid = i.study_uid \
              WHERE t.destination = s.destination AND t.state IN ('queued', 'receiving') AND i.state = 'queued'), \
             MAX(s.forwarded_at) FROM studies s WHERE s.destination IS NOT NULL GROUP BY s.destination",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
    }

    /// A study by Study Instance UID or accession number.
    pub fn find_study(&self, key: &str) -> Result<Option<StudyKeys>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT study_uid, accession, patient_id, state FROM studies \
                 WHERE study_uid = ?1 OR accession = ?1 ORDER BY last_received_at DESC LIMIT 1",
                [key],
                |r| {
                    Ok(StudyKeys {
                        study_uid: r.get(0)?,
                        accession: r.get(1)?,
                        patient_id: r.get(2)?,
                        state: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// A study's instances, oldest first.
    pub fn instances_of(&self, study_uid: &str) -> Result<Vec<InstanceRow>> {
        self.query_as(
            "SELECT sop_uid, sop_class_uid, transfer_syntax, state, path, last_status, last_error \
             FROM instances WHERE study_uid = ?1 ORDER BY received_at",
            [study_uid],
        )
    }

    /// A study's timeline, in order.
    pub fn events_of(&self, study_uid: &str) -> Result<Vec<Event>> {
        self.query_all(
            "SELECT at, study_uid, kind, detail FROM events WHERE study_uid = ?1 ORDER BY id",
            [study_uid],
            |r| {
                Ok(Event {
                    at: r.get(0)?,
                    study_uid: r.get(1)?,
                    kind: r.get(2)?,
                    detail: r.get(3)?,
                })
            },
        )
    }

    /// How many studies are in each state (states without a study are absent).
    pub fn count_by_state(&self) -> Result<Vec<(StudyState, i64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT state, COUNT(*) FROM studies GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<crate::db::Result<Vec<_>>>()?)
    }
}

/// The columns of a [`StudyRow`], each named as its field.
macro_rules! study_row_columns {
    () => {
        "SELECT s.study_uid, s.state, s.accession, s.modalities, s.calling_aes, s.instance_count, \
     s.bytes, (SELECT COUNT(*) FROM instances i WHERE i.study_uid = s.study_uid AND i.state = 'forwarded') \
     AS instances_forwarded, \
     s.first_received_at, s.last_received_at, s.destination, s.facility, s.reasons, s.attempts, \
     s.next_attempt_at, s.forwarded_at, s.last_error, s.updated_at, s.completed_by, s.stream"
    };
}
const STUDY_ROW_COLUMNS: &str = study_row_columns!();
const STUDY_ROW_SELECT: &str = concat!(study_row_columns!(), " FROM studies s");

impl Store {
    /// The held study held longest (by when it was last touched), and when that was.
    pub fn oldest_held(&self) -> Result<Option<(String, i64)>> {
        use crate::db::OptionalExtension;
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT study_uid, updated_at FROM studies WHERE state = 'held' \
                 ORDER BY updated_at LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }
}
