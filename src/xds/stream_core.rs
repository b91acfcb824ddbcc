//! One stream's protocol, with no I/O: requests and snapshot changes in, responses (frames)
//! out. The server's stream loop (`stream`), the spec tests, the model-based property test and
//! the fuzz target all drive this one type, so every rule of the protocol (which type a
//! request names, ACK/NACK, subscriptions, make-before-break, the re-send of endpoints behind
//! a cluster update, whether the client is in sync) is tested without a network.
//!
//! Like go-control-plane's `stream/v3` subscription state, it only says what to do; the
//! driver does the I/O, the logging and the bookkeeping others read (metrics, node registry,
//! events), from what [`Core::request`] and [`Core::next`] return.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use tonic::Status;

use super::delta::Delta;
use super::ordering;
use super::protocol::{self, Mode, Plan, Protocol, Request};
use super::sorted;
use super::sotw::Sotw;
use super::subscription::{ClientState, Reply};
use super::wire::Frames;
use super::withheld;
use crate::cache::{ResourceType, Snapshot};

/// Longest NACK message (Envoy's `error_detail.message`) kept: one can be megabytes, and it
/// is stored per stream, shown by the admin API and logged.
pub(crate) const MAX_NACK_MESSAGE_BYTES: usize = 4096;

/// Which service a stream arrived on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kind {
    /// Aggregated: every type on one stream, ordered.
    pub(crate) ads: bool,
    /// The one type a per-type service serves (`None` with `ads`, or in tests, every type
    /// unordered).
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

/// What one request did.
#[derive(Debug)]
pub(crate) struct Handled {
    pub(crate) t: ResourceType,
    /// The ACK or NACK it carried, if it named the response in flight.
    pub(crate) reply: Reply,
    /// Listeners for the other kind of client it asked for, first time each: they are
    /// answered as not existing, and the driver tells the operator why.
    pub(crate) withheld: Vec<String>,
}

/// A response to send, and what the driver records of it.
pub(crate) struct Response {
    pub(crate) t: ResourceType,
    pub(crate) frames: Frames,
    pub(crate) nonce: String,
    /// The version on the wire (SotW `version_info`, delta `system_version_info`).
    pub(crate) sent_version: String,
    pub(crate) resources: usize,
    pub(crate) removed: usize,
}

/// One stream's protocol state.
pub(crate) struct Core {
    mode: Mode,
    kind: Kind,
    pub(crate) client: ClientState,
    snapshot: Arc<Snapshot>,
    /// When the stream opened: push latency starts no earlier.
    opened: Instant,
    /// Per type: the inputs with which planning last found nothing to send.
    settled: [Option<Settled>; ResourceType::COUNT],
    /// Something may need sending.
    dirty: bool,
    in_sync: bool,
    /// Listeners of the other kind this client asked for and was told about (once each).
    told_withheld: BTreeSet<String>,
    nonce: u64,
}

impl Core {
    pub(crate) fn new(mode: Mode, kind: Kind, snapshot: Arc<Snapshot>, opened: Instant) -> Core {
        Core {
            mode,
            kind,
            client: ClientState::default(),
            snapshot,
            opened,
            settled: Default::default(),
            dirty: true,
            in_sync: false,
            told_withheld: BTreeSet::new(),
            nonce: 0,
        }
    }

    /// Something may be ready to send: the driver calls [`Core::next`] when it has room.
    pub(crate) fn dirty(&self) -> bool {
        self.dirty
    }

    /// Nothing in flight, and the client holds exactly what the snapshot has for what it
    /// subscribed to (judged whenever [`Core::next`] finds nothing to send).
    pub(crate) fn in_sync(&self) -> bool {
        self.in_sync
    }

    /// The nonce of the last response sent ("" before the first).
    #[cfg(test)]
    pub(crate) fn last_nonce(&self) -> String {
        if self.nonce == 0 {
            String::new()
        } else {
            self.nonce.to_string()
        }
    }

