//! Reading places: the networks and workstations that count as *inside* each receiving
//! facility (ATS-3), and where one read happened.

use crate::config::ledger::PlaceConfig;
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;

pub use crate::config::net::Cidr;

/// Inside, outside, or not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    Inside,
    Outside,
    Unknown,
}

impl Location {
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Inside => "inside",
            Location::Outside => "outside",
            Location::Unknown => "unknown",
        }
    }
}

/// Where one read happened, and what that was decided from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlaceResolution {
    pub location: Location,
    /// The facility whose network or workstation list matched, if any.
    pub facility: Option<String>,
    /// `client_ip`, `workstation`, `hl7_point_of_care`, `hl7_facility`, or `none`.
    pub basis: &'static str,
}

/// What a read says about its place.
#[derive(Debug, Clone, Default)]
pub struct PlaceClues<'a> {
    pub client_ip: Option<&'a str>,
    pub workstation: Option<&'a str>,
    /// NDL.4 point of care (HL7): compared with the workstation lists.
    pub point_of_care: Option<&'a str>,
    /// NDL.7 facility (HL7): the facility the interpreter says it read at.
    pub hl7_facility: Option<&'a str>,
}

#[derive(Debug, Default, Clone)]
pub struct Places {
    networks: Vec<(Cidr, String)>,
    workstations: HashMap<String, String>,
    facilities_with_networks: std::collections::HashSet<String>,
    facilities: std::collections::HashSet<String>,
}

impl Places {
    pub fn new(config: &[PlaceConfig]) -> Places {
        let mut p = Places::default();
        for place in config {
            let f = place.facility.trim().to_string();
            p.facilities.insert(f.clone());
            for n in &place.networks {
                if let Ok(c) = Cidr::parse(n) {
                    p.networks.push((c, f.clone()));
                    p.facilities_with_networks.insert(f.clone());
                }
            }
            for w in &place.workstations {
                p.workstations
                    .insert(w.trim().to_ascii_uppercase(), f.clone());
            }
        }
        // Longest prefix first: a facility's subnet inside another's range wins.
        p.networks.sort_by_key(|n| std::cmp::Reverse(n.0.prefix()));
        p
    }

    fn by_ip(&self, ip: IpAddr) -> Option<&str> {
        self.networks
            .iter()
            .find(|(c, _)| c.contains(ip))
            .map(|(_, f)| f.as_str())
    }

    fn by_workstation(&self, name: &str) -> Option<&str> {
        self.workstations
            .get(&name.trim().to_ascii_uppercase())
            .map(String::as_str)
    }

    /// Resolves a read against `home`, the facility it must happen inside (the reader's
    /// facility, or the study's responsible facility for an unknown reader).
    ///
    /// Order: a client IP in some facility's networks; a listed workstation (or HL7 point
    /// of care); an HL7 facility name; a client IP that is in none of the home facility's
    /// networks (outside); otherwise unknown.
    pub fn resolve(&self, clues: &PlaceClues<'_>, home: Option<&str>) -> PlaceResolution {
        let verdict = |facility: &str, basis| PlaceResolution {
            location: if Some(facility) == home {
                Location::Inside
            } else {
                Location::Outside
            },
            facility: Some(facility.to_string()),
            basis,
        };
        let ip = clues
            .client_ip
            .and_then(|s| s.trim().parse::<IpAddr>().ok());
        if let Some(f) = ip.and_then(|ip| self.by_ip(ip)) {
            return verdict(f, "client_ip");
        }
        if let Some(f) = clues.workstation.and_then(|w| self.by_workstation(w)) {
            return verdict(f, "workstation");
        }
        if let Some(f) = clues.point_of_care.and_then(|w| self.by_workstation(w)) {
            return verdict(f, "hl7_point_of_care");
        }
        if let Some(f) = clues.hl7_facility.map(str::trim).filter(|f| !f.is_empty()) {
            return verdict(f, "hl7_facility");
        }
        if ip.is_some() && home.is_some_and(|h| self.facilities_with_networks.contains(h)) {
            return PlaceResolution {
                location: Location::Outside,
                facility: None,
                basis: "client_ip",
            };
        }
        PlaceResolution {
            location: Location::Unknown,
            facility: None,
            basis: "none",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places() -> Places {
        Places::new(&[
            PlaceConfig {
                facility: "RC1".into(),
                networks: vec!["10.20.0.0/16".into(), "2001:db8::/32".into()],
                workstations: vec!["rc1-ws01".into()],
            },
            PlaceConfig {
                facility: "RC2".into(),
                networks: vec!["10.20.30.0/24".into()],
                workstations: vec![],
            },
        ])
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.20.0.0/16").unwrap();
        assert!(c.contains("10.20.255.1".parse().unwrap()));
        assert!(!c.contains("10.21.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.20.0.9".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("10.0.0/8").is_err());
        assert!(Cidr::parse("192.168.1.7")
            .unwrap()
            .contains("192.168.1.7".parse().unwrap()));
    }

    #[test]
    fn resolution() {
        let p = places();
        let ip = |s| PlaceClues {
            client_ip: Some(s),
            ..Default::default()
        };
        assert_eq!(
            p.resolve(&ip("10.20.1.1"), Some("RC1")).location,
            Location::Inside
        );
        // longest prefix: RC2's subnet inside RC1's range
        let r = p.resolve(&ip("10.20.30.5"), Some("RC1"));
        assert_eq!(
            (r.location, r.facility.as_deref()),
            (Location::Outside, Some("RC2"))
        );
        let r = p.resolve(&ip("203.0.113.9"), Some("RC1"));
        assert_eq!((r.location, r.facility), (Location::Outside, None));
        // a facility without networks cannot say an address is outside
        assert_eq!(
            p.resolve(&ip("203.0.113.9"), Some("RC9")).location,
            Location::Unknown
        );
        let ws = PlaceClues {
            workstation: Some("RC1-WS01"),
            ..Default::default()
        };
        assert_eq!(p.resolve(&ws, Some("RC1")).location, Location::Inside);
        assert_eq!(
            p.resolve(&PlaceClues::default(), Some("RC1")).location,
            Location::Unknown
        );
        let hl7 = PlaceClues {
            hl7_facility: Some("RC1"),
            ..Default::default()
        };
        assert_eq!(p.resolve(&hl7, Some("RC1")).basis, "hl7_facility");
    }
}
