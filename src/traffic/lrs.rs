//! Envoy's load reports (LRS): per-endpoint request counts, which Envoy's stat sinks do not
//! carry. flotilla asks every Envoy for all clusters at endpoint granularity, every
//! [`INTERVAL`]; each report holds what happened since the previous one.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
use envoy_types::pb::envoy::service::load_stats::v3::{
    LoadStatsRequest, LoadStatsResponse, load_reporting_service_server::LoadReportingService,
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::info;

use super::aggregate::{EndpointReport, TrafficAggregate};
use super::sink::identity;
use super::window::MAX_COUNT;

/// How often Envoys report load.
pub const INTERVAL: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct LoadReports {
    pub traffic: Arc<TrafficAggregate>,
    /// Longest node id and cluster accepted (as on the xDS streams).
    pub max_node_id_bytes: usize,
    /// Ends open streams on shutdown (a load-report stream never ends by itself).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Binds the reporting node to the connection's client certificate.
    pub authorizer: crate::identity::Authorizer,
}

type Responses = Pin<Box<dyn Stream<Item = Result<LoadStatsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl LoadReportingService for LoadReports {
    type StreamLoadStatsStream = Responses;

    async fn stream_load_stats(
        &self,
        req: Request<Streaming<LoadStatsRequest>>,
    ) -> Result<Response<Responses>, Status> {
        let peer = req.extensions().get::<crate::identity::XdsPeer>().cloned();
        let mut requests = req.into_inner();
        let (tx, rx) = mpsc::channel(1);
        let authorizer = self.authorizer.clone();
        let traffic = self.traffic.clone();
        let shutdown = self.shutdown.clone();
        let max_node_id_bytes = self.max_node_id_bytes;
        tokio::spawn(async move {
            let first = match requests.message().await {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            };
            let Some((node, fleet)) = identity(first.node.as_ref(), max_node_id_bytes) else {
                let _ = tx
                    .send(Err(Status::invalid_argument(format!(
                        "the first load report must carry the Envoy node (an id of at most {max_node_id_bytes} bytes)"
                    ))))
                    .await;
                return;
            };
            if let Err(status) = authorizer.check(peer.as_ref(), "load reports", &fleet, &node) {
                let _ = tx.send(Err(status)).await;
                return;
            }
            let reporter = traffic.reporter(&node, &fleet, false);
            let max = super::window::max_count(peer.as_ref());
            info!(node = %node, "Envoy load reports stream opened");
            let ask = LoadStatsResponse {
                send_all_clusters: true,
                load_reporting_interval: Some(crate::envoy::duration(INTERVAL)),
                report_endpoint_granularity: true,
                ..Default::default()
            };
            if tx.send(Ok(ask)).await.is_ok() {
                let mut absorbed =
                    traffic.endpoint_reports(reporter, endpoint_reports(&first, max));
                while absorbed.is_ok() {
                    tokio::select! {
                        () = shutdown.cancelled() => {
                            let _ = tx.send(Err(Status::unavailable("flotilla is shutting down"))).await;
                            break;
                        }
                        report = requests.message() => match report {
                            Ok(Some(report)) => absorbed = traffic.endpoint_reports(reporter, endpoint_reports(&report, max)),
                            _ => break,
                        },
                    }
                }
                if let Err(why) = absorbed {
                    let _ = tx.send(Err(super::sink::cut_off(why))).await;
                }
            }
            traffic.reporter_gone(reporter);
            info!(node = %node, "Envoy load reports stream closed");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Per-endpoint counts in one report, each at most `max` (see
/// [`super::window::max_count`]); flotilla's own clusters are left out.
pub fn endpoint_reports(req: &LoadStatsRequest, max: u64) -> Vec<EndpointReport> {
    let max = max.min(MAX_COUNT);
    let mut out = Vec::new();
    for cluster in &req.cluster_stats {
        if cluster
            .cluster_name
            .starts_with(crate::config::RESERVED_PREFIX)
        {
            continue;
        }
        for locality in &cluster.upstream_locality_stats {
            for e in &locality.upstream_endpoint_stats {
                let Some(endpoint) = e.address.as_ref().and_then(|a| match &a.address {
                    Some(address::Address::SocketAddress(sa)) => match sa.port_specifier {
                        Some(socket_address::PortSpecifier::PortValue(port)) => {
                            let ip: std::net::IpAddr = sa.address.parse().ok()?;
                            Some(std::net::SocketAddr::new(ip, port as u16).to_string())
                        }
                        _ => None,
                    },
                    _ => None,
                }) else {
                    continue;
                };
                out.push(EndpointReport {
                    cluster: cluster.cluster_name.clone(),
                    endpoint,
                    successful: e.total_successful_requests.min(max),
                    errors: e.total_error_requests.min(max),
                    in_progress: e.total_requests_in_progress.min(max),
                });
            }
        }
    }
    out
}
