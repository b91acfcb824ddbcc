//! Which resources a fleet of Envoys receives.
//!
//! A fleet is named by the `node.cluster` Envoys report. A fleet listed under `fleets` gets its
//! listeners, their routes, and exactly the clusters (and endpoints) those routes use, so an
//! edge proxy does not carry every internal cluster. Without any `fleets:` every Envoy gets
//! everything; once fleets are declared, an Envoy claiming an undeclared fleet gets nothing
//! (failing closed: a typo or a hostile `node.cluster` must not receive every listener).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::config::Config;
use crate::config::model::{Mesh, cluster_service};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FleetSelection {
    pub listeners: BTreeSet<String>,
    pub clusters: BTreeSet<String>,
    /// The Secrets those listeners and clusters name: no Envoy receives a certificate its
    /// fleet does not serve.
    pub secrets: BTreeSet<String>,
}

/// The resources for Envoys whose `node.cluster` is `fleet`. `None` means "everything": no
/// fleets are declared. An undeclared fleet among declared ones gets an empty selection.
pub fn select_fleet(config: &Config, fleet: &str) -> Option<FleetSelection> {
    select_instance(config, fleet, None)
}

/// [`select_fleet`] for one Envoy: a mesh sidecar with an inbound listener at `inbound` also
/// receives that listener (and no other instance's). Envoys outside the mesh never receive a
/// mesh resource, declared fleets or not: workload keys go to their own service only.
pub fn select_instance(
    config: &Config,
    fleet: &str,
    inbound: Option<SocketAddr>,
) -> Option<FleetSelection> {
    if let Some(mesh) = &config.mesh {
        if mesh.services.contains_key(fleet) {
            return Some(sidecar(mesh, fleet, inbound));
        }
        if config.fleets.is_empty() {
            return Some(outside_mesh(config));
        }
    }
    if config.fleets.is_empty() {
        return None;
    }
    let Some(declared) = config.fleets.get(fleet) else {
        return Some(FleetSelection::default());
    };
    let listeners: BTreeSet<String> = declared.listeners.iter().cloned().collect();
    let clusters: BTreeSet<String> = listeners
        .iter()
        .filter_map(|l| config.listeners.get(l))
        .flat_map(|l| l.clusters().map(str::to_string).chain(l.jwks_clusters()))
        .collect();
    let secrets = listeners
        .iter()
        .filter_map(|l| config.listeners.get(l))
        .flat_map(|l| l.secrets())
        .chain(
            clusters
                .iter()
                .filter_map(|c| config.clusters.get(c))
                .flat_map(|c| c.secrets()),
        )
        .map(str::to_string)
        .collect();
    Some(FleetSelection {
        listeners,
        clusters,
        secrets,
    })
}

/// Whether Envoys of `fleet` are refused every resource: fleets are declared, this one is not
/// (nor is it a mesh service).
pub fn fleet_unknown(config: &Config, fleet: &str) -> bool {
    !config.fleets.is_empty()
        && !config.fleets.contains_key(fleet)
        && !is_mesh_service(config, fleet)
}

/// Whether `fleet` is a mesh service (its Envoys are its sidecars).
pub fn is_mesh_service(config: &Config, fleet: &str) -> bool {
    config
        .mesh
        .as_ref()
        .is_some_and(|m| m.services.contains_key(fleet))
}

/// What a sidecar of `service` receives: its app's cluster and its instance's inbound
/// listener, per call a cluster and an outbound listener (at its local port, at the called
/// service's VIP, or both), the passthrough cluster, its own certificate and the bundle.
/// Nothing of the services it does not call: a sidecar's config grows with its calls, not
/// with the mesh.
fn sidecar(mesh: &Mesh, service: &str, inbound: Option<SocketAddr>) -> FleetSelection {
    use super::mesh::{
        PASSTHROUGH_CLUSTER, TRUST_BUNDLE, call_cluster, inbound_listener, local_cluster,
        outbound_listener, vip_listener, workload_secret,
    };
    let mut out = FleetSelection::default();
    let Some(s) = mesh.services.get(service) else {
        return out;
    };
    if let (Some(_), Some(address)) = (s.port, inbound) {
        out.listeners.insert(inbound_listener(service, address));
        out.clusters.insert(local_cluster(service));
    }
    for (called, local_port) in &s.calls {
        if local_port.is_some() {
            out.listeners.insert(outbound_listener(service, called));
        }
        if mesh.services.get(called).is_some_and(|c| c.vip.is_some()) {
            out.listeners.insert(vip_listener(service, called));
        }
        out.clusters.insert(call_cluster(service, called));
    }
    out.clusters.insert(PASSTHROUGH_CLUSTER.to_string());
    out.secrets.insert(workload_secret(service));
    out.secrets.insert(TRUST_BUNDLE.to_string());
    out
}

/// Every resource of the config but the mesh's (no `fleets:` declared).
fn outside_mesh(config: &Config) -> FleetSelection {
    FleetSelection {
        listeners: config.listeners.keys().cloned().collect(),
        clusters: config
            .clusters
            .keys()
            .filter(|c| cluster_service(c).is_none())
            .cloned()
            .collect(),
        secrets: config.secrets.keys().cloned().collect(),
    }
}
