//! TLS to PostgreSQL, as the URL asks for it with libpq's `sslmode` and `sslrootcert`
//! (rustls, ring provider, through [`crate::tls`]'s PEM reading):
//!
//! | `sslmode` | readgate |
//! |---|---|
//! | absent, `disable` | plain TCP |
//! | `prefer`, `allow` | TLS when the server offers it (certificate not verified), plain otherwise: libpq's behaviour; protects against a passive listener only |
//! | `require` | TLS or no connection; the certificate is not verified, unless `sslrootcert` is given, which makes it `verify-ca` (as libpq does) |
//! | `verify-ca` | TLS; the server's certificate must chain to a CA in `sslrootcert` |
//! | `verify-full` | as `verify-ca`, and the certificate must name the host of the URL |
//!
//! `verify-ca` and `verify-full` need `sslrootcert=PATH` (a PEM file of CA certificates):
//! readgate has no default trust store for its database. The driver (tokio-postgres)
//! knows only `disable`, `prefer` and `require`: [`parse`] takes readgate's options out of
//! the URL and gives the driver the rest.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// How the connection is protected (see the module's table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    /// TLS, certificate not verified.
    Require,
    /// TLS, the certificate chains to a CA of this file.
    VerifyCa(PathBuf),
    /// As `VerifyCa`, and names the host.
    VerifyFull(PathBuf),
}

/// A database URL taken apart: what the driver is given and how TLS is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL for tokio-postgres: readgate's options out, `sslmode` one it knows.
    pub driver_url: String,
    pub mode: SslMode,
}

/// `url` as [`Target`], or why not (the message names the option, never the password).
pub fn parse(url: &str) -> Result<Target, String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut kept = Vec::new();
    let mut sslmode: Option<String> = None;
    let mut rootcert: Option<String> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => sslmode = Some(percent_decode(v)),
            "sslrootcert" => rootcert = Some(percent_decode(v)),
            _ => kept.push(pair),
        }
    }
    let root = rootcert.filter(|r| !r.is_empty()).map(PathBuf::from);
    let needs_root = |mode: &str| {
        root.clone().ok_or_else(|| {
            format!(
                "sslmode={mode} needs sslrootcert=PATH (a PEM file of the CA certificates the \
                 server's certificate must chain to)"
            )
        })
    };
    let mode = match sslmode.as_deref() {
        None | Some("disable") => SslMode::Disable,
        Some("allow" | "prefer") => SslMode::Prefer,
        Some("require") => match &root {
            Some(r) => SslMode::VerifyCa(r.clone()),
            None => SslMode::Require,
        },
        Some("verify-ca") => SslMode::VerifyCa(needs_root("verify-ca")?),
        Some("verify-full") => SslMode::VerifyFull(needs_root("verify-full")?),
        Some(other) => {
            return Err(format!(
            "sslmode={other:?}: expected disable, allow, prefer, require, verify-ca or verify-full"
        ))
        }
    };
    let driver_mode = match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        _ => "require",
    };
    kept.push(match driver_mode {
        "disable" => "sslmode=disable",
        "prefer" => "sslmode=prefer",
        _ => "sslmode=require",
    });
    Ok(Target {
        driver_url: format!("{base}?{}", kept.join("&")),
        mode,
    })
}

/// `%XX` escapes decoded (a path in a URL may carry them); invalid ones are kept as text.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The TLS connector for `mode` (`None`: plain).
pub fn connector(mode: &SslMode) -> Result<Option<MakeRustls>, String> {
    let verify = match mode {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => Verify::Nothing,
        SslMode::VerifyCa(roots) => Verify::Chain(roots.clone()),
        SslMode::VerifyFull(roots) => Verify::ChainAndName(roots.clone()),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let config = match verify {
        Verify::ChainAndName(roots) => builder
            .with_root_certificates(root_store(&roots)?)
            .with_no_client_auth(),
        Verify::Chain(roots) => {
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(root_store(&roots)?),
                provider,
            )
            .build()
            .map_err(|e| format!("sslrootcert={}: {e}", roots.display()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
                .with_no_client_auth()
        }
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth(),
    };
    Ok(Some(MakeRustls(tokio_rustls::TlsConnector::from(
        Arc::new(config),
    ))))
}

enum Verify {
    Nothing,
    Chain(PathBuf),
    ChainAndName(PathBuf),
}

fn root_store(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in crate::tls::certificates(path).map_err(|e| format!("sslrootcert={e}"))? {
        roots
            .add(c)
            .map_err(|e| format!("sslrootcert={}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// `verify-ca`: the chain is verified, the name is not (libpq's meaning).
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without `sslrootcert`: encrypted, the certificate taken as it
/// comes (libpq's meaning); the handshake's signatures are still checked.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// tokio-postgres' TLS connector over tokio-rustls.
#[derive(Clone)]
pub struct MakeRustls(tokio_rustls::TlsConnector);

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            connector: self.0.clone(),
            name: ServerName::try_from(domain.to_string())?,
        })
    }
}

/// One connection's handshake.
pub struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = self.connector.connect(self.name, stream).await?;
            Ok(RustlsStream(Box::new(tls)))
        })
    }
}

/// A TLS stream to the server.
pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_options_become_a_mode_and_a_url_the_driver_knows() {
        let t = parse("postgresql://gw@db/readgate").unwrap();
        assert_eq!(t.mode, SslMode::Disable);
        assert_eq!(t.driver_url, "postgresql://gw@db/readgate?sslmode=disable");
        let t = parse(
            "postgresql://gw@db/readgate?connect_timeout=5&sslmode=verify-full&sslrootcert=/etc/readgate/db%20ca.pem",
        )
        .unwrap();
        assert_eq!(
            t.mode,
            SslMode::VerifyFull(PathBuf::from("/etc/readgate/db ca.pem"))
        );
        assert_eq!(
            t.driver_url,
            "postgresql://gw@db/readgate?connect_timeout=5&sslmode=require"
        );
        assert_eq!(
            parse("postgresql://gw@db/r?sslmode=require&sslrootcert=/ca.pem")
                .unwrap()
                .mode,
            SslMode::VerifyCa(PathBuf::from("/ca.pem"))
        );
        assert_eq!(
            parse("postgresql://gw@db/r?sslmode=require").unwrap().mode,
            SslMode::Require
        );
        assert_eq!(
            parse("postgresql://gw@db/r?sslmode=prefer").unwrap().mode,
            SslMode::Prefer
        );
        let e = parse("postgresql://gw@db/r?sslmode=verify-full").unwrap_err();
        assert!(
            e.contains("sslmode=verify-full needs sslrootcert=PATH"),
            "{e}"
        );
        let e = parse("postgresql://gw:pw@db/r?sslmode=always").unwrap_err();
        assert!(e.contains("sslmode=\"always\"") && !e.contains("pw"), "{e}");
    }
}
