//! What the hospital's PACS answered about each patient (`pacs_lookups`, `pacs_studies`):
//! written by `priors::lookup`, read by `decide::assemble` and the study views.

use super::{Result, Store};
use crate::db::{params, Backend};
use crate::model::PacsStudy;

/// The last lookup of one patient in one PACS.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PacsLookup {
    pub patient_id: String,
    pub pacs_id: String,
    /// When it finished (ms since the Unix epoch).
    pub at: i64,
    /// Why it failed; `None` when the PACS answered.
    pub error: Option<String>,
    /// Studies found (when it answered).
    pub found: u32,
}

/// A study found in a PACS, with its report documents (SR, encapsulated PDF/CDA).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FoundStudy {
    pub pacs_id: String,
    pub patient_id: String,
    #[serde(flatten)]
    pub study: PacsStudy,
    pub documents: u32,
}

impl Store {
    /// Records a finished lookup: on an answer, the patient's studies in that PACS are
    /// replaced by what it found; on a failure, what was found before stays.
    pub fn record_pacs_lookup(
        &self,
        patient_id: &str,
        pacs_id: &str,
        at: i64,
        outcome: std::result::Result<&[(PacsStudy, u32)], &str>,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let (error, found) = match outcome {
            Ok(studies) => {
                tx.execute(
                    "DELETE FROM pacs_studies WHERE patient_id = ?1 AND pacs_id = ?2",
                    params![patient_id, pacs_id],
                )?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO pacs_studies (pacs_id, patient_id, study_uid, accession, \
                     study_date, study_time, modalities, description, instances, documents, issuer, \
                     body_parts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
                     ON CONFLICT (patient_id, pacs_id, study_uid) DO UPDATE SET \
                     accession = excluded.accession, study_date = excluded.study_date, \
                     study_time = excluded.study_time, modalities = excluded.modalities, \
                     description = excluded.description, instances = excluded.instances, \
                     documents = excluded.documents, issuer = excluded.issuer, \
                     body_parts = excluded.body_parts",
                )?;
                for (s, documents) in studies {
                    insert.execute(params![
                        pacs_id,
                        patient_id,
                        s.study_uid,
                        s.accession,
                        s.date,
                        s.time,
                        s.modalities.join(" "),
                        s.description,
                        s.instances,
                        documents,
                        s.issuer,
                        s.body_parts.join(" ")
                    ])?;
                }
                (None, studies.len() as i64)
            }
            Err(e) => (Some(e), 0),
        };
        tx.execute(
            "INSERT INTO pacs_lookups (patient_id, pacs_id, at, ok, error, found) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (patient_id, pacs_id) DO UPDATE SET at = ?3, ok = ?4, error = ?5, \
             found = CASE WHEN ?4 <> 0 THEN ?6 ELSE pacs_lookups.found END",
            params![patient_id, pacs_id, at, error.is_none(), error, found],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The last lookups of these patients (every PACS).
    pub fn pacs_lookups(&self, patient_ids: &[String]) -> Result<Vec<PacsLookup>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT patient_id, pacs_id, at, error, found FROM pacs_lookups WHERE patient_id = ?1 \
             ORDER BY pacs_id",
        )?;
        let mut out = Vec::new();
        for id in patient_ids {
            for row in stmt.query_map([id], |r| {
                Ok(PacsLookup {
                    patient_id: r.get(0)?,
                    pacs_id: r.get(1)?,
                    at: r.get(2)?,
                    error: r.get(3)?,
                    found: r.get(4)?,
                })
            })? {
                out.push(row?);
            }
        }
        Ok(out)
    }

