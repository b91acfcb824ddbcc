//! How an Envoy reaches flotilla for its xDS: the bootstrap's static cluster, the gRPC
//! service naming it, and the config sources that resources and bootstraps point at.
//!
//! The bootstrap (`envoy::bootstrap`) and translation both use these; they live with Envoy's
//! formats so that translate depends on `envoy`, never the other way round.

use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiConfigSource, ApiVersion, ConfigSource, GrpcService,
    api_config_source::ApiType, config_source::ConfigSourceSpecifier, grpc_service,
};

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
