//! What a store holds and how it changes: the values every implementation lists and streams.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Persistent;
use crate::health::ownership::HealthFact;
use crate::overlay::EndpointKey;

/// A registered endpoint as the store holds it (JSON in etcd; a heartbeat registration of an
/// older flotilla, `{"weight":…,"ttl_ms":…}`, reads the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub weight: u32,
    /// The heartbeat lease's TTL; 0 for a stream registration.
    #[serde(default)]
    pub ttl_ms: u64,
    /// The registration stream holding it, if it is a stream registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamOwner>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Asked to leave: DRAINING on every replica's Envoys until its stream ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaving: bool,
    /// The mesh sidecar (its node id) this stream registration is the instance of: when its
    /// stream ends it drains for a grace period, and the same sidecar reconnecting within it
    /// (through any replica) takes it over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

impl Registration {
    /// A heartbeat registration.
    pub fn leased(weight: u32, ttl: Duration) -> Registration {
        Registration {
            weight,
            ttl_ms: ttl.as_millis() as u64,
            stream: None,
            zone: None,
            metadata: BTreeMap::new(),
            leaving: false,
            instance: None,
        }
    }

    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }
}

/// The replica and stream a stream registration lives with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOwner {
    pub replica: String,
    pub session: u64,
}

/// What one replica's Envoys say about a leaving endpoint: they hold it DRAINING, with
/// `in_flight` requests still running (as their load reports say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub in_flight: u64,
}

/// One change to what the store holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Drain(EndpointKey, bool),
    Weight(EndpointKey, Option<u32>),
    Registration(EndpointKey, Option<Registration>),
    /// A replica joined (`true`) or its membership ended.
    Member(String, bool),
    Health(EndpointKey, Option<HealthFact>),
    /// Replica `.1`'s acknowledgement of leaving endpoint `.0`.
    Ack(EndpointKey, String, Option<Ack>),
}

/// Everything a store holds at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    pub persistent: Persistent,
    pub registrations: BTreeMap<EndpointKey, Registration>,
    pub members: BTreeSet<String>,
    pub health: BTreeMap<EndpointKey, HealthFact>,
    pub acks: BTreeMap<(EndpointKey, String), Ack>,
}

impl Listing {
    /// Applies one change (what a follower does between listings); false if it changed
    /// nothing.
    pub fn apply(&mut self, change: &Change) -> bool {
        match change.clone() {
            Change::Drain(k, true) => self.persistent.drains.insert(k),
            Change::Drain(k, false) => self.persistent.drains.remove(&k),
            Change::Weight(k, Some(w)) => self.persistent.weights.insert(k, w) != Some(w),
            Change::Weight(k, None) => self.persistent.weights.remove(&k).is_some(),
            Change::Registration(k, Some(r)) => {
                self.registrations.insert(k, r.clone()).as_ref() != Some(&r)
            }
            Change::Registration(k, None) => self.registrations.remove(&k).is_some(),
            Change::Member(id, true) => self.members.insert(id),
            Change::Member(id, false) => self.members.remove(&id),
            Change::Health(k, Some(f)) => self.health.insert(k, f) != Some(f),
            Change::Health(k, None) => self.health.remove(&k).is_some(),
            Change::Ack(k, r, Some(a)) => self.acks.insert((k, r), a) != Some(a),
            Change::Ack(k, r, None) => self.acks.remove(&(k, r)).is_some(),
        }
    }

    /// The changes that turn `self` into `next` (a diff of persistent state, for saves).
    pub fn persistent_changes(prev: &Persistent, next: &Persistent) -> Vec<Change> {
        let mut out = Vec::new();
        for k in next.drains.difference(&prev.drains) {
            out.push(Change::Drain(k.clone(), true));
        }
        for k in prev.drains.difference(&next.drains) {
            out.push(Change::Drain(k.clone(), false));
        }
        for (k, w) in &next.weights {
            if prev.weights.get(k) != Some(w) {
                out.push(Change::Weight(k.clone(), Some(*w)));
            }
        }
        for k in prev.weights.keys() {
            if !next.weights.contains_key(k) {
                out.push(Change::Weight(k.clone(), None));
            }
        }
        out
    }
}
