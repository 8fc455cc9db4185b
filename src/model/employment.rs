//! How a reader is employed by the receiving facility (ATS-3: part-time reads from
//! outside the facility are not claimable).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
/// Full-time (常勤), part-time (非常勤) or trainee (研修医・専攻医).
pub enum Employment {
    FullTime,
    PartTime,
    Trainee,
}

impl Employment {
    pub fn as_str(self) -> &'static str {
        match self {
            Employment::FullTime => "full_time",
            Employment::PartTime => "part_time",
            Employment::Trainee => "trainee",
        }
    }

    /// Also the Japanese words a roster CSV may use.
    pub fn parse(s: &str) -> Result<Employment, super::UnknownText> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "full_time" | "fulltime" | "常勤" => Ok(Employment::FullTime),
            "part_time" | "parttime" | "非常勤" => Ok(Employment::PartTime),
            "trainee" | "研修医" | "専攻医" => Ok(Employment::Trainee),
            _ => Err(super::UnknownText {
                what: "employment",
                got: s.trim().to_string(),
                expected: "full_time (常勤), part_time (非常勤), trainee (研修医・専攻医)",
            }),
        }
    }
}
