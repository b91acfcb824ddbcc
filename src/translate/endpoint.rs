//! `ClusterLoadAssignment`: a cluster's endpoints with weight, zone, priority and health.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{HealthStatus, Locality};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};

use super::u32_value;
use crate::config::model;
use crate::envoy::socket_address;
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
                locality: zone.map(|z| Locality {
                    zone: z.to_string(),
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
