//! TLS on the xDS port and the identities client certificates carry.
//!
//! The rustls configuration itself comes from `crate::tls::ServerTls`; `identity` reads SPIFFE IDs from a verified client certificate; `authorize` binds what a
//! stream claims to its connection's certificate. The handshake itself runs in the accept
//! loop (`xds::listener`), within the handshake timeout.

pub mod authorize;
pub mod identity;

pub use crate::tls::TlsFiles;
pub use authorize::{Authorizer, Rejection, XdsPeer};
pub use identity::{Identity, PeerCert, parse_spiffe, spiffe_id};

/// The trust domain of the SPIFFE IDs flotilla reads and issues unless told otherwise.
pub const DEFAULT_TRUST_DOMAIN: &str = "flotilla.local";

/// TLS for the xDS port: the files, and the trust domain client identities belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsTlsOptions {
    pub files: TlsFiles,
    pub trust_domain: String,
}
