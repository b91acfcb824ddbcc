//! What a certificate is, as the admin API, metrics and error messages show it.

use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::TlsError;

/// A certificate's public facts. Nothing here is secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertificateInfo {
    pub subject: String,
    /// DNS names and IP addresses, as written in the subjectAltName extension.
    pub sans: Vec<String>,
    pub issuer: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// SHA-256 of the DER encoding, lowercase hex: what `openssl x509 -fingerprint -sha256`
    /// prints, without the colons.
    pub sha256: String,
    pub is_ca: bool,
}

/// SHA-256 over DER, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Reads the facts of one DER certificate (`index` is its place in the chain, for errors).
pub fn describe(der: &CertificateDer<'_>, index: usize) -> Result<CertificateInfo, TlsError> {
    let cert = parse(der, index)?;
    let sans = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some((*d).to_string()),
                GeneralName::IPAddress(ip) => ip_text(ip),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => {
            return Err(TlsError::BadCertificate {
                index,
                reason: e.to_string(),
            });
        }
    };
    Ok(CertificateInfo {
        subject: cert.subject().to_string(),
        sans,
        issuer: cert.issuer().to_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        sha256: fingerprint(der),
        is_ca: cert.is_ca(),
    })
}

pub(super) fn parse<'a>(
    der: &'a CertificateDer<'_>,
    index: usize,
) -> Result<X509Certificate<'a>, TlsError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(TlsError::BadCertificate {
            index,
            reason: "trailing bytes after the certificate".into(),
        }),
        Err(e) => Err(TlsError::BadCertificate {
            index,
            reason: e.to_string(),
        }),
    }
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).to_string()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).to_string()),
        _ => None,
    }
}
