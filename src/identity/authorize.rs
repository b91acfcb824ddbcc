//! Binds what a stream claims (`node.cluster`, `node.id`) to the certificate of its connection.
//!
//! Every stream on the xDS port — discovery, stats sink, load reports, registrations — asks
//! the [`Authorizer`] before it serves anything. Without a client CA nothing is bound (the
//! port trusts its network, as before); with one, a stream may claim only what its
//! certificate's SPIFFE ID allows, and a refusal is logged, counted and shown as an event.

use std::net::SocketAddr;
use std::sync::Arc;

use tonic::Status;
use tonic::transport::server::TcpConnectInfo;
use tracing::warn;

use super::metrics::IdentityMetrics;
use super::peer::PeerCert;
use crate::events::{self, Kind, NewEvent};

/// What the accept loop knows about a connection; every request on it carries this in its
/// extensions (tonic's connect info).
#[derive(Debug, Clone)]
pub struct XdsPeer {
    pub tcp: TcpConnectInfo,
    /// The verified client certificate (mTLS), None on plaintext or server-only TLS.
    pub cert: Option<Arc<PeerCert>>,
    /// The connection's id, unique in this process: streams sharing it come from one client.
    pub connection: u64,
    /// Request bytes the connection's streams hold buffered (partial messages).
    pub buffered: Arc<crate::xds::budget::Budget>,
}

impl XdsPeer {
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.tcp.remote_addr()
    }
}

/// Why a stream was refused: the `reason` label of `flotilla_xds_rejected_streams_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The TLS handshake failed: plaintext to a TLS port, no/expired/unknown client certificate.
    TlsHandshake,
    /// The certificate carries no identity of the trust domain.
    NoIdentity,
    /// The certificate is for another fleet.
    WrongFleet,
    /// The certificate is for another node of the fleet.
    WrongNode,
    /// The node id is connected under another identity.
    NodeInUse,
}

impl Rejection {
    pub const ALL: [Rejection; 5] = [
        Rejection::TlsHandshake,
        Rejection::NoIdentity,
        Rejection::WrongFleet,
        Rejection::WrongNode,
        Rejection::NodeInUse,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Rejection::TlsHandshake => "tls_handshake",
            Rejection::NoIdentity => "no_identity",
            Rejection::WrongFleet => "wrong_fleet",
            Rejection::WrongNode => "wrong_node",
            Rejection::NodeInUse => "node_in_use",
        }
    }
}

/// Decides whether a stream may claim a node; shared by every service of the xDS port.
#[derive(Debug, Clone)]
pub struct Authorizer {
    /// A client CA is configured: every connection must carry a certificate.
    mutual: bool,
    trust_domain: Arc<str>,
    metrics: IdentityMetrics,
}

impl Authorizer {
    pub fn new(mutual: bool, trust_domain: &str, metrics: IdentityMetrics) -> Authorizer {
        Authorizer {
            mutual,
            trust_domain: trust_domain.into(),
            metrics,
        }
    }

    /// Where refusals are counted (the accept loop counts failed handshakes there too).
    pub fn metrics(&self) -> &IdentityMetrics {
        &self.metrics
    }

    /// Binds nothing (plaintext port, unit tests).
    pub fn open(metrics: IdentityMetrics) -> Authorizer {
        Authorizer::new(false, "flotilla.local", metrics)
    }

    /// Whether a stream on the connection of `peer` may call itself `node_id` in `fleet`. Ok
    /// holds the identity the node is bound to (the SPIFFE ID or DNS name that allowed it; None
    /// when nothing is bound), which [`crate::xds::NodeRegistry`] uses to refuse a second claimant.
    pub fn check(
        &self,
        peer: Option<&XdsPeer>,
        stream: &'static str,
        fleet: &str,
        node_id: &str,
    ) -> Result<Option<String>, Status> {
        let Some(cert) = peer.and_then(|p| p.cert.as_ref()) else {
            if self.mutual {
                return Err(self.refuse(
                    Rejection::NoIdentity,
                    stream,
                    fleet,
                    node_id,
                    peer,
                    "no client certificate".into(),
                ));
            }
            return Ok(None);
        };
        if let Some(identity) = cert.allowing(fleet, node_id) {
            return Ok(Some(identity.san.clone()));
        }
        let reason = if cert.identities.is_empty() {
            Rejection::NoIdentity
        } else if cert.identities.iter().any(|i| i.fleet == fleet) {
            Rejection::WrongNode
        } else {
            Rejection::WrongFleet
        };
        let message = format!(
            "node {node_id:?} of fleet {fleet:?} is not allowed by the client certificate, which allows {}",
            cert.describe()
        );
        Err(self.refuse(reason, stream, fleet, node_id, peer, message))
    }

    /// Whether a registration stream may register instances: with mTLS, its certificate must
    /// carry an identity (any fleet); `registrations.allow_addresses`
    /// still applies on top.
    pub fn check_registration(&self, peer: Option<&XdsPeer>) -> Result<(), Status> {
        match peer.and_then(|p| p.cert.as_ref()) {
            None if !self.mutual => Ok(()),
            Some(cert) if !cert.identities.is_empty() => Ok(()),
            cert => {
                let allows = cert.map_or("no client certificate".to_string(), |c| c.describe());
                let message = format!(
                    "registration needs a client certificate with a spiffe://{}/fleet/… identity (or a DNS name matching an identity DNS pattern); this one allows {allows}",
                    self.trust_domain
                );
                Err(self.refuse(Rejection::NoIdentity, "registration", "", "", peer, message))
            }
        }
    }

    /// A node id already connected under `holder` is claimed by a stream of `peer`.
    pub fn node_in_use(
        &self,
        stream: &'static str,
        fleet: &str,
        node_id: &str,
        holder: &str,
        peer: Option<&XdsPeer>,
    ) -> Status {
        let message = format!(
            "node {node_id:?} is already connected under another identity ({holder}); a second claimant is refused, not merged"
        );
        self.refuse(Rejection::NodeInUse, stream, fleet, node_id, peer, message)
    }

    fn refuse(
        &self,
        reason: Rejection,
        stream: &'static str,
        fleet: &str,
        node_id: &str,
        peer: Option<&XdsPeer>,
        message: String,
    ) -> Status {
        self.metrics.rejected(reason);
        let addr = peer.and_then(XdsPeer::remote_addr);
        warn!(
            reason = reason.label(),
            stream,
            fleet,
            node = node_id,
            peer = ?addr,
            "{message}"
        );
        let mut event = NewEvent::new(Kind::Node, format!("{stream} stream refused: {message}"));
        if !node_id.is_empty() {
            event = event.node(node_id);
        }
        events::record(event);
        Status::permission_denied(message)
    }
}
