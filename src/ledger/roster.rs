//! The roster: who may read, for which receiving facility, as what (ATS-3), certified or
//! not (JRS-8.1), and when. Three sources, merged: `[[ledger.readers]]` in the config, the
//! `ledger.roster_csv` file, and rosters imported with `readgate roster import` (kept in
//! the store). A reader id can belong to several entries with different validity dates
//! (a part-timer who became full-time): the entry valid on the day of the read applies;
//! when several are valid, the config wins over the CSV file, which wins over imports.

use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

pub use crate::model::Employment;

/// One roster entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reader {
    pub ids: Vec<String>,
    pub name: String,
    pub facility: String,
    pub employment: Employment,
    pub board_certified: bool,
    /// Local day numbers (see `time::parse_date`), inclusive.
    #[serde(skip)]
    pub valid_from: Option<i64>,
    #[serde(skip)]
    pub valid_to: Option<i64>,
    /// `config`, `csv:<path>` or `import`.
    pub source: String,
}

impl Reader {
    pub fn valid_on(&self, day: i64) -> bool {
        self.valid_from.is_none_or(|f| day >= f) && self.valid_to.is_none_or(|t| day <= t)
    }

    pub fn valid_from_str(&self) -> String {
        self.valid_from.map(day_str).unwrap_or_default()
    }

    pub fn valid_to_str(&self) -> String {
        self.valid_to.map(day_str).unwrap_or_default()
    }

    /// The entry the store keeps for an imported reader.
    pub fn to_entry(&self) -> crate::store::RosterEntry {
        crate::store::RosterEntry {
            ids: self.ids.clone(),
            name: self.name.clone(),
            facility: self.facility.clone(),
            employment: self.employment,
            board_certified: self.board_certified,
            valid_from: Some(self.valid_from_str()).filter(|s| !s.is_empty()),
            valid_to: Some(self.valid_to_str()).filter(|s| !s.is_empty()),
            source: String::new(),
        }
    }

    /// An imported reader from its stored entry (validated on import; the store reads
    /// its employment as the enum, and fails on a row whose text names none).
    pub fn from_entry(e: crate::store::RosterEntry) -> Reader {
        let date = |d: Option<String>| d.and_then(|d| crate::time::parse_date(&d).ok());
        Reader {
            ids: e.ids,
            name: e.name,
            facility: e.facility,
            employment: e.employment,
            board_certified: e.board_certified,
            valid_from: date(e.valid_from),
            valid_to: date(e.valid_to),
            source: format!("import:{}", e.source),
        }
    }
}

fn day_str(d: i64) -> String {
    crate::time::format_date(d)
}

#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error("roster CSV {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("roster CSV {path}, line {line}, column `{column}`: {message}")]
    Invalid {
        path: String,
        line: usize,
        column: String,
        message: String,
    },
}

/// The columns of a roster CSV, in any order (header row required).
pub const CSV_COLUMNS: [&str; 7] = [
    "ids",
    "name",
    "facility",
    "employment",
    "board_certified",
    "valid_from",
    "valid_to",
];

/// Reads a roster CSV (UTF-8 with or without BOM, or Shift_JIS as Excel writes it).
pub fn read_csv(path: &Path) -> Result<Vec<Reader>, RosterError> {
    let bytes = std::fs::read(path).map_err(|source| RosterError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t.to_string(),
        Err(_) => encoding_rs::SHIFT_JIS.decode(&bytes).0.into_owned(),
    };
    parse_csv(&text, &path.display().to_string())
}

/// Parses roster CSV text; `path` is for messages.
pub fn parse_csv(text: &str, path: &str) -> Result<Vec<Reader>, RosterError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rows = csv_rows(text);
    let invalid = |line: usize, column: &str, message: String| RosterError::Invalid {
        path: path.to_string(),
        line,
        column: column.to_string(),
        message,
    };
    let Some((_, header)) = rows.first() else {
        return Err(invalid(
            1,
            "ids",
            "empty file: expected a header row".into(),
        ));
    };
    let header: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for h in &header {
        if !CSV_COLUMNS.contains(&h.as_str()) {
            return Err(invalid(
                1,
                h,
                format!("unknown column (expected: {})", CSV_COLUMNS.join(", ")),
            ));
        }
    }
    for required in ["ids", "name", "facility", "employment"] {
        if !header.iter().any(|h| h == required) {
            return Err(invalid(1, required, "required column missing".into()));
        }
    }
    let col = |name: &str| header.iter().position(|h| h == name);
    let mut out = Vec::new();
    for (line, row) in rows.iter().skip(1) {
        if row.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let get = |name: &str| {
            col(name)
                .and_then(|i| row.get(i))
                .map(|s| s.trim())
                .unwrap_or("")
        };
        let ids: Vec<String> = get("ids")
            .split(['|', ';', ' ', '\u{3000}'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if ids.is_empty() {
            return Err(invalid(*line, "ids", "expected at least one id".into()));
        }
        let name = get("name");
        if name.is_empty() {
            return Err(invalid(*line, "name", "expected a name".into()));
        }
        let facility = get("facility");
        if facility.is_empty() {
            return Err(invalid(*line, "facility", "expected a facility".into()));
        }
        let employment = Employment::parse(get("employment"))
            .map_err(|m| invalid(*line, "employment", m.to_string()))?;
        let board_certified = match get("board_certified").to_ascii_lowercase().as_str() {
            "" | "false" | "no" | "n" | "0" | "いいえ" | "無" => false,
            "true" | "yes" | "y" | "1" | "はい" | "有" => true,
            other => {
                return Err(invalid(
                    *line,
                    "board_certified",
                    format!("expected true or false, got {other:?}"),
                ))
            }
        };
        let date = |c: &str| -> Result<Option<i64>, RosterError> {
            match get(c) {
                "" => Ok(None),
                d => crate::time::parse_date(d)
                    .map(Some)
                    .map_err(|m| invalid(*line, c, m.to_string())),
            }
        };
        let (valid_from, valid_to) = (date("valid_from")?, date("valid_to")?);
        if let (Some(f), Some(t)) = (valid_from, valid_to) {
            if t < f {
                return Err(invalid(
                    *line,
                    "valid_to",
                    "expected a date ≥ valid_from".into(),
                ));
            }
        }
        out.push(Reader {
            ids,
            name: name.to_string(),
            facility: facility.to_string(),
            employment,
            board_certified,
            valid_from,
            valid_to,
            source: String::new(),
        });
    }
    Ok(out)
}

/// RFC 4180 rows with their (1-based) starting line numbers.
fn csv_rows(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut line = 1;
    let mut row_line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push((row_line, std::mem::take(&mut row)));
                line += 1;
                row_line = line;
            }
            _ => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push((row_line, row));
    }
    rows
}