    /// The studies the PACS holds for these patients, newest first.
    pub fn pacs_studies(&self, patient_ids: &[String]) -> Result<Vec<FoundStudy>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT pacs_id, patient_id, study_uid, accession, study_date, study_time, modalities, \
             description, instances, documents, issuer, body_parts FROM pacs_studies \
             WHERE patient_id = ?1",
        )?;
        let mut out = Vec::new();
        for id in patient_ids {
            for row in stmt.query_map([id], |r| {
                let modalities: String = r.get(6)?;
                Ok(FoundStudy {
                    pacs_id: r.get(0)?,
                    patient_id: r.get(1)?,
                    study: PacsStudy {
                        study_uid: r.get(2)?,
                        accession: r.get(3)?,
                        date: r.get(4)?,
                        time: r.get(5)?,
                        modalities: modalities.split_whitespace().map(String::from).collect(),
                        description: r.get(7)?,
                        instances: r.get(8)?,
                        issuer: r.get(10)?,
                        body_parts: r
                            .get::<_, Option<String>>(11)?
                            .unwrap_or_default()
                            .split_whitespace()
                            .map(String::from)
                            .collect(),
                    },
                    documents: r.get(9)?,
                })
            })? {
                out.push(row?);
            }
        }
        out.sort_by(|a, b| (&b.study.date, &b.study.time).cmp(&(&a.study.date, &a.study.time)));
        Ok(out)
    }

    /// The earliest Study Date (DA) of the patient's studies being received or held: the
    /// PACS is asked back from there, since the check counts priors back from each
    /// study's own date, and a study can be dated long before today.
    pub fn earliest_open_study_date(&self, patient_ids: &[String]) -> Result<Option<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(match conn.backend() {
            Backend::Sqlite => {
                "SELECT MIN(d) FROM (SELECT json_extract(i.context, '$.\"0008,0020\"') AS d \
                 FROM studies s JOIN instances i ON i.study_uid = s.study_uid \
                 WHERE s.patient_id = ?1 AND s.state IN ('receiving', 'held') \
                 AND json_valid(i.context)) AS dates \
                 WHERE d GLOB '[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]'"
            }
            // readgate writes `context` with serde_json: it is always JSON.
            Backend::Postgres => {
                "SELECT MIN(d) FROM (SELECT CAST(i.context AS jsonb) ->> '0008,0020' AS d \
                 FROM studies s JOIN instances i ON i.study_uid = s.study_uid \
                 WHERE s.patient_id = ?1 AND s.state IN ('receiving', 'held')) AS dates \
                 WHERE d ~ '^[0-9]{8}$'"
            }
        })?;
        let mut earliest: Option<String> = None;
        for id in patient_ids {
            let date: Option<String> = stmt.query_row([id], |r| r.get(0))?;
            let date = date
                .map(|d| d.trim().to_string())
                .filter(|d| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()));
            if let Some(d) = date {
                if earliest.as_ref().is_none_or(|e| &d < e) {
                    earliest = Some(d);
                }
            }
        }
        Ok(earliest)
    }

    /// Patients whose history readgate should ask the PACS for now: those of studies
    /// being received or held, and of orders received since `orders_since`, whose last
    /// lookup in some PACS of `pacs_ids` is missing, older than `fresh_since` (answered),
    /// or older than `retry_since` (failed). At most `limit`.
    pub fn patients_to_look_up(
        &self,
        pacs_ids: &[String],
        orders_since: i64,
        fresh_since: i64,
        retry_since: i64,
        limit: usize,
    ) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut candidates = conn.prepare_cached(
            "SELECT patient_id FROM studies WHERE state IN ('receiving', 'held') \
               AND patient_id IS NOT NULL AND patient_id != '' \
             UNION SELECT patient_id FROM orders WHERE received_at >= ?1 \
               AND patient_id IS NOT NULL AND patient_id != ''",
        )?;
        let mut fresh = conn.prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM pacs_lookups WHERE patient_id = ?1 AND pacs_id = ?2 \
             AND ((ok <> 0 AND at >= ?3) OR (ok = 0 AND at >= ?4)))",
        )?;
        let mut out = Vec::new();
        let ids: Vec<String> = candidates
            .query_map([orders_since], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        for id in ids {
            let mut stale = false;
            for pacs in pacs_ids {
                let ok: bool =
                    fresh.query_row(params![id, pacs, fresh_since, retry_since], |r| r.get(0))?;
                stale |= !ok;
            }
            if stale {
                out.push(id);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// A prior study readgate sent to a destination with a study (`prior_sends`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SentPrior {
    pub destination: String,
    pub prior_uid: String,
    /// The `[[pacs]]` it was retrieved from.
    pub pacs_id: String,
    /// The study it was (first) sent with.
    pub for_study_uid: String,
    pub instances: u32,
    pub bytes: u64,
    /// ms since the Unix epoch.
    pub sent_at: i64,
}

impl Store {
    /// The `[[pacs]]` entries (among `pacs_ids`, in that order) whose last answer lists
    /// `study_uid`.
    pub fn pacs_holding(&self, study_uid: &str, pacs_ids: &[String]) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM pacs_studies WHERE study_uid = ?1 AND pacs_id = ?2)",
        )?;
        let mut out = Vec::new();
        for id in pacs_ids {
            if stmt.query_row(params![study_uid, id], |r| r.get::<_, bool>(0))? {
                out.push(id.clone());
            }
        }
        Ok(out)
    }

    /// The patients (as asked for) a PACS study was found under.
    pub fn pacs_study_patients(&self, study_uid: &str) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT DISTINCT patient_id FROM pacs_studies WHERE study_uid = ?1")?;
        let ids = stmt
            .query_map([study_uid], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        Ok(ids)
    }

    /// Whether `destination` already has `study_uid` from readgate: sent as a prior, or
    /// received by readgate and forwarded there as a study.
    pub fn destination_has(&self, destination: &str, study_uid: &str) -> Result<bool> {
        let conn = self.conn();
        let sql =
            "SELECT EXISTS(SELECT 1 FROM prior_sends WHERE destination = ?1 AND prior_uid = ?2) \
                   OR EXISTS(SELECT 1 FROM studies WHERE study_uid = ?2 AND destination = ?1 \
                   AND state = 'forwarded')";
        Ok(conn.query_row(sql, params![destination, study_uid], |r| r.get(0))?)
    }

    /// Records that a prior reached its destination.
    pub fn record_prior_sent(&self, sent: &SentPrior) -> Result<()> {
        self.conn().execute(
            "INSERT INTO prior_sends (destination, prior_uid, pacs_id, for_study_uid, \
             instances, bytes, sent_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (destination, prior_uid) DO UPDATE SET pacs_id = excluded.pacs_id, \
             for_study_uid = excluded.for_study_uid, instances = excluded.instances, \
             bytes = excluded.bytes, sent_at = excluded.sent_at",
            params![
                sent.destination,
                sent.prior_uid,
                sent.pacs_id,
                sent.for_study_uid,
                sent.instances,
                sent.bytes as i64,
                sent.sent_at
            ],
        )?;
        Ok(())
    }

    /// Where readgate sent these prior studies (every destination), oldest first.
    pub fn priors_sent(&self, prior_uids: &[String]) -> Result<Vec<SentPrior>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT destination, prior_uid, pacs_id, for_study_uid, instances, bytes, sent_at \
             FROM prior_sends WHERE prior_uid = ?1 ORDER BY sent_at",
        )?;
        let mut out = Vec::new();
        for uid in prior_uids {
            for row in stmt.query_map([uid], |r| {
                Ok(SentPrior {
                    destination: r.get(0)?,
                    prior_uid: r.get(1)?,
                    pacs_id: r.get(2)?,
                    for_study_uid: r.get(3)?,
                    instances: r.get(4)?,
                    bytes: r.get::<_, i64>(5)?.max(0) as u64,
                    sent_at: r.get(6)?,
                })
            })? {
                out.push(row?);
            }
        }
        Ok(out)
    }
}

