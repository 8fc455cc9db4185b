//! The running configuration, replaceable while readgate serves (`systemctl reload
//! readgate`, `readgate reload`).
//!
//! Every stage holds a [`Live`] and takes [`Live::current`] where it starts a unit of
//! work (an association, a decision, a forwarding pass), so work in progress finishes with
//! the configuration it began with and the next unit sees the new one. What cannot change
//! without re-binding sockets, re-opening storage or restarting a background service is
//! listed in [`RESTART_KEYS`]: a reload keeps the running values of those keys and names
//! the ones that changed ([`Merged::restart_needed`]).

use super::Config;
use std::sync::Arc;
use tokio::sync::watch;

/// The keys a reload does not apply: changing them needs a restart.
pub const RESTART_KEYS: &[&str] = &[
    "gateway",
    "storage",
    "dicom.listen",
    "dicom.tls_listen",
    "dicom.tls_cert",
    "dicom.tls_key",
    "dicom.tls_client_ca",
    "dicom.max_associations",
    "dicom.max_connections_per_host",
    "dicom.stable_after_secs",
    "pacs",
    "priors",
    "hl7 (all but allowed_hosts, max_frame_bytes, idle_timeout_secs, default_charset, application, limits, expected_images_field)",
    "http (all but users and tokens)",
    "notify",
    "audit",
    "database",
    "log.format",
];

/// The configuration every stage reads; cheap to clone (one shared cell).
#[derive(Clone)]
pub struct Live(Arc<watch::Sender<Arc<Config>>>);

impl Live {
    pub fn new(config: Config) -> Live {
        Live::from_arc(Arc::new(config))
    }

    pub fn from_arc(config: Arc<Config>) -> Live {
        Live(Arc::new(watch::Sender::new(config)))
    }

    /// The configuration in force now. Hold it for one unit of work, not longer.
    pub fn current(&self) -> Arc<Config> {
        self.0.borrow().clone()
    }

    /// Wakes when the configuration is replaced.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Config>> {
        self.0.subscribe()
    }

    /// Puts `config` in force (already merged with [`merge`]).
    pub fn replace(&self, config: Config) {
        self.0.send_replace(Arc::new(config));
    }
}

impl From<Config> for Live {
    fn from(config: Config) -> Live {
        Live::new(config)
    }
}

impl From<Arc<Config>> for Live {
    fn from(config: Arc<Config>) -> Live {
        Live::from_arc(config)
    }
}

/// A new configuration as a reload applies it.
#[derive(Debug)]
pub struct Merged {
    /// The new file's values, with the running values of [`RESTART_KEYS`].
    pub config: Config,
    /// The restart-only keys whose value in the new file differs from the running one.
    pub restart_needed: Vec<&'static str>,
    /// The sections whose value changed and is applied now.
    pub applied: Vec<&'static str>,
}

