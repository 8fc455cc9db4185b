//! What the gate concluded about a study, in two vocabularies that must not be confused:
//! the policy's [`Verdict`] on the facts (kept in the evaluation JSON), and the
//! [`Disposition`] recorded with the study and tagged into every forwarded instance.

crate::text_enum! {
    /// The policy's verdict on one evaluation (`decide::policy::evaluate`).
    pub enum Verdict ("verdict") {
        /// Every check passed: forward.
        Pass => "pass",
        /// Keep the study until the missing facts arrive (or a route exists).
        Hold => "hold",
        /// STAT with `stat = "forward_flagged"`: forward now, marked incomplete, and keep
        /// asking for what is missing.
        ForwardIncomplete => "forward_incomplete",
    }
}

crate::text_enum! {
    /// What was done with a study, as recorded (`studies.verdict`), shown by `readgate
    /// check` and the API, and tagged into forwarded instances.
    pub enum Disposition ("disposition") {
        /// Every check passed.
        Pass => "PASS",
        /// Held until the missing context arrives.
        Held => "HELD",
        /// Forwarded although context is missing (STAT, policy forwards with a flag).
        ForwardedIncomplete => "FORWARDED_INCOMPLETE",
        /// A held study released by a person's override.
        ReleasedOverride => "RELEASED_OVERRIDE",
    }
}

impl Verdict {
    /// The disposition an evaluation with this verdict is recorded with.
    pub fn disposition(self) -> Disposition {
        match self {
            Verdict::Pass => Disposition::Pass,
            Verdict::Hold => Disposition::Held,
            Verdict::ForwardIncomplete => Disposition::ForwardedIncomplete,
        }
    }
}

impl Default for Disposition {
    /// Nothing leaves unless something released it.
    fn default() -> Self {
        Disposition::Held
    }
}

impl Disposition {
    /// Whether a study with this disposition may be forwarded.
    pub fn releases(self) -> bool {
        !matches!(self, Disposition::Held)
    }
}