/// The last successful retrieval of a prior study (`prior_retrievals`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PriorRetrieval {
    #[serde(skip)]
    pub prior_uid: String,
    /// The `[[pacs]]` it came from.
    pub pacs_id: String,
    /// When it finished (ms since the Unix epoch).
    pub at: i64,
    pub instances: u32,
    pub bytes: u64,
}

/// A chosen prior the PACS could not deliver (`prior_fetch_failures`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FetchFailure {
    pub prior_uid: String,
    pub pacs_id: String,
    /// When the last attempt failed (ms since the Unix epoch).
    pub at: i64,
    pub error: String,
}

impl Store {
    /// Records how a prior's retrieval went: a failure replaces the last one; a success
    /// (instances, bytes) is kept as the last retrieval and clears the failure. Returns
    /// whether a failure was cleared (held studies may now go).
    pub fn record_prior_fetch(
        &self,
        prior_uid: &str,
        pacs_id: &str,
        at: i64,
        outcome: std::result::Result<(u32, u64), &str>,
    ) -> Result<bool> {
        let conn = self.conn();
        Ok(match outcome {
            Ok((instances, bytes)) => {
                conn.execute(
                    "INSERT INTO prior_retrievals (prior_uid, pacs_id, at, instances, bytes) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (prior_uid) DO UPDATE SET \
                     pacs_id = excluded.pacs_id, at = excluded.at, instances = excluded.instances, \
                     bytes = excluded.bytes",
                    params![prior_uid, pacs_id, at, instances, bytes as i64],
                )?;
                conn.execute(
                    "DELETE FROM prior_fetch_failures WHERE prior_uid = ?1",
                    [prior_uid],
                )? > 0
            }
            Err(error) => {
                conn.execute(
                    "INSERT INTO prior_fetch_failures (prior_uid, pacs_id, at, error) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (prior_uid) DO UPDATE SET \
                     pacs_id = excluded.pacs_id, at = excluded.at, error = excluded.error",
                    params![prior_uid, pacs_id, at, error],
                )?;
                false
            }
        })
    }

