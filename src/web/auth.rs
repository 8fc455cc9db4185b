//! Web console access: users with roles from `[[http.users]]` (argon2id PHC hashes, from
//! the configuration file, never the database), sessions with a CSRF token each, and
//! login attempts rate-limited per user and per client address.
//!
//! **Sessions are in the database** (`console_sessions`, `store::sessions`): a restart
//! signs nobody out, and with several nodes on one PostgreSQL database a session opened on
//! one node is valid on every other. The cookie carries a random 256-bit id; the table
//! holds only its SHA-256, so reading the database (or a backup of it) does not give a
//! session away, and the lookup by hash leaks nothing through its timing. A session ends
//! after [`SESSION_IDLE`] without a request (counted from a `last_seen_at` that requests
//! move at most once a minute, see `store::sessions`), at logout (on whichever node), or
//! when its user's `[[http.users]]` entry is removed or changed: the reload that changes it
//! deletes the user's sessions for every node, and a node honours a session only while its
//! own entry for the user is the one the session was opened with (a SHA-256 of name, role
//! and password hash is stored with it), so a restart with a changed file, or a node whose
//! file differs, does not honour it either. Expired sessions are swept at each login.
//!
//! Every database call from an async handler runs on the blocking pool. A database that
//! cannot be asked is [`SessionError`]: the console answers 503 rather than pretending the
//! user is signed out.
//!
//! **Login throttling is in the database too** (`login_failures`, [`Store::reserve_login`]):
//! five failures lock a user (twenty an address) for five minutes on every node sharing
//! it, and a restart keeps the counts. An attempt is counted before its password is
//! checked, so guesses spread over several nodes, or sent all at once, still get no more
//! than five argon2 checks per user. A user is counted under the SHA-256 of the name as
//! typed, so any name costs one short row. A count without attempts for a day is forgotten. A
//! database that cannot be asked refuses the login (503), as for sessions.

use crate::store::{LoginKey, NewSession, Store, StoreError, StoredSession};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::{header, HeaderMap};
use std::sync::Arc;
use std::time::Duration;

/// Idle time after which a session ends.
pub const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);
/// Failures before a lock, and how long the lock lasts.
pub const MAX_FAILURES: u32 = 5;
/// Failures from one client address (several users may share a reading-room PC).
pub const MAX_IP_FAILURES: u32 = 20;
pub const LOCK_TIME: Duration = Duration::from_secs(300);
pub const COOKIE: &str = "readgate_session";

pub use crate::model::Role;

pub use crate::config::http::UserConfig;

/// A signed-in user, as the console sees them.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub csrf: String,
}

/// Users (from the configuration), sessions and login throttling (in the store).
pub struct Auth {
    store: Arc<Store>,
    users: std::sync::RwLock<Vec<UserConfig>>,
    pub secure_cookies: bool,
    /// This host's name, recorded with the sessions it opens.
    node: String,
}

