// A private PKI for the TLS tests: a CA made for the test and the certificates it
// issues, as PEM text and files. Shared by the integration tests (`common::pki`) and by
// unit tests in `src/` (with `include!`, hence plain comments here), so every TLS test
// builds its certificates one way.

use std::path::{Path, PathBuf};

/// A certificate authority that exists for one test.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate (PEM): what a peer is told to trust.
    pub pem: String,
}

/// A certificate and its private key, both PEM.
pub struct Issued {
    pub cert: String,
    pub key: String,
}

impl TestCa {
    /// A self-signed CA whose subject's common name is `name`.
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().expect("generate a CA key");
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let pem = params.self_signed(&key).expect("self-sign the CA").pem();
        TestCa {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate for `names` (DNS names or IP addresses), signed by this CA; its
    /// subject is `CN=` the first name.
    pub fn issue(&self, names: &[&str]) -> Issued {
        self.issue_with(names, |_| {})
    }

    /// As [`TestCa::issue`], with `change` made to the certificate's parameters.
    fn issue_with(
        &self,
        names: &[&str],
        change: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> Issued {
        let key = rcgen::KeyPair::generate().expect("generate a key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params =
            rcgen::CertificateParams::new(names.clone()).expect("certificate parameters");
        // The subject is CN=<first name>, as a peer pinned with tls_subject expects.
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, first.as_str());
        }
        change(&mut params);
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign the certificate");
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// As [`TestCa::issue`], valid only during 2020: expired.
    pub fn issue_expired(&self, names: &[&str]) -> Issued {
        self.issue_with(names, |params| {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        })
    }

    /// Writes the CA certificate to `dir/name` and returns its path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).expect("write the CA certificate");
        path
    }
}

impl Issued {
    /// Writes `dir/{stem}.pem` and `dir/{stem}-key.pem`; returns (certificate, key) paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}-key.pem"));
        std::fs::write(&cert, &self.cert).expect("write the certificate");
        std::fs::write(&key, &self.key).expect("write the key");
        (cert, key)
    }
}

/// The TOML lines of a TLS listener on 127.0.0.1:`port` (`[dicom]` or `[hl7]`): its
/// certificate and key, and the CA its clients must be signed by, when one is given.
pub fn tls_listener_toml(port: u16, cert: &Path, key: &Path, client_ca: Option<&Path>) -> String {
    let mut toml = format!(
        "tls_listen = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"",
        cert.display(),
        key.display()
    );
    if let Some(ca) = client_ca {
        toml.push_str(&format!("\ntls_client_ca = \"{}\"", ca.display()));
    }
    toml
}
