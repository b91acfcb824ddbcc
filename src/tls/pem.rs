//! PEM files to DER, with the key kept out of every `Debug` and log line.

use std::fmt;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// A certificate chain in PEM, parsed to DER, leaf first. Anything that is not a certificate
/// (a key accidentally concatenated in) is skipped, never kept.
pub fn parse_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(chain)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey,
        other => TlsError::Pem(other.to_string()),
    })
}

/// A private key's PEM text. It goes to Envoy inside an SDS Secret and nowhere else: `Debug`
/// prints a placeholder, and it has no `Display` or `Serialize`, so no log line, event, admin
/// answer or `render` output can carry it by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKeyPem(Vec<u8>);

impl PrivateKeyPem {
    pub fn new(pem: Vec<u8>) -> PrivateKeyPem {
        PrivateKeyPem(pem)
    }

    /// The key itself, for the one place that needs it: the Secret sent to Envoy.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKeyPem(<redacted>)")
    }
}
