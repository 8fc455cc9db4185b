//! Web console access: users with roles from `[[http.users]]` (argon2id PHC hashes),
//! server-side sessions (random 256-bit ids, 8 h idle expiry), a CSRF token per session,
//! and login attempts rate-limited per user and per client address.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::{header, HeaderMap};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub csrf: String,
    last_seen: Instant,
}

#[derive(Default)]
struct Failures {
    count: u32,
    locked_until: Option<Instant>,
}

/// Sessions and login throttling, held in memory (a restart logs everyone out).
#[derive(Default)]
pub struct Auth {
    users: std::sync::RwLock<Vec<UserConfig>>,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, Failures>>,
    pub secure_cookies: bool,
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
}

impl Auth {
    pub fn new(users: Vec<UserConfig>, secure_cookies: bool) -> Auth {
        Auth {
            users: std::sync::RwLock::new(users),
            secure_cookies,
            ..Default::default()
        }
    }

    /// Puts a reloaded `[[http.users]]` in force. The sessions of users who are gone, or
    /// whose role or password changed, end: they sign in again.
    pub fn replace_users(&self, users: Vec<UserConfig>) {
        let mut current = self.users.write().unwrap_or_else(|p| p.into_inner());
        let kept = |name: &str| {
            let old = current.iter().find(|u| u.name.trim() == name);
            let new = users.iter().find(|u| u.name.trim() == name);
            matches!((old, new), (Some(o), Some(n)) if o == n)
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| kept(&s.user));
        *current = users;
    }

    /// Counts an attempt against each key *before* its password is checked, under the
    /// same lock as the check for a lock: of many simultaneous attempts, at most the
    /// allowed number are ever hashed (finding H3). `None`: locked, for that many seconds.
    fn reserve(&self, keys: &[String], now: Instant) -> Result<(), u64> {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let locked = keys
            .iter()
            .filter_map(|k| f.get(k).and_then(|x| x.locked_until))
            .filter(|t| *t > now)
            .map(|t| (t - now).as_secs().max(1))
            .max();
        if let Some(secs) = locked {
            return Err(secs);
        }
        for k in keys {
            let e = f.entry(k.clone()).or_default();
            if e.locked_until.is_some_and(|t| t <= now) {
                e.count = 0;
                e.locked_until = None;
            }
            e.count += 1;
            let max = if k.starts_with("ip:") {
                MAX_IP_FAILURES
            } else {
                MAX_FAILURES
            };
            if e.count >= max {
                e.locked_until = Some(now + LOCK_TIME);
            }
        }
        Ok(())
    }

    /// A reserved attempt that succeeded: the user's count starts again and the
    /// address's reservation is given back.
    fn succeeded(&self, keys: &[String]) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.remove(&keys[0]);
        if let Some(e) = keys.get(1).and_then(|k| f.get_mut(k)) {
            e.count = e.count.saturating_sub(1);
            if e.count < MAX_IP_FAILURES {
                e.locked_until = None;
            }
        }
    }

    /// Checks a password; on success opens a session and returns its id.
    pub fn login(
        &self,
        user: &str,
        password: &str,
        ip: &str,
    ) -> Result<(String, Session), LoginError> {
        let now = Instant::now();
        let keys = [format!("user:{}", user.trim()), format!("ip:{ip}")];
        self.reserve(&keys, now).map_err(LoginError::Locked)?;
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
        self.succeeded(&keys);
        let id = random_hex();
        let s = Session {
            user: u.name.trim().to_string(),
            role: u.role,
            csrf: random_hex(),
            last_seen: now,
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| now.duration_since(s.last_seen) < SESSION_IDLE);
        sessions.insert(id.clone(), s.clone());
        Ok((id, s))
    }

    /// The session of the request's cookie, refreshed.
    pub fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers, COOKIE)?;
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let s = sessions.get_mut(&id)?;
        if now.duration_since(s.last_seen) >= SESSION_IDLE {
            sessions.remove(&id);
            return None;
        }
        s.last_seen = now;
        Some((id, s.clone()))
    }

    pub fn logout(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
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

    #[test]
    fn login_and_lock() {
        let h = hash_password("secret1").unwrap();
        let a = Auth::new(
            vec![UserConfig {
                name: "dr".into(),
                role: Role::Admin,
                password_hash: h,
            }],
            false,
        );
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
}
