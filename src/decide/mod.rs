//! The decision point between "study complete" and "queued for a destination".
//!
//! Everything that may stop a study from leaving the hospital plugs in here, behind
//! [`Decide`]: receiving and forwarding do not change when policies do. The [`Gate`]
//! routes the study (first matching `[[routes]]` entry wins, naming the receiving facility
//! responsible, ATS-4) and applies the clinical-context policy ([`policy`], JRS-7.3.x) to
//! the facts [`assemble`] gathered about it ([`context`]).

pub mod context;
pub mod policy;
pub mod reasons;

pub mod assemble;

use crate::config::{Config, Live};
use context::StudyContext;
pub use policy::Verdict;
use serde::{Deserialize, Serialize};

/// Why a study is held: a stable code, the clause it enforces, and what to do, in the
/// words a technologist or radiologist uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldReason {
    pub code: String,
    pub clause: String,
    pub message_en: String,
    pub message_ja: String,
}

/// Where a study goes and who is responsible for reading it (ATS-4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub destination: String,
    pub facility: String,
    /// Which rule routed it, for the study's timeline.
    pub because: String,
}

/// What the decision stage decided about a complete study, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub route: Option<Route>,
    pub verdict: Verdict,
    /// Hold reasons; for `ForwardIncomplete`, what is still missing.
    pub reasons: Vec<HoldReason>,
    /// The policy's full evaluation (every check, with the sources of its facts).
    pub evaluation: Option<policy::Evaluation>,
}

impl Decision {
    /// Whether the study leaves now.
    pub fn forwards(&self) -> bool {
        self.route.is_some() && self.verdict != Verdict::Hold
    }

    /// The verdict as recorded and tagged.
    pub fn disposition(&self) -> crate::model::Disposition {
        self.verdict.disposition()
    }
}

pub trait Decide: Send + Sync {
    fn decide(&self, study: &StudyContext) -> Decision;

    /// The hospital's offset from UTC, for reading local HL7 and DICOM times.
    fn utc_offset_minutes(&self) -> i32 {
        540
    }

    /// The ids of the `[[pacs]]` the patient's history is asked from.
    fn pacs_ids(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether any study may stream (some route does not say `forward = "on_complete"`):
    /// only then does the study stage decide studies at their first instance.
    fn streams(&self) -> bool {
        false
    }

    /// How the route that `study` takes forwards it (`[[routes]] forward`, resolved for
    /// this study: unset means streaming for a STAT order). A decider that knows no
    /// routes forwards on completion.
    fn forward_mode(&self, _study: &StudyContext) -> crate::model::ForwardMode {
        crate::model::ForwardMode::OnComplete
    }
}

/// Where `config` sends a study with these modalities and calling AE titles, and why:
/// the first matching `[[routes]]` entry.
fn route_in(config: &Config, modalities: &[String], calling_aes: &[String]) -> Option<Route> {
    let (i, _, dest) = first_route(config, modalities, calling_aes)?;
    Some(Route {
        destination: dest.id.clone(),
        facility: dest.facility.clone(),
        because: format!("routes[{i}] → {} ({})", dest.id, dest.facility),
    })
}

/// The first `[[routes]]` entry of `config` that matches a study with these modalities and
/// calling AE titles: its index, the entry and its destination.
pub fn first_route<'a>(
    config: &'a Config,
    modalities: &[String],
    calling_aes: &[String],
) -> Option<(
    usize,
    &'a crate::config::Route,
    &'a crate::config::Destination,
)> {
    for (i, route) in config.routes.iter().enumerate() {
        let modality_ok = route.modalities.is_empty()
            || route
                .modalities
                .iter()
                .any(|m| modalities.iter().any(|s| s.eq_ignore_ascii_case(m)));
        let ae_ok = route.calling_ae.is_empty()
            || route
                .calling_ae
                .iter()
                .any(|a| calling_aes.iter().any(|s| s == a.trim()));
        if modality_ok && ae_ok {
            if let Some(dest) = config.destination(&route.destination) {
                return Some((i, route, dest));
            }
        }
    }
    None
}

