//! What a reader did with a study, as a reading system reports it (`POST /api/v1/read-events`)
//! or an HL7 report implies it (OBR-25), stored in `read_events.action`.

crate::text_enum! {
    /// One step of a reading: opening and closing the study, and the report's versions.
    pub enum ReadAction ("read action") {
        Opened => "opened",
        Closed => "closed",
        Preliminary => "preliminary",
        Final => "final",
        Confirmed => "confirmed",
        Addendum => "addendum",
    }
}

impl ReadAction {
    /// A sign-off: the report becomes final under this reader's responsibility.
    pub fn is_sign_off(self) -> bool {
        matches!(self, ReadAction::Final | ReadAction::Confirmed)
    }
}
