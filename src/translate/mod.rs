//! Config + overlay → Envoy resources. Pure and deterministic: the same inputs always give
//! the same protos, hence the same bytes and the same content-hash versions, so a restarted or
//! second flotilla never makes Envoy re-apply unchanged config.
//!
//! One file per resource type (`cluster`, `endpoint`, `listener`, `route`); `fleet` decides
//! which resources a fleet of Envoys receives.

mod cluster;
mod endpoint;
mod fleet;
mod listener;
mod overlay;
mod route;
mod tcp;

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiConfigSource, ApiVersion, ConfigSource, GrpcService,
    api_config_source::ApiType, config_source::ConfigSourceSpecifier, grpc_service,
};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::google::protobuf as pbwk;

use crate::config::Config;

pub use fleet::{FleetSelection, fleet_unknown, select_fleet};
pub use overlay::{EndpointKey, Overlay, Verdict};

/// Name of the static cluster, in the bootstraps flotilla writes, that points at flotilla's
/// xDS port. Non-ADS resources name it as the source of their EDS and RDS.
pub const XDS_CLUSTER: &str = "flotilla_xds";

/// How the Envoy receiving the resources fetches the EDS and RDS they point to. ADS streams
/// get `ads: {}`; Envoys on separate per-type streams get an API config source naming
/// [`XDS_CLUSTER`], SotW or delta to match their bootstrap. Only clusters and listeners differ
/// between the three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    Ads,
    Sotw,
    Delta,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::Ads, Transport::Sotw, Transport::Delta];

    /// The config source that resources delivered over this transport use for EDS/RDS.
    pub fn config_source(self) -> ConfigSource {
        let specifier = match self {
            Transport::Ads => ConfigSourceSpecifier::Ads(AggregatedConfigSource {}),
            Transport::Sotw | Transport::Delta => ConfigSourceSpecifier::ApiConfigSource(
                xds_api_source(if self == Transport::Delta {
                    ApiType::DeltaGrpc
                } else {
                    ApiType::Grpc
                }),
            ),
        };
        ConfigSource {
            resource_api_version: ApiVersion::V3 as i32,
            config_source_specifier: Some(specifier),
            ..Default::default()
        }
    }
}

/// The gRPC service that reaches flotilla through the bootstrap's [`XDS_CLUSTER`].
pub fn xds_grpc_service() -> GrpcService {
    GrpcService {
        target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
            grpc_service::EnvoyGrpc {
                cluster_name: XDS_CLUSTER.to_string(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// An API config source for flotilla's xDS (or load-report) service.
pub fn xds_api_source(api_type: ApiType) -> ApiConfigSource {
    ApiConfigSource {
        api_type: api_type as i32,
        transport_api_version: ApiVersion::V3 as i32,
        grpc_services: vec![xds_grpc_service()],
        set_node_on_first_message_only: true,
        ..Default::default()
    }
}

/// Every resource the configuration defines, before fleets pick their subsets. Names are the
/// names used in the YAML: cluster `api` is Cluster `api` and ClusterLoadAssignment `api`;
/// listener `public` is Listener `public` and RouteConfiguration `public`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Translation {
    pub clusters: BTreeMap<String, Cluster>,
    pub endpoints: BTreeMap<String, ClusterLoadAssignment>,
    pub listeners: BTreeMap<String, Listener>,
    pub routes: BTreeMap<String, RouteConfiguration>,
}

/// Translates a whole configuration for Envoys on the given transport.
pub fn translate(config: &Config, overlay: &Overlay, transport: Transport) -> Translation {
    let source = transport.config_source();
    let mut out = Translation::default();
    for (name, c) in &config.clusters {
        out.clusters
            .insert(name.clone(), cluster::cluster(c, &source));
        out.endpoints
            .insert(name.clone(), endpoint::load_assignment(c, overlay));
    }
    for (name, l) in &config.listeners {
        if let (Some(forward), Some(address)) = (&l.tcp, l.address()) {
            // Connections, not requests: no RouteConfiguration.
            out.listeners
                .insert(name.clone(), tcp::listener(l, forward, address, config));
            continue;
        }
        out.listeners
            .insert(name.clone(), listener::listener(l, config, &source));
        out.routes
            .insert(name.clone(), route::route_configuration(l, config));
    }
    out
}

fn u32_value(value: u32) -> pbwk::UInt32Value {
    pbwk::UInt32Value { value }
}

use crate::envoy::{duration, pack as any};

#[cfg(test)]
mod tests;
