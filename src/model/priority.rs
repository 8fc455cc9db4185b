//! Order priority as the policy sees it.

crate::text_enum! {
    /// Order priority. An unknown code is "no priority known" (`Option<Priority>`); the
    /// HL7 parser keeps its own wire type that preserves unknown codes as received.
    pub enum Priority ("priority") {
        Stat => "stat",
        Asap => "asap",
        Routine => "routine",
    }
}

impl Priority {
    /// From an HL7 priority (TQ1-9 / ORC-7.6 / OBR-27.6) or a DICOM Requested Procedure
    /// Priority (0040,1003: STAT, HIGH, ROUTINE, MEDIUM, LOW). `None` for anything else.
    pub fn from_code(code: &str) -> Option<Priority> {
        match code.trim().to_ascii_uppercase().as_str() {
            "S" | "STAT" => Some(Priority::Stat),
            "A" | "ASAP" | "HIGH" => Some(Priority::Asap),
            "R" | "ROUTINE" | "MEDIUM" | "LOW" => Some(Priority::Routine),
            _ => None,
        }
    }
}
