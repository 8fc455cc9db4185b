//! `[ledger]`: the roster of readers, the places that count as inside each receiving
//! facility, and the rules the ledger applies (ATS-3, ATS-3-note1, ATS-3-note2, JRS-8.1).

use super::net::Cidr;
use super::Invalid;
use crate::model::Employment;
use crate::time::{parse_date, parse_offset};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// Policy: is a full-time radiologist's read from outside the facility (e.g. from home
    /// at night) eligible? Off by default: the 2024 rules allow it only under conditions
    /// the hospital must check itself.
    #[serde(default)]
    pub full_time_remote_eligible: bool,
    /// Part-time share of claimed reads above this percentage: warning (ATS-3-note2).
    #[serde(default = "default_warning")]
    pub part_time_warning_percent: f64,
    /// … above this: critical.
    #[serde(default = "default_critical")]
    pub part_time_critical_percent: f64,
    /// A confirmer must have had the study open at least this long before signing
    /// another reader's report unchanged (ATS-3-note1).
    #[serde(default = "default_min_open")]
    pub min_open_secs: u64,
    /// Preliminary and final text at least this similar (0–1, by characters) count as
    /// unchanged.
    #[serde(default = "default_similarity")]
    pub unchanged_similarity: f64,
    /// This many final sign-offs …
    #[serde(default = "default_burst_count")]
    pub burst_count: u32,
    /// … by one signer within this many seconds are a burst: the confirmations among
    /// them are formal.
    #[serde(default = "default_burst_window")]
    pub burst_window_secs: u64,
    /// Time zone of month boundaries and of HL7 times without an offset.
    #[serde(default = "default_utc_offset")]
    pub utc_offset: String,
    /// A roster CSV read together with `[[ledger.readers]]` and the imported roster.
    pub roster_csv: Option<PathBuf>,
    #[serde(default)]
    pub readers: Vec<ReaderConfig>,
    #[serde(default)]
    pub places: Vec<PlaceConfig>,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            full_time_remote_eligible: false,
            part_time_warning_percent: default_warning(),
            part_time_critical_percent: default_critical(),
            min_open_secs: default_min_open(),
            unchanged_similarity: default_similarity(),
            burst_count: default_burst_count(),
            burst_window_secs: default_burst_window(),
            utc_offset: default_utc_offset(),
            roster_csv: None,
            readers: Vec::new(),
            places: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReaderConfig {
    /// Every id the reader has: OBR-32/33 ids, reading-system logins.
    pub ids: Vec<String>,
    pub name: String,
    /// The receiving facility that employs the reader.
    pub facility: String,
    pub employment: Employment,
    /// 放射線診断専門医 (JRS-8.1).
    #[serde(default)]
    pub board_certified: bool,
    /// `YYYY-MM-DD`, inclusive; absent: always.
    pub valid_from: Option<String>,
    pub valid_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceConfig {
    pub facility: String,
    /// CIDRs (`10.20.0.0/16`, `2001:db8::/32`) or single addresses inside the facility.
    #[serde(default)]
    pub networks: Vec<String>,
    /// Workstation names inside the facility.
    #[serde(default)]
    pub workstations: Vec<String>,
}

fn default_warning() -> f64 {
    20.0
}
fn default_critical() -> f64 {
    30.0
}
fn default_min_open() -> u64 {
    60
}
fn default_similarity() -> f64 {
    0.98
}
fn default_burst_count() -> u32 {
    5
}
fn default_burst_window() -> u64 {
    60
}
fn default_utc_offset() -> String {
    "+09:00".into()
}

impl LedgerConfig {
    /// Checks every key; the error names it (`ledger.readers[2].valid_to`).
    pub fn validate(&self) -> Result<(), Invalid> {
        let err = |k: &str, m: String| Err(Invalid::new(k, m));
        for (key, v) in [
            (
                "ledger.part_time_warning_percent",
                self.part_time_warning_percent,
            ),
            (
                "ledger.part_time_critical_percent",
                self.part_time_critical_percent,
            ),
        ] {
            if !(0.0..=100.0).contains(&v) || v.is_nan() {
                return err(key, format!("expected a percentage 0–100, got {v}"));
            }
        }
        if self.part_time_critical_percent < self.part_time_warning_percent {
            return err(
                "ledger.part_time_critical_percent",
                format!(
                    "expected ≥ ledger.part_time_warning_percent ({})",
                    self.part_time_warning_percent
                ),
            );
        }
        if !(0.0..=1.0).contains(&self.unchanged_similarity) || self.unchanged_similarity.is_nan() {
            return err(
                "ledger.unchanged_similarity",
                format!("expected 0.0 to 1.0, got {}", self.unchanged_similarity),
            );
        }
        if self.burst_count < 2 {
            return err("ledger.burst_count", "expected at least 2".into());
        }
        if self.burst_window_secs == 0 {
            return err(
                "ledger.burst_window_secs",
                "expected a number of seconds ≥ 1".into(),
            );
        }
        if let Err(m) = parse_offset(&self.utc_offset) {
            return err("ledger.utc_offset", m.to_string());
        }
        if let Some(p) = &self.roster_csv {
            if p.as_os_str().is_empty() {
                return err("ledger.roster_csv", "expected a file path".into());
            }
        }
        for (i, r) in self.readers.iter().enumerate() {
            let key = |f: &str| format!("ledger.readers[{i}].{f}");
            if r.ids.is_empty() || r.ids.iter().any(|id| id.trim().is_empty()) {
                return err(&key("ids"), "expected at least one non-empty id".into());
            }
            if r.name.trim().is_empty() {
                return err(&key("name"), "expected a non-empty string".into());
            }
            if r.facility.trim().is_empty() {
                return err(&key("facility"), "expected a non-empty string".into());
            }
            let from = match &r.valid_from {
                Some(d) => Some(
                    parse_date(d).map_err(|m| Invalid::new(key("valid_from"), m.to_string()))?,
                ),
                None => None,
            };
            let to = match &r.valid_to {
                Some(d) => {
                    Some(parse_date(d).map_err(|m| Invalid::new(key("valid_to"), m.to_string()))?)
                }
                None => None,
            };
            if let (Some(f), Some(t)) = (from, to) {
                if t < f {
                    return err(&key("valid_to"), "expected a date ≥ valid_from".into());
                }
            }
        }
        for (i, p) in self.places.iter().enumerate() {
            let key = |f: &str| format!("ledger.places[{i}].{f}");
            if p.facility.trim().is_empty() {
                return err(&key("facility"), "expected a non-empty string".into());
            }
            for (j, n) in p.networks.iter().enumerate() {
                if let Err(super::BadValue(m)) = Cidr::parse(n) {
                    return err(&format!("ledger.places[{i}].networks[{j}]"), m);
                }
            }
            if p.workstations.iter().any(|w| w.trim().is_empty()) {
                return err(&key("workstations"), "expected non-empty names".into());
            }
        }
        Ok(())
    }

    /// Offset of local time from UTC, in seconds (validated).
    pub fn offset_secs(&self) -> i64 {
        parse_offset(&self.utc_offset).unwrap_or(9 * 3600)
    }
}
