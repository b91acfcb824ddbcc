//! Whether a key and a chain belong together, and whether a certificate serves a name.

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::TlsError;
use super::describe::parse;

/// Checks that `key` is the private key of the chain's leaf and that every certificate is
/// signed by the one after it (leaf first, as Envoy and every TLS client expect). The last
/// certificate may be a root or an intermediate: clients complete the chain from their roots.
pub fn check_pair(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'_>,
) -> Result<(), TlsError> {
    let signer = rustls::crypto::ring::sign::any_supported_type(key)
        .map_err(|e| TlsError::BadKey(e.to_string()))?;
    let leaf = parse(chain.first().ok_or(TlsError::NoCertificate)?, 0)?;
    match CertifiedKey::new(chain.to_vec(), Arc::clone(&signer)).keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                subject: leaf.subject().to_string(),
            });
        }
        Err(e) => return Err(TlsError::BadKey(e.to_string())),
    }
    for (index, pair) in chain.windows(2).enumerate() {
        let cert = parse(&pair[0], index)?;
        let next = parse(&pair[1], index + 1)?;
        if cert.verify_signature(Some(next.public_key())).is_err() {
            return Err(TlsError::ChainOrder {
                index,
                subject: cert.subject().to_string(),
                next: next.subject().to_string(),
            });
        }
    }
    Ok(())
}

/// Whether `leaf` is valid for `host` (a DNS name or an IP address) by its subjectAltNames,
/// wildcards included, as a TLS client would judge it. A host pattern `*.example.com` is
/// covered when any one name under it is (a wildcard certificate).
pub fn covers(leaf: &CertificateDer<'_>, host: &str) -> bool {
    let probe;
    let name = match host.strip_prefix("*.") {
        Some(suffix) => {
            probe = format!("flotilla-probe.{suffix}");
            probe.as_str()
        }
        None => host,
    };
    let (Ok(cert), Ok(name)) = (
        webpki::EndEntityCert::try_from(leaf),
        ServerName::try_from(name),
    ) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&name).is_ok()
}