/// Whether a study of these modalities from these calling AEs takes priors to
/// `destination`: the first route that matches it says (`[[routes]] send_priors`), else
/// the destination does (`send_priors`); never without a `[[pacs]]`.
pub fn takes_priors(
    config: &Config,
    modalities: &[String],
    calling_aes: &[String],
    destination: &str,
) -> bool {
    first_route(config, modalities, calling_aes)
        .and_then(|(_, route, _)| route.send_priors)
        .or_else(|| config.destination(destination).map(|d| d.send_priors))
        .unwrap_or(false)
        && !config.pacs.is_empty()
}

/// The gate: routes the study, then applies the clinical-context policy (`[policy]`).
pub struct Gate {
    config: Live,
}

impl Gate {
    /// A gate that reads `config` at each decision (a [`Live`] follows reloads).
    pub fn new(config: impl Into<Live>) -> Self {
        Gate {
            config: config.into(),
        }
    }
}

impl Decide for Gate {
    fn decide(&self, study: &StudyContext) -> Decision {
        let config = self.config.current();
        let route = route_in(&config, &study.modalities, &study.calling_aes);
        let mut ctx = study.clone();
        ctx.destination = route.as_ref().map(|r| r.destination.clone());
        ctx.facility = route.as_ref().map(|r| r.facility.clone());
        // A prior the PACS could not deliver matters only where priors are sent.
        let sends = ctx
            .destination
            .as_deref()
            .is_some_and(|d| takes_priors(&config, &ctx.modalities, &ctx.calling_aes, d));
        if !sends {
            for prior in &mut ctx.priors {
                prior.unavailable = None;
            }
        }
        let evaluation = policy::evaluate(&ctx, &config.policy, crate::time::now_ms());
        Decision {
            route,
            verdict: evaluation.verdict,
            reasons: evaluation.reasons.clone(),
            evaluation: Some(evaluation),
        }
    }

    fn utc_offset_minutes(&self) -> i32 {
        self.config.current().policy.utc_offset_minutes
    }

    fn pacs_ids(&self) -> Vec<String> {
        self.config
            .current()
            .pacs
            .iter()
            .map(|p| p.id.clone())
            .collect()
    }

    fn streams(&self) -> bool {
        self.config.current().routes.iter().any(|r| r.may_stream())
    }

