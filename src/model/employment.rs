//! How a reader is employed by the receiving facility (ATS-3: part-time reads from
//! outside the facility are not claimable).

crate::text_enum! {
    /// Full-time (常勤), part-time (非常勤) or trainee (研修医・専攻医).
    pub enum Employment ("employment") {
        FullTime => "full_time",
        PartTime => "part_time",
        Trainee => "trainee",
    }
}

impl Employment {
    /// The stored form (`as_str`) and the spellings a roster CSV may use: without the
    /// underscore, with a hyphen, in any case, or the Japanese words.
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
