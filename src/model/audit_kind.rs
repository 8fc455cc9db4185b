//! The kinds of event the audit trail records (ATS-4).

crate::text_enum! {
    /// One kind per significant event. The text is what `audit_log.kind` holds, what the
    /// API filters by and what the ATNA export maps to a PS3.15 event.
    pub enum AuditKind ("audit kind") {
        InstanceReceived => "instance_received",
        StudyHeld => "study_held",
        StudyReleased => "study_released",
        /// A held study released by an operator's override (with a justification).
        StudyOverridden => "study_overridden",
        StudyRejected => "study_rejected",
        /// An operator asked for a held study to be evaluated again.
        StudyReevaluated => "study_reevaluated",
        /// An operator re-queued a study whose forwarding had failed.
        StudyRetried => "study_retried",
        StudyForwarded => "study_forwarded",
        /// A modality's performed procedure step was started (MPPS N-CREATE).
        StepCreated => "procedure_step_created",
        /// A modality's performed procedure step was completed or discontinued, or its
        /// data changed (MPPS N-SET).
        StepUpdated => "procedure_step_updated",
        /// A prior study from the PACS is being sent to a destination with a study.
        PriorSent => "prior_sent",
        /// A read event was recorded (REST).
        ReadEvent => "read_event",
        /// A reader signed off another reader's preliminary report.
        Confirmation => "confirmation",
        /// A ledger report was produced (CLI, API or console).
        ReportGenerated => "report_generated",
        /// Someone looked something up (kept for searches worth evidencing).
        Query => "query",
        /// A configuration was put in force (at start, or by a reload).
        ConfigLoaded => "config_loaded",
        /// A reload was refused: the new configuration is invalid; the running one stays.
        ConfigRejected => "config_rejected",
        OperatorLogin => "operator_login",
        OperatorLogout => "operator_logout",
        ApplicationStart => "application_start",
        ApplicationStop => "application_stop",
        /// `readgate backup` copied the database and the spool (with the manifest's
        /// SHA-256 and counts); written before the manifest that makes the copy usable.
        BackupTaken => "backup_taken",
        /// `readgate restore` brought a backup into an empty data directory; the first
        /// entry after the backup's newest, written once its chain verified.
        Restored => "restored",
        /// A schema migration was applied to the database (`readgate migrate`,
        /// `readgate serve --migrate`): one entry per migration, after it committed.
        SchemaMigrated => "schema_migrated",
        /// `readgate db copy` copied a SQLite database into an empty PostgreSQL one: the
        /// first entry the trail gets there, right after the copied newest.
        DatabaseCopied => "database_copied",
        /// A tampering or integrity finding (e.g. recorded after a failed `audit verify`).
        SecurityAlert => "security_alert",
    }
}
