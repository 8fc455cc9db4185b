//! Several nodes on one database: each node's row and heartbeat (`nodes`), and named
//! leases held by one node at a time (`cluster_leases`: the node that runs the timers).
//! The leases on studies being forwarded are in `queue.rs`.
//!
//! A lease is a row with an owner and an expiry (`until`, ms), taken when it is free,
//! lapsed, or already held by the same node, and renewed by its owner before it lapses.
//! Its `token` counts the times it changed hands: a node that lost a lease and did not
//! notice (paused, cut off from the database) holds an old token, and what it does under
//! it is refused (fencing). A table row rather than a PostgreSQL advisory lock: an
//! advisory lock belongs to a database session and vanishes silently with it (a
//! reconnect), it does not exist on SQLite, and a row is what `readgate nodes` shows.

use super::{Result, Store};
use crate::db::{params, OptionalExtension};

/// What a node says about itself when it starts and at every heartbeat.
#[derive(Debug, Clone)]
pub struct NodeBeat {
    /// `[gateway] id`.
    pub id: String,
    /// This run of the node (random, new at each start): tells a restarted node from a
    /// second process configured with the same id.
    pub incarnation: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    /// Where it listens, e.g. `dicom=0.0.0.0:11112 hl7=… http=…`.
    pub listens: String,
}

/// A node as `readgate nodes` lists it.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct NodeRow {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub version: String,
    pub listens: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub stopped_at: Option<i64>,
    /// Studies whose forwarding lease it holds now.
    pub leases: i64,
}

/// Why a node may not start.
#[derive(Debug, thiserror::Error)]
pub enum JoinRefused {
    #[error(
        "another readgate process with gateway.id \"{id}\" (host {host}, pid {pid}) sent a \
         heartbeat {age_ms} ms ago: each node needs its own [gateway] id"
    )]
    SameId {
        id: String,
        host: String,
        pid: i64,
        age_ms: i64,
    },
}

impl Store {
    /// Records `node` as started at `now`, unless another run with the same id sent a
    /// heartbeat within `alive_ms` and `still_running(host, pid)` says that run is still
    /// there (two processes with one id would take each other's leases for their own; a
    /// node restarted after a crash is not refused).
    pub fn join_cluster(
        &self,
        node: &NodeBeat,
        now: i64,
        alive_ms: i64,
        still_running: &dyn Fn(&str, i64) -> bool,
    ) -> Result<std::result::Result<(), JoinRefused>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let other: Option<(String, String, i64, i64, Option<i64>)> = tx
            .query_row(
                "SELECT incarnation, host, pid, heartbeat_at, stopped_at FROM nodes WHERE id = ?1",
                [&node.id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        if let Some((incarnation, host, pid, beat, None)) = other {
            if incarnation != node.incarnation && now - beat < alive_ms && still_running(&host, pid)
            {
                return Ok(Err(JoinRefused::SameId {
                    id: node.id.clone(),
                    host,
                    pid,
                    age_ms: now - beat,
                }));
            }
        }
        tx.execute(
            "INSERT INTO nodes (id, incarnation, host, pid, version, listens, started_at, heartbeat_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) \
             ON CONFLICT (id) DO UPDATE SET incarnation = excluded.incarnation, host = excluded.host, \
             pid = excluded.pid, version = excluded.version, listens = excluded.listens, \
             started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, stopped_at = NULL",
            params![node.id, node.incarnation, node.host, node.pid as i64, node.version, node.listens, now],
        )?;
        tx.commit()?;
        Ok(Ok(()))
    }

    /// The node's heartbeat; false when its row now belongs to another run (it must stop).
    pub fn heartbeat(&self, node: &NodeBeat, now: i64) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE nodes SET heartbeat_at = ?3 WHERE id = ?1 AND incarnation = ?2",
            params![node.id, node.incarnation, now],
        )?;
        Ok(n == 1)
    }

    /// A node stopping: marked stopped, its leases given back at once (not at expiry).
    pub fn leave_cluster(&self, node: &NodeBeat, now: i64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE nodes SET stopped_at = ?3, heartbeat_at = ?3 WHERE id = ?1 AND incarnation = ?2",
            params![node.id, node.incarnation, now],
        )?;
        if n == 1 {
            tx.execute(
                "UPDATE studies SET lease_owner = NULL, lease_until = 0 WHERE lease_owner = ?1",
                [&node.id],
            )?;
            tx.execute(
                "UPDATE cluster_leases SET until = 0 WHERE owner = ?1",
                [&node.id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every node that ever joined, with the forwarding leases it holds at `now`.
    pub fn nodes(&self, now: i64) -> Result<Vec<NodeRow>> {
        self.query_as(
            "SELECT n.id, n.host, n.pid, n.version, n.listens, n.started_at, n.heartbeat_at, \
             n.stopped_at, (SELECT COUNT(*) FROM studies s WHERE s.lease_owner = n.id \
             AND s.lease_until >= ?1) AS leases FROM nodes n ORDER BY n.id",
            params![now],
        )
    }

    /// Takes or renews the lease `name` for `owner` until `now + lease_ms`; its fencing
    /// token when `owner` holds it now, None when another node does.
    pub fn hold_lease(
        &self,
        name: &str,
        owner: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<i64>> {
        Ok(self
            .conn()
            .query_row(
                "INSERT INTO cluster_leases (name, owner, until, token) VALUES (?1, ?2, ?3, 1) \
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until, \
                 token = cluster_leases.token + \
                 CASE WHEN cluster_leases.owner = excluded.owner AND cluster_leases.until >= ?4 \
                 THEN 0 ELSE 1 END \
                 WHERE cluster_leases.owner = excluded.owner OR cluster_leases.until < ?4 \
                 RETURNING token",
                params![name, owner, now + lease_ms, now],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The node that holds (or last held, if it lapsed) the forwarding lease of a study.
    pub fn lease_owner_of(&self, study_uid: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT lease_owner FROM studies WHERE study_uid = ?1",
                [study_uid],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Who holds the lease `name` at `now`, and until when.
    pub fn lease_holder(&self, name: &str, now: i64) -> Result<Option<(String, i64)>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT owner, until FROM cluster_leases WHERE name = ?1 AND until >= ?2",
                params![name, now],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }
}
