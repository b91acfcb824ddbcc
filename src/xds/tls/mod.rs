//! TLS on the xDS port: the files, and the identity rules its accept loop applies.
//!
//! The rustls configuration itself comes from `crate::tls::ServerTls`; who a client is and
//! what it may claim is `crate::identity`'s. The handshake itself runs in the accept loop
//! (`xds::listener`), within the handshake timeout.

use crate::identity::IdentityRules;
use crate::tls::TlsFiles;

/// TLS for the xDS port: the files, and how client certificates name their identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsTlsOptions {
    pub files: TlsFiles,
    pub identity: IdentityRules,
}
