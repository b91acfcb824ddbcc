//! The discovery services, served by hand so that responses go out as pre-encoded pieces.
//!
//! tonic's generated servers encode every response with prost into a buffer per stream that
//! keeps the capacity of the largest message it ever sent; with thousands of streams and
//! half-megabyte initial responses that is gigabytes. Here requests are still decoded by
//! tonic, but a response is a list of shared `Bytes` (see `wire`) copied into small chunks only
//! as the connection takes them.

use std::convert::Infallible;
use std::iter::Peekable;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use prost::Message;
use tokio::sync::mpsc;
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;

use super::budget::Charge;
use super::delta::Delta;
use super::limits::{CarriesNode, Limits};
use super::reader::Requests;
use super::request::SotwRequest;
use super::sotw::Sotw;
use super::stream::{self, Kind, Shared};
use super::wire::{self, Frames};
use crate::cache::{ClientKind, ResourceType, version_of};
use crate::identity::XdsPeer;
use crate::translate::Transport;

/// Requests larger than this are refused. Envoy's are far smaller, even listing every name (a
/// SotW EDS request naming 100,000 clusters is about 2 MiB); a stream holds at most one
/// partial request, so a connection buffers at most this times its stream limit.
const MAX_REQUEST: usize = 4 * 1024 * 1024;
/// Pieces are copied into chunks of about this size as the connection takes them.
const CHUNK: usize = 16 * 1024;

/// What a path asks for.
enum Method {
    Sotw,
    Delta,
    Fetch,
}

/// A discovery service: ADS (every type) or one type's service.
#[derive(Clone)]
pub(crate) struct Service<N> {
    pub(crate) shared: Shared,
    limits: Arc<Limits>,
    _name: std::marker::PhantomData<N>,
}

impl<N> Service<N> {
    pub(crate) fn new(shared: Shared, limits: Arc<Limits>) -> Service<N> {
        Service {
            shared,
            limits,
            _name: std::marker::PhantomData,
        }
    }
}

/// Names a service and says which type it serves (None: ADS) and its methods' names.
pub(crate) trait Named: Send + Sync + 'static {
    const NAME: &'static str;
    const TYPE: Option<ResourceType>;
    const METHODS: [&'static str; 3];
}

macro_rules! service_names {
    ($($ty:ident => $name:literal, $t:expr, [$sotw:literal, $delta:literal, $fetch:literal];)*) => {$(
        #[derive(Clone, Copy)]
        pub(crate) struct $ty;
        impl Named for $ty {
            const NAME: &'static str = $name;
            const TYPE: Option<ResourceType> = $t;
            const METHODS: [&'static str; 3] = [$sotw, $delta, $fetch];
        }
        impl NamedService for Service<$ty> {
            const NAME: &'static str = $name;
        }
    )*};
}

service_names! {
    Ads => "envoy.service.discovery.v3.AggregatedDiscoveryService", None,
        ["StreamAggregatedResources", "DeltaAggregatedResources", ""];
    Cds => "envoy.service.cluster.v3.ClusterDiscoveryService", Some(ResourceType::Cluster),
        ["StreamClusters", "DeltaClusters", "FetchClusters"];
    Eds => "envoy.service.endpoint.v3.EndpointDiscoveryService", Some(ResourceType::Endpoint),
        ["StreamEndpoints", "DeltaEndpoints", "FetchEndpoints"];
    Lds => "envoy.service.listener.v3.ListenerDiscoveryService", Some(ResourceType::Listener),
        ["StreamListeners", "DeltaListeners", "FetchListeners"];
    Rds => "envoy.service.route.v3.RouteDiscoveryService", Some(ResourceType::Route),
        ["StreamRoutes", "DeltaRoutes", "FetchRoutes"];
    Sds => "envoy.service.secret.v3.SecretDiscoveryService", Some(ResourceType::Secret),
        ["StreamSecrets", "DeltaSecrets", "FetchSecrets"];
}

impl<N: Named> tower_service::Service<Request<Body>> for Service<N> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        let limits = self.limits.clone();
        Box::pin(async move { Ok(handle::<N>(shared, limits, req).await) })
    }
}

fn method<N: Named>(path: &str) -> Option<Method> {
    let name = path
        .strip_prefix('/')?
        .strip_prefix(N::NAME)?
        .strip_prefix('/')?;
    match name {
        "" => None,
        n if n == N::METHODS[0] => Some(Method::Sotw),
        n if n == N::METHODS[1] => Some(Method::Delta),
        n if n == N::METHODS[2] => Some(Method::Fetch),
        _ => None,
    }
}

/// The requests of a stream, the first one's node checked against `limits`, what it buffers
/// charged against its connection's budget and the server's.
fn requests<M: Message + Default + CarriesNode + 'static>(
    body: Body,
    limits: Arc<Limits>,
    shared: &Shared,
    peer: Option<&XdsPeer>,
) -> Requests<M> {
    let mut budgets = vec![shared.buffered.clone()];
    budgets.extend(peer.map(|p| p.buffered.clone()));
    Requests::new(body, MAX_REQUEST)
        .charged(Charge::new(budgets))
        .check_first(move |m: &M| m.node().map_or(Ok(()), |n| limits.check_node(n)))
}

