//! One xDS stream, either variant: read requests, track what the client holds, send what it
//! lacks, one response per type in flight, in make-before-break order.
//!
//! The loop never queues responses: it plans the next one only when the outgoing channel has
//! room, from the newest snapshot, so a slow Envoy gets the latest state and nothing stale.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::reader::Requests;
use tracing::{Instrument, debug, info, warn};

use super::metrics::XdsMetrics;
use super::nodes::{NodeRegistry, StreamEntry, StreamInfo};
use super::protocol::{Mode, Protocol, Request};
pub(crate) use super::stream_core::Kind;
use super::stream_core::{Core, Response};
use super::subscription::{InFlight, Reply};
use super::wire::Frames;
use super::withheld;
use crate::cache::{ClientKind, ResourceType, Snapshot, SnapshotCache};
use crate::identity::XdsPeer;
use crate::translate::Transport;

/// What every stream shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) cache: Arc<SnapshotCache>,
    pub(crate) nodes: Arc<NodeRegistry>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) metrics: XdsMetrics,
    /// Binds what a stream claims to its connection's client certificate.
    pub(crate) authorizer: crate::identity::Authorizer,
    /// Request bytes every stream together may hold buffered.
    pub(crate) buffered: Arc<super::budget::Budget>,
    /// Where mesh sidecars join their service while their stream lives (`sidecar`).
    pub(crate) runtime: Arc<crate::runtime::Runtime>,
}

/// Room for responses between the loop and the transport: enough to keep the connection busy,
/// small enough that planning always works from a fresh snapshot.
const OUTGOING: usize = 2;

/// Starts serving a stream; the returned channel carries its responses, then its status.
pub(crate) fn spawn<P: Protocol>(
    shared: Shared,
    kind: Kind,
    peer: Option<XdsPeer>,
    requests: Requests<P::Req>,
) -> mpsc::Receiver<Result<Frames, Status>> {
    let (tx, rx) = mpsc::channel(OUTGOING);
    tokio::spawn(async move {
        if let Err(status) = run::<P>(shared, kind, peer, requests, tx.clone()).await {
            let _ = tx.send(Err(status)).await;
        }
    });
    rx
}

async fn run<P: Protocol>(
    shared: Shared,
    kind: Kind,
    peer: Option<XdsPeer>,
    mut requests: Requests<P::Req>,
    tx: mpsc::Sender<Result<Frames, Status>>,
) -> Result<(), Status> {
    let Some(first) = requests.message().await? else {
        return Ok(());
    };
    let first = P::request(first);
    let node = first.node.clone().ok_or_else(|| {
        Status::invalid_argument("the first request on a stream must carry the Envoy node")
    })?;
    if node.id.is_empty() {
        return Err(Status::invalid_argument("node.id must not be empty"));
    }
    let identity = shared
        .authorizer
        .check(peer.as_ref(), "xDS", &node.cluster, &node.id)?;
    let transport = match (kind.ads, P::MODE) {
        (true, _) => Transport::Ads,
        (false, Mode::Sotw) => Transport::Sotw,
        (false, Mode::Delta) => Transport::Delta,
    };
    let client_kind = ClientKind::from_user_agent(&node.user_agent_name);
    // A mesh sidecar with an inbound listener is an instance of its service while this
    // stream lives (the session leaves when dropped, with the stream).
    let peer_ip = peer.as_ref().and_then(XdsPeer::remote_addr).map(|a| a.ip());
    let instance = super::sidecar::announced(&node)?
        .filter(|_| shared.cache.is_callable_mesh_service(&node.cluster))
        .map(|inbound| super::sidecar::instance_address(inbound, peer_ip));
    let mut snapshots =
        shared
            .cache
            .watch_instance(&node.cluster, instance, transport, client_kind);
    let snapshot = snapshots.borrow_and_update().clone();
    let entry = shared
        .nodes
        .register(StreamInfo {
            stream_id: 0,
            connection: peer.as_ref().map_or(0, |p| p.connection),
            peer: peer
                .as_ref()
                .and_then(XdsPeer::remote_addr)
                .map(|a| a.to_string()),
            identity,
            node_id: node.id.clone(),
            fleet: node.cluster.clone(),
            envoy_version: envoy_version(&node),
            mode: P::MODE,
            ads: kind.ads,
            connected_at: std::time::SystemTime::now(),
            snapshot_version: snapshot.version.clone(),
            in_sync: false,
            acked_snapshot: None,
            types: Default::default(),
            envoy_admin: announced_admin(&node, peer.as_ref()),
        })
        .map_err(|holder| {
            shared
                .authorizer
                .node_in_use("xDS", &node.cluster, &node.id, &holder, peer.as_ref())
        })?;
    // Joined once the node id is known to be this stream's: a second sidecar claiming the
    // same node id while the first lives is refused above, not handed its instance.
    let _instance_session = match instance {
        Some(address) => {
            let mut admins = shared.nodes.envoy_admins();
            admins.extend(announced_admin(&node, peer.as_ref()));
            super::sidecar::not_an_admin(&node.cluster, address, &admins)?;
            Some(
                super::sidecar::join(&shared.runtime, &node.cluster, &node.id, address, peer_ip)
                    .await?,
            )
        }
        None => None,
    };
    let span = tracing::info_span!(
        "xds",
        node = %node.id,
        fleet = %node.cluster,
        mode = P::MODE.name(),
        ads = kind.ads
    );
    let served: Vec<ResourceType> = ResourceType::ALL
        .into_iter()
        .filter(|t| kind.only.is_none_or(|only| only == *t))
        .collect();
    let _gauge = shared.metrics.stream_opened(
        kind.only.map_or("ads", ResourceType::short_name),
        P::MODE.name(),
        &node.cluster,
        shared.cache.fleet_declared(&node.cluster),
        &served,
    );
    let stream = StreamLoop::<P> {
        node_id: node.id.clone(),
        kind,
        entry,
        metrics: shared.metrics.clone(),
        core: Core::new(P::MODE, kind, snapshot, std::time::Instant::now()),
        in_sync: false,
        is_envoy: client_kind == ClientKind::Envoy,
        client_kind,
        _protocol: std::marker::PhantomData,
    };
    // The node (an Envoy's lists its extensions: kilobytes) is not kept for the stream's life;
    // the first request's copy goes as soon as the core has read it.
    drop(node);
    drop(peer);
    stream
        .run(first, requests, &mut snapshots, tx, shared.shutdown)
        .instrument(span)
        .await
}

