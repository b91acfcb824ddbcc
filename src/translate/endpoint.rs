//! `ClusterLoadAssignment`: a cluster's endpoints with weight, zone, priority and health.
//!
//! Every locality carries a `locality` (empty without a zone) and a `load_balancing_weight`:
//! gRPC clients reject EDS without them. Envoy ignores locality weights unless a cluster asks
//! for locality-weighted balancing (flotilla's never do); gRPC picks a locality by them first
//! (round_robin: weighted_target over localities, then round robin inside), so the weight is
//! the summed weight of the locality's serving endpoints, which shares traffic among zones as
//! Envoy does. Under ring_hash gRPC multiplies each endpoint's weight by its locality's
//! (gRFC A42) where Envoy does not, so there every locality weighs 1.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{HealthStatus, Locality};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};

use super::u32_value;
use crate::config::model::{self, Policy};
use crate::envoy::{named_address, socket_address};
use crate::overlay::{EndpointKey, EndpointState, Overlay};

pub(super) fn load_assignment(c: &model::Cluster, overlay: &Overlay) -> ClusterLoadAssignment {
    let endpoints: Vec<&model::Endpoint> = overlay.endpoints(c).map(|(e, _)| e).collect();

    // If the checker finds every endpoint down, it is likelier that the checker cannot reach
    // them than that all of them died: fail open and publish them as unknown (served), leaving
    // Envoy's outlier detection and retries to judge them on real traffic.
    let key = |e: &model::Endpoint| EndpointKey::new(c.name.clone(), e.address);
    let all_down = c.health_check.is_some()
        && !endpoints.is_empty()
        && endpoints
            .iter()
            .all(|e| overlay.health(&key(e)) == EndpointState::Unhealthy);

    let mut groups: BTreeMap<(u32, Option<&str>), Vec<LbEndpoint>> = BTreeMap::new();
    for e in endpoints {
        let k = key(e);
        let health = match overlay.state(&k) {
            EndpointState::Draining => HealthStatus::Draining,
            _ if all_down => HealthStatus::Unknown,
            EndpointState::Healthy => HealthStatus::Healthy,
            EndpointState::Unhealthy => HealthStatus::Unhealthy,
            EndpointState::Unknown => HealthStatus::Unknown,
        };
        let weight = overlay.weight(&k, e.weight);
        groups
            .entry((e.priority, e.zone.as_deref()))
            .or_default()
            .push(LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket_address(e.address)),
                    ..Default::default()
                })),
                health_status: health as i32,
                load_balancing_weight: Some(u32_value(weight.max(1))),
                ..Default::default()
            });
    }

    ClusterLoadAssignment {
        cluster_name: c.name.clone(),
        endpoints: groups
            .into_iter()
            .map(|((priority, zone), lb_endpoints)| LocalityLbEndpoints {
                locality: Some(Locality {
                    zone: zone.unwrap_or_default().to_string(),
                    ..Default::default()
                }),
                load_balancing_weight: Some(u32_value(locality_weight(c.policy, &lb_endpoints))),
                priority,
                lb_endpoints,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// The inline assignment of a `resolve: envoy` cluster: its IP endpoints and its hostnames
/// as written (Envoy resolves them), each with its weight, zone and priority.
pub(super) fn dns_assignment(c: &model::Cluster) -> ClusterLoadAssignment {
    let mut groups: BTreeMap<(u32, Option<&str>), Vec<LbEndpoint>> = BTreeMap::new();
    let written = c
        .endpoints
        .iter()
        .map(|e| {
            (
                socket_address(e.address),
                String::new(),
                e.weight,
                e.priority,
                e.zone.as_deref(),
            )
        })
        .chain(c.hostnames.iter().map(|h| {
            (
                named_address(&h.host, h.port),
                h.host.clone(),
                h.weight,
                h.priority,
                h.zone.as_deref(),
            )
        }));
    for (address, hostname, weight, priority, zone) in written {
        groups
            .entry((priority, zone))
            .or_default()
            .push(LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address: Some(address),
                    hostname,
                    ..Default::default()
                })),
                load_balancing_weight: Some(u32_value(weight.max(1))),
                ..Default::default()
            });
    }
    ClusterLoadAssignment {
        cluster_name: c.name.clone(),
        endpoints: groups
            .into_iter()
            .map(|((priority, zone), lb_endpoints)| LocalityLbEndpoints {
                locality: Some(Locality {
                    zone: zone.unwrap_or_default().to_string(),
                    ..Default::default()
                }),
                priority,
                lb_endpoints,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// See the module comment: the serving endpoints' summed weight, or 1 under ring_hash.
fn locality_weight(policy: Policy, endpoints: &[LbEndpoint]) -> u32 {
    if policy == Policy::RingHash {
        return 1;
    }
    let serving = |e: &&LbEndpoint| {
        e.health_status == HealthStatus::Healthy as i32
            || e.health_status == HealthStatus::Unknown as i32
    };
    endpoints
        .iter()
        .filter(serving)
        .filter_map(|e| e.load_balancing_weight.as_ref())
        .fold(0u32, |sum, w| sum.saturating_add(w.value))
        .max(1)
}