/// Writes readers as roster CSV (what `readgate roster list --format csv` prints).
pub fn to_csv(readers: &[Reader]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for r in readers {
        let cells = [
            r.ids.join("|"),
            r.name.clone(),
            r.facility.clone(),
            r.employment.as_str().to_string(),
            r.board_certified.to_string(),
            r.valid_from_str(),
            r.valid_to_str(),
        ];
        let cells: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// One CSV cell, quoted when needed; a leading `= + - @` is neutralised so a spreadsheet
/// does not run it as a formula.
pub fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) && s.parse::<f64>().is_err() {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The merged roster, indexed by id.
#[derive(Debug, Default, Clone)]
pub struct Roster {
    readers: Vec<Reader>,
    by_id: HashMap<String, Vec<usize>>,
}

impl Roster {
    /// Entries in precedence order (earlier wins among entries valid the same day).
    pub fn new(readers: Vec<Reader>) -> Roster {
        let mut by_id: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in readers.iter().enumerate() {
            for id in &r.ids {
                let v = by_id.entry(id.trim().to_string()).or_default();
                if !v.contains(&i) {
                    v.push(i);
                }
            }
        }
        Roster { readers, by_id }
    }

    /// The entry for `id` valid on local day `day`.
    pub fn lookup(&self, id: &str, day: i64) -> Option<&Reader> {
        self.by_id
            .get(id.trim())?
            .iter()
            .map(|&i| &self.readers[i])
            .find(|r| r.valid_on(day))
    }

    pub fn readers(&self) -> &[Reader] {
        &self.readers
    }

    pub fn len(&self) -> usize {
        self.readers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.readers.is_empty()
    }
}

/// The readers listed in `[[ledger.readers]]`, as roster entries.
pub fn from_config(config: &crate::config::ledger::LedgerConfig) -> Vec<Reader> {
    config
        .readers
        .iter()
        .map(|r| Reader {
            ids: r.ids.iter().map(|s| s.trim().to_string()).collect(),
            name: r.name.trim().to_string(),
            facility: r.facility.trim().to_string(),
            employment: r.employment,
            board_certified: r.board_certified,
            valid_from: r
                .valid_from
                .as_deref()
                .and_then(|d| crate::time::parse_date(d).ok()),
            valid_to: r
                .valid_to
                .as_deref()
                .and_then(|d| crate::time::parse_date(d).ok()),
            source: "config".into(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str =
        "\u{feff}ids,name,facility,employment,board_certified,valid_from,valid_to\r\n\
        1001|suzuki,\"鈴木, 一郎\",RC1,full_time,true,2020-04-01,\r\n\
        2001,田中 次郎,RC1,trainee,false,,2026-03-31\r\n\
        2001,田中 次郎,RC1,part_time,true,2026-04-01,\r\n";

    #[test]
    fn csv_parses_and_lookup_follows_validity() {
        let readers = parse_csv(CSV, "r.csv").unwrap();
        assert_eq!(readers.len(), 3);
        assert_eq!(readers[0].ids, vec!["1001", "suzuki"]);
        assert_eq!(readers[0].name, "鈴木, 一郎");
        let roster = Roster::new(readers);
        let day = |s| crate::time::parse_date(s).unwrap();
        assert_eq!(
            roster
                .lookup("suzuki", day("2026-06-01"))
                .unwrap()
                .employment,
            Employment::FullTime
        );
        assert!(roster.lookup("suzuki", day("2019-06-01")).is_none());
        assert_eq!(
            roster.lookup("2001", day("2026-03-31")).unwrap().employment,
            Employment::Trainee
        );
        assert_eq!(
            roster.lookup("2001", day("2026-04-01")).unwrap().employment,
            Employment::PartTime
        );
        let again = parse_csv(&to_csv(roster.readers()), "x").unwrap();
        assert_eq!(again.len(), 3);
        assert_eq!(again[0].name, "鈴木, 一郎");
    }

    #[test]
    fn csv_errors_name_line_and_column() {
        let bad = "ids,name,facility,employment\n1,a,RC1,boss\n";
        let e = parse_csv(bad, "r.csv").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("`employment`"), "{e}");
        let e = parse_csv("ids,name,shoe\n", "r.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`shoe`"), "{e}");
        let e = parse_csv("ids,name,facility\n", "r.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`employment`"), "{e}");
        let e = parse_csv(
            "ids,name,facility,employment,valid_from\n1,a,RC1,trainee,2026-13-01\n",
            "r.csv",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`valid_from`"), "{e}");
        assert_eq!(csv_cell("=cmd()"), "'=cmd()");
        assert_eq!(csv_cell("-5"), "-5");
    }
}