async fn handle<N: Named>(
    shared: Shared,
    limits: Arc<Limits>,
    req: Request<Body>,
) -> Response<Body> {
    let kind = match N::TYPE {
        Some(t) => Kind::single(t),
        None => Kind::ADS,
    };
    if req
        .headers()
        .get("grpc-encoding")
        .is_some_and(|v| v != "identity")
    {
        return status_only(Status::unimplemented(
            "compressed requests are not supported",
        ));
    }
    let peer = req.extensions().get::<XdsPeer>().cloned();
    match method::<N>(req.uri().path()) {
        Some(Method::Sotw) => {
            let requests = requests::<SotwRequest>(req.into_body(), limits, &shared, peer.as_ref());
            streaming(stream::spawn::<Sotw>(shared, kind, peer, requests))
        }
        Some(Method::Delta) => {
            let requests =
                requests::<DeltaDiscoveryRequest>(req.into_body(), limits, &shared, peer.as_ref());
            streaming(stream::spawn::<Delta>(shared, kind, peer, requests))
        }
        Some(Method::Fetch) => match N::TYPE {
            Some(t) => fetch(&shared, t, limits, req).await,
            None => status_only(Status::unimplemented("ADS has no fetch method")),
        },
        None => status_only(Status::unimplemented(format!(
            "unknown method {}",
            req.uri().path()
        ))),
    }
}

/// Unary fetch (REST-style polling over gRPC): the current resources of one type.
async fn fetch(
    shared: &Shared,
    t: ResourceType,
    limits: Arc<Limits>,
    req: Request<Body>,
) -> Response<Body> {
    let peer = req.extensions().get::<XdsPeer>().cloned();
    let mut requests = requests::<DiscoveryRequest>(req.into_body(), limits, shared, peer.as_ref());
    let request = match requests.message().await {
        Ok(Some(r)) => r,
        Ok(None) => return status_only(Status::invalid_argument("empty fetch request")),
        Err(s) => return status_only(s),
    };
    if !request.type_url.is_empty() && request.type_url != t.type_url() {
        return status_only(Status::invalid_argument(format!(
            "type_url {} is not served by the {t} service",
            request.type_url
        )));
    }
    let Some(node) = request.node else {
        return status_only(Status::invalid_argument(
            "fetch requests must carry the Envoy node",
        ));
    };
    if let Err(status) =
        shared
            .authorizer
            .check(peer.as_ref(), "xDS fetch", &node.cluster, &node.id)
    {
        return status_only(status);
    }
    let Some(snapshot) = shared.cache.current(
        Some(&node.cluster),
        Transport::Sotw,
        ClientKind::from_user_agent(&node.user_agent_name),
    ) else {
        return status_only(Status::unavailable("no configuration loaded yet"));
    };
    let resources: Vec<_> = snapshot
        .get(t)
        .resources
        .values()
        .filter(|r| request.resource_names.is_empty() || request.resource_names.contains(&r.name))
        .collect();
    let version = version_of(
        resources
            .iter()
            .map(|r| (r.name.as_str(), r.version.as_str())),
    );
    let frames = wire::sotw_response(
        &version,
        resources.iter().map(|r| r.sotw.clone()),
        t.type_url(),
        "",
    );
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(Ok(frames));
    drop(tx);
    streaming(rx)
}

fn grpc_response(body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    resp
}

/// A response carrying only a status (an error before any message).
fn status_only(status: Status) -> Response<Body> {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(Err(status));
    drop(tx);
    streaming(rx)
}

fn streaming(responses: mpsc::Receiver<Result<Frames, Status>>) -> Response<Body> {
    grpc_response(Body::new(FramesBody {
        responses,
        pending: None,
        trailers: None,
        done: false,
    }))
}

/// The response body of a stream: messages as they come, then the status as trailers.
struct FramesBody {
    responses: mpsc::Receiver<Result<Frames, Status>>,
    /// The pieces of the message being written. Dropped once written: a stream that sent a
    /// thousand-resource response must not keep room for a thousand pieces (32 KiB) forever.
    pending: Option<Peekable<std::vec::IntoIter<Bytes>>>,
    trailers: Option<HeaderMap>,
    done: bool,
}

impl http_body::Body for FramesBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            if let Some(chunk) = self.chunk() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if let Some(trailers) = self.trailers.take() {
                self.done = true;
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match self.responses.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frames))) => {
                    self.pending = Some(frames.parts.into_iter().peekable());
                }
                Poll::Ready(Some(Err(status))) => self.trailers = Some(trailers(&status)),
                Poll::Ready(None) => self.trailers = Some(trailers(&Status::ok(""))),
            }
        }
    }
}

impl FramesBody {
    /// The next chunk: a large piece as is, small pieces copied together up to [`CHUNK`].
    fn chunk(&mut self) -> Option<Bytes> {
        let pending = self.pending.as_mut()?;
        let Some(first) = pending.next() else {
            self.pending = None;
            return None;
        };
        if first.len() >= CHUNK
            || pending
                .peek()
                .is_none_or(|next| first.len() + next.len() > CHUNK)
        {
            return Some(first);
        }
        let mut out = BytesMut::with_capacity(CHUNK);
        out.put_slice(&first);
        while let Some(next) = pending.next_if(|next| out.len() + next.len() <= CHUNK) {
            out.put_slice(&next);
        }
        Some(out.freeze())
    }
}

fn trailers(status: &Status) -> HeaderMap {
    let mut map = HeaderMap::new();
    if status.add_header(&mut map).is_err() {
        map.insert("grpc-status", HeaderValue::from_static("13"));
    }
    map
}
