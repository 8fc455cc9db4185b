//! The C-STORE side of an association: an instance's data set streams into the spool
//! (or, for readgate's own C-MOVE, into the priors cache), is checked, made durable and
//! indexed, and only then answered.

use super::*;
use crate::spool::Spool;
use crate::store::PendingSync;

impl Session {
    pub(super) async fn begin_store<S: Wire>(
        &mut self,
        association: &mut Association<S>,
        context_id: u8,
        command: Command,
        message_id: u16,
        has_data: bool,
    ) -> Result<(), End> {
        let (abstract_syntax, transfer_syntax) = self.syntaxes(context_id, "C-STORE")?;
        let sop_class = command
            .text(dimse::TAG_AFFECTED_SOP_CLASS)
            .unwrap_or_default();
        let sop_instance = command
            .text(dimse::TAG_AFFECTED_SOP_INSTANCE)
            .unwrap_or_default();
        if !has_data {
            self.failed += 1;
            let rsp = dimse::response(
                dimse::C_STORE_RSP,
                &command,
                message_id,
                status::CANNOT_UNDERSTAND,
                Some("C-STORE-RQ announced no data set"),
            );
            return send_command(association, context_id, rsp).await;
        }
        let sink = if !valid_uid(&sop_instance) {
            Sink::Discard {
                status: status::CANNOT_UNDERSTAND,
                comment: "Affected SOP Instance UID missing or invalid".into(),
            }
        } else if sop_class != abstract_syntax {
            Sink::Discard {
                status: status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                comment: format!("SOP Class {sop_class} differs from context {abstract_syntax}"),
            }
        } else if let Some(sink) =
            self.move_sink(&command, &sop_class, &sop_instance, &transfer_syntax)
        {
            sink
        } else {
            match self.receiver.spool.has_room() {
                Ok(false) => {
                    warn!("spool below dicom min_free_mb: refusing C-STORE with A700");
                    Sink::Discard {
                        status: status::REFUSED_OUT_OF_RESOURCES,
                        comment: "readgate spool disk is full; retry later".into(),
                    }
                }
                _ => {
                    let header = part10::encode_file_meta(
                        &sop_class,
                        &sop_instance,
                        &transfer_syntax,
                        &self.calling_ae,
                    );
                    match self.receiver.spool.begin(&header) {
                        Ok(p) => Sink::File(p),
                        Err(e) => {
                            warn!(error = %e, "cannot create a spool file");
                            let (code, comment) = io_failure(&e);
                            Sink::Discard {
                                status: code,
                                comment,
                            }
                        }
                    }
                }
            }
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

    /// The sink of a C-STORE that names a move as its origin: readgate's own move (into
    /// the move's spool) or a refusal; `None` for an ordinary C-STORE.
    fn move_sink(
        &self,
        command: &Command,
        sop_class: &str,
        sop_instance: &str,
        transfer_syntax: &str,
    ) -> Option<Sink> {
        let originator = command.text(dimse::TAG_MOVE_ORIGINATOR_AE);
        let move_id = command.u16(dimse::TAG_MOVE_ORIGINATOR_ID).ok().flatten();
        let spool =
            match self
                .receiver
                .moves
                .claim(&self.calling_ae, originator.as_deref(), move_id)
            {
                Claim::NotOurs => return None,
                Claim::Refused(why) => {
                    return Some(Sink::Discard {
                        status: status::NOT_AUTHORIZED,
                        comment: why,
                    })
                }
                Claim::Prior(spool) => spool,
            };
        let refuse = |status: u16, comment: String| Some(Sink::Discard { status, comment });
        if !matches!(spool.has_room(), Ok(true)) {
            return refuse(
                status::REFUSED_OUT_OF_RESOURCES,
                "readgate's priors spool is below its free-space floor".into(),
            );
        }
        let header =
            part10::encode_file_meta(sop_class, sop_instance, transfer_syntax, &self.calling_ae);
        match spool.begin(&header) {
            Ok(partial) => Some(Sink::Prior {
                partial,
                spool,
                move_id: move_id.unwrap_or(0),
            }),
            Err(e) => {
                let (code, comment) = io_failure(&e);
                refuse(code, comment)
            }
        }
    }

    pub(super) async fn finish_store<S: Wire>(
        &mut self,
        association: &mut Association<S>,
        incoming: Incoming,
    ) -> Result<(), End> {
        let Incoming {
            request,
            message_id,
            context_id,
            sop_class,
            sop_instance,
            transfer_syntax,
            sink,
        } = incoming;
        let field = request.command_field().unwrap_or(dimse::C_STORE_RQ) | 0x8000;
        let (code, comment) = match sink {
            Sink::Discard { status, comment } => (status, Some(comment)),
            Sink::Step { .. } => (status::PROCESSING_FAILURE, Some("not a C-STORE".into())),
            Sink::Prior {
                partial,
                spool,
                move_id,
            } => {
                // Made durable with the whole move (one syncfs): a prior lost in a crash
                // is retrieved again.
                let commit =
                    tokio::task::spawn_blocking(move || spool.commit_unsynced(partial)).await;
                match commit {
                    Ok(Ok((path, bytes))) => {
                        let fetched = crate::receive::moves::Fetched {
                            sop_class_uid: sop_class.clone(),
                            sop_instance_uid: sop_instance.clone(),
                            transfer_syntax: transfer_syntax.clone(),
                            path,
                            bytes,
                        };
                        if self.receiver.moves.delivered(move_id, fetched) {
                            (status::SUCCESS, None)
                        } else {
                            (
                                status::NOT_AUTHORIZED,
                                Some("the move this instance belongs to has ended".into()),
                            )
                        }
                    }
                    Ok(Err(e)) => {
                        let (code, comment) = io_failure(&e);
                        (code, Some(comment))
                    }
                    Err(e) => (
                        status::PROCESSING_FAILURE,
                        Some(format!("internal error: {e}")),
                    ),
                }
            }
            Sink::File(partial) => {
                let receiver = self.receiver.clone();
                let calling_ae = self.calling_ae.clone();
                let (class, instance, ts) = (
                    sop_class.clone(),
                    sop_instance.clone(),
                    transfer_syntax.clone(),
                );
                let outcome = tokio::task::spawn_blocking(move || {
                    keep_instance(&receiver, partial, &class, &instance, &ts, &calling_ae)
                })
                .await;
                match outcome {
                    Ok(Ok((study_uid, streamed_to))) => {
                        if let Some(destination) = streamed_to {
                            self.receiver.wakeups.wake(&destination);
                        }
                        self.receiver.stored.notify_one();
                        self.receiver.history.notify_one();
                        self.received
                            .entry(study_uid.clone())
                            .or_default()
                            .push(sop_instance.clone());
                        debug!(study_uid = %study_uid, sop_instance = %sop_instance, "instance stored");
                        (status::SUCCESS, None)
                    }
                    Ok(Err((code, comment))) => (code, Some(comment)),
                    Err(e) => (
                        status::PROCESSING_FAILURE,
                        Some(format!("internal error: {e}")),
                    ),
                }
            }
        };
        if code == status::SUCCESS {
            self.stored += 1;
        } else {
            self.failed += 1;
            warn!(
                calling_ae = %self.calling_ae,
                sop_instance = %sop_instance,
                status = format!("{code:04X}"),
                comment = comment.as_deref().unwrap_or(""),
                "C-STORE failed"
            );
        }
        let rsp = dimse::response(field, &request, message_id, code, comment.as_deref());
        send_command(association, context_id, rsp).await
    }
}

/// Checks, commits and indexes a fully received instance. Blocking (fsync); returns the
/// study UID and, when the instance was queued at once for its streaming study, the
/// destination; or the status and comment to answer.
fn keep_instance(
    receiver: &Receiver,
    partial: PartialInstance,
    sop_class: &str,
    sop_instance: &str,
    transfer_syntax: &str,
    calling_ae: &str,
) -> Result<(String, Option<String>), (u16, String)> {
    let encoding = Encoding::for_transfer_syntax(transfer_syntax)
        .map_err(|e| (status::CANNOT_UNDERSTAND, e.to_string()))?;
    let header = dataset::walk(partial.dataset(), encoding).map_err(|e| match e {
        dataset::DatasetError::Io(e) => (status::PROCESSING_FAILURE, format!("spool read: {e}")),
        other => (status::CANNOT_UNDERSTAND, other.to_string()),
    })?;
    let ds_class = header.get(tags::SOP_CLASS_UID).unwrap_or_default();
    if ds_class != sop_class {
        return Err((
            status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            format!("data set SOP Class {ds_class} differs from {sop_class}"),
        ));
    }
    let ds_instance = header.get(tags::SOP_INSTANCE_UID).unwrap_or_default();
    if ds_instance != sop_instance {
        return Err((
            status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            "data set SOP Instance UID differs from the command's".into(),
        ));
    }
    let study_uid = header
        .get(tags::STUDY_INSTANCE_UID)
        .filter(|u| valid_uid(u))
        .ok_or((
            status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            "Study Instance UID (0020,000D) missing or invalid".to_string(),
        ))?
        .to_string();
    // The file is made durable on another thread while the index entry is read and
    // written; the entry commits only after the file is durable (`PendingSync`), and the
    // answer waits for both.
    let path = receiver.spool.next_name();
    let size = partial.written();
    let instance = spooled_instance(
        &header,
        sop_class,
        transfer_syntax,
        &path,
        size,
        calling_ae,
        now_ms(),
    );
    let replace =
        receiver.config.current().dicom.duplicate_policy == crate::config::DuplicatePolicy::Replace;
    let file = PendingSync::new();
    let durable = make_durable(&receiver.spool, partial, &path, &file);
    let indexed = receiver.store.index_received_after(instance, replace, file);
    if let Err(e) = durable.wait() {
        let _ = receiver.spool.remove(&path);
        return Err(io_failure(&e));
    }
    let mut streamed_to = None;
    match indexed.map(|o| {
        streamed_to = o.streamed_to;
        o.indexed
    }) {
        Ok(Indexed::New) => crate::metrics::instance_received(size),
        Ok(Indexed::Replaced { old_path }) => {
            info!(study_uid = %study_uid, sop_instance, "duplicate SOP Instance UID: replaced the earlier copy");
            let _ = receiver.spool.remove(&old_path);
        }
        Ok(Indexed::KeptFirst) => {
            info!(study_uid = %study_uid, sop_instance, "duplicate SOP Instance UID: kept the earlier copy");
            let _ = receiver.spool.remove(&path);
        }
        Err(e) => {
            let _ = receiver.spool.remove(&path);
            warn!(error = %e, "indexing a received instance failed");
            return Err((status::PROCESSING_FAILURE, "readgate database error".into()));
        }
    }
    Ok((study_uid, streamed_to))
}

/// The commit of an instance's file to the spool, under way on a thread of its own.
struct Durable(std::io::Result<std::thread::JoinHandle<std::io::Result<u64>>>);

impl Durable {
    /// Its outcome: the file's size once it is durable.
    fn wait(self) -> std::io::Result<u64> {
        self.0?
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the spool commit failed (panic)")))
    }
}

/// Starts making `partial` durable as `rel` in the spool; `file` learns the outcome.
///
/// On a thread of its own, not the runtime's blocking pool: the caller holds a blocking
/// thread while it waits, so with every pool thread held by a receive waiting for its
/// file, a commit queued behind them would never run. A thread costs tens of
/// microseconds; the fsyncs it overlaps, about 0.5 ms here.
fn make_durable(
    spool: &Arc<Spool>,
    partial: PartialInstance,
    rel: &str,
    file: &Arc<PendingSync>,
) -> Durable {
    let (spool, rel, mut guard) = (spool.clone(), rel.to_string(), file.guard());
    // Should the thread not start, the job is dropped unrun: the partial file is removed
    // and the guard says "not durable".
    Durable(
        std::thread::Builder::new()
            .name("spool-commit".into())
            .spawn(move || {
                let r = spool.commit_as(partial, &rel);
                guard.durable(r.is_ok());
                r
            }),
    )
}

/// The index row for an instance whose data set `header` was walked and whose file is
/// at `path` in the spool (also used when re-indexing after a crash).
pub(crate) fn spooled_instance(
    header: &dataset::Header,
    sop_class: &str,
    transfer_syntax: &str,
    path: &str,
    size: u64,
    calling_ae: &str,
    received_at: i64,
) -> NewInstance {
    let text = |tag| header.get(tag).map(str::to_string);
    NewInstance {
        sop_uid: header
            .get(tags::SOP_INSTANCE_UID)
            .unwrap_or_default()
            .to_string(),
        study_uid: header
            .get(tags::STUDY_INSTANCE_UID)
            .unwrap_or_default()
            .to_string(),
        series_uid: text(tags::SERIES_INSTANCE_UID),
        sop_class_uid: sop_class.to_string(),
        transfer_syntax: transfer_syntax.to_string(),
        modality: text(tags::MODALITY),
        accession: text(tags::ACCESSION_NUMBER),
        patient_id: text(tags::PATIENT_ID),
        path: path.to_string(),
        size,
        calling_ae: calling_ae.to_string(),
        received_at,
        context: serde_json::to_string(&header.context_text()).unwrap_or_else(|_| "{}".into()),
    }
}

pub(super) fn io_failure(e: &std::io::Error) -> (u16, String) {
    if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::ENOSPC) {
        (
            status::REFUSED_OUT_OF_RESOURCES,
            "readgate spool disk is full; retry later".into(),
        )
    } else {
        (
            status::PROCESSING_FAILURE,
            format!("readgate spool I/O error: {}", e.kind()),
        )
    }
}
