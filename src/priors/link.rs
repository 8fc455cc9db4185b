//! One DICOM association to a `[[pacs]]`, plain or TLS, as the C-FIND and C-GET SCUs use
//! it: established within `timeout_secs`, PDVs sent and received with the same timeout,
//! released after a clean outcome and aborted after a broken one.

use super::find::FindError;
use crate::config::pacs::Pacs;
use dicom_ul::association::client::{AsyncClientAssociation, AsyncTlsStream};
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::{ClientAssociationOptions, Pdu};
use std::time::Duration;
use tokio::net::TcpStream;

/// The largest command set or query identifier kept in memory: a PACS that sends more
/// (in fragments) is cut off, whatever it claims.
pub const MAX_MESSAGE: usize = 1 << 20;

/// A freshly established association.
pub enum Link {
    Plain(Box<AsyncClientAssociation<TcpStream>>),
    Tls(Box<AsyncClientAssociation<AsyncTlsStream>>),
}

/// Associates with `pacs` with `options` (presentation contexts, calling AE...), over TLS
/// when the PACS entry says so.
pub async fn establish(
    pacs: &Pacs,
    options: ClientAssociationOptions<'_>,
) -> Result<Link, FindError> {
    let addr = format!("{}:{}", pacs.host, pacs.port);
    let timeout = Duration::from_secs(pacs.timeout_secs);
    let associate = |reason: String| FindError::Associate {
        pacs: pacs.id.clone(),
        ae: pacs.ae_title.clone(),
        addr: addr.clone(),
        reason,
    };
    let options = options
        .called_ae_title(pacs.ae_title.clone())
        .connection_timeout(timeout);
    let tls = pacs.tls_client().map_err(|reason| FindError::Settings {
        pacs: pacs.id.clone(),
        reason,
    })?;
    Ok(match tls {
        None => Link::Plain(Box::new(
            tokio::time::timeout(timeout, options.establish_async(addr.as_str()))
                .await
                .map_err(|_| associate("timed out".into()))?
                .map_err(|e| associate(crate::dicom::error_chain(&e)))?,
        )),
        Some(tls) => {
            let options = options.tls_config(tls).server_name(pacs.tls_name());
            Link::Tls(Box::new(
                tokio::time::timeout(timeout, options.establish_tls_async(addr.as_str()))
                    .await
                    .map_err(|_| associate("timed out".into()))?
                    .map_err(|e| associate(crate::dicom::error_chain(&e)))?,
            ))
        }
    })
}

pub fn transport(pacs: &Pacs, reason: impl std::fmt::Display) -> FindError {
    FindError::Transport {
        pacs: pacs.id.clone(),
        reason: reason.to_string(),
    }
}

/// Sends one complete PDV on `context`.
pub async fn send<S: crate::tls::Wire>(
    association: &mut AsyncClientAssociation<S>,
    pacs: &Pacs,
    context: u8,
    value_type: PDataValueType,
    data: Vec<u8>,
) -> Result<(), FindError> {
    let pdu = Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: context,
            value_type,
            is_last: true,
            data,
        }],
    };
    association.send(&pdu).await.map_err(|e| transport(pacs, e))
}

/// The PDVs of the next P-DATA-TF, within `timeout_secs`; an abort or any other PDU is
/// an error.
pub async fn receive<S: crate::tls::Wire>(
    association: &mut AsyncClientAssociation<S>,
    pacs: &Pacs,
) -> Result<Vec<PDataValue>, FindError> {
    let timeout = Duration::from_secs(pacs.timeout_secs);
    let pdu = tokio::time::timeout(timeout, association.receive())
        .await
        .map_err(|_| FindError::Timeout {
            pacs: pacs.id.clone(),
            secs: pacs.timeout_secs,
        })?
        .map_err(|e| transport(pacs, e))?;
    pdvs(pacs, pdu)
}

/// The PDVs of a P-DATA-TF; an abort or any other PDU is an error.
pub fn pdvs(pacs: &Pacs, pdu: Pdu) -> Result<Vec<PDataValue>, FindError> {
    match pdu {
        Pdu::PData { data } => Ok(data),
        Pdu::AbortRQ { source } => {
            Err(transport(pacs, format!("aborted by the PACS ({source:?})")))
        }
        other => Err(transport(pacs, format!("unexpected PDU {other:?}"))),
    }
}

/// Releases the association after a clean outcome (an answer, a refusal, a query
/// cancelled as too broad); aborts it after a broken one.
pub async fn close<S: crate::tls::Wire, T>(
    association: AsyncClientAssociation<S>,
    outcome: &Result<T, FindError>,
) {
    match outcome {
        Ok(_) | Err(FindError::Refused { .. }) | Err(FindError::TooMany { .. }) => {
            let _ = tokio::time::timeout(Duration::from_secs(5), association.release()).await;
        }
        Err(_) => {
            let _ = association.abort().await;
        }
    }
}
