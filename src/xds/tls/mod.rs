//! TLS on the xDS port and the identities client certificates carry.
//!
//! `server` builds rustls' configuration from PEM files (re-read when they change);
//! `identity` reads SPIFFE IDs from a verified client certificate; `authorize` binds what a
//! stream claims to its connection's certificate. The handshake itself runs in the accept
//! loop (`xds::listener`), within the handshake timeout.

pub mod authorize;
pub mod client;
pub mod identity;
pub mod server;

pub use authorize::{Authorizer, Rejection, XdsPeer};
pub use client::ClientTls;
pub use identity::{Identity, PeerCert, parse_spiffe, spiffe_id};
pub use server::{ServerTls, TlsError, TlsFiles};

/// The trust domain of the SPIFFE IDs flotilla reads and issues unless told otherwise.
pub const DEFAULT_TRUST_DOMAIN: &str = "flotilla.local";

/// TLS for the xDS port: the files, and the trust domain client identities belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsTlsOptions {
    pub files: TlsFiles,
    pub trust_domain: String,
}