/// Merges a newly loaded (valid) configuration into the running one: what a reload may
/// change is taken from `new`, the rest stays as `running` has it.
pub fn merge(running: &Config, new: Config) -> Merged {
    let mut config = new;
    let mut restart_needed = Vec::new();
    macro_rules! keep {
        ($name:literal, $($field:tt).+) => {
            if config.$($field).+ != running.$($field).+ {
                restart_needed.push($name);
                config.$($field).+ = running.$($field).+.clone();
            }
        };
    }
    keep!("gateway", gateway);
    keep!("storage", storage);
    keep!("dicom.listen", dicom.listen);
    keep!("dicom.tls_listen", dicom.tls_listen);
    keep!("dicom.tls_cert", dicom.tls_cert);
    keep!("dicom.tls_key", dicom.tls_key);
    keep!("dicom.tls_client_ca", dicom.tls_client_ca);
    keep!("dicom.max_associations", dicom.max_associations);
    keep!(
        "dicom.max_connections_per_host",
        dicom.max_connections_per_host
    );
    keep!("dicom.stable_after_secs", dicom.stable_after_secs);
    keep!("pacs", pacs);
    keep!("priors", priors);
    keep!("database", database);
    // `[hl7]`: the per-connection keys are applied; listeners, slots and the quarantine
    // stay.
    if !apply_part(&running.hl7, &mut config.hl7, |rest, new| {
        rest.allowed_hosts = new.allowed_hosts.clone();
        rest.max_frame_bytes = new.max_frame_bytes;
        rest.idle_timeout_secs = new.idle_timeout_secs;
        rest.default_charset = new.default_charset;
        rest.application = new.application.clone();
        rest.limits = new.limits;
        rest.expected_images_field = new.expected_images_field.clone();
    }) {
        restart_needed.push("hl7");
    }
    keep!("notify", notify);
    keep!("audit", audit);
    keep!("log.format", log.format);
    // `[http]`: users and tokens are applied; the listener and everything else stay.
    if !apply_part(&running.http, &mut config.http, |rest, new| {
        rest.users = new.users.clone();
        rest.tokens = new.tokens.clone();
    }) {
        restart_needed.push("http");
    }
    let mut applied = Vec::new();
    let changes: [(&'static str, bool); 9] = [
        ("dicom", config.dicom != running.dicom),
        ("hl7", config.hl7 != running.hl7),
        ("destinations", config.destinations != running.destinations),
        ("routes", config.routes != running.routes),
        ("forward", config.forward != running.forward),
        ("policy", config.policy != running.policy),
        ("ledger", config.ledger != running.ledger),
        (
            "http.users / http.tokens",
            config.http.as_ref().map(|h| (&h.users, &h.tokens))
                != running.http.as_ref().map(|h| (&h.users, &h.tokens)),
        ),
        ("log.level", config.log.level != running.log.level),
    ];
    for (name, changed) in changes {
        if changed {
            applied.push(name);
        }
    }
    Merged {
        config,
        restart_needed,
        applied,
    }
}

/// An optional section of which a reload applies only some keys: `new` becomes the
/// running section with those keys (`take`) from `new`. False when something else changed
/// (it keeps its running value then, and needs a restart), or the section was added or
/// removed.
fn apply_part<T: Clone + PartialEq>(
    running: &Option<T>,
    new: &mut Option<T>,
    take: impl Fn(&mut T, &T),
) -> bool {
    match (running, new.as_mut()) {
        (Some(old), Some(n)) => {
            let mut rest = old.clone();
            take(&mut rest, n);
            let same = rest == *n;
            *n = rest;
            same
        }
        (None, None) => true,
        _ => {
            *new = running.clone();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(extra: &str) -> Config {
        let text = format!(
            "[gateway]\nid = \"gw\"\ndata_dir = \"/tmp/x\"\nsending_facility = \"H\"\n\
             [dicom]\nae_title = \"READGATE\"\nlisten = \"127.0.0.1:11112\"\nallow_any_calling_ae = true\n\
             [[destinations]]\nid = \"a\"\nae_title = \"A\"\nhost = \"127.0.0.1\"\nport = 104\nfacility = \"F\"\n\
             [[routes]]\ndestination = \"a\"\n{extra}"
        );
        match Config::parse(&text, Path::new("t.toml")) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn applies_what_may_change_and_keeps_the_rest() {
        let running = parse("[log]\nlevel = \"info\"\n");
        let mut new = parse("[log]\nlevel = \"debug\"\n");
        new.dicom.listen = "127.0.0.1:1".parse().unwrap_or(running.dicom.listen);
        new.dicom.ae_title = "NEWGATE".into();
        new.gateway.data_dir = "/elsewhere".into();
        let merged = merge(&running, new);
        assert_eq!(
            merged.restart_needed,
            vec!["gateway", "dicom.listen"],
            "{merged:?}"
        );
        assert_eq!(merged.config.dicom.listen, running.dicom.listen);
        assert_eq!(merged.config.gateway.data_dir, running.gateway.data_dir);
        assert_eq!(merged.config.dicom.ae_title, "NEWGATE");
        assert_eq!(merged.config.log.level, "debug");
        assert_eq!(merged.applied, vec!["dicom", "log.level"]);
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let merged = merge(&parse(""), parse(""));
        assert!(merged.restart_needed.is_empty() && merged.applied.is_empty());
    }

    #[test]
    fn live_hands_out_the_replacement() {
        let live = Live::new(parse(""));
        let seen = live.subscribe();
        let mut next = parse("");
        next.dicom.ae_title = "OTHER".into();
        live.replace(next);
        assert!(seen.has_changed().unwrap_or(false));
        assert_eq!(live.current().dicom.ae_title, "OTHER");
    }
}
