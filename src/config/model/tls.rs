//! TLS in the validated configuration: which certificates a listener or cluster uses (by the
//! name of the SDS Secret that carries them) and the certificate material itself, read and
//! checked when the config was loaded.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::tls::{CertificateInfo, PrivateKeyPem};

/// `listeners.<name>.tls`: Envoy terminates TLS with these certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// Secret names, in the order written: Envoy picks one by SNI, the first by default.
    pub certificates: Vec<String>,
    pub min_version: TlsVersion,
    /// Secret name of the CA that client certificates must chain to.
    pub client_ca: Option<String>,
    /// With `client_ca`: refuse clients that present no certificate (else they may go on).
    pub require_client_cert: bool,
}

/// `clusters.<name>.tls`: Envoy originates TLS to the endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// The name sent as SNI and checked against the endpoint's certificate.
    pub sni: Option<String>,
    pub ca: TrustedCa,
    /// Secret name of the client certificate, for mTLS to the backend.
    pub client_certificate: Option<String>,
}

/// Which roots an upstream certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedCa {
    /// The operating system's roots (`ca: system`).
    System,
    /// The Secret name of a CA file.
    Secret(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

/// A certificate file (and, for a certificate Envoy presents, its key), as read from disk.
/// Its Secret name stays the same when the files' contents change, so that a rotation
/// changes one Secret and no Listener or Cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMaterial {
    pub cert_path: PathBuf,
    /// The PEM as read: the full chain (leaf first), or the CA bundle.
    pub cert_pem: Vec<u8>,
    /// `Some` for a certificate Envoy presents: the key file and its PEM.
    pub key: Option<(PathBuf, PrivateKeyPem)>,
    /// Every certificate in the file, in order.
    pub certificates: Vec<CertificateInfo>,
}

impl SecretMaterial {
    /// The Secret carries a validation context (trusted CAs), not a certificate and key.
    pub fn is_ca(&self) -> bool {
        self.key.is_none()
    }

    /// When the first certificate in the file stops being valid (Unix seconds).
    pub fn not_after(&self) -> Option<i64> {
        self.certificates.first().map(|c| c.not_after)
    }
}

/// Every Secret the configuration uses, by name.
pub type Secrets = BTreeMap<String, SecretMaterial>;

/// Every file the Secrets were read from (certificates, keys, CAs): what a rotation changes.
pub fn secret_files(secrets: &Secrets) -> impl Iterator<Item = &std::path::Path> {
    secrets.values().flat_map(|s| {
        std::iter::once(s.cert_path.as_path()).chain(s.key.as_ref().map(|(p, _)| p.as_path()))
    })
}

/// The Secret name of a certificate Envoy presents: its certificate file's path, so that
/// rotating the files' contents keeps the name.
pub fn certificate_secret_name(cert: &std::path::Path) -> String {
    format!("cert:{}", cert.display())
}

/// The Secret name of a CA file.
pub fn ca_secret_name(ca: &std::path::Path) -> String {
    format!("ca:{}", ca.display())
}

/// What flotilla's own health probes of a TLS cluster need to reach its endpoints the way
/// Envoy does: the same SNI, roots and client certificate, as material rather than names
/// (so that a rotation restarts the probes with the new files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTls {
    pub sni: Option<String>,
    /// PEM of the trusted CAs; `None`: the system roots.
    pub roots: Option<Vec<u8>>,
    /// The client certificate chain and key, for mTLS.
    pub client: Option<(Vec<u8>, PrivateKeyPem)>,
}

impl ProbeTls {
    /// The probe settings for `tls`, its Secrets looked up in `secrets`.
    pub fn new(tls: &UpstreamTls, secrets: &Secrets) -> ProbeTls {
        let roots = match &tls.ca {
            TrustedCa::System => None,
            TrustedCa::Secret(name) => secrets.get(name).map(|s| s.cert_pem.clone()),
        };
        let client = tls
            .client_certificate
            .as_ref()
            .and_then(|name| secrets.get(name))
            .and_then(|s| Some((s.cert_pem.clone(), s.key.as_ref()?.1.clone())));
        ProbeTls {
            sni: tls.sni.clone(),
            roots,
            client,
        }
    }
}
