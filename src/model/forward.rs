//! How a route forwards its studies, and where a streamed study's stream is.

crate::text_enum! {
    /// When a study's instances leave (`[[routes]] forward`).
    pub enum ForwardMode ("forward mode") {
        /// Once the gate has passed the study (decided at its first instance, on the
        /// study-level context), each further instance leaves as soon as it is durable;
        /// the gate decides again whenever the context changes and when the study is
        /// complete, and a hold stops the stream.
        Streaming => "streaming",
        /// When the study is complete (`dicom.stable_after_secs` of quiet, or its MPPS
        /// step COMPLETED), as a whole.
        OnComplete => "on_complete",
    }
}

crate::text_enum! {
    /// A study's stream (`studies.stream`; none for a study that never streamed).
    pub enum StreamState ("stream state") {
        /// Its instances are queued for its destination as they arrive.
        Streaming => "streaming",
        /// The gate's verdict (or the route) turned while it streamed: what was sent
        /// stays sent, the rest waits for the study's decision at completion.
        Stopped => "stopped",
    }
}

impl ForwardMode {
    /// The mode a route with `forward` unset gives a study of this priority: streaming
    /// for a STAT order (the study's priority comes from its orders), on completion
    /// otherwise.
    pub fn default_for(priority: Option<super::Priority>) -> ForwardMode {
        match priority {
            Some(super::Priority::Stat) => ForwardMode::Streaming,
            _ => ForwardMode::OnComplete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Priority;

    #[test]
    fn stat_streams_by_default() {
        assert_eq!(
            ForwardMode::default_for(Some(Priority::Stat)),
            ForwardMode::Streaming
        );
        for p in [None, Some(Priority::Asap), Some(Priority::Routine)] {
            assert_eq!(ForwardMode::default_for(p), ForwardMode::OnComplete);
        }
        assert_eq!(
            "on_complete".parse::<ForwardMode>(),
            Ok(ForwardMode::OnComplete)
        );
        assert!("stream".parse::<ForwardMode>().is_err());
        assert_eq!(StreamState::Stopped.as_str(), "stopped");
    }
}