    /// The snapshot the stream serves changed.
    pub(crate) fn snapshot_changed(&mut self, snapshot: Arc<Snapshot>) {
        self.snapshot = snapshot;
        self.dirty = true;
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
                "unknown type_url {:?}: flotilla serves {}",
                crate::events::truncate(type_url.to_string(), 256),
                ResourceType::ALL.map(ResourceType::type_url).join(", ")
            ))),
        }
    }

    /// Applies a request: its ACK or NACK, then its subscription. An error ends the stream.
    pub(crate) fn request(&mut self, req: Request) -> Result<Handled, Status> {
        let t = self.resource_type(&req.type_url)?;
        let error = req
            .error
            .map(|m| crate::events::truncate(m, MAX_NACK_MESSAGE_BYTES));
        let reply = self.client.get_mut(t).reply(&req.nonce, error);
        protocol::subscribe(t, self.client.get_mut(t), &req.subscription, &self.snapshot);
        let mut withheld = Vec::new();
        if t == ResourceType::Listener && !self.snapshot.withheld_listeners.is_empty() {
            withheld = withheld::newly_asked(
                &req.subscription,
                &self.snapshot.withheld_listeners,
                &mut self.told_withheld,
            );
        }
        self.dirty = true;
        Ok(Handled { t, reply, withheld })
    }

    /// The next response, recorded as in flight; `None` when nothing is to be sent until a
    /// request or a snapshot change (and then `in_sync` is judged).
    pub(crate) fn next(&mut self) -> Option<Response> {
        for t in ResourceType::ALL {
            if let Some(response) = self.respond(t) {
                return Some(response);
            }
        }
        self.dirty = false;
        self.update_sync();
        None
    }

    /// The next response for type `t` alone, if any.
    pub(crate) fn respond(&mut self, t: ResourceType) -> Option<Response> {
        let plan = self.plan(t)?;
        Some(self.send(plan))
    }

    /// The response in flight for `t`.
    #[cfg(test)]
    pub(crate) fn in_flight(&self, t: ResourceType) -> Option<&super::subscription::InFlight> {
        self.client.get(t).in_flight.as_deref()
    }

    fn plan(&mut self, t: ResourceType) -> Option<Plan> {
        if self.snapshot.version.is_empty() {
            return None;
        }
        // Nothing can be sent for a type that was never requested or has a response in
        // flight (`protocol::next` says so too): skip building its view, which costs as much
        // as the type has resources.
        let state = self.client.get(t);
        if !self.serves(t) || !state.requested || state.in_flight.is_some() {
            return None;
        }
        // Planning is a function of the snapshot and the client state it reads: when neither
        // changed since it last found nothing to send, it still finds nothing.
        let inputs = Settled::of(&self.snapshot, &self.client, t, self.kind.ads);
        if self.settled[t.index()].as_ref() == Some(&inputs) {
            return None;
        }
        let plan = protocol::next(
            self.mode,
            t,
            &self.snapshot,
            &mut self.client,
            self.kind.ads,
        );
        if plan.is_none() {
            self.settled[t.index()] = Some(inputs);
        }
        plan
    }

    fn send(&mut self, plan: Plan) -> Response {
        if plan.t == ResourceType::Cluster && self.kind.ads {
            self.resend_endpoints_of_updated_clusters(&plan);
        }
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        let (frames, sent_version) = match self.mode {
            Mode::Sotw => (
                Sotw::response(&plan, &nonce, &self.snapshot),
                Sotw::wire_version(&plan, &self.snapshot).to_string(),
            ),
            Mode::Delta => (
                Delta::response(&plan, &nonce, &self.snapshot),
                Delta::wire_version(&plan, &self.snapshot).to_string(),
            ),
        };
        let since = self
            .snapshot
            .created
            .map_or(self.opened, |c| c.max(self.opened));
        let response = Response {
            t: plan.t,
            frames,
            nonce: nonce.clone(),
            sent_version: sent_version.clone(),
            resources: plan.resources.len(),
            removed: plan.removed.len(),
        };
        self.client
            .get_mut(plan.t)
            .record_sent(plan, nonce, sent_version, since);
        self.in_sync = false;
        response
    }

    /// Envoy re-creates a cluster whose definition changed and warms it again, holding the
    /// ACK of the cluster response until the new cluster has its endpoints. On ADS, where
    /// flotilla sees both types, they are sent again right behind the update: waiting for the
    /// ACK first would wait forever.
    fn resend_endpoints_of_updated_clusters(&mut self, plan: &Plan) {
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
        if updated.is_empty() {
            return;
        }
        let endpoints = self.client.get_mut(ResourceType::Endpoint);
        for name in updated {
            endpoints.known.remove(&name);
        }
    }

    /// In sync: nothing in flight, and the client holds exactly what the snapshot has for
    /// what it subscribed to. An Envoy that refused the config (NACK), or whose listeners wait
    /// for clusters to warm, is not.
    fn update_sync(&mut self) {
        let mut in_sync = true;
        for t in ResourceType::ALL {
            if !self.serves(t) {
                continue;
            }
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
            if !in_sync {
                continue; // one type out of sync is enough; no need to walk the others
            }
            // Holding exactly the previous set (a change not taken yet, or not wanted: the
            // endpoints of a cluster not asked for yet), the changes alone tell.
            if let Some(c) = self.snapshot.changes(t).filter(|c| state.known.is(&c.from)) {
                let wants_a_change = c.changed.iter().any(|r| state.subscribed(&r.name));
                let holds_extra = t.is_wildcard() && !c.removed.is_empty();
                in_sync &= !(wants_a_change || holds_extra);
                continue;
            }
            // The set, the subscription and what is held are all sorted by name: walked
            // side by side rather than looked up name by name.
            let state = &*state;
            let mut held = sorted::finder(
                wanted.len(),
                state.known.len_hint(),
                state.known.iter(),
                |n| state.known.get(n),
            );
            let mut subscribed = sorted::finder(
                wanted.len(),
                state.names.len(),
                state.names.iter().map(|n| (n.as_str(), ())),
                |n| state.names.get(n).map(|_| ()),
            );
            let holds_all = wanted
                .iter()
                .filter(|(name, _)| state.wildcard || subscribed(name).is_some())
                .all(|(name, r)| held(name).is_some_and(|k| k.version == r.version));
            let holds_extra = t.is_wildcard() && {
                let mut in_set = sorted::finder(
                    state.known.len_hint(),
                    wanted.len(),
                    wanted.keys().map(|k| (k.as_str(), ())),
                    |n| wanted.get(n).map(|_| ()),
                );
                state.known.iter().any(|(n, _)| in_set(n).is_none())
            };
            in_sync &= state.in_flight.is_none() && holds_all && !holds_extra;
        }
        self.in_sync = in_sync;
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
