//! Where a study and its instances are in the pipeline. Each state has exactly one text
//! form: the word stored in `studies.state` / `instances.state`, shown by the CLI and the
//! API, and written in the audit trail.

crate::text_enum! {
    /// A study's state, as listed by `readgate studies` and stored in `studies.state`.
    pub enum StudyState ("study state") {
        /// Instances are arriving; decided once the study is stable.
        Receiving => "receiving",
        /// The decision stage (or an operator's wait) keeps it back.
        Held => "held",
        /// Decided: waiting to be sent to its destination.
        Queued => "queued",
        /// Every instance was delivered.
        Forwarded => "forwarded",
        /// Forwarding gave up after the configured attempts.
        Failed => "failed",
        /// An operator decided the study must not be sent (with a written reason).
        Rejected => "rejected",
    }
}

crate::text_enum! {
    /// A Modality Performed Procedure Step's status (0040,0252), as the modality reports
    /// it over MPPS and `mpps.status` stores it.
    pub enum StepStatus ("performed procedure step status") {
        /// Started (N-CREATE); the study may still grow.
        InProgress => "IN PROGRESS",
        /// Done: the instances it lists are the step's whole output.
        Completed => "COMPLETED",
        /// Stopped before the end; the study falls back to the quiet wait.
        Discontinued => "DISCONTINUED",
    }
}

crate::text_enum! {
    /// What told readgate that a study's images were all in, recorded with its decision
    /// (`studies.completed_by`) and shown on the study page and by the API.
    pub enum CompletionSignal ("completion signal") {
        /// No new instance for `dicom.stable_after_secs`.
        QuietPeriod => "quiet_period",
        /// The modality's step is COMPLETED (MPPS) and every instance it lists is in.
        PerformedStep => "mpps",
        /// The study holds as many instances as its order said to expect
        /// (`hl7.expected_images_field`).
        ExpectedImages => "expected_images",
    }
}

crate::text_enum! {
    /// An instance's state, stored in `instances.state`: received (waiting for its
    /// study's decision), queued, forwarded, or rejected with its study.
    pub enum InstanceState ("instance state") {
        Received => "received",
        Queued => "queued",
        Forwarded => "forwarded",
        Rejected => "rejected",
    }
}

crate::text_enum! {
    /// What happened to a study, as its timeline (`events.kind`) records it: the console's
    /// study page, the API's `events` and the ledger's held list read it.
    pub enum EventKind ("study event kind") {
        /// Its first instance arrived.
        Received => "received",
        /// An instance arrived after it was decided: it is received again.
        Reopened => "reopened",
        /// Its last instance was re-sent under another study.
        Emptied => "emptied",
        /// Context that concerns it arrived (HL7, a reloaded configuration).
        Context => "context",
        /// Decided: held back, with the reasons.
        Held => "held",
        /// Decided: queued for its destination.
        Queued => "queued",
        /// An operator released it without the missing context.
        ReleasedOverride => "released-override",
        /// An operator rejected it.
        Rejected => "rejected",
        /// It streams: its instances leave as they arrive.
        Streaming => "streaming",
        /// Its stream stopped; what is left waits for the decision at completion.
        StreamStopped => "stream-stopped",
        /// Every instance was delivered.
        Forwarded => "forwarded",
        /// Forwarding gave up after the configured attempts.
        Failed => "failed",
        /// An operator queued a failed study again.
        Retry => "retry",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_text_form_each() {
        for s in StudyState::ALL {
            assert_eq!(s.as_str().parse::<StudyState>(), Ok(*s));
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::String(s.as_str().into())
            );
        }
        for s in InstanceState::ALL {
            assert_eq!(s.as_str().parse::<InstanceState>(), Ok(*s));
        }
        for s in CompletionSignal::ALL {
            assert_eq!(s.as_str().parse::<CompletionSignal>(), Ok(*s));
        }
        assert_eq!(StudyState::NAMES.len(), StudyState::ALL.len());
        let err = "Held".parse::<StudyState>().unwrap_err();
        assert!(
            err.to_string().contains("expected one of receiving"),
            "{err}"
        );
    }

    #[test]
    fn sql_round_trip() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        for s in StudyState::ALL {
            let back: StudyState = c.query_row("SELECT ?1", [s], |r| r.get(0)).unwrap();
            assert_eq!(back, *s);
        }
        let bad: rusqlite::Result<StudyState> = c.query_row("SELECT 'nope'", [], |r| r.get(0));
        assert!(bad.is_err());
    }
}
