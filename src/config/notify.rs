//! `[notify]`: the webhook told when a study is held, released or rejected.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// `http://host:port/path` that receives a JSON POST when a study is held, released
    /// or rejected. The log line is written either way.
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

/// The webhook URL: `http://` or `https://` with a host (the one check, used by the
/// configuration's validation and by the webhook itself).
pub fn webhook_url(url: &str) -> Result<reqwest::Url, super::BadValue> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad URL {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("expected an http:// or https:// URL, got {url:?}").into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("no host in {url:?}").into());
    }
    Ok(parsed)
}
