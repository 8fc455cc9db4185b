//! Who may open an association: the called AE must be readgate's, and the calling AE must
//! be a configured peer (connecting from one of its hosts, when those are listed).

use crate::config::Peer;
use crate::tls::SeenClientCert;
use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Decides one connection's A-ASSOCIATE-RQ. An association slot
/// (`dicom.max_associations`) is taken here, only once the request names readgate and a
/// known peer, so that connections which never identify cannot hold slots (finding M3).
pub struct PeerAccess {
    pub allow_any: bool,
    pub peers: Arc<Vec<Peer>>,
    pub peer_ip: IpAddr,
    /// Why the last request was refused, for the log line (AccessControl cannot return it).
    pub refusal: Arc<Mutex<Option<String>>>,
    /// The association slots, shared by every DICOM listener.
    pub slots: Arc<Semaphore>,
    /// The slot this connection took, held for the association's life.
    pub slot: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
    /// Over DICOM TLS: the client certificate the handshake verified (None: plain TCP).
    pub client_cert: Option<SeenClientCert>,
}

type Refusal = (String, AssociationRJServiceUserReason);

impl PeerAccess {
    fn refuse(&self, (why, reason): Refusal) -> AssociationRJServiceUserReason {
        if let Ok(mut slot) = self.refusal.lock() {
            *slot = Some(why);
        }
        reason
    }

    /// Whether the request names readgate and a peer allowed from this address (and,
    /// when the peer is pinned to a certificate subject, with that certificate).
    pub fn identify(
        &self,
        this_ae_title: &str,
        calling: &str,
        called: &str,
    ) -> Result<(), Refusal> {
        let (called, calling) = (called.trim(), calling.trim());
        let unknown = AssociationRJServiceUserReason::CallingAETitleNotRecognized;
        if called != this_ae_title.trim() {
            return Err((
                format!("called AE {called:?} is not this gateway's ({this_ae_title:?}); calling AE {calling:?}"),
                AssociationRJServiceUserReason::CalledAETitleNotRecognized,
            ));
        }
        let peer = self.peers.iter().find(|p| p.ae_title.trim() == calling);
        let Some(peer) = peer else {
            return if self.allow_any {
                Ok(())
            } else {
                Err((
                    format!("calling AE {calling:?} is not a configured [[dicom.peers]] entry"),
                    unknown,
                ))
            };
        };
        if !peer.hosts.is_empty() && !peer.hosts.iter().any(|h| h.to_canonical() == self.peer_ip) {
            return Err((
                format!(
                    "calling AE {calling:?} connected from {}, not from its configured hosts",
                    self.peer_ip
                ),
                unknown,
            ));
        }
        match &peer.tls_subject {
            None => Ok(()),
            Some(pinned) => self
                .check_subject(calling, pinned)
                .map_err(|why| (why, unknown)),
        }
    }

    fn check_subject(&self, calling: &str, pinned: &str) -> Result<(), String> {
        let Some(seen) = &self.client_cert else {
            return Err(format!(
                "calling AE {calling:?} is pinned to a certificate subject (tls_subject): it must connect over DICOM TLS"
            ));
        };
        let cert = seen.lock().ok().and_then(|c| c.clone());
        let Some(cert) = cert else {
            return Err(format!(
                "calling AE {calling:?} presented no client certificate"
            ));
        };
        let presented = crate::tls::subject_of(&cert);
        if presented.is_some() && presented == crate::tls::parse_subject(pinned) {
            return Ok(());
        }
        let shown = presented
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        Err(format!(
            "calling AE {calling:?} presented a certificate for {shown:?}, not its tls_subject {pinned:?}"
        ))
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
        self.identify(this_ae_title, calling_ae_title, called_ae_title)
            .map_err(|r| self.refuse(r))?;
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                if let Ok(mut slot) = self.slot.lock() {
                    *slot = Some(permit);
                }
                Ok(())
            }
            // Over TLS the request cannot be read before dicom-ul's negotiation, and
            // dicom-ul answers an access refusal as permanent; plain TCP connections are
            // answered "transient, local limit exceeded" before they get here.
            Err(_) => Err(self.refuse((
                "too many concurrent associations (dicom.max_associations)".into(),
                AssociationRJServiceUserReason::NoReasonGiven,
            ))),
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
                    tls_subject: None,
                },
                Peer {
                    ae_title: "MR01".into(),
                    hosts: vec![],
                    tls_subject: None,
                },
                Peer {
                    ae_title: "US01".into(),
                    hosts: vec![],
                    tls_subject: Some("CN=us01".into()),
                },
            ]),
            peer_ip: "127.0.0.1".parse().unwrap(),
            refusal: Arc::new(Mutex::new(None)),
            slots: Arc::new(Semaphore::new(1)),
            slot: Arc::default(),
            client_cert: None,
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
        // A peer pinned to a certificate subject is refused over plain TCP.
        assert_eq!(
            a.check_access("READGATE", "US01", "READGATE", None),
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        );
    }

    #[test]
    fn a_slot_is_taken_only_by_a_known_peer() {
        let a = access(false);
        for _ in 0..3 {
            assert!(a
                .check_access("READGATE", "EVIL", "READGATE", None)
                .is_err());
        }
        assert_eq!(a.slots.available_permits(), 1, "unknown peers take no slot");
        assert!(a.check_access("READGATE", "MR01", "READGATE", None).is_ok());
        assert_eq!(a.slots.available_permits(), 0);
        let b = PeerAccess {
            slot: Arc::default(),
            ..access(false)
        };
        let b = PeerAccess {
            slots: a.slots.clone(),
            ..b
        };
        assert_eq!(
            b.check_access("READGATE", "MR01", "READGATE", None),
            Err(AssociationRJServiceUserReason::NoReasonGiven)
        );
        assert!(b
            .refusal
            .lock()
            .unwrap()
            .as_deref()
            .unwrap()
            .contains("max_associations"));
        a.slot.lock().unwrap().take();
        assert_eq!(a.slots.available_permits(), 1, "the slot is given back");
    }
}
