//! A mesh sidecar's stream makes its instance an endpoint of its service for as long as it
//! lives.
//!
//! `flotilla bootstrap --sidecar --inbound ADDR` writes the inbound address into the node's
//! metadata (`flotilla.inbound`). The stream was already authorized for its fleet (its client
//! certificate names the service), so only a sidecar of S joins S. The registration is a
//! runtime session like a `flotilla register` stream's: health-checked like any endpoint and
//! shared between replicas the way sessions are. When the stream ends the instance drains
//! ([`DRAIN_GRACE`]) before it is removed, and the same sidecar reconnecting within the grace
//! takes it over (`crate::runtime::session::Session::drain_on_end`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::value::Kind;
use tonic::Status;

use crate::config::model::service_cluster;
use crate::runtime::session::{BoundRegistration, Session};
use crate::runtime::{Runtime, RuntimeError};

/// The node metadata key holding a sidecar's inbound listener address.
pub const INBOUND_METADATA: &str = "flotilla.inbound";

/// How long an instance whose sidecar's stream ended stays DRAINING (callers send it no new
/// requests; those in flight finish) before it is removed. Long enough for a sidecar to
/// reconnect after a control-plane restart or a network blip (Envoy retries its xDS
/// connection within seconds) and take its instance back; short enough that callers' Envoys
/// do not keep an instance that is gone.
pub const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The inbound address a node announces, if any.
pub(crate) fn announced(node: &Node) -> Result<Option<SocketAddr>, Status> {
    let Some(value) = node
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get(INBOUND_METADATA))
    else {
        return Ok(None);
    };
    match &value.kind {
        Some(Kind::StringValue(text)) if text.len() <= 64 => {
            text.parse::<SocketAddr>().map(Some).map_err(|_| bad(text))
        }
        Some(Kind::StringValue(text)) => Err(bad(&text[..64.min(text.len())])),
        _ => Err(bad("(not a string)")),
    }
}

fn bad(text: &str) -> Status {
    Status::invalid_argument(format!(
        "node metadata {INBOUND_METADATA} must be an ip:port, not {text:?}"
    ))
}

/// Where callers reach an instance listening at `inbound`: that address, or on an unspecified
/// one (0.0.0.0, ::) the address the stream comes from, on the same port.
pub(crate) fn instance_address(inbound: SocketAddr, peer: Option<IpAddr>) -> SocketAddr {
    match peer {
        Some(ip) if inbound.ip().is_unspecified() => {
            SocketAddr::new(ip.to_canonical(), inbound.port())
        }
        _ => inbound,
    }
}

/// `Err` when a sidecar of `service` announces an Envoy admin interface (`admins`: its own
/// and every connected Envoy's) as its inbound address: callers would be sent to
/// `/config_dump` and `POST /quitquitquit`, and its TCP health check passes. Registrations
/// refuse them the same way (`crate::registry`).
pub(crate) fn not_an_admin(
    service: &str,
    address: SocketAddr,
    admins: &std::collections::HashSet<SocketAddr>,
) -> Result<(), Status> {
    crate::runtime::admission::not_an_envoy_admin(address, admins).map_err(|e| {
        Status::permission_denied(format!(
            "sidecar of {service:?} cannot join its service at {address}: {e}"
        ))
    })
}

/// Joins `service` at `address` as sidecar `node_id` for as long as the returned session
/// lives, then drains for [`DRAIN_GRACE`].
pub(crate) async fn join(
    runtime: &Arc<Runtime>,
    service: &str,
    node_id: &str,
    address: SocketAddr,
    peer: Option<IpAddr>,
) -> Result<Session, Status> {
    let refuse = |e: RuntimeError| {
        let message = format!("sidecar of {service:?} cannot join its service at {address}: {e}");
        match e {
            RuntimeError::UnknownCluster(_) => Status::failed_precondition(format!(
                "{message} (a service needs `port:` under mesh.services to be called)"
            )),
            RuntimeError::Taken { .. } => Status::already_exists(message),
            RuntimeError::Limit(_) | RuntimeError::Full { .. } => {
                Status::resource_exhausted(message)
            }
            RuntimeError::StoreUnavailable(_) => Status::unavailable(message),
            RuntimeError::Forbidden(_) => Status::permission_denied(message),
            _ => Status::invalid_argument(message),
        }
    };
    let mut session = runtime.open_session(peer).map_err(refuse)?;
    session.drain_on_end(DRAIN_GRACE);
    session
        .register(&BoundRegistration {
            cluster: service_cluster(service),
            address: address.to_string(),
            weight: 1,
            instance: Some(node_id.to_string()),
            ..Default::default()
        })
        .await
        .map_err(refuse)?;
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::{Struct, Value};

    fn node(value: Option<Kind>) -> Node {
        let mut metadata = Struct::default();
        if let Some(kind) = value {
            metadata
                .fields
                .insert(INBOUND_METADATA.to_string(), Value { kind: Some(kind) });
        }
        Node {
            metadata: Some(metadata),
            ..Default::default()
        }
    }

    #[test]
    fn the_inbound_address_is_read_from_node_metadata() {
        assert_eq!(announced(&node(None)).unwrap(), None);
        assert_eq!(
            announced(&node(Some(Kind::StringValue("127.0.0.2:15006".into())))).unwrap(),
            Some("127.0.0.2:15006".parse().unwrap())
        );
        for bad in [
            Kind::StringValue("nope".into()),
            Kind::StringValue("1".repeat(100)),
            Kind::NumberValue(1.0),
        ] {
            let e = announced(&node(Some(bad))).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().contains(INBOUND_METADATA), "{}", e.message());
        }
    }

    #[test]
    fn an_envoy_admin_address_never_becomes_an_instance() {
        let peer: IpAddr = "10.0.0.7".parse().unwrap();
        // The sidecar's own admin on 0.0.0.0:9901 and its inbound on 0.0.0.0:9901: reached
        // at the peer's address, which is its admin interface.
        let admins = crate::runtime::admission::admin_addresses("0.0.0.0:9901", Some(peer))
            .into_iter()
            .collect();
        let inbound = instance_address("0.0.0.0:9901".parse().unwrap(), Some(peer));
        let e = not_an_admin("payments", inbound, &admins).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("admin interface"), "{}", e.message());
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:9901".parse().unwrap();
        assert!(not_an_admin("payments", mapped, &admins).is_err());
        let other = instance_address("0.0.0.0:15006".parse().unwrap(), Some(peer));
        assert!(not_an_admin("payments", other, &admins).is_ok());
    }

    #[test]
    fn an_unspecified_inbound_address_is_reached_at_the_peer() {
        let any: SocketAddr = "0.0.0.0:15006".parse().unwrap();
        let peer: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(
            instance_address(any, Some(peer)),
            "10.0.0.7:15006".parse().unwrap()
        );
        let set: SocketAddr = "127.0.0.2:15006".parse().unwrap();
        assert_eq!(instance_address(set, Some(peer)), set);
        assert_eq!(instance_address(any, None), any);
    }
}
