//! The MPPS side of an association: an N-CREATE or N-SET is checked, its data set read
//! whole (bounded), recorded by `receive::mpps` and answered.

use super::*;

impl Session {
    /// An MPPS N-CREATE or N-SET: checked here, its data set read in `on_pdv`, recorded
    /// and answered in [`Session::finish_step`].
    pub(super) async fn begin_step<S: Wire>(
        &mut self,
        association: &mut Association<S>,
        context_id: u8,
        command: Command,
        message_id: u16,
        has_data: bool,
    ) -> Result<(), End> {
        use crate::receive::mpps::{Operation, MPPS_SOP_CLASS};
        let create = command.command_field().ok() == Some(dimse::N_CREATE_RQ);
        let (operation, class_tag, instance_tag) = if create {
            (
                Operation::Create,
                dimse::TAG_AFFECTED_SOP_CLASS,
                dimse::TAG_AFFECTED_SOP_INSTANCE,
            )
        } else {
            (
                Operation::Set,
                dimse::TAG_REQUESTED_SOP_CLASS,
                dimse::TAG_REQUESTED_SOP_INSTANCE,
            )
        };
        let (abstract_syntax, transfer_syntax) = self.syntaxes(context_id, "N-service")?;
        let sop_class = command
            .text(class_tag)
            .map(|c| trim_uid(&c).to_string())
            .unwrap_or_default();
        // N-CREATE may leave the UID to the SCP (PS3.7 10.1.5.1.3): readgate makes one.
        let sop_instance = match command.text(instance_tag) {
            Some(uid) => trim_uid(&uid).to_string(),
            None if create => crate::dicom::new_uid(),
            None => String::new(),
        };
        let refused = if abstract_syntax != MPPS_SOP_CLASS || sop_class != MPPS_SOP_CLASS {
            Some((
                status::SOP_CLASS_NOT_SUPPORTED,
                "readgate takes N-CREATE and N-SET for MPPS only".to_string(),
            ))
        } else if !valid_uid(&sop_instance) {
            Some((
                status::NO_SUCH_SOP_INSTANCE,
                "Requested SOP Instance UID missing or invalid".to_string(),
            ))
        } else if !has_data {
            Some((
                status::MISSING_ATTRIBUTE,
                "the step message carries no data set".to_string(),
            ))
        } else {
            None
        };
        let sink = match refused {
            Some((status, comment)) if !has_data => {
                let rsp = dimse::n_response(
                    rsp_field(create),
                    MPPS_SOP_CLASS,
                    &sop_instance,
                    message_id,
                    status,
                    Some(&comment),
                );
                warn!(calling_ae = %self.calling_ae, status = format_args!("{status:04X}"), %comment, "MPPS message refused");
                return send_command(association, context_id, rsp).await;
            }
            Some((status, comment)) => Sink::Discard { status, comment },
            None => Sink::Step {
                operation,
                data: Vec::new(),
            },
        };
        self.incoming = Some(Incoming {
            request: command,
            message_id,
            context_id,
            sop_class,
            sop_instance,
            transfer_syntax,
            sink,
        });
        Ok(())
    }

    /// Records a step whose data set has arrived, and answers it.
    pub(super) async fn finish_step<S: Wire>(
        &mut self,
        association: &mut Association<S>,
        incoming: Incoming,
    ) -> Result<(), End> {
        use crate::receive::mpps::{apply, Answer, MPPS_SOP_CLASS};
        let create = incoming.request.command_field().ok() == Some(dimse::N_CREATE_RQ);
        let room = self.receiver.spool.has_room().unwrap_or(false);
        let answer = match incoming.sink {
            Sink::Step { .. } if !room => Answer {
                status: status::RESOURCE_LIMITATION,
                comment: Some("disk space below storage.min_free_mb: step not recorded".into()),
                step: None,
                study_uid: None,
            },
            Sink::Step { operation, data } => {
                let (store, uid, syntax, calling) = (
                    self.receiver.store.clone(),
                    incoming.sop_instance.clone(),
                    incoming.transfer_syntax.clone(),
                    self.calling_ae.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    apply(
                        &store,
                        operation,
                        &uid,
                        &data,
                        &syntax,
                        &calling,
                        crate::time::now_ms(),
                    )
                })
                .await
                .unwrap_or_else(|e| Answer {
                    status: status::PROCESSING_FAILURE,
                    comment: Some(format!("internal error: {e}")),
                    step: None,
                    study_uid: None,
                })
            }
            Sink::Discard { status, comment } => Answer {
                status,
                comment: Some(comment),
                step: None,
                study_uid: None,
            },
            Sink::File(_) | Sink::Prior { .. } => Answer {
                status: status::PROCESSING_FAILURE,
                comment: Some("not a step".into()),
                step: None,
                study_uid: None,
            },
        };
        match answer.step {
            Some(step) => {
                info!(calling_ae = %self.calling_ae, mpps_uid = %incoming.sop_instance,
                    study_uid = answer.study_uid.as_deref().unwrap_or("-"), status = %step,
                    "performed procedure step recorded");
                // In the trail before the answer. The step is recorded already: a failed
                // entry is logged (by `record`), not answered as a failure, which would
                // make the modality send again a step readgate holds.
                let kind = if create {
                    crate::audit::kind::STEP_CREATED
                } else {
                    crate::audit::kind::STEP_UPDATED
                };
                let mut entry = crate::audit::NewEntry::new(kind, &self.calling_ae)
                    .detail(serde_json::json!({"mpps_uid": incoming.sop_instance, "status": step}));
                if let Some(study) = &answer.study_uid {
                    entry = entry.study(study);
                }
                let audit = self.receiver.audit.clone();
                let _ = tokio::task::spawn_blocking(move || audit.record(entry)).await;
                // A COMPLETED step may complete its study now.
                self.receiver.stored.notify_one();
            }
            None => warn!(calling_ae = %self.calling_ae, mpps_uid = %incoming.sop_instance,
                status = format_args!("{:04X}", answer.status),
                comment = answer.comment.as_deref().unwrap_or(""), "MPPS message refused"),
        }
        let rsp = dimse::n_response(
            rsp_field(create),
            MPPS_SOP_CLASS,
            &incoming.sop_instance,
            incoming.message_id,
            answer.status,
            answer.comment.as_deref(),
        );
        send_command(association, incoming.context_id, rsp).await
    }
}

/// The response's command field for an N-CREATE (else N-SET) request.
fn rsp_field(create: bool) -> u16 {
    if create {
        dimse::N_CREATE_RSP
    } else {
        dimse::N_SET_RSP
    }
}
