//! TLS configurations from PEM files, with rustls and the ring provider named explicitly
//! (no other provider in the dependency tree can change what is used). A foundation
//! module: the configuration validates with it, and every TLS link — the audit collector,
//! HTTPS, and later DICOM and HL7 — builds its rustls config here.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What went wrong building a TLS configuration; each names the file or the part at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("{}: no PEM certificate in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("client certificate: {0}")]
    ClientCertificate(rustls::Error),
    #[error("certificate / key: {0}")]
    ServerCertificate(rustls::Error),
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

fn pem_err(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The certificates in a PEM file (at least one).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_err(path, e))
}

/// A byte stream a protocol runs over: plain TCP or TLS on TCP.
pub trait Wire: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Wire for T {}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration trusting the CAs in `ca` (PEM), optionally presenting a client
/// certificate chain and key (mutual TLS, as IHE ATNA's node authentication asks).
pub fn client_config(
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certificates(ca)? {
        roots.add(c).map_err(|e| pem_err(ca, e))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(TlsError::ClientCertificate)?,
    };
    Ok(Arc::new(config))
}

/// A server configuration from a PEM certificate chain and private key, offering `alpn`.
pub fn server_config(
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    server_config_for_clients(cert, key, None, alpn)
}

/// [`server_config`] that, with `client_ca`, requires every client to present a
/// certificate signed by one of the CAs in that PEM file (mutual TLS).
pub fn server_config_for_clients(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    ServerTls::load(cert, key, client_ca, alpn)?.config(None)
}

/// The client certificate a TLS handshake verified, for the connection that made it
/// ([`ServerTls::config`]): peers pinned to a certificate subject are checked with it.
pub type SeenClientCert = Arc<std::sync::Mutex<Option<CertificateDer<'static>>>>;

/// A TLS server's certificate, key and client verification, loaded once; a
/// configuration is made from it per listener, or per connection when the connection
/// must know which client certificate it verified.
#[derive(Debug)]
pub struct ServerTls {
    certified: Arc<rustls::sign::CertifiedKey>,
    verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    alpn: Vec<Vec<u8>>,
}

impl ServerTls {
    pub fn load(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
        alpn: &[&[u8]],
    ) -> Result<ServerTls, TlsError> {
        let chain = certificates(cert)?;
        let signing = provider()
            .key_provider
            .load_private_key(private_key(key)?)
            .map_err(TlsError::ServerCertificate)?;
        let certified = rustls::sign::CertifiedKey::new(chain, signing);
        certified
            .keys_match()
            .map_err(TlsError::ServerCertificate)?;
        let verifier = match client_ca {
            None => None,
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in certificates(ca)? {
                    roots.add(c).map_err(|e| pem_err(ca, e))?;
                }
                let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider(),
                    )
                    .build()
                    .map_err(|e| pem_err(ca, e))?;
                Some(verifier)
            }
        };
        Ok(ServerTls {
            certified: Arc::new(certified),
            verifier,
            alpn: alpn.iter().map(|p| p.to_vec()).collect(),
        })
    }

    /// A server configuration; with `seen`, the client certificate it verifies is put
    /// there (a configuration per connection).
    pub fn config(
        &self,
        seen: Option<SeenClientCert>,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match (&self.verifier, seen) {
            (None, _) => builder.with_no_client_auth(),
            (Some(v), None) => builder.with_client_cert_verifier(v.clone()),
            (Some(v), Some(seen)) => builder.with_client_cert_verifier(Arc::new(Recording {
                inner: v.clone(),
                seen,
            })),
        };
        let mut config = builder.with_cert_resolver(Arc::new(
            rustls::sign::SingleCertAndKey::from(self.certified.clone()),
        ));
        config.alpn_protocols = self.alpn.clone();
        Ok(Arc::new(config))
    }
}

/// A client verifier that remembers the certificate it verified.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    seen: SeenClientCert,
}

impl rustls::server::danger::ClientCertVerifier for Recording {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(end_entity.clone().into_owned());
        }
        Ok(verified)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A certificate subject as attribute=value pairs (`CN`, `O`, `OU`, `C`, …; other
/// attributes by dotted OID), sorted, so that order and spacing do not matter.
pub fn subject_of(cert: &CertificateDer<'_>) -> Option<Vec<(String, String)>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let mut out = Vec::new();
    for attr in parsed.subject().iter_attributes() {
        let name = x509_parser::objects::oid2abbrev(attr.attr_type(), registry)
            .map(str::to_ascii_uppercase)
            .unwrap_or_else(|_| attr.attr_type().to_id_string());
        let value = attr.as_str().ok()?.to_string();
        out.push((name, value));
    }
    out.sort();
    Some(out)
}

/// A configured subject (`CN=ct01.example, O=Yamada Hospital`) in [`subject_of`]'s form;
/// None when a part is not `attribute=value`.
pub fn parse_subject(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let (name, value) = part.split_once('=')?;
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() || value.is_empty() {
            return None;
        }
        out.push((name.to_ascii_uppercase(), value.to_string()));
    }
    out.sort();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = client_config(&missing, None).unwrap_err();
        assert!(e.to_string().contains("nope.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(
            client_config(&empty, None),
            Err(TlsError::NoCertificate { .. })
        ));
    }

    #[test]
    fn a_generated_pair_serves_and_is_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        let server = server_config(&cert, &key, &[b"http/1.1"]).unwrap();
        assert_eq!(server.alpn_protocols, vec![b"http/1.1".to_vec()]);
        client_config(&cert, None).unwrap();
        // A certificate file given as the key is refused, naming the file.
        assert!(server_config(&cert, &cert, &[]).is_err());
    }
}
