//! Where the instances of readgate's own C-MOVEs go. A `[[pacs]]` with
//! `retrieve = "move"` answers a C-MOVE by opening an association to readgate's DICOM
//! listener and storing the prior there, each C-STORE-RQ naming the move it belongs to
//! (Move Originator AE Title (0000,1030) and Message ID (0000,1031), PS3.7 9.1.1.1).
//! Such an instance is not a study sent to readgate: the listener writes it into the
//! spool of the pending move ([`Moves::claim`]) and the mover collects it.
//!
//! A C-STORE naming readgate's own AE as its move originator but no pending move — a
//! late sub-operation, or someone guessing — is refused, so it never becomes a study;
//! one from another AE than the PACS asked is refused too.

use crate::spool::Spool;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One instance of a prior, stored in a priors spool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fetched {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax: String,
    /// Spool-relative path.
    pub path: String,
    pub bytes: u64,
}

struct Pending {
    /// The AE title readgate called the PACS with: the Move Originator it will name.
    originator: String,
    /// The PACS's AE title: the calling AE of its sub-operations.
    pacs_ae: String,
    spool: Arc<Spool>,
    fetched: Vec<Fetched>,
    /// Instances delivered so far (progress, while the PACS sends no pending response).
    delivered: u64,
}

/// The C-MOVEs readgate is waiting for, by Message ID.
#[derive(Default)]
pub struct Moves {
    pending: Mutex<HashMap<u16, Pending>>,
    /// readgate's own AE titles towards the PACS (as Move Originator): a C-STORE naming
    /// one of these is a sub-operation of readgate's own move.
    own: Vec<String>,
}

/// Where a move sub-operation goes, or why it is refused.
pub enum Claim {
    /// Not a sub-operation of readgate's move: an ordinary C-STORE.
    NotOurs,
    /// Store it in this spool, then report it with [`Moves::delivered`].
    Prior(Arc<Spool>),
    Refused(String),
}

/// A pending move; dropping it forgets the move (later sub-operations are refused).
pub struct Ticket {
    pub message_id: u16,
    moves: Arc<Moves>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut p) = self.moves.pending.lock() {
            p.remove(&self.message_id);
        }
    }
}

impl Ticket {
    /// How many instances have been delivered so far.
    pub fn delivered(&self) -> u64 {
        self.moves
            .pending
            .lock()
            .ok()
            .and_then(|p| p.get(&self.message_id).map(|m| m.delivered))
            .unwrap_or(0)
    }

    /// The instances stored so far.
    pub fn take(&self) -> Vec<Fetched> {
        self.moves
            .pending
            .lock()
            .ok()
            .and_then(|mut p| {
                p.get_mut(&self.message_id)
                    .map(|m| std::mem::take(&mut m.fetched))
            })
            .unwrap_or_default()
    }
}

impl Moves {
    /// `own`: readgate's calling AE titles towards every `[[pacs]]`.
    pub fn new(own: Vec<String>) -> Moves {
        Moves {
            pending: Mutex::new(HashMap::new()),
            own,
        }
    }

    /// Registers a move by `originator` (readgate's calling AE) from the PACS `pacs_ae`,
    /// its sub-operations stored in `spool`; `None` when 65,535 moves are pending.
    pub fn open(
        self: &Arc<Self>,
        originator: &str,
        pacs_ae: &str,
        spool: Arc<Spool>,
    ) -> Option<Ticket> {
        let mut pending = self.pending.lock().ok()?;
        let id = (1..=u16::MAX).find(|id| !pending.contains_key(id))?;
        pending.insert(
            id,
            Pending {
                originator: originator.trim().to_string(),
                pacs_ae: pacs_ae.trim().to_string(),
                spool,
                fetched: Vec::new(),
                delivered: 0,
            },
        );
        Some(Ticket {
            message_id: id,
            moves: self.clone(),
        })
    }

    /// Where a C-STORE from `calling_ae` naming `originator` / `message_id` goes.
    pub fn claim(
        &self,
        calling_ae: &str,
        originator: Option<&str>,
        message_id: Option<u16>,
    ) -> Claim {
        let Some(originator) = originator.map(str::trim).filter(|o| !o.is_empty()) else {
            return Claim::NotOurs;
        };
        if !self.own.iter().any(|o| o == originator) {
            return Claim::NotOurs;
        }
        let Ok(pending) = self.pending.lock() else {
            return Claim::Refused("internal error".into());
        };
        match message_id.and_then(|id| pending.get(&id)) {
            Some(m) if m.originator == originator && m.pacs_ae == calling_ae.trim() => {
                Claim::Prior(m.spool.clone())
            }
            Some(_) => Claim::Refused(format!(
                "move {} was not asked of {calling_ae}",
                message_id.unwrap_or(0)
            )),
            None => Claim::Refused("no retrieval by readgate is pending for this move".into()),
        }
    }

    /// A sub-operation's instance is in the move's spool.
    pub fn delivered(&self, message_id: u16, fetched: Fetched) -> bool {
        match self.pending.lock() {
            Ok(mut p) => match p.get_mut(&message_id) {
                Some(m) => {
                    m.fetched.push(fetched);
                    m.delivered += 1;
                    true
                }
                None => false,
            },
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pending_move_from_its_pacs_is_claimed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path(), 0).unwrap());
        let moves = Arc::new(Moves::new(vec!["READGATE".into()]));
        // Someone else's move (a workstation pushing to readgate): an ordinary store.
        assert!(matches!(
            moves.claim("PACS", Some("WS1"), Some(1)),
            Claim::NotOurs
        ));
        assert!(matches!(moves.claim("CT01", None, None), Claim::NotOurs));
        // Naming readgate's move with none pending: refused, never a study.
        assert!(matches!(
            moves.claim("PACS", Some("READGATE"), Some(1)),
            Claim::Refused(_)
        ));
        let ticket = moves.open("READGATE", "PACS", spool).unwrap();
        let id = ticket.message_id;
        assert!(matches!(
            moves.claim("PACS", Some("READGATE "), Some(id)),
            Claim::Prior(_)
        ));
        assert!(matches!(
            moves.claim("INTRUDER", Some("READGATE"), Some(id)),
            Claim::Refused(_)
        ));
        let second = moves.open(
            "READGATE",
            "PACS",
            Arc::new(Spool::open(dir.path(), 0).unwrap()),
        );
        assert_ne!(second.as_ref().map(|t| t.message_id), Some(id));
        let f = Fetched {
            sop_class_uid: "1.2".into(),
            sop_instance_uid: "1.2.3".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            path: "x".into(),
            bytes: 1,
        };
        assert!(moves.delivered(id, f.clone()));
        assert_eq!(ticket.take(), vec![f.clone()]);
        drop(ticket);
        assert!(!moves.delivered(id, f));
        assert!(matches!(
            moves.claim("PACS", Some("READGATE"), Some(id)),
            Claim::Refused(_)
        ));
    }
}
