//! The xDS gRPC server: ADS and per-type discovery services, state-of-the-world and delta.
//!
//! `service` adapts tonic's generated traits, `stream` runs one stream (shared by both
//! protocol variants, which differ only in `sotw` / `delta`), `client` is what a stream knows
//! about its Envoy, `plan` orders changes make-before-break, and `nodes` is the registry of
//! connected Envoys that the admin API shows.

#[doc(hidden)]
pub mod bench;
mod client;
mod delta;
mod held;
mod names;
pub mod nodes;
mod plan;
mod protocol;
mod service;
mod sotw;
mod stream;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_server::ClusterDiscoveryServiceServer;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use envoy_types::pb::envoy::service::endpoint::v3::endpoint_discovery_service_server::EndpointDiscoveryServiceServer;
use envoy_types::pb::envoy::service::listener::v3::listener_discovery_service_server::ListenerDiscoveryServiceServer;
use envoy_types::pb::envoy::service::route::v3::route_discovery_service_server::RouteDiscoveryServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use envoy_types::pb::envoy::service::load_stats::v3::load_reporting_service_server::LoadReportingServiceServer;
use envoy_types::pb::envoy::service::metrics::v3::metrics_service_server::MetricsServiceServer;

use crate::cache::SnapshotCache;
use crate::traffic::{FleetTraffic, LoadReports, MetricsSink};
pub use nodes::NodeRegistry;
pub use protocol::Mode;

/// Serves xDS on `listener` until `shutdown` is cancelled; open streams end with UNAVAILABLE
/// so that Envoys reconnect (to this flotilla once restarted, or to another replica).
/// Largest stats message accepted from an Envoy (a flush of a big config is large; beyond
/// this the stream is dropped with an error, xDS unaffected).
const STATS_MESSAGE_LIMIT: usize = 64 * 1024 * 1024;

pub async fn serve(
    listener: TcpListener,
    cache: Arc<SnapshotCache>,
    nodes: Arc<NodeRegistry>,
    traffic: Arc<FleetTraffic>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let discovery = service::Discovery {
        shared: stream::Shared {
            cache,
            nodes,
            shutdown: shutdown.clone(),
        },
    };
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .tcp_nodelay(true)
        .add_service(AggregatedDiscoveryServiceServer::new(discovery.clone()))
        .add_service(ClusterDiscoveryServiceServer::new(discovery.clone()))
        .add_service(EndpointDiscoveryServiceServer::new(discovery.clone()))
        .add_service(ListenerDiscoveryServiceServer::new(discovery.clone()))
        .add_service(RouteDiscoveryServiceServer::new(discovery))
        // Envoy's stats and load reports share the xDS connection.
        .add_service(
            MetricsServiceServer::new(MetricsSink {
                traffic: traffic.clone(),
                shutdown: shutdown.clone(),
            })
            .max_decoding_message_size(STATS_MESSAGE_LIMIT),
        )
        .add_service(LoadReportingServiceServer::new(LoadReports {
            traffic,
            shutdown: shutdown.clone(),
        }))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await
}
