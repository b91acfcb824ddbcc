//! Certificates for tests, generated per test with rcgen: a throwaway CA ([`Pki`]) issuing
//! certificates for names, the directory `flotilla certs` makes for the xDS port's mTLS
//! ([`CertsDir`]), HTTPS clients that trust only a test CA, and an HTTPS-only backend.

pub mod certs_dir;
pub mod https;
pub mod tls_backend;

use std::path::Path;

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};
use tokio_rustls::rustls::pki_types::CertificateDer;

/// A certificate as PEM files hold it.
#[derive(Clone)]
pub struct Issued {
    /// Leaf then CA.
    pub chain: String,
    pub key: String,
    pub leaf: CertificateDer<'static>,
}

impl Issued {
    /// Writes `<stem>.pem` and `<stem>.key` into `dir`; their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (String, String) {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.chain).expect("write cert");
        std::fs::write(&key, &self.key).expect("write key");
        let utf8 = |p: std::path::PathBuf| p.to_str().expect("utf-8 path").to_string();
        (utf8(cert), utf8(key))
    }
}

/// A CA that signs test certificates.
pub struct Pki {
    ca: Certificate,
    key: KeyPair,
    pub ca_pem: String,
}

impl Pki {
    /// A new throwaway CA.
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "flotilla test CA");
        let key = KeyPair::generate().expect("ca key");
        let ca = params.self_signed(&key).expect("ca cert");
        Pki {
            ca_pem: ca.pem(),
            ca,
            key,
        }
    }

    /// The CA of a certificate and key in PEM (as `flotilla certs ca` writes them).
    pub fn from_pem(ca_pem: &str, key_pem: &str) -> Pki {
        let key = KeyPair::from_pem(key_pem).expect("ca key");
        let params = CertificateParams::from_ca_cert_pem(ca_pem).expect("ca pem");
        Pki {
            ca: params.self_signed(&key).expect("ca"),
            key,
            ca_pem: ca_pem.to_string(),
        }
    }

    /// A certificate for `names` (DNS names or IP addresses), signed by this CA.
    pub fn issue(&self, names: &[&str]) -> Issued {
        self.issue_until(names, None)
    }

    /// [`Pki::issue`], valid until `not_after` (Unix seconds) when given.
    pub fn issue_until(&self, names: &[&str], not_after: Option<i64>) -> Issued {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("client"),
        );
        if let Some(t) = not_after {
            let at = x509_parser::time::ASN1Time::from_timestamp(t).expect("timestamp");
            params.not_after = at.to_datetime();
        }
        self.sign(params)
    }

    /// A certificate made of `params`, signed by this CA.
    pub fn sign(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.ca, &self.key)
            .expect("leaf cert");
        Issued {
            chain: format!("{}{}", cert.pem(), self.ca_pem),
            key: key.serialize_pem(),
            leaf: cert.der().clone(),
        }
    }

    /// Writes the CA as `<stem>.pem` into `dir`.
    pub fn write_ca(&self, dir: &Path, stem: &str) {
        std::fs::write(dir.join(format!("{stem}.pem")), &self.ca_pem).expect("write ca");
    }
}
