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

use super::metrics::{StreamLabels, XdsMetrics};
use super::nodes::{Nack, NodeRegistry, StreamEntry, StreamInfo};
use super::ordering;
use super::protocol::{self, Mode, Plan, Protocol, Request};
use super::subscription::{ClientState, InFlight, Reply};
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
    /// Where mesh sidecars join their service while their stream lives (`sidecar`).
    pub(crate) runtime: Arc<crate::runtime::Runtime>,
}

/// Which service a stream arrived on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kind {
    /// Aggregated: every type on one stream, ordered.
    pub(crate) ads: bool,
    /// The one type a per-type service serves.
    pub(crate) only: Option<ResourceType>,
}

impl Kind {
    pub(crate) const ADS: Kind = Kind {
        ads: true,
        only: None,
    };

    pub(crate) fn single(t: ResourceType) -> Kind {
        Kind {
            ads: false,
            only: Some(t),
        }
    }
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
    let _instance_session = match instance {
        Some(address) => Some(super::sidecar::join(
            &shared.runtime,
            &node.cluster,
            address,
            peer_ip,
        )?),
        None => None,
    };
    let mut snapshots =
        shared
            .cache
            .watch_instance(&node.cluster, instance, transport, client_kind);
    let snapshot = snapshots.borrow_and_update().clone();
    let entry = shared
        .nodes
        .register(StreamInfo {
            identity,
            node_id: node.id.clone(),
            fleet: node.cluster.clone(),
            envoy_version: envoy_version(&node),
            mode: P::MODE,
            ads: kind.ads,
            connected_at: std::time::SystemTime::now(),
            snapshot_version: snapshot.version.clone(),
            in_sync: false,
            types: Default::default(),
        })
        .map_err(|holder| {
            shared
                .authorizer
                .node_in_use("xDS", &node.cluster, &node.id, &holder, peer.as_ref())
        })?;
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
        StreamLabels {
            r#type: kind.only.map_or("ads", ResourceType::short_name),
            mode: P::MODE.name(),
            fleet: node.cluster.clone(),
        },
        &served,
    );
    let stream = StreamLoop::<P> {
        node_id: node.id.clone(),
        kind,
        entry,
        metrics: shared.metrics.clone(),
        opened: std::time::Instant::now(),
        client: ClientState::default(),
        snapshot,
        settled: Default::default(),
        dirty: true,
        in_sync: false,
        is_envoy: client_kind == ClientKind::Envoy,
        client_kind,
        told_withheld: Default::default(),
        nonce: 0,
        _protocol: std::marker::PhantomData,
    };
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