    fn forward_mode(&self, study: &StudyContext) -> crate::model::ForwardMode {
        let config = self.config.current();
        first_route(&config, &study.modalities, &study.calling_aes)
            .map(|(_, route, _)| route.forward_mode(study.priority))
            .unwrap_or(crate::model::ForwardMode::OnComplete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::Arc;

    fn config(routes: &str) -> Arc<Config> {
        let text = format!(
            r#"
[gateway]
id = "gw"
data_dir = "var"
sending_facility = "H"
[dicom]
ae_title = "RG"
listen = "127.0.0.1:0"
allow_any_calling_ae = true
[[destinations]]
id = "a"
facility = "FA"
ae_title = "A"
host = "127.0.0.1"
port = 1
[[destinations]]
id = "b"
facility = "FB"
ae_title = "B"
host = "127.0.0.1"
port = 2
{routes}"#
        );
        Arc::new(Config::parse(&text, Path::new("t.toml")).unwrap())
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// `forward` on a route: explicit modes win; unset streams STAT orders only.
    #[test]
    fn forward_mode_by_route_and_priority() {
        use crate::model::{ForwardMode, Priority};
        let c = config(
            "[[routes]]\ndestination = \"a\"\nmodalities = [\"MR\"]\nforward = \"on_complete\"\n\
             [[routes]]\ndestination = \"a\"\nmodalities = [\"CR\"]\nforward = \"streaming\"\n\
             [[routes]]\ndestination = \"b\"\n",
        );
        let gate = Gate::new(c);
        assert!(gate.streams());
        let mode = |m: &str, p: Option<Priority>| {
            gate.forward_mode(&StudyContext {
                modalities: names(&[m]),
                priority: p,
                ..Default::default()
            })
        };
        assert_eq!(mode("MR", Some(Priority::Stat)), ForwardMode::OnComplete);
        assert_eq!(mode("CR", None), ForwardMode::Streaming);
        assert_eq!(mode("CT", Some(Priority::Stat)), ForwardMode::Streaming);
        assert_eq!(mode("CT", Some(Priority::Routine)), ForwardMode::OnComplete);
        assert_eq!(mode("CT", None), ForwardMode::OnComplete);
        let never = Gate::new(config(
            "[[routes]]\ndestination = \"a\"\nforward = \"on_complete\"\n",
        ));
        assert!(!never.streams());
        let bad = Config::parse(
            "[gateway]\nid = \"g\"\ndata_dir = \"v\"\nsending_facility = \"H\"\n[dicom]\nae_title = \"RG\"\nlisten = \"127.0.0.1:0\"\n\
             [[destinations]]\nid = \"a\"\nfacility = \"F\"\nae_title = \"A\"\nhost = \"h\"\nport = 1\n\
             [[routes]]\ndestination = \"a\"\nforward = \"later\"\n",
            Path::new("t.toml"),
        )
        .expect_err("unknown forward mode");
        assert!(bad.to_string().contains("streaming, on_complete"), "{bad}");
    }

    #[test]
    fn first_matching_route_wins() {
        let c = config(
            "[[routes]]\ndestination = \"a\"\nmodalities = [\"MR\"]\n[[routes]]\ndestination = \"b\"\ncalling_ae = [\"CT01\"]\n",
        );
        let route = |m: &[String], a: &[String]| route_in(&c, m, a);
        assert_eq!(
            route(&names(&["MR"]), &names(&["CT01"]))
                .unwrap()
                .destination,
            "a"
        );
        assert_eq!(
            route(&names(&["CT"]), &names(&["CT01"])).unwrap().facility,
            "FB"
        );
        assert!(route(&names(&["CT"]), &names(&["US01"])).is_none());
        let ctx = StudyContext {
            study_uid: "1.2".into(),
            modalities: names(&["CT"]),
            calling_aes: names(&["US01"]),
            ..Default::default()
        };
        let d = Gate::new(c).decide(&ctx);
        assert!(!d.forwards());
        assert!(d
            .reasons
            .iter()
            .any(|r| r.code == "NO_ROUTE" && r.clause == "ATS-4"));
    }

    /// A prior the PACS could not deliver holds a study only on a route that sends
    /// priors: `send_priors = false` there means the facility fetches its own.
    #[test]
    fn an_undeliverable_prior_holds_only_where_priors_are_sent() {
        use crate::decide::context::{PacsAnswer, Prior, Source};
        let pacs =
            "[[pacs]]\nid = \"hosp\"\nae_title = \"PACS\"\nhost = \"127.0.0.1\"\nport = 104\n\
                    [[policy.rules]]\nname = \"priors\"\nchecks = [\"prior_reports\"]\n";
        let ctx = StudyContext {
            study_uid: "1.2".into(),
            modalities: names(&["CT"]),
            calling_aes: names(&["CT01"]),
            pacs: vec![PacsAnswer::Answered {
                pacs: "hosp".into(),
                at: 0,
                found: 1,
            }],
            priors: vec![Prior {
                study_uid: "1.1".into(),
                accession: Some("A-OLD".into()),
                study_time_ms: None,
                reports: 1,
                documents: 0,
                modalities: names(&["CT"]),
                body_parts: Vec::new(),
                source: Source::Cfind { ae: "hosp".into() },
                unavailable: Some("hosp: C-MOVE refused".into()),
            }],
            ..Default::default()
        };
        let sending = config(&format!("[[routes]]\ndestination = \"a\"\n{pacs}"));
        let d = Gate::new(sending).decide(&ctx);
        let codes: Vec<&str> = d.reasons.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["PRIORS_UNAVAILABLE"]);
        let not_sending = config(&format!(
            "[[routes]]\ndestination = \"a\"\nsend_priors = false\n{pacs}"
        ));
        let d = Gate::new(not_sending).decide(&ctx);
        assert!(d.reasons.is_empty(), "{:?}", d.reasons);
    }
}
