//! Who is on the other end of a connection to flotilla, and what it may claim.
//!
//! Every gRPC service on the xDS port (discovery, stats sink, load reports, registrations)
//! asks the same [`Authorizer`] before serving a stream; `peer` reads the SPIFFE IDs (and, by
//! `dns_rule`, DNS names) of a verified client certificate. Like linkerd2-proxy's
//! `linkerd/identity`, this is one module beside the transports that use it: `xds::tls` only
//! binds it to the xDS port's accept loop, and the workload identities of the mesh are minted
//! here too ([`workload`]).

pub mod authorize;
pub mod dns_rule;
pub mod issuer;
pub mod metrics;
pub mod peer;
pub mod workload;

pub use authorize::{Authorizer, Rejection, XdsPeer};
pub use dns_rule::{DnsPattern, MAX_DNS_PATTERNS, PatternError};
pub use metrics::{IdentityMetrics, MeshMetrics};
pub use peer::{Identity, IdentityRules, PeerCert, Source, parse_spiffe, spiffe_id};

/// The trust domain of the SPIFFE IDs flotilla reads and issues unless told otherwise.
pub const DEFAULT_TRUST_DOMAIN: &str = "flotilla.local";

/// Bytes in a trust domain at most (the SPIFFE spec's limit).
pub const MAX_TRUST_DOMAIN: usize = 255;

/// A SPIFFE trust domain: lowercase letters, digits, `.`, `-`, `_` (SPIFFE ID spec, 2.1).
pub fn check_trust_domain(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > MAX_TRUST_DOMAIN {
        return Err(format!("must be 1 to {MAX_TRUST_DOMAIN} bytes"));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
    {
        return Err(format!(
            "{c:?} is not allowed (a SPIFFE trust domain is lowercase letters, digits, '.', '-', '_')"
        ));
    }
    Ok(())
}
