//! The web console's sessions (`console_sessions`, migration 13) and login attempts
//! (`login_failures`, migration 14), written and read by `web::auth`: in the database, so
//! a session survives a restart and is the same on every node sharing it, and a guesser
//! is throttled by all the nodes together.
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
use crate::db::{params, OptionalExtension, ToValue};
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

/// A key a login attempt is counted against (`user:NAME`, `ip:ADDRESS`) and the attempts
/// it may count before it is locked.
pub struct LoginKey<'a> {
    pub key: &'a str,
    pub max: u32,
}

/// How long a login count without attempts is kept (ms): a day.
const LOGIN_COUNT_KEPT_MS: i64 = 24 * 3600 * 1000;

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

    /// Counts one login attempt against each key before its password is checked, in
    /// one transaction whose rows every node shares: of many attempts at once, on any
    /// nodes, no more than each key's `max` are let through before it is locked for
    /// `lock_ms`. `Some(secs)`: a key is locked for that many more seconds, and nothing
    /// was counted. A count idle for a day is forgotten.
    pub fn reserve_login(
        &self,
        keys: &[LoginKey<'_>],
        now: i64,
        lock_ms: i64,
    ) -> Result<Option<u64>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        // Each key's row, made when missing, is this transaction's until it ends:
        // attempts on one key take turns here (keys always in the caller's order).
        let sets: Vec<_> = keys
            .iter()
            .map(|k| vec![k.key.to_value(), now.to_value()])
            .collect();
        let rows = tx.query_many(
            "INSERT INTO login_failures (key, failures, locked_until, updated_at) \
             VALUES (?1, 0, NULL, ?2) ON CONFLICT (key) DO UPDATE SET \
             updated_at = login_failures.updated_at RETURNING failures, locked_until",
            &sets,
        )?;
        let mut counted = Vec::with_capacity(keys.len());
        for row in &rows {
            let row = row.first().ok_or(crate::db::DbError::NoRows)?;
            counted.push((row.get::<_, i64>(0)?, row.get::<_, Option<i64>>(1)?));
        }
        let locked = counted
            .iter()
            .filter_map(|(_, until)| *until)
            .filter(|until| *until > now)
            .map(|until| u64::try_from((until - now) / 1000).unwrap_or(0).max(1))
            .max();
        if locked.is_some() {
            return Ok(locked); // rolled back: nothing counted
        }
        for (k, (failures, until)) in keys.iter().zip(counted) {
            // A lock that has run out starts the count again.
            let failures = if until.is_some() { 1 } else { failures + 1 };
            let until = (failures >= i64::from(k.max)).then_some(now + lock_ms);
            tx.defer(
                "UPDATE login_failures SET failures = ?2, locked_until = ?3, updated_at = ?4 \
                 WHERE key = ?1",
                params![k.key, failures, until, now],
            )?;
        }
        tx.defer(
            "DELETE FROM login_failures WHERE updated_at < ?1 \
             AND (locked_until IS NULL OR locked_until < ?2)",
            params![now - LOGIN_COUNT_KEPT_MS, now],
        )?;
        tx.commit()?;
        Ok(None)
    }

    /// A reserved attempt succeeded: the user's count starts again, and the address's
    /// reservation is given back (its lock lifted once it is below `address.max`).
    pub fn login_succeeded(&self, user: &str, address: &LoginKey<'_>) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.defer("DELETE FROM login_failures WHERE key = ?1", [user])?;
        tx.defer(
            "UPDATE login_failures SET \
             failures = CASE WHEN failures > 0 THEN failures - 1 ELSE 0 END, \
             locked_until = CASE WHEN failures - 1 < ?2 THEN NULL ELSE locked_until END \
             WHERE key = ?1",
            params![address.key, address.max],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// How many sessions are stored (live or not yet swept).
    pub fn session_count(&self) -> Result<i64> {
        Ok(self
            .conn()
            .query_row("SELECT COUNT(*) FROM console_sessions", [], |r| r.get(0))?)
    }
}
