//! Modality Performed Procedure Steps (`mpps`, `mpps_instances`): written by
//! `receive::mpps` as the modality reports its steps, read by the study stage (a study
//! whose step is COMPLETED with every listed instance in is complete at once) and the
//! study views.

use super::{Result, Store};
use crate::db::{params, OptionalExtension};
use crate::model::StepStatus;

/// What one N-CREATE or N-SET says of a step (attributes it does not carry stay as
/// they were).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepUpdate {
    pub status: Option<StepStatus>,
    /// Study Instance UID of its Scheduled Step Attributes.
    pub study_uid: Option<String>,
    pub accession: Option<String>,
    /// The instances its Performed Series Sequence lists (series UID, SOP Instance UID);
    /// `None` when the message carries no Performed Series Sequence.
    pub instances: Option<Vec<(Option<String>, String)>>,
}

/// A step as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    pub mpps_uid: String,
    pub study_uid: Option<String>,
    pub status: StepStatus,
    pub calling_ae: String,
    /// Instances it lists.
    pub instances: u32,
    /// Of those, how many readgate has received.
    pub received: u32,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Why a step could not be created or updated (each is a DIMSE status).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepRefused {
    #[error("a step with this SOP Instance UID exists already")]
    Duplicate,
    #[error("no such performed procedure step")]
    NoSuchStep,
    #[error("the step is {0} and may no longer be updated")]
    Final(StepStatus),
}

impl Store {
    /// Records a new step (N-CREATE).
    pub fn create_step(
        &self,
        mpps_uid: &str,
        update: &StepUpdate,
        calling_ae: &str,
        now: i64,
    ) -> Result<std::result::Result<(), StepRefused>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM mpps WHERE mpps_uid = ?1)",
            [mpps_uid],
            |r| r.get(0),
        )?;
        if exists {
            return Ok(Err(StepRefused::Duplicate));
        }
        tx.execute(
            "INSERT INTO mpps (mpps_uid, study_uid, accession, status, calling_ae, created_at, \
             updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            params![
                mpps_uid,
                update.study_uid,
                update.accession,
                update.status.unwrap_or(StepStatus::InProgress),
                calling_ae,
                now
            ],
        )?;
        write_instances(&tx, mpps_uid, update)?;
        tx.commit()?;
        Ok(Ok(()))
    }

    /// Updates a step (N-SET); a COMPLETED or DISCONTINUED step is final.
    pub fn update_step(
        &self,
        mpps_uid: &str,
        update: &StepUpdate,
        now: i64,
    ) -> Result<std::result::Result<StepStatus, StepRefused>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let current: Option<StepStatus> = tx
            .query_row(
                "SELECT status FROM mpps WHERE mpps_uid = ?1",
                [mpps_uid],
                |r| r.get(0),
            )
            .optional()?;
        let Some(current) = current else {
            return Ok(Err(StepRefused::NoSuchStep));
        };
        if current != StepStatus::InProgress {
            return Ok(Err(StepRefused::Final(current)));
        }
        let status = update.status.unwrap_or(current);
        tx.execute(
            "UPDATE mpps SET status = ?2, updated_at = ?3, \
             study_uid = COALESCE(?4, study_uid), accession = COALESCE(?5, accession) \
             WHERE mpps_uid = ?1",
            params![mpps_uid, status, now, update.study_uid, update.accession],
        )?;
        write_instances(&tx, mpps_uid, update)?;
        tx.commit()?;
        Ok(Ok(status))
    }

    /// The study a step belongs to.
    pub fn step_study(&self, mpps_uid: &str) -> Result<Option<String>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT study_uid FROM mpps WHERE mpps_uid = ?1",
                [mpps_uid],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// The steps of a study, oldest first, with how many of their instances are in.
    pub fn steps_of(&self, study_uid: &str) -> Result<Vec<Step>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT m.mpps_uid, m.study_uid, m.status, m.calling_ae, m.created_at, m.updated_at, \
             (SELECT COUNT(*) FROM mpps_instances r WHERE r.mpps_uid = m.mpps_uid), \
             (SELECT COUNT(*) FROM mpps_instances r JOIN instances i \
                ON i.sop_uid = r.sop_instance_uid WHERE r.mpps_uid = m.mpps_uid) \
             FROM mpps m WHERE m.study_uid = ?1 ORDER BY m.created_at, m.mpps_uid",
        )?;
        let rows = stmt
            .query_map([study_uid], |r| {
                Ok(Step {
                    mpps_uid: r.get(0)?,
                    study_uid: r.get(1)?,
                    status: r.get(2)?,
                    calling_ae: r.get(3)?,
                    created_at: r.get(4)?,
                    updated_at: r.get(5)?,
                    instances: r.get(6)?,
                    received: r.get(7)?,
                })
            })?
            .collect::<crate::db::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

/// Replaces the step's listed instances when the message lists them.
fn write_instances(tx: &crate::db::Tx<'_>, mpps_uid: &str, update: &StepUpdate) -> Result<()> {
    let Some(instances) = &update.instances else {
        return Ok(());
    };
    tx.execute("DELETE FROM mpps_instances WHERE mpps_uid = ?1", [mpps_uid])?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO mpps_instances (mpps_uid, sop_instance_uid, series_uid) \
         VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
    )?;
    for (series, sop) in instances {
        insert.execute(params![mpps_uid, sop, series])?;
    }
    Ok(())
}
