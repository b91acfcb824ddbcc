//! The xDS gRPC server: ADS and per-type discovery services, state-of-the-world and delta.
//!
//! `grpc` serves the discovery services, sending responses as pre-encoded pieces (`wire`);
//! `stream` runs one stream (shared by both protocol variants, which differ only in `sotw` /
//! `delta`); `client` is what a stream knows about its Envoy (`held`, `names`); `plan` orders
//! changes make-before-break and `protocol` decides what to send; `nodes` is the registry of
//! connected Envoys that the admin API shows.

#[doc(hidden)]
pub mod bench;
mod client;
mod delta;
#[doc(hidden)]
pub mod fuzz;
mod grpc;
mod held;
mod names;
pub mod nodes;
mod plan;
mod protocol;
mod reader;
mod request;
mod sotw;
mod stream;
mod wire;

use std::sync::Arc;
use std::time::Duration;

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
    keepalive_timeout: Duration,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let shared = stream::Shared {
        cache,
        nodes,
        shutdown: shutdown.clone(),
    };
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(keepalive_timeout))
        .tcp_nodelay(true)
        .add_service(grpc::Service::<grpc::Ads>::new(shared.clone()))
        .add_service(grpc::Service::<grpc::Cds>::new(shared.clone()))
        .add_service(grpc::Service::<grpc::Eds>::new(shared.clone()))
        .add_service(grpc::Service::<grpc::Lds>::new(shared.clone()))
        .add_service(grpc::Service::<grpc::Rds>::new(shared))
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
