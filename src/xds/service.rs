//! The gRPC services: ADS and the four per-type discovery services, each in both variants.

use std::pin::Pin;

use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_server::ClusterDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    aggregated_discovery_service_server::AggregatedDiscoveryService,
};
use envoy_types::pb::envoy::service::endpoint::v3::endpoint_discovery_service_server::EndpointDiscoveryService;
use envoy_types::pb::envoy::service::listener::v3::listener_discovery_service_server::ListenerDiscoveryService;
use envoy_types::pb::envoy::service::route::v3::route_discovery_service_server::RouteDiscoveryService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::delta::Delta;
use super::sotw::Sotw;
use super::stream::{self, Kind, Shared};
use crate::cache::{ResourceType, version_of};
use crate::translate::Transport;

type Responses<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Implements every discovery service over the same cache and node registry.
#[derive(Clone)]
pub(crate) struct Discovery {
    pub(crate) shared: Shared,
}

impl Discovery {
    fn sotw(
        &self,
        kind: Kind,
        req: Request<Streaming<DiscoveryRequest>>,
    ) -> Response<Responses<DiscoveryResponse>> {
        Response::new(Box::pin(stream::spawn::<Sotw>(
            self.shared.clone(),
            kind,
            req.into_inner(),
        )))
    }

    fn delta(
        &self,
        kind: Kind,
        req: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Response<Responses<DeltaDiscoveryResponse>> {
        Response::new(Box::pin(stream::spawn::<Delta>(
            self.shared.clone(),
            kind,
            req.into_inner(),
        )))
    }

    /// Unary fetch (REST-style polling over gRPC): the current resources of one type.
    fn fetch(
        &self,
        t: ResourceType,
        req: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let req = req.into_inner();
        if !req.type_url.is_empty() && req.type_url != t.type_url() {
            return Err(Status::invalid_argument(format!(
                "type_url {} is not served by the {t} service",
                req.type_url
            )));
        }
        let node = req
            .node
            .ok_or_else(|| Status::invalid_argument("fetch requests must carry the Envoy node"))?;
        let snapshot = self
            .shared
            .cache
            .current(Some(&node.cluster), Transport::Sotw)
            .ok_or_else(|| Status::unavailable("no configuration loaded yet"))?;
        let resources: Vec<_> = snapshot
            .get(t)
            .resources
            .values()
            .filter(|r| req.resource_names.is_empty() || req.resource_names.contains(&r.name))
            .cloned()
            .collect();
        let version_info = version_of(
            resources
                .iter()
                .map(|r| (r.name.as_str(), r.version.as_str())),
        );
        Ok(Response::new(DiscoveryResponse {
            version_info,
            resources: resources.iter().map(|r| r.body.clone()).collect(),
            type_url: t.type_url().to_string(),
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Discovery {
    type StreamAggregatedResourcesStream = Responses<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Responses<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        req: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Ok(self.sotw(Kind::ADS, req))
    }

    async fn delta_aggregated_resources(
        &self,
        req: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Ok(self.delta(Kind::ADS, req))
    }
}

/// The four per-type services are the same code with another type; this writes them out.
macro_rules! per_type_service {
    ($trait:ident, $t:expr, $sotw_ty:ident, $sotw:ident, $delta_ty:ident, $delta:ident, $fetch:ident) => {
        #[tonic::async_trait]
        impl $trait for Discovery {
            type $sotw_ty = Responses<DiscoveryResponse>;
            type $delta_ty = Responses<DeltaDiscoveryResponse>;

            async fn $sotw(
                &self,
                req: Request<Streaming<DiscoveryRequest>>,
            ) -> Result<Response<Self::$sotw_ty>, Status> {
                Ok(self.sotw(Kind::single($t), req))
            }

            async fn $delta(
                &self,
                req: Request<Streaming<DeltaDiscoveryRequest>>,
            ) -> Result<Response<Self::$delta_ty>, Status> {
                Ok(self.delta(Kind::single($t), req))
            }

            async fn $fetch(
                &self,
                req: Request<DiscoveryRequest>,
            ) -> Result<Response<DiscoveryResponse>, Status> {
                self.fetch($t, req)
            }
        }
    };
}

per_type_service!(
    ClusterDiscoveryService,
    ResourceType::Cluster,
    StreamClustersStream,
    stream_clusters,
    DeltaClustersStream,
    delta_clusters,
    fetch_clusters
);
per_type_service!(
    EndpointDiscoveryService,
    ResourceType::Endpoint,
    StreamEndpointsStream,
    stream_endpoints,
    DeltaEndpointsStream,
    delta_endpoints,
    fetch_endpoints
);
per_type_service!(
    ListenerDiscoveryService,
    ResourceType::Listener,
    StreamListenersStream,
    stream_listeners,
    DeltaListenersStream,
    delta_listeners,
    fetch_listeners
);
per_type_service!(
    RouteDiscoveryService,
    ResourceType::Route,
    StreamRoutesStream,
    stream_routes,
    DeltaRoutesStream,
    delta_routes,
    fetch_routes
);
