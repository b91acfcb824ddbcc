//! The xDS gRPC server: ADS and per-type discovery services, state-of-the-world and delta.
//!
//! `grpc` serves the discovery services, sending responses as pre-encoded pieces (`wire`);
//! `stream` runs one stream (shared by both protocol variants, which differ only in `sotw` /
//! `delta`); `subscription` is what a stream knows about its client per type (what it asked
//! for, holds (`held`, `names`), has in flight and rejected); `ordering` orders changes
//! make-before-break and `protocol` decides what to send; `nodes` is the registry of
//! connected clients that the admin API shows. `listener` accepts connections within the
//! `limits` (connections, streams, handshake time, node size).

#[doc(hidden)]
pub mod bench;
pub mod budget;
mod delta;
#[doc(hidden)]
pub mod fuzz;
mod grpc;
mod held;
mod limits;
mod listener;
mod metrics;
mod names;
pub mod nodes;
mod open_files;
mod ordering;
mod protocol;
mod reader;
mod request;
pub mod sidecar;
mod sorted;
mod sotw;
mod stream;
mod stream_core;
mod subscription;
pub mod tls;
#[cfg(test)]
mod warm_tests;
mod wire;
mod withheld;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use envoy_types::pb::envoy::service::load_stats::v3::load_reporting_service_server::LoadReportingServiceServer;
use envoy_types::pb::envoy::service::metrics::v3::metrics_service_server::MetricsServiceServer;

use crate::cache::SnapshotCache;
use crate::traffic::{LoadReports, MetricsSink, TrafficAggregate};
pub use limits::{KEEPALIVE_RANGE, Limits, parse_keepalive};
pub use metrics::{MAX_FLEET_LABELS, MAX_FLEETS, OTHER_FLEETS, XdsMetrics, node_gauges};
pub use nodes::{FleetCount, NodeRegistry};
pub use protocol::Mode;

/// Largest stats message accepted from an Envoy (a flush of a big config is large; beyond
/// this the stream is dropped with an error, xDS unaffected).
const STATS_MESSAGE_LIMIT: usize = 64 * 1024 * 1024;

/// Serves xDS on `listener` until `shutdown` is cancelled; open streams end with UNAVAILABLE
/// so that Envoys reconnect (to this flotilla once restarted, or to another replica).
/// Clients are held to `limits`. With `tls` the port speaks TLS only (mTLS with a client CA,
/// binding every stream to its certificate's identity through `authorizer`).
#[allow(clippy::too_many_arguments)] // the server's parts, each passed once from serve::run
pub async fn serve(
    listener: TcpListener,
    cache: Arc<SnapshotCache>,
    nodes: Arc<NodeRegistry>,
    traffic: Arc<TrafficAggregate>,
    metrics: XdsMetrics,
    limits: Limits,
    tls: Option<(Arc<crate::tls::ServerTls>, crate::identity::IdentityRules)>,
    registry: crate::registry::RegistryService,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    traffic.follow(cache.clone());
    tokio::spawn(refresh_traffic(traffic.clone(), shutdown.clone()));
    // Every connection is a descriptor: a low soft limit would cap the fleet silently.
    open_files::raise_for(limits.max_connections);
    let max_node_id_bytes = limits.max_node_id_bytes;
    let authorizer = registry.authorizer.clone();
    let handshake = tls.map(|(tls, identity)| {
        tokio::spawn(tls.clone().watch(shutdown.clone()));
        listener::Handshake {
            tls,
            identity: Arc::new(identity),
            metrics: authorizer.metrics().clone(),
        }
    });
    let buffered = budget::Budget::new(
        limits.max_buffered_bytes,
        "serve --xds-max-buffered-bytes",
        Some(metrics.request_buffer_bytes()),
    );
    let shared = stream::Shared {
        cache,
        nodes,
        shutdown: shutdown.clone(),
        metrics,
        authorizer: authorizer.clone(),
        buffered,
        runtime: registry.runtime.clone(),
    };
    let incoming = listener::incoming(listener, &limits, handshake, shutdown.clone());
    let max_streams = limits.max_streams_per_connection;
    let limits = Arc::new(limits);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .max_concurrent_streams(max_streams)
        .add_service(grpc::Service::<grpc::Ads>::new(
            shared.clone(),
            limits.clone(),
        ))
        .add_service(grpc::Service::<grpc::Cds>::new(
            shared.clone(),
            limits.clone(),
        ))
        .add_service(grpc::Service::<grpc::Eds>::new(
            shared.clone(),
            limits.clone(),
        ))
        .add_service(grpc::Service::<grpc::Lds>::new(
            shared.clone(),
            limits.clone(),
        ))
        .add_service(grpc::Service::<grpc::Rds>::new(
            shared.clone(),
            limits.clone(),
        ))
        .add_service(grpc::Service::<grpc::Sds>::new(shared, limits))
        // Envoy's stats and load reports share the xDS connection.
        .add_service(
            MetricsServiceServer::new(MetricsSink {
                traffic: traffic.clone(),
                max_node_id_bytes,
                shutdown: shutdown.clone(),
                authorizer: authorizer.clone(),
            })
            .max_decoding_message_size(STATS_MESSAGE_LIMIT),
        )
        // Instances register themselves on the same port (flotilla.registry.v1).
        .add_service(registry.server())
        .add_service(LoadReportingServiceServer::new(LoadReports {
            traffic,
            max_node_id_bytes,
            shutdown: shutdown.clone(),
            authorizer,
        }))
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
}

/// Precomputes the traffic view every second on a blocking thread, so that neither the admin
/// API nor the runtime's workers ever wait for it.
async fn refresh_traffic(traffic: Arc<TrafficAggregate>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let t = traffic.clone();
        let _ = tokio::task::spawn_blocking(move || t.refresh()).await;
    }
}