fn envoy_version(node: &envoy_types::pb::envoy::config::core::v3::Node) -> String {
    use envoy_types::pb::envoy::config::core::v3::node::UserAgentVersionType;
    match &node.user_agent_version_type {
        Some(UserAgentVersionType::UserAgentBuildVersion(b)) => b
            .version
            .as_ref()
            .map(|v| format!("{}.{}.{}", v.major_number, v.minor_number, v.patch))
            .unwrap_or_default(),
        Some(UserAgentVersionType::UserAgentVersion(v)) => v.clone(),
        None => String::new(),
    }
}

/// The driver of one stream: I/O around its [`Core`], and the records others read
/// (metrics, the node registry, events, logs).
struct StreamLoop<P: Protocol> {
    node_id: String,
    kind: Kind,
    entry: StreamEntry,
    metrics: XdsMetrics,
    core: Core,
    /// What the node registry was last told.
    in_sync: bool,
    /// The node says it is an Envoy (`user_agent_name`): logs and events name the client.
    is_envoy: bool,
    client_kind: ClientKind,
    _protocol: std::marker::PhantomData<P>,
}

/// NACK log lines: Envoys can send them as fast as they like.
static NACK_LOG: crate::throttle::Throttle = crate::throttle::per_site();
/// Refused-request log lines, likewise.
static REFUSED_LOG: crate::throttle::Throttle = crate::throttle::per_site();

impl<P: Protocol> StreamLoop<P> {
    async fn run(
        mut self,
        first: Request,
        mut requests: Requests<P::Req>,
        snapshots: &mut watch::Receiver<Arc<Snapshot>>,
        tx: mpsc::Sender<Result<Frames, Status>>,
        shutdown: CancellationToken,
    ) -> Result<(), Status> {
        info!("stream opened");
        let what = if self.kind.ads {
            format!("ADS, {}", P::MODE.name())
        } else {
            format!(
                "{}, {}",
                self.kind.only.map_or("?", ResourceType::short_name),
                P::MODE.name()
            )
        };
        crate::events::record(
            crate::events::NewEvent::new(
                crate::events::Kind::Node,
                format!("{} connected ({what})", self.node_id),
            )
            .node(self.node_id.clone()),
        );
        let result = self
            .serve(first, &mut requests, snapshots, tx, shutdown)
            .await;
        crate::events::record(
            crate::events::NewEvent::new(
                crate::events::Kind::Node,
                format!("{} disconnected ({what})", self.node_id),
            )
            .node(self.node_id.clone()),
        );
        result
    }