    /// The failed retrievals among these prior studies.
    pub fn prior_fetch_failures(&self, prior_uids: &[String]) -> Result<Vec<FetchFailure>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT prior_uid, pacs_id, at, error FROM prior_fetch_failures WHERE prior_uid = ?1",
        )?;
        let mut out = Vec::new();
        for uid in prior_uids {
            if let Some(f) = stmt
                .query_map([uid], |r| {
                    Ok(FetchFailure {
                        prior_uid: r.get(0)?,
                        pacs_id: r.get(1)?,
                        at: r.get(2)?,
                        error: r.get(3)?,
                    })
                })?
                .next()
            {
                out.push(f?);
            }
        }
        Ok(out)
    }

    /// The last successful retrievals of these prior studies.
    pub fn prior_retrievals(&self, prior_uids: &[String]) -> Result<Vec<PriorRetrieval>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT prior_uid, pacs_id, at, instances, bytes FROM prior_retrievals \
             WHERE prior_uid = ?1",
        )?;
        let mut out = Vec::new();
        for uid in prior_uids {
            if let Some(r) = stmt
                .query_map([uid], |r| {
                    Ok(PriorRetrieval {
                        prior_uid: r.get(0)?,
                        pacs_id: r.get(1)?,
                        at: r.get(2)?,
                        instances: r.get(3)?,
                        bytes: r.get::<_, i64>(4)?.max(0) as u64,
                    })
                })?
                .next()
            {
                out.push(r?);
            }
        }
        Ok(out)
    }

    /// Studies being received or held whose patient the PACS was asked about, oldest
    /// first: those whose priors may be fetched ahead of their decision. At most `limit`.
    pub fn open_studies_with_pacs_history(&self, limit: usize) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT s.study_uid FROM studies s WHERE s.state IN ('receiving', 'held') \
             AND EXISTS(SELECT 1 FROM pacs_lookups l WHERE l.patient_id = s.patient_id) \
             ORDER BY s.updated_at LIMIT ?1",
        )?;
        let uids = stmt
            .query_map([limit as i64], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        Ok(uids)
    }

    /// Orders received since `since` for patients the PACS was asked about, whose study
    /// readgate has not received yet (by Study Instance UID or accession), newest first:
    /// their priors can be fetched before the images arrive. At most `limit`.
    pub fn recent_orders_with_pacs_history(
        &self,
        since: i64,
        limit: usize,
    ) -> Result<Vec<PendingOrder>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT o.id, o.patient_id, o.study_uid, o.accession, o.request FROM orders o \
             WHERE o.received_at >= ?1 AND o.patient_id IS NOT NULL AND o.patient_id != '' \
             AND EXISTS(SELECT 1 FROM pacs_lookups l WHERE l.patient_id = o.patient_id) \
             AND NOT EXISTS(SELECT 1 FROM studies s WHERE s.study_uid = o.study_uid \
                 OR (o.accession IS NOT NULL AND o.accession != '' AND s.accession = o.accession)) \
             ORDER BY o.id DESC LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![since, limit as i64], |r| {
                Ok(PendingOrder {
                    id: r.get(0)?,
                    patient_id: r.get(1)?,
                    study_uid: r.get(2)?,
                    accession: r.get(3)?,
                    request: r.get(4)?,
                })
            })?
            .collect::<std::result::Result<_, _>>()?;
        Ok(rows)
    }
}

/// An order whose images have not arrived (see
/// [`Store::recent_orders_with_pacs_history`]).
#[derive(Debug, Clone)]
pub struct PendingOrder {
    pub id: i64,
    pub patient_id: String,
    pub study_uid: Option<String>,
    pub accession: Option<String>,
    /// The order request as stored (JSON of `hl7::OrderRequest`).
    pub request: String,
}
