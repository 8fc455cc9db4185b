//! `[notify]`: the webhook told when a study is held, released or rejected.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// `http://host:port/path` that receives a JSON POST when a study is held, released
    /// or rejected. The log line is written either way.
    #[serde(default)]
    pub webhook_url: Option<String>,
    #[serde(default = "default_webhook_timeout")]
    pub timeout_secs: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhook_url: None,
            timeout_secs: default_webhook_timeout(),
        }
    }
}

fn default_webhook_timeout() -> u64 {
    5
}

/// An `http://` or `https://` URL with a host (and, if given, a valid port).
pub fn check_webhook_url(url: &str) -> Result<(), super::BadValue> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("expected an http:// or https:// URL, got {url:?}"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // `[v6]:port`, `[v6]`, `host:port`, `host`.
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => return Err(format!("unclosed [ in {url:?}").into()),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err(format!("no host in {url:?}").into());
    }
    if let Some(p) = port {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("bad port in {url:?}"))?;
    }
    Ok(())
}