    async fn serve(
        &mut self,
        first: Request,
        requests: &mut Requests<P::Req>,
        snapshots: &mut watch::Receiver<Arc<Snapshot>>,
        tx: mpsc::Sender<Result<Frames, Status>>,
        shutdown: CancellationToken,
    ) -> Result<(), Status> {
        self.handle(first)?;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    info!("stream closed: flotilla is shutting down");
                    return Err(Status::unavailable("flotilla is shutting down"));
                }
                message = requests.message() => match message {
                    Ok(Some(req)) => self.handle(P::request(req))?,
                    Ok(None) => {
                        info!("stream closed by Envoy");
                        return Ok(());
                    }
                    Err(status) => {
                        info!(error = %status.message(), "stream ended");
                        return Err(status);
                    }
                },
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        return Err(Status::unavailable("flotilla is shutting down"));
                    }
                    let snapshot = snapshots.borrow_and_update().clone();
                    self.entry.update(|i| i.snapshot_version.clone_from(&snapshot.version));
                    self.core.snapshot_changed(snapshot);
                }
                permit = tx.reserve(), if self.core.dirty() => {
                    let Ok(permit) = permit else {
                        return Ok(());
                    };
                    if let Some(response) = self.core.next() {
                        permit.send(Ok(self.sent(response)));
                    }
                    self.publish_sync();
                }
            }
        }
    }

    fn handle(&mut self, req: Request) -> Result<(), Status> {
        let type_url = req.type_url.clone();
        let handled = match self.core.request(req) {
            Ok(handled) => handled,
            Err(status) => {
                if let Some(suppressed) = REFUSED_LOG.allow() {
                    warn!(type_url = %crate::events::truncate(type_url, 256), error = %status.message(),
                        suppressed, "request refused; stream closed");
                }
                crate::events::record(
                    crate::events::NewEvent::new(
                        crate::events::Kind::Node,
                        format!(
                            "{}: request refused, stream closed: {}",
                            self.node_id,
                            status.message()
                        ),
                    )
                    .node(self.node_id.clone()),
                );
                return Err(status);
            }
        };
        let t = handled.t;
        match handled.reply {
            Reply::Ack(flight) => {
                debug!(r#type = %t, version = %flight.sent_version, nonce = %flight.nonce,
                    elapsed_ms = flight.at.elapsed().as_millis() as u64, "ACK");
                self.metrics.ack(t, P::MODE.name(), flight.since.elapsed());
                self.entry.acked(t, flight.sent_version);
            }
            Reply::Nack(flight, message) => self.nacked(t, flight, message),
            Reply::None => {}
        }
        for listener in handled.withheld {
            let message = withheld::message(self.client_kind, &self.node_id, &listener);
            warn!(listener = %listener, "{message}");
            crate::events::record(
                crate::events::NewEvent::new(crate::events::Kind::Node, message)
                    .node(self.node_id.clone()),
            );
        }
        self.publish_sync();
        Ok(())
    }

    /// A NACK (its message already cut to [`super::stream_core::MAX_NACK_MESSAGE_BYTES`]): counted,
    /// recorded for the admin API and as an event, logged within a rate.
    fn nacked(&mut self, t: ResourceType, flight: InFlight, message: String) {
        self.metrics.nack(t, P::MODE.name());
        let who = if self.is_envoy { "Envoy" } else { "client" };
        crate::events::record(
            crate::events::NewEvent::new(
                crate::events::Kind::Nack,
                format!(
                    "{who} {} rejected {t} {}: {message}",
                    self.node_id, flight.sent_version
                ),
            )
            .node(self.node_id.clone()),
        );
        if let Some(suppressed) = NACK_LOG.allow() {
            warn!(r#type = %t, version = %flight.sent_version, nonce = %flight.nonce,
                error = %message, suppressed,
                "{who} rejected config (NACK); not re-sent until the config changes");
        }
        self.entry.nacked(
            t,
            flight.sent_version,
            message,
            flight.sent.iter().map(|r| r.name.as_str()),
        );
    }

    /// Records a response the core planned; returns its frames.
    fn sent(&mut self, response: Response) -> Frames {
        debug!(r#type = %response.t, version = %response.sent_version, nonce = %response.nonce,
            resources = response.resources, removed = response.removed, "sending");
        self.metrics.response_sent(response.t, P::MODE.name());
        self.entry.sent(response.t, &response.sent_version);
        response.frames
    }

    /// Tells the node registry when the core's judgement of "in sync" changed.
    fn publish_sync(&mut self) {
        let in_sync = self.core.in_sync();
        if in_sync != self.in_sync {
            self.in_sync = in_sync;
            self.entry.update(|i| i.in_sync = in_sync);
        }
    }
}

/// The admin interface a node's metadata announces (`flotilla.admin_address`, written by
/// `flotilla bootstrap`), as the addresses registrations may never take.
fn announced_admin(
    node: &envoy_types::pb::envoy::config::core::v3::Node,
    peer: Option<&XdsPeer>,
) -> Vec<std::net::SocketAddr> {
    use envoy_types::pb::google::protobuf::value::Kind;
    let announced = node
        .metadata
        .as_ref()
        .and_then(|m| {
            m.fields
                .get(crate::runtime::admission::ADMIN_ADDRESS_METADATA)
        })
        .and_then(|v| match &v.kind {
            Some(Kind::StringValue(s)) => Some(s.as_str()),
            _ => None,
        });
    match announced {
        Some(a) => crate::runtime::admission::admin_addresses(
            a,
            peer.and_then(XdsPeer::remote_addr).map(|p| p.ip()),
        ),
        None => Vec::new(),
    }
}
