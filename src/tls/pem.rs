//! PEM files to DER, with the key kept out of every `Debug` and log line.

use std::fmt;
use std::io::Read;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// Largest certificate, key or CA file flotilla reads, wherever it is named (YAML, `serve`
/// flags): a chain of a few certificates is a few KiB.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// A PEM file's bytes, at most [`MAX_PEM_BYTES`]. The error says what went wrong but not
/// which file: callers name it the way the operator did (a YAML field, a flag).
pub fn read_pem_file(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(format!("larger than the {MAX_PEM_BYTES} bytes allowed"));
    }
    Ok(bytes)
}

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
