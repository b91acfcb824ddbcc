//! A raw delta xDS client, to see exactly which resources flotilla sends.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

pub const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// One delta ADS stream subscribed to every cluster and its endpoints, ACKing as it reads.
pub struct DeltaClient {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    responses: Streaming<DeltaDiscoveryResponse>,
    node: Node,
}

/// What one response carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub type_url: String,
    pub names: BTreeSet<String>,
    pub removed: BTreeSet<String>,
}

impl DeltaClient {
    /// Connects, subscribes to clusters (wildcard) and then to the endpoints of every cluster
    /// received, and reads until both are acknowledged.
    pub async fn connect(xds: SocketAddr, node_id: &str) -> DeltaClient {
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{xds}"))
            .await
            .expect("connect");
        let (tx, rx) = mpsc::channel(16);
        let responses = client
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .expect("delta stream")
            .into_inner();
        let node = Node {
            id: node_id.to_string(),
            cluster: "raw".to_string(),
            ..Default::default()
        };
        let mut c = DeltaClient {
            tx,
            responses,
            node,
        };
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

    async fn send(&mut self, mut req: DeltaDiscoveryRequest) {
        req.node = Some(self.node.clone());
        self.tx.send(req).await.expect("send request");
    }

    /// The next response within `wait`, acknowledged; None if nothing came.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Received> {
        let response = match tokio::time::timeout(wait, self.responses.message()).await {
            Err(_) => return None,
            Ok(Ok(Some(r))) => r,
            Ok(other) => panic!("stream ended: {other:?}"),
        };
        self.send(DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        })
        .await;
        Some(Received {
            type_url: response.type_url,
            names: response.resources.iter().map(|r| r.name.clone()).collect(),
            removed: response.removed_resources.into_iter().collect(),
        })
    }

    pub async fn next(&mut self) -> Option<Received> {
        self.next_within(Duration::from_secs(10)).await
    }
}