struct StreamLoop<P: Protocol> {
    node_id: String,
    kind: Kind,
    entry: StreamEntry,
    metrics: XdsMetrics,
    opened: std::time::Instant,
    client: ClientState,
    snapshot: Arc<Snapshot>,
    /// Per type: the inputs with which planning last found nothing to send.
    settled: [Option<Settled>; ResourceType::COUNT],
    /// Something may need sending.
    dirty: bool,
    in_sync: bool,
    /// The node says it is an Envoy (`user_agent_name`): logs and events name the client.
    is_envoy: bool,
    client_kind: ClientKind,
    /// Listeners of the other kind this client asked for and was told about (once each).
    told_withheld: std::collections::BTreeSet<String>,
    nonce: u64,
    _protocol: std::marker::PhantomData<P>,
}

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
                    self.snapshot = snapshots.borrow_and_update().clone();
                    self.entry.update(|i| i.snapshot_version.clone_from(&self.snapshot.version));
                    self.dirty = true;
                }
                permit = tx.reserve(), if self.dirty => {
                    let Ok(permit) = permit else {
                        return Ok(());
                    };
                    match self.next_plan() {
                        Some(plan) => {
                            let response = self.send(plan);
                            permit.send(Ok(response));
                        }
                        None => {
                            self.dirty = false;
                            self.update_sync();
                        }
                    }
                }
            }
        }
    }

    fn serves(&self, t: ResourceType) -> bool {
        self.kind.only.is_none_or(|only| only == t)
    }

    fn resource_type(&self, type_url: &str) -> Result<ResourceType, Status> {
        if type_url.is_empty() {
            return match self.kind.only {
                Some(t) => Ok(t),
                None => Err(Status::invalid_argument(
                    "type_url is required on an ADS stream",
                )),
            };
        }
        match ResourceType::from_type_url(type_url) {
            Some(t) if self.serves(t) => Ok(t),
            Some(t) => Err(Status::invalid_argument(format!(
                "type_url {type_url} ({t}) is not served by this service; use ADS or the {t} service"
            ))),
            None => Err(Status::invalid_argument(format!(
                "unknown type_url {type_url:?}: flotilla serves {}",
                ResourceType::ALL.map(ResourceType::type_url).join(", ")
            ))),
        }
    }

    fn handle(&mut self, req: Request) -> Result<(), Status> {
        let t = match self.resource_type(&req.type_url) {
            Ok(t) => t,
            Err(status) => {
                warn!(type_url = %req.type_url, error = %status.message(), "request refused; stream closed");
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
        let state = self.client.get_mut(t);
        match state.reply(&req.nonce, req.error.clone()) {
            Reply::Ack(flight) => {
                debug!(r#type = %t, version = %flight.sent_version, nonce = %flight.nonce,
                    elapsed_ms = flight.at.elapsed().as_millis() as u64, "ACK");
                self.metrics.ack(t, P::MODE.name(), flight.since.elapsed());
                self.entry.update_type(t, |s| {
                    s.acks += 1;
                    s.acked_version = Some(flight.sent_version);
                    s.awaiting_ack_since = None;
                });
            }
            Reply::Nack(flight, message) => self.nacked(t, flight, message),
            Reply::None => {}
        }
        protocol::subscribe(t, self.client.get_mut(t), &req.subscription, &self.snapshot);
        if t == ResourceType::Listener && !self.snapshot.withheld_listeners.is_empty() {
            self.asked_for_withheld(&req.subscription);
        }
        self.dirty = true;
        Ok(())
    }

    /// Logs and records an event for each listener of the other kind of client this request
    /// names for the first time; the protocol answers it as not existing.
    fn asked_for_withheld(&mut self, sub: &protocol::Subscription) {
        let withheld = self.snapshot.withheld_listeners.clone();
        for listener in withheld::newly_asked(sub, &withheld, &mut self.told_withheld) {
            let message = withheld::message(self.client_kind, &self.node_id, &listener);
            warn!(listener = %listener, "{message}");
            crate::events::record(
                crate::events::NewEvent::new(crate::events::Kind::Node, message)
                    .node(self.node_id.clone()),
            );
        }
    }

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
        if self.is_envoy {
            warn!(r#type = %t, version = %flight.sent_version, nonce = %flight.nonce,
                error = %message, "Envoy rejected config (NACK); not re-sent until the config changes");
        } else {
            warn!(r#type = %t, version = %flight.sent_version, nonce = %flight.nonce,
                error = %message, "client rejected config (NACK); not re-sent until the config changes");
        }
        self.entry.update_type(t, |s| {
            s.nacks += 1;
            s.awaiting_ack_since = None;
            s.last_nack = Some(Nack {
                version: flight.sent_version,
                message,
                at: std::time::SystemTime::now(),
            });
        });
    }

    fn next_plan(&mut self) -> Option<Plan> {
        if self.snapshot.version.is_empty() {
            return None;
        }
        for t in ResourceType::ALL {
            // Nothing can be sent for a type that was never requested or has a response in
            // flight (`protocol::next` says so too): skip building its view, which costs as
            // much as the type has resources.
            let state = self.client.get(t);
            if !self.serves(t) || !state.requested || state.in_flight.is_some() {
                continue;
            }
            // Planning is a function of the snapshot and the client state it reads: when
            // neither changed since it last found nothing to send, it still finds nothing.
            let inputs = Settled::of(&self.snapshot, &self.client, t, self.kind.ads);
            if self.settled[t.index()].as_ref() == Some(&inputs) {
                continue;
            }
            match protocol::next(P::MODE, t, &self.snapshot, &mut self.client, self.kind.ads) {
                Some(plan) => return Some(plan),
                None => self.settled[t.index()] = Some(inputs),
            }
        }
        None
    }

    fn send(&mut self, plan: Plan) -> Frames {
        // Envoy re-creates a cluster whose definition changed and warms it again, holding the
        // ACK of this response until the new cluster has its endpoints. On ADS, where flotilla
        // sees both types, it sends them again right behind the update: waiting for the ACK
        // first would wait forever.
        if plan.t == ResourceType::Cluster && self.kind.ads {
            let clusters = &self.client.get(ResourceType::Cluster).known;
            let updated: Vec<String> = plan
                .resources
                .iter()
                .filter(|r| {
                    clusters
                        .get(&r.name)
                        .is_some_and(|k| k.version != r.version)
                })
                .map(|r| r.name.clone())
                .collect();
            let endpoints = self.client.get_mut(ResourceType::Endpoint);
            for name in updated {
                endpoints.known.remove(&name);
            }
        }
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        let response = P::response(&plan, &nonce, &self.snapshot);
        debug!(r#type = %plan.t, version = %plan.version_info, nonce = %nonce,
            resources = plan.resources.len(), removed = plan.removed.len(), "sending");
        self.metrics.response_sent(plan.t, P::MODE.name());
        let sent_version = P::wire_version(&plan, &self.snapshot).to_string();
        self.entry.update_type(plan.t, |s| {
            s.responses += 1;
            s.sent_version = Some(sent_version.clone());
            s.awaiting_ack_since = Some(std::time::SystemTime::now());
        });
        let since = self
            .snapshot
            .created
            .map_or(self.opened, |c| c.max(self.opened));
        let t = plan.t;
        self.client
            .get_mut(t)
            .record_sent(plan, nonce, sent_version, since);
        if self.in_sync {
            self.in_sync = false;
            self.entry.update(|i| i.in_sync = false);
        }
        response
    }

    /// In sync: nothing in flight, and the client holds exactly what the snapshot has for
    /// what it subscribed to. An Envoy that refused the config (NACK), or whose listeners wait
    /// for clusters to warm, is not.
    fn update_sync(&mut self) {
        let mut in_sync = true;
        let served: Vec<ResourceType> = ResourceType::ALL
            .into_iter()
            .filter(|t| self.serves(*t))
            .collect();
        for t in served {
            let set = self.snapshot.set(t).clone();
            let wanted = &set.resources;
            let state = self.client.get_mut_untracked(t);
            // Rejections of resources the config no longer has are history.
            if !state.rejected.is_empty() {
                state.rejected.retain(|name, _| wanted.contains_key(name));
            }
            if !state.rejected_removals.is_empty() {
                state
                    .rejected_removals
                    .retain(|name| !wanted.contains_key(name));
            }
            if !state.requested {
                continue;
            }
            // Out of sync while a response is in flight; the walk below is for the rare
            // client that holds the set's contents in another shape.
            if state.known.is(&set) || state.in_flight.is_some() {
                in_sync &= state.in_flight.is_none();
                continue;
            }
            let holds_all = wanted
                .iter()
                .filter(|(name, _)| state.subscribed(name))
                .all(|(name, r)| {
                    state
                        .known
                        .get(name)
                        .is_some_and(|k| k.version == r.version)
                });
            let holds_extra =
                t.is_wildcard() && state.known.iter().any(|(n, _)| !wanted.contains_key(n));
            in_sync &= state.in_flight.is_none() && holds_all && !holds_extra;
        }
        if in_sync != self.in_sync {
            self.in_sync = in_sync;
            self.entry.update(|i| i.in_sync = in_sync);
        }
    }
}

/// What planning one type read when it last found nothing to send.
struct Settled {
    /// Kept alive, so that a pointer comparison cannot mistake a new snapshot for it.
    snapshot: Arc<Snapshot>,
    generations: [u64; ResourceType::COUNT],
}

impl Settled {
    fn of(snapshot: &Arc<Snapshot>, client: &ClientState, t: ResourceType, ads: bool) -> Settled {
        let mut generations = [0; ResourceType::COUNT];
        for input in ordering::inputs(t, ads) {
            generations[input.index()] = client.generation(*input);
        }
        Settled {
            snapshot: snapshot.clone(),
            generations,
        }
    }
}

impl PartialEq for Settled {
    fn eq(&self, other: &Settled) -> bool {
        Arc::ptr_eq(&self.snapshot, &other.snapshot) && self.generations == other.generations
    }
}
