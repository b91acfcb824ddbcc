//! X.509 certificates and private keys as flotilla checks them before Envoy ever sees them.
//!
//! Everything here is pure (bytes in, verdicts out) so that the config loader, the admin API
//! and the xDS control channel's own TLS can share one reading of a PEM file:
//! - [`parse_chain`] and [`parse_key`] read PEM (a full chain, leaf first; one private key);
//! - [`check_pair`] proves the key belongs to the leaf and each certificate is signed by the
//!   next one;
//! - [`describe`] says what a certificate is (subject, SANs, issuer, validity, fingerprint);
//! - [`covers`] says whether the leaf is valid for a host name, wildcards included;
//! - [`ServerTls`] and [`ClientTls`] turn files into rustls configurations for flotilla's own
//!   ports (xDS, admin API) and its own clients of them, re-read when the files change.
//!
//! Parsing is x509-parser's and the key/host checks are rustls' and webpki's: no hand-written
//! ASN.1, no OpenSSL.

pub mod client;
mod describe;
pub mod metrics;
mod pair;
mod pem;
pub mod server;

pub use client::ClientTls;
pub use describe::{CertificateInfo, describe, fingerprint};
pub use metrics::CertificateMetrics;
pub use pair::{check_pair, covers};
pub use pem::{MAX_PEM_BYTES, PrivateKeyPem, parse_chain, parse_key, read_pem_file};
pub use server::{ServerTls, TlsFileError, TlsFiles};

/// What is wrong with a certificate file or a key, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("no PEM certificate (-----BEGIN CERTIFICATE-----) found")]
    NoCertificate,
    #[error("no PEM private key found (PKCS#8, PKCS#1 or SEC1)")]
    NoKey,
    #[error("not valid PEM: {0}")]
    Pem(String),
    #[error("certificate {index} of the chain cannot be parsed: {reason}")]
    BadCertificate { index: usize, reason: String },
    #[error("the private key cannot be used: {0}")]
    BadKey(String),
    #[error("the private key does not match the certificate (subject {subject})")]
    KeyMismatch { subject: String },
    #[error(
        "the chain is not in order: certificate {index} ({subject}) is not signed by the next one ({next})"
    )]
    ChainOrder {
        index: usize,
        subject: String,
        next: String,
    },
}

#[cfg(test)]
pub(crate) mod tests;
