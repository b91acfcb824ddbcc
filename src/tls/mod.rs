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
//!   ports (xDS, admin API; re-read when the files change) and its own clients (of the xDS
//!   port, of etcd).
//!
//! Parsing is x509-parser's and the key/host checks are rustls' and webpki's: no hand-written
//! ASN.1, no OpenSSL.

pub mod client;
mod describe;
pub mod metrics;
mod pair;
mod pem;
pub mod server;

pub use client::{ClientPem, ClientTls, ClientTlsFlags, Connector};
pub use describe::{CertificateInfo, describe, fingerprint};
pub use metrics::CertificateMetrics;
pub use pair::{check_pair, covers};
pub use pem::{MAX_PEM_BYTES, PrivateKeyPem, parse_chain, parse_key, read_pem_file};
pub use server::{ServerTls, TlsFiles};

/// A TLS file of flotilla's own (a port's certificate, a client's CA or certificate) that
/// cannot be used: the one error of every TLS setup, server and client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsFileError {
    /// `path` names the file, and the flag that gave it when there is one.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{cert} and {key} go together (the certificate and its key)")]
    Unpaired {
        cert: &'static str,
        key: &'static str,
    },
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

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
