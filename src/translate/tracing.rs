//! `tracing` on a listener: the connection manager's OpenTelemetry tracer, exporting spans
//! over OTLP/gRPC to the collector cluster. Each route names its spans after itself
//! (`decorator`), so a trace says which route and (in `upstream_cluster`) which cluster
//! served a request.

use envoy_types::pb::envoy::config::core::v3::{GrpcService, grpc_service};
use envoy_types::pb::envoy::config::trace::v3::{OpenTelemetryConfig, tracing};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager;
use envoy_types::pb::envoy::r#type::v3::Percent;

use super::any;
use crate::config::model::Tracing;

const OPENTELEMETRY: &str = "envoy.tracers.opentelemetry";

pub(super) fn connection_manager_tracing(t: &Tracing) -> http_connection_manager::Tracing {
    let provider = OpenTelemetryConfig {
        grpc_service: Some(GrpcService {
            target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                grpc_service::EnvoyGrpc {
                    cluster_name: t.collector.clone(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
        service_name: t.service_name.clone(),
        ..Default::default()
    };
    http_connection_manager::Tracing {
        random_sampling: Some(Percent { value: t.sampling }),
        provider: Some(tracing::Http {
            name: OPENTELEMETRY.to_string(),
            config_type: Some(tracing::http::ConfigType::TypedConfig(any(&provider))),
        }),
        ..Default::default()
    }
}
