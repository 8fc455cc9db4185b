//! The web console's sessions (`console_sessions`, migration 13), written and read by
//! `web::auth`: in the database, so a session survives a restart and is the same on every
//! node sharing it.
//!
//! A session is keyed by the SHA-256 (hex) of its cookie's id; the id itself is never
//! stored, so whoever reads the table (a backup, a replica, a support dump) cannot take a
//! session over. Times are milliseconds since the Unix epoch ([`crate::time`]): the nodes'
//! clocks are taken to agree (NTP) to well within [`TOUCH_AFTER_MS`].
//!
//! A request does not write: [`Store::find_session`] moves `last_seen_at` only when it is
//! at least [`TOUCH_AFTER_MS`] old, so a user clicking through the console costs one read
//! per page and one write a minute. The price is that idle expiry is counted from a
//! `last_seen_at` up to that much behind the last request: a session may end up to a
//! minute before its idle time since the last request has passed.

use super::{Result, Store};
use crate::db::{params, OptionalExtension};
use crate::model::Role;

/// How old `last_seen_at` must be before a request moves it (one write a minute per
/// active session at most, instead of one per request).
pub const TOUCH_AFTER_MS: i64 = 60_000;

/// A session to record ([`Store::create_session`]).
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    /// SHA-256 (hex) of the session id: never the id.
    pub id_sha256: &'a str,
    pub user: &'a str,
    pub role: Role,
    /// SHA-256 (hex) of the user's `[[http.users]]` entry (`web::auth`).
    pub user_digest: &'a str,
    pub csrf: &'a str,
    /// The host that opened it (informative).
    pub node: &'a str,
    pub now: i64,
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub user: String,
    pub role: Role,
    pub user_digest: String,
    pub csrf: String,
    pub created_at: i64,
    /// After the touch of this lookup, if it made one.
    pub last_seen_at: i64,
}

impl Store {
    /// Records a new session.
    pub fn create_session(&self, s: &NewSession<'_>) -> Result<()> {
        self.conn().execute(
            "INSERT INTO console_sessions (id_sha256, user_name, role, user_digest, csrf, \
             node, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            params![
                s.id_sha256,
                s.user,
                s.role,
                s.user_digest,
                s.csrf,
                s.node,
                s.now
            ],
        )?;
        Ok(())
    }

    /// The session whose id hashes to `id_sha256`, if it was seen less than `idle_ms`
    /// before `now`; its `last_seen_at` moved to `now` when at least [`TOUCH_AFTER_MS`]
    /// old. An expired session found here is deleted. One store operation.
    pub fn find_session(
        &self,
        id_sha256: &str,
        now: i64,
        idle_ms: i64,
    ) -> Result<Option<StoredSession>> {
        let conn = self.conn();
        let found = conn
            .query_row(
                "SELECT user_name, role, user_digest, csrf, created_at, last_seen_at \
                 FROM console_sessions WHERE id_sha256 = ?1",
                [id_sha256],
                |r| {
                    Ok(StoredSession {
                        user: r.get(0)?,
                        role: r.get(1)?,
                        user_digest: r.get(2)?,
                        csrf: r.get(3)?,
                        created_at: r.get(4)?,
                        last_seen_at: r.get(5)?,
                    })
                },
            )
            .optional()?;
        let Some(mut s) = found else {
            return Ok(None);
        };
        if now - s.last_seen_at >= idle_ms {
            // Only if no node touched it meanwhile (it would have found it expired too,
            // unless the clocks disagree).
            conn.execute(
                "DELETE FROM console_sessions WHERE id_sha256 = ?1 AND last_seen_at <= ?2",
                params![id_sha256, now - idle_ms],
            )?;
            return Ok(None);
        }
        if now - s.last_seen_at >= TOUCH_AFTER_MS {
            // Never backwards (another node may have touched it with a later time); no row
            // changed: it was deleted meanwhile (logout on another node).
            let changed = conn.execute(
                "UPDATE console_sessions SET last_seen_at = \
                 CASE WHEN last_seen_at < ?2 THEN ?2 ELSE last_seen_at END \
                 WHERE id_sha256 = ?1",
                params![id_sha256, now],
            )?;
            if changed == 0 {
                return Ok(None);
            }
            s.last_seen_at = now;
        }
        Ok(Some(s))
    }

    /// Ends a session (logout). Whether it existed.
    pub fn delete_session(&self, id_sha256: &str) -> Result<bool> {
        Ok(self.conn().execute(
            "DELETE FROM console_sessions WHERE id_sha256 = ?1",
            [id_sha256],
        )? > 0)
    }

    /// Ends every session last seen at or before `seen_before` (idle expiry). How many.
    pub fn delete_expired_sessions(&self, seen_before: i64) -> Result<usize> {
        Ok(self.conn().execute(
            "DELETE FROM console_sessions WHERE last_seen_at <= ?1",
            [seen_before],
        )?)
    }

    /// Ends every session of these users (removed from `[[http.users]]`, or their role or
    /// password changed). How many.
    pub fn delete_sessions_of(&self, users: &[String]) -> Result<usize> {
        if users.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut ended = 0;
        for u in users {
            ended += tx.execute("DELETE FROM console_sessions WHERE user_name = ?1", [u])?;
        }
        tx.commit()?;
        Ok(ended)
    }

    /// How many sessions are stored (live or not yet swept).
    pub fn session_count(&self) -> Result<i64> {
        Ok(self
            .conn()
            .query_row("SELECT COUNT(*) FROM console_sessions", [], |r| r.get(0))?)
    }
}