/// Why the session of a request could not be checked or ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session store: {0}")]
    Store(#[from] StoreError),
    #[error("session store: the lookup did not finish ({0})")]
    Task(#[from] tokio::task::JoinError),
}

pub fn random_hex() -> String {
    if let Ok(bytes) = crate::digest::random_bytes::<32>() {
        return super::hex(&bytes);
    }
    // /dev/urandom is always there on Linux; never fall back to something guessable.
    panic!("cannot read /dev/urandom for a session id");
}

/// An argon2id PHC string for `password`.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt: [u8; 16] = crate::digest::random_bytes()?;
    let salt = SaltString::encode_b64(&salt)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("reading random bytes for the salt: {0}")]
    Random(#[from] std::io::Error),
    #[error("argon2: {0}")]
    Hash(#[from] argon2::password_hash::Error),
}

pub enum LoginError {
    Locked(u64),
    Invalid,
    /// The password was right but the session could not be recorded.
    Store(StoreError),
}

/// SHA-256 (hex) of a user's `[[http.users]]` entry: a session is honoured only while the
/// entry it was opened with is in force.
fn user_digest(u: &UserConfig) -> String {
    crate::digest::sha256_hex(format!(
        "{}\0{}\0{}",
        u.name.trim(),
        u.role,
        u.password_hash
    ))
}

/// The throttling row of a user name as typed: its digest, so that a row costs the same
/// for any name a client sends (up to the request body limit) before it is known.
fn throttle_key_of_user(user: &str) -> String {
    format!("user:{}", crate::digest::sha256_hex(user.trim()))
}

/// A cookie value that can be a session id (64 lower-case hex digits): anything else is
/// not looked up.
fn well_formed(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn idle_ms() -> i64 {
    SESSION_IDLE.as_millis() as i64
}

impl Auth {
    pub fn new(store: Arc<Store>, users: Vec<UserConfig>, secure_cookies: bool) -> Auth {
        Auth {
            store,
            users: std::sync::RwLock::new(users),
            secure_cookies,
            node: crate::audit::atna::hostname(),
        }
    }

    /// Puts a reloaded `[[http.users]]` in force. The sessions of users who are gone, or
    /// whose role or password changed, end on every node: they sign in again. Blocking
    /// (store). Should the database refuse, this node still honours none of them (their
    /// entry changed), and the others do not either once they have the same file.
    pub fn replace_users(&self, users: Vec<UserConfig>) {
        let ended: Vec<String> = {
            let mut current = self.users.write().unwrap_or_else(|p| p.into_inner());
            let ended = current
                .iter()
                .map(|o| o.name.trim())
                .filter(|name| {
                    let old = current.iter().find(|u| u.name.trim() == *name);
                    let new = users.iter().find(|u| u.name.trim() == *name);
                    !matches!((old, new), (Some(o), Some(n)) if o == n)
                })
                .map(str::to_string)
                .collect();
            *current = users;
            ended
        };
        if let Err(e) = self.store.delete_sessions_of(&ended) {
            tracing::warn!(error = %e, users = ?ended, "console: the sessions of changed users could not be deleted");
        }
    }

    /// Checks a password; on success opens a session and returns its id.
    pub fn login(
        &self,
        user: &str,
        password: &str,
        ip: &str,
    ) -> Result<(String, Session), LoginError> {
        // Counted against the user and the address before the password is checked
        // (finding H3: of many simultaneous attempts at most the allowed number are
        // ever hashed), on every node at once.
        let (user_key, ip_key) = (throttle_key_of_user(user), format!("ip:{ip}"));
        let keys = [
            LoginKey {
                key: &user_key,
                max: MAX_FAILURES,
            },
            LoginKey {
                key: &ip_key,
                max: MAX_IP_FAILURES,
            },
        ];
        let lock_ms = i64::try_from(LOCK_TIME.as_millis()).unwrap_or(i64::MAX);
        if let Some(secs) = self
            .store
            .reserve_login(&keys, crate::time::now_ms(), lock_ms)
            .map_err(LoginError::Store)?
        {
            return Err(LoginError::Locked(secs));
        }
        let users = self.users.read().unwrap_or_else(|p| p.into_inner()).clone();
        let found = users.iter().find(|u| u.name.trim() == user.trim());
        let ok = match found {
            Some(u) => PasswordHash::new(&u.password_hash)
                .map(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false),
            None => {
                // Spend the same time as for a real user.
                let _ = hash_password(password);
                false
            }
        };
        let Some(u) = found.filter(|_| ok) else {
            return Err(LoginError::Invalid);
        };
        self.store
            .login_succeeded(&user_key, &keys[1])
            .map_err(LoginError::Store)?;
        let user_digest = user_digest(u);
        let user = u.name.trim().to_string();
        let role = u.role;
        let id = random_hex();
        let s = Session {
            user,
            role,
            csrf: random_hex(),
        };
        let now_ms = crate::time::now_ms();
        self.store
            .delete_expired_sessions(now_ms - idle_ms())
            .and_then(|_| {
                self.store.create_session(&NewSession {
                    id_sha256: &crate::digest::sha256_hex(&id),
                    user: &s.user,
                    role: s.role,
                    user_digest: &user_digest,
                    csrf: &s.csrf,
                    node: &self.node,
                    now: now_ms,
                })
            })
            .map_err(LoginError::Store)?;
        Ok((id, s))
    }

    /// The session of the request's cookie, refreshed (the lookup on the blocking pool).
    /// `Ok(None)`: no cookie, or no valid session for it.
    pub async fn session(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(String, Session)>, SessionError> {
        let Some(id) = cookie(headers, COOKIE).filter(|id| well_formed(id)) else {
            return Ok(None);
        };
        let store = self.store.clone();
        let key = crate::digest::sha256_hex(&id);
        let now = crate::time::now_ms();
        let found =
            tokio::task::spawn_blocking(move || store.find_session(&key, now, idle_ms())).await??;
        Ok(found.and_then(|s| self.honoured(s)).map(|s| (id, s)))
    }

    /// As [`Auth::session`] for a session id at `now` (ms), blocking (tests, and whoever
    /// runs off the async workers already).
    pub fn session_at(&self, id: &str, now: i64) -> Result<Option<Session>, StoreError> {
        if !well_formed(id) {
            return Ok(None);
        }
        let found = self
            .store
            .find_session(&crate::digest::sha256_hex(id), now, idle_ms())?;
        Ok(found.and_then(|s| self.honoured(s)))
    }

    /// A stored session, if this node's `[[http.users]]` entry for its user is still the
    /// one it was opened with.
    fn honoured(&self, s: StoredSession) -> Option<Session> {
        let users = self.users.read().unwrap_or_else(|p| p.into_inner());
        let u = users.iter().find(|u| u.name.trim() == s.user)?;
        (user_digest(u) == s.user_digest && u.role == s.role).then_some(Session {
            user: s.user,
            role: s.role,
            csrf: s.csrf,
        })
    }

    /// Ends the session `id` on every node (the store call on the blocking pool).
    pub async fn logout(&self, id: &str) -> Result<(), SessionError> {
        let store = self.store.clone();
        let key = crate::digest::sha256_hex(id);
        tokio::task::spawn_blocking(move || store.delete_session(&key)).await??;
        Ok(())
    }

    pub fn set_cookie(&self, id: &str) -> String {
        format!(
            "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/{}",
            if self.secure_cookies { "; Secure" } else { "" }
        )
    }

    pub fn clear_cookie(&self) -> String {
        format!(
            "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
            if self.secure_cookies { "; Secure" } else { "" }
        )
    }
}

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    for v in headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for part in v.split(';') {
            if let Some((k, val)) = part.trim().split_once('=') {
                if k == name {
                    return Some(val.to_string());
                }
            }
        }
    }
    None
}

/// Constant-time string comparison (CSRF tokens).
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut d = 0u8;
    for (x, y) in a.iter().zip(b) {
        d |= x ^ y;
    }
    std::hint::black_box(d) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, role: Role, password: &str) -> UserConfig {
        UserConfig {
            name: name.into(),
            role,
            password_hash: hash_password(password).unwrap(),
        }
    }

    fn store(dir: &tempfile::TempDir) -> Arc<Store> {
        Arc::new(Store::open(&dir.path().join("db")).unwrap())
    }

    #[test]
    fn login_and_lock() {
        let dir = tempfile::tempdir().unwrap();
        let a = Auth::new(store(&dir), vec![user("dr", Role::Admin, "secret1")], false);
        assert!(crate::config::http::validate_users(
            &a.users.read().unwrap_or_else(|p| p.into_inner())
        )
        .is_ok());
        assert!(a.login("dr", "secret1", "1.2.3.4").is_ok());
        for _ in 0..MAX_FAILURES {
            assert!(matches!(
                a.login("dr", "nope", "1.2.3.4"),
                Err(LoginError::Invalid)
            ));
        }
        assert!(matches!(
            a.login("dr", "secret1", "1.2.3.4"),
            Err(LoginError::Locked(_))
        ));
    }

    /// Any name a client sends costs one short throttling row, and the name as typed
    /// (spaces around it) shares the count of the name.
    #[test]
    fn a_long_user_name_costs_a_short_row() {
        let dir = tempfile::tempdir().unwrap();
        let a = Auth::new(store(&dir), vec![user("dr", Role::Admin, "secret1")], false);
        let long = "x".repeat(60_000);
        assert!(matches!(
            a.login(&long, "nope", "1.2.3.4"),
            Err(LoginError::Invalid)
        ));
        for _ in 0..MAX_FAILURES {
            assert!(matches!(
                a.login(" dr ", "nope", "1.2.3.5"),
                Err(LoginError::Invalid)
            ));
        }
        assert!(matches!(
            a.login("dr", "secret1", "1.2.3.6"),
            Err(LoginError::Locked(_))
        ));
        let db = rusqlite::Connection::open(dir.path().join("db")).unwrap();
        let (rows, longest): (i64, i64) = db
            .query_row(
                "SELECT COUNT(*), MAX(LENGTH(key)) FROM login_failures",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        // Two users and two addresses (a locked attempt counts nothing); "user:" and a
        // SHA-256 in hex is the longest key.
        assert_eq!((rows, longest), (4, 69));
    }

    /// A new `Auth` over the same database file (a restart) knows the session; the file
    /// holds its SHA-256, never the id; idle expiry; a changed user entry is not honoured.
    #[test]
    fn a_session_survives_a_restart_and_the_database_holds_no_id() {
        let dir = tempfile::tempdir().unwrap();
        let users = vec![
            user("dr", Role::Admin, "secret1"),
            user("sato", Role::Viewer, "secret2"),
        ];
        let (id, s) = {
            let a = Auth::new(store(&dir), users.clone(), false);
            let Ok((id, s)) = a.login("dr", "secret1", "1.2.3.4") else {
                panic!("login")
            };
            (id, s)
        };
        assert!(well_formed(&id));

        // "Restart": a new store and Auth over the same file.
        let b = Auth::new(store(&dir), users.clone(), false);
        let now = crate::time::now_ms();
        let found = b
            .session_at(&id, now)
            .unwrap()
            .expect("survives the restart");
        assert_eq!((found.user.as_str(), found.role), ("dr", Role::Admin));
        assert_eq!(found.csrf, s.csrf);
        assert!(b.session_at(&random_hex(), now).unwrap().is_none());
        assert!(b.session_at("not-an-id", now).unwrap().is_none());

        // Nothing in the table is the id.
        let raw = rusqlite::Connection::open(dir.path().join("db")).unwrap();
        let mut stmt = raw
            .prepare(
                "SELECT id_sha256, user_name, role, user_digest, csrf, node FROM console_sessions",
            )
            .unwrap();
        let rows: Vec<Vec<String>> = stmt
            .query_map([], |r| (0..6).map(|i| r.get::<_, String>(i)).collect())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].iter().all(|v| !v.contains(&id)), "{rows:?}");
        assert_eq!(rows[0][0], crate::digest::sha256_hex(&id));

        // Idle: ended at 8 h after the last touch, not a moment before.
        let idle = SESSION_IDLE.as_millis() as i64;
        assert!(b.session_at(&id, now + idle - 61_000).unwrap().is_some());
        let touched = now + idle - 61_000;
        assert!(b.session_at(&id, touched + idle - 1).unwrap().is_some());
        assert!(b.session_at(&id, touched + 2 * idle).unwrap().is_none());
        assert_eq!(
            b.store.session_count().unwrap(),
            0,
            "the expired one is gone"
        );

        // A node (or a restart) whose file changed the user's password does not honour
        // the session opened with the old one; a reload that changes it deletes it.
        let Ok((id, _)) = b.login("sato", "secret2", "1.2.3.4") else {
            panic!("login")
        };
        let mut changed = users.clone();
        changed[1] = user("sato", Role::Viewer, "secret3");
        let c = Auth::new(b.store.clone(), changed.clone(), false);
        let now = crate::time::now_ms();
        assert!(c.session_at(&id, now).unwrap().is_none(), "other entry");
        assert!(b.session_at(&id, now).unwrap().is_some(), "same entry");
        b.replace_users(changed);
        assert!(
            b.session_at(&id, now).unwrap().is_none(),
            "ended by the reload"
        );
        assert_eq!(b.store.session_count().unwrap(), 0);
    }
}
