//! Who may open an association: the called AE must be readgate's, and the calling AE must
//! be a configured peer (connecting from one of its hosts, when those are listed).

use crate::config::Peer;
use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub struct PeerAccess {
    pub allow_any: bool,
    pub peers: Arc<Vec<Peer>>,
    pub peer_ip: IpAddr,
    /// Why the last request was refused, for the log line (AccessControl cannot return it).
    pub refusal: Arc<Mutex<Option<String>>>,
}

impl PeerAccess {
    fn refuse(
        &self,
        why: String,
        reason: AssociationRJServiceUserReason,
    ) -> AssociationRJServiceUserReason {
        if let Ok(mut slot) = self.refusal.lock() {
            *slot = Some(why);
        }
        reason
    }
}

impl AccessControl for PeerAccess {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        let called = called_ae_title.trim();
        let calling = calling_ae_title.trim();
        if called != this_ae_title.trim() {
            return Err(self.refuse(
                format!("called AE {called:?} is not this gateway's ({this_ae_title:?}); calling AE {calling:?}"),
                AssociationRJServiceUserReason::CalledAETitleNotRecognized,
            ));
        }
        if self.allow_any {
            return Ok(());
        }
        match self.peers.iter().find(|p| p.ae_title.trim() == calling) {
            None => Err(self.refuse(
                format!("calling AE {calling:?} is not a configured [[dicom.peers]] entry"),
                AssociationRJServiceUserReason::CallingAETitleNotRecognized,
            )),
            Some(p)
                if !p.hosts.is_empty()
                    && !p.hosts.iter().any(|h| h.to_canonical() == self.peer_ip) =>
            {
                Err(self.refuse(
                    format!(
                        "calling AE {calling:?} connected from {}, not from its configured hosts",
                        self.peer_ip
                    ),
                    AssociationRJServiceUserReason::CallingAETitleNotRecognized,
                ))
            }
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(allow_any: bool) -> PeerAccess {
        PeerAccess {
            allow_any,
            peers: Arc::new(vec![
                Peer {
                    ae_title: "CT01".into(),
                    hosts: vec!["10.0.0.5".parse().unwrap()],
                },
                Peer {
                    ae_title: "MR01".into(),
                    hosts: vec![],
                },
            ]),
            peer_ip: "127.0.0.1".parse().unwrap(),
            refusal: Arc::new(Mutex::new(None)),
        }
    }

    #[test]
    fn peers_and_hosts_are_enforced() {
        let a = access(false);
        assert!(a.check_access("READGATE", "MR01", "READGATE", None).is_ok());
        assert_eq!(
            a.check_access("READGATE", "CT01", "READGATE", None),
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        );
        assert!(a
            .refusal
            .lock()
            .unwrap()
            .as_deref()
            .unwrap()
            .contains("127.0.0.1"));
        assert_eq!(
            a.check_access("READGATE", "EVIL", "READGATE", None),
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        );
        assert_eq!(
            a.check_access("READGATE", "MR01", "OTHER", None),
            Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized)
        );
        assert!(access(true)
            .check_access("READGATE", "ANY", "READGATE", None)
            .is_ok());
    }
}
