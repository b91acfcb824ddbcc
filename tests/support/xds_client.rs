//! The one raw ADS test client, SotW or delta, to see exactly what flotilla sends and to send
//! what no real Envoy would (requests without a node, unknown types, missing ACKs).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

pub const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

/// How long a response is waited for before the test fails.
const WAIT: Duration = Duration::from_secs(10);

/// A node as a test client presents it (`user_agent_name` empty: not an Envoy).
pub fn node(id: &str, fleet: &str) -> Node {
    Node {
        id: id.to_string(),
        cluster: fleet.to_string(),
        ..Default::default()
    }
}

/// A request that can carry the stream's node.
pub trait Request: Send + 'static {
    fn node_mut(&mut self) -> &mut Option<Node>;
}

impl Request for DiscoveryRequest {
    fn node_mut(&mut self) -> &mut Option<Node> {
        &mut self.node
    }
}

impl Request for DeltaDiscoveryRequest {
    fn node_mut(&mut self) -> &mut Option<Node> {
        &mut self.node
    }
}

/// One ADS stream: requests go out exactly as given (plus `node`, when set and the request
/// has none), responses come back raw.
pub struct AdsClient<Req, Resp> {
    tx: mpsc::Sender<Req>,
    responses: Streaming<Resp>,
    /// Put on every request that carries no node of its own.
    pub node: Option<Node>,
}

pub type SotwClient = AdsClient<DiscoveryRequest, DiscoveryResponse>;
pub type DeltaClient = AdsClient<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;

async fn grpc(xds: SocketAddr) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
    AggregatedDiscoveryServiceClient::connect(format!("http://{xds}"))
        .await
        .expect("connect to flotilla")
}

impl SotwClient {
    /// Opens a SotW ADS stream; nothing is sent yet.
    pub async fn open(xds: SocketAddr, node: Option<Node>) -> SotwClient {
        let (tx, rx) = mpsc::channel(16);
        let responses = grpc(xds)
            .await
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .expect("open ADS stream")
            .into_inner();
        AdsClient {
            tx,
            responses,
            node,
        }
    }

    /// Subscribes to `names` of `type_url` (none: wildcard), acknowledging `acked` if given.
    pub async fn request(
        &mut self,
        type_url: &str,
        names: &[&str],
        acked: Option<&DiscoveryResponse>,
    ) {
        self.send(DiscoveryRequest {
            type_url: type_url.into(),
            resource_names: names.iter().map(|n| n.to_string()).collect(),
            version_info: acked.map(|r| r.version_info.clone()).unwrap_or_default(),
            response_nonce: acked.map(|r| r.nonce.clone()).unwrap_or_default(),
            ..Default::default()
        })
        .await;
    }
}

impl DeltaClient {
    /// Opens a delta ADS stream; nothing is sent yet.
    pub async fn open(xds: SocketAddr, node: Option<Node>) -> DeltaClient {
        let (tx, rx) = mpsc::channel(16);
        let responses = grpc(xds)
            .await
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .expect("open delta ADS stream")
            .into_inner();
        AdsClient {
            tx,
            responses,
            node,
        }
    }

    /// Connects as an Envoy would: subscribes to clusters (wildcard) and then to the
    /// endpoints of every cluster received, and reads until both are acknowledged.
    pub async fn connect(xds: SocketAddr, node_id: &str) -> DeltaClient {
        let mut c = DeltaClient::open(xds, Some(node(node_id, "raw"))).await;
        c.send(DeltaDiscoveryRequest {
            type_url: CDS.into(),
            ..Default::default()
        })
        .await;
        let clusters = c.next().await.expect("initial clusters");
        assert_eq!(clusters.type_url, CDS);
        c.send(DeltaDiscoveryRequest {
            type_url: EDS.into(),
            resource_names_subscribe: clusters.names.iter().cloned().collect(),
            ..Default::default()
        })
        .await;
        let endpoints = c.next().await.expect("initial endpoints");
        assert_eq!(endpoints.type_url, EDS);
        c
    }

    /// The next response within `wait`, acknowledged; None if nothing came.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Received> {
        let response = self.recv_within(wait).await?.expect("a response");
        self.send(DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        })
        .await;
        Some(Received::from(response))
    }

    /// The next response, acknowledged; None if nothing came within 10 s.
    pub async fn next(&mut self) -> Option<Received> {
        self.next_within(WAIT).await
    }
}

impl<Req: Request, Resp: Send + 'static> AdsClient<Req, Resp> {
    pub async fn send(&mut self, mut req: Req) {
        if req.node_mut().is_none() {
            *req.node_mut() = self.node.clone();
        }
        self.tx.send(req).await.expect("send request");
    }

    /// The next response or the stream's error status within `wait`; None if nothing came.
    /// A stream that ends without a status reads as CANCELLED.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Result<Resp, Status>> {
        match tokio::time::timeout(wait, self.responses.message()).await {
            Err(_) => None,
            Ok(Ok(Some(r))) => Some(Ok(r)),
            Ok(Ok(None)) => Some(Err(Status::cancelled("stream ended"))),
            Ok(Err(status)) => Some(Err(status)),
        }
    }

    /// The next response or the stream's error status; fails the test after 10 s.
    pub async fn recv(&mut self) -> Result<Resp, Status> {
        self.recv_within(WAIT)
            .await
            .unwrap_or_else(|| panic!("no response within {WAIT:?}"))
    }
}

/// What one delta response carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub type_url: String,
    pub names: BTreeSet<String>,
    pub removed: BTreeSet<String>,
    pub system_version_info: String,
}

impl From<DeltaDiscoveryResponse> for Received {
    fn from(response: DeltaDiscoveryResponse) -> Received {
        Received {
            type_url: response.type_url,
            names: response.resources.iter().map(|r| r.name.clone()).collect(),
            removed: response.removed_resources.into_iter().collect(),
            system_version_info: response.system_version_info,
        }
    }
}

/// The names of the resources in a SotW response (each decoded as a message with a `name`).
pub fn sotw_names(response: &DiscoveryResponse) -> Vec<String> {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
    use prost::Message;
    response
        .resources
        .iter()
        .map(|any| {
            let bytes = any.value.as_slice();
            match any.type_url.as_str() {
                CDS => Cluster::decode(bytes).expect("a Cluster").name,
                EDS => {
                    ClusterLoadAssignment::decode(bytes)
                        .expect("a ClusterLoadAssignment")
                        .cluster_name
                }
                LDS => Listener::decode(bytes).expect("a Listener").name,
                RDS => {
                    RouteConfiguration::decode(bytes)
                        .expect("a RouteConfiguration")
                        .name
                }
                other => panic!("unexpected type {other}"),
            }
        })
        .collect()
}
