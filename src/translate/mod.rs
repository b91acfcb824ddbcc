//! Config + overlay → Envoy resources. Pure and deterministic: the same inputs always give
//! the same protos, hence the same bytes and the same content-hash versions, so a restarted or
//! second flotilla never makes Envoy re-apply unchanged config.
//!
//! One file per resource type (`cluster`, `endpoint`, `listener`, `route`); `fleet` decides
//! which resources a fleet of Envoys receives.

mod access_log;
mod auth;
mod cluster;
mod endpoint;
mod fault;
mod fleet;
mod listener;
pub mod mesh;
pub mod mesh_edges;
mod route;
pub mod sources;
mod tcp;
mod tls;
mod tracing;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::google::protobuf as pbwk;

use crate::config::Config;
use crate::overlay::Overlay;

pub use crate::envoy::xds_source::Transport;

pub use access_log::{
    HTTP_FORMAT as DEFAULT_HTTP_ACCESS_LOG, TCP_FORMAT as DEFAULT_TCP_ACCESS_LOG,
};
pub use fleet::{FleetSelection, fleet_unknown, is_mesh_service, select_fleet, select_instance};
pub use sources::{ResourceSource, Sources, sources};

/// Every resource the configuration defines, before fleets pick their subsets. Names are the
/// names used in the YAML: cluster `api` is Cluster `api` and ClusterLoadAssignment `api`;
/// listener `public` is Listener `public` and RouteConfiguration `public`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Translation {
    pub clusters: BTreeMap<String, Cluster>,
    pub endpoints: BTreeMap<String, ClusterLoadAssignment>,
    pub listeners: BTreeMap<String, Listener>,
    pub routes: BTreeMap<String, RouteConfiguration>,
    /// The clusters each RouteConfiguration sends to, sorted and unique: what a route needs
    /// warm before it is sent (make-before-break), known here rather than re-read from protos.
    pub route_clusters: BTreeMap<String, Vec<String>>,
    /// The same for listeners that forward TCP connections to clusters themselves (no
    /// RouteConfiguration): they too wait for their clusters, which stay while they are held.
    pub listener_clusters: BTreeMap<String, Vec<String>>,
    /// Listeners for proxyless gRPC clients (an `api_listener`, no socket): served only to
    /// gRPC clients, known here rather than re-read from protos.
    pub grpc_listeners: BTreeSet<String>,
    /// SDS Secrets (certificates and keys, CA bundles), named by the files they come from.
    pub secrets: BTreeMap<String, Secret>,
    /// The addresses in each ClusterLoadAssignment, known here rather than re-read from
    /// protos (the traffic view accepts reports on exactly these).
    pub endpoint_addresses: BTreeMap<String, Vec<SocketAddr>>,
}

/// One cluster's ClusterLoadAssignment and the addresses in it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadAssignment {
    pub name: String,
    pub assignment: ClusterLoadAssignment,
    pub addresses: Vec<SocketAddr>,
}

/// Translates a whole configuration for Envoys on the given transport.
pub fn translate(config: &Config, overlay: &Overlay, transport: Transport) -> Translation {
    let source = transport.config_source();
    let mut out = Translation::default();
    for (name, c) in &config.clusters {
        if crate::config::model::cluster_service(name).is_some() {
            // A mesh service's instances reach Envoys in its callers' clusters (`mesh`).
            continue;
        }
        out.clusters.insert(
            name.clone(),
            cluster::cluster(c, &source, &config.envoy_dns_servers),
        );
        if matches!(c.resolve, crate::config::model::Resolve::Envoy { .. }) {
            // Its endpoints are inline and Envoy never asks for them over EDS: an assignment
            // it never acknowledges would keep the cluster cold to make-before-break
            // ordering, and every listener back (`xds::ordering::clusters_warm`).
            continue;
        }
        let la = load_assignment(c, overlay);
        out.endpoints.insert(name.clone(), la.assignment);
        out.endpoint_addresses.insert(name.clone(), la.addresses);
    }
    for (name, l) in &config.listeners {
        if let (Some(forward), Some(address)) = (&l.tcp, l.address()) {
            // Connections, not requests: no RouteConfiguration.
            out.listeners
                .insert(name.clone(), tcp::listener(l, forward, address, config));
            out.listener_clusters
                .insert(name.clone(), tcp::clusters(forward));
            continue;
        }
        out.listeners
            .insert(name.clone(), listener::listener(l, config, &source));
        for c in auth::jwks_clusters(l, &source, &config.envoy_dns_servers) {
            out.clusters.insert(c.name.clone(), c);
        }
        out.routes
            .insert(name.clone(), route::route_configuration(l, config));
        out.route_clusters.insert(name.clone(), route::clusters(l));
        if l.is_proxyless_grpc() {
            out.grpc_listeners.insert(name.clone());
        }
    }
    for (name, material) in &config.secrets {
        out.secrets
            .insert(name.clone(), tls::secret(name, material));
    }
    mesh::add(config, overlay, &source, &mut out);
    out
}

/// The ClusterLoadAssignments of the named clusters alone (the endpoint fast path): the same
/// as `translate`'s for the same inputs, on every transport (a ClusterLoadAssignment names no
/// config source). Names the config does not have are skipped.
pub fn load_assignments<'a>(
    config: &'a Config,
    overlay: &'a Overlay,
    clusters: impl IntoIterator<Item = &'a String> + 'a,
) -> impl Iterator<Item = LoadAssignment> + 'a {
    clusters
        .into_iter()
        .filter_map(|name| config.clusters.get(name))
        .map(|c| load_assignment(c, overlay))
}

fn load_assignment(c: &crate::config::model::Cluster, overlay: &Overlay) -> LoadAssignment {
    LoadAssignment {
        name: c.name.clone(),
        assignment: endpoint::load_assignment(c, overlay),
        addresses: overlay.endpoints(c).map(|(e, _)| e.address).collect(),
    }
}

fn u32_value(value: u32) -> pbwk::UInt32Value {
    pbwk::UInt32Value { value }
}

use crate::envoy::{duration, pack as any};

#[cfg(test)]
mod edge_tests;
#[cfg(test)]
mod grpc_tests;
#[cfg(test)]
mod mesh_tests;
#[cfg(test)]
mod tests;
