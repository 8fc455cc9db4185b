//! The decision point between "study complete" and "queued for a destination".
//!
//! Everything that may stop a study from leaving the hospital plugs in here, behind
//! [`Decide`]: receiving and forwarding do not change when policies do. Today the
//! decision routes the study (first matching `[[routes]]` entry wins) and holds it when
//! no route names a responsible receiving facility (ATS-4).

pub mod context;
pub mod policy;
pub mod reasons;

use crate::config::Config;
use crate::store::StudySnapshot;
use serde::Serialize;

/// Why a study is held: a stable code, the clause it enforces, and what to do, in the
/// words a technologist or radiologist uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldReason {
    pub code: String,
    pub clause: String,
    pub message_en: String,
    pub message_ja: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Forward {
        destination: String,
        /// The receiving facility responsible for reading it (ATS-4).
        facility: String,
        /// Which rule decided, for the study's timeline.
        because: String,
    },
    Hold {
        reasons: Vec<HoldReason>,
    },
}

pub trait Decide: Send + Sync {
    fn decide(&self, study: &StudySnapshot) -> Decision;
}

/// Routes by modality and calling AE; first match wins.
pub struct Router {
    config: std::sync::Arc<Config>,
}

impl Router {
    pub fn new(config: std::sync::Arc<Config>) -> Self {
        Router { config }
    }
}

impl Decide for Router {
    fn decide(&self, study: &StudySnapshot) -> Decision {
        for (i, route) in self.config.routes.iter().enumerate() {
            let modality_ok = route.modalities.is_empty()
                || route
                    .modalities
                    .iter()
                    .any(|m| study.modalities.iter().any(|s| s.eq_ignore_ascii_case(m)));
            let ae_ok = route.calling_ae.is_empty()
                || route
                    .calling_ae
                    .iter()
                    .any(|a| study.calling_aes.iter().any(|s| s == a.trim()));
            if modality_ok && ae_ok {
                if let Some(dest) = self.config.destination(&route.destination) {
                    return Decision::Forward {
                        destination: dest.id.clone(),
                        facility: dest.facility.clone(),
                        because: format!("routes[{i}] → {} ({})", dest.id, dest.facility),
                    };
                }
            }
        }
        Decision::Hold {
            reasons: vec![HoldReason {
                code: "NO_ROUTE".into(),
                clause: "ATS-4".into(),
                message_en: format!(
                    "No route matches this study (modalities {}, sent by {}), so no receiving facility is responsible for reading it. Add a [[routes]] entry for it in the readgate configuration.",
                    display_list(&study.modalities),
                    display_list(&study.calling_aes)
                ),
                message_ja: format!(
                    "この検査（モダリティ {}、送信元 {}）に一致する送信先ルールがなく、読影責任を負う受信側施設が決まりません。readgate の設定に [[routes]] を追加してください。",
                    display_list(&study.modalities),
                    display_list(&study.calling_aes)
                ),
            }],
        }
    }
}

fn display_list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
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

    fn study(modalities: &[&str], ae: &str) -> StudySnapshot {
        StudySnapshot {
            study_uid: "1.2".into(),
            accession: None,
            modalities: modalities.iter().map(|s| s.to_string()).collect(),
            calling_aes: vec![ae.into()],
            instance_count: 1,
            last_received_at: 0,
        }
    }

    #[test]
    fn first_matching_route_wins() {
        let c = config(
            "[[routes]]\ndestination = \"a\"\nmodalities = [\"MR\"]\n[[routes]]\ndestination = \"b\"\ncalling_ae = [\"CT01\"]\n",
        );
        let r = Router::new(c);
        assert!(
            matches!(r.decide(&study(&["MR"], "CT01")), Decision::Forward { destination, .. } if destination == "a")
        );
        assert!(
            matches!(r.decide(&study(&["CT"], "CT01")), Decision::Forward { facility, .. } if facility == "FB")
        );
        match r.decide(&study(&["CT"], "US01")) {
            Decision::Hold { reasons } => assert_eq!(reasons[0].clause, "ATS-4"),
            other => panic!("{other:?}"),
        }
    }
}
