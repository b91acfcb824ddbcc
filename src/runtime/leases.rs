//! The registrations themselves: leases by endpoint, with what every change needs kept at
//! hand so that none of them costs more as the registry grows (the first version scanned
//! every lease on each registration: 10,000 took 52 s).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::config::model::Endpoint;
use crate::overlay::EndpointKey;
use crate::store::StreamOwner;

#[derive(Debug, Clone)]
pub(super) struct Lease {
    pub(super) weight: u32,
    pub(super) ttl: Duration,
    pub(super) expires: Instant,
    pub(super) registered: SystemTime,
    pub(super) renewals: u64,
    /// The registration stream the endpoint lives with; `None` for a TTL lease, the only
    /// kind that expires.
    pub(super) session: Option<StreamOwner>,
    pub(super) zone: Option<String>,
    pub(super) metadata: BTreeMap<String, String>,
    /// Asked to leave: DRAINING in EDS until its stream closes.
    pub(super) leaving: bool,
    /// The mesh sidecar (node id) a stream registration is the instance of.
    pub(super) instance: Option<String>,
}

/// What a stream registers for one endpoint.
#[derive(Debug, Clone, Default)]
pub(super) struct Binding {
    pub(super) weight: u32,
    pub(super) zone: Option<String>,
    pub(super) metadata: BTreeMap<String, String>,
    pub(super) instance: Option<String>,
}

/// What a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Registered {
    New,
    /// An existing lease renewed; `changed` when its weight is different.
    Renewed {
        changed: bool,
    },
}

#[derive(Debug, Default)]
pub(super) struct Leases {
    by_key: BTreeMap<EndpointKey, Lease>,
    /// The TTL leases in the order they run out (stream registrations do not expire).
    by_expiry: BTreeSet<(Instant, EndpointKey)>,
    per_cluster: HashMap<String, usize>,
    /// The endpoints each registration stream holds, so that a stream's end or a per-stream
    /// limit costs as much as that stream has endpoints.
    by_session: HashMap<StreamOwner, BTreeSet<EndpointKey>>,
    /// Stream registrations asked to leave.
    leaving: BTreeSet<EndpointKey>,
}

impl Leases {
    pub(super) fn get(&self, key: &EndpointKey) -> Option<&Lease> {
        self.by_key.get(key)
    }

    pub(super) fn contains(&self, key: &EndpointKey) -> bool {
        self.by_key.contains_key(key)
    }

    pub(super) fn count(&self, cluster: &str) -> usize {
        self.per_cluster.get(cluster).copied().unwrap_or(0)
    }

    /// The endpoints registration stream `id` holds.
    pub(super) fn of_session(&self, id: &StreamOwner) -> Option<&BTreeSet<EndpointKey>> {
        self.by_session.get(id)
    }

    pub(super) fn leaving(&self) -> &BTreeSet<EndpointKey> {
        &self.leaving
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&EndpointKey, &Lease)> {
        self.by_key.iter()
    }

    /// Registers `key` or renews its lease until `now + ttl`. The caller checks that no
    /// registration stream holds `key`.
    pub(super) fn register(
        &mut self,
        key: &EndpointKey,
        weight: u32,
        ttl: Duration,
        now: Instant,
    ) -> Registered {
        let expires = now + ttl;
        if let Some(lease) = self.by_key.get_mut(key) {
            self.by_expiry.remove(&(lease.expires, key.clone()));
            self.by_expiry.insert((expires, key.clone()));
            let changed = lease.weight != weight;
            lease.weight = weight;
            lease.ttl = ttl;
            lease.expires = expires;
            lease.renewals += 1;
            return Registered::Renewed { changed };
        }
        self.by_key.insert(
            key.clone(),
            Lease {
                weight,
                ttl,
                expires,
                registered: SystemTime::now(),
                renewals: 0,
                session: None,
                zone: None,
                metadata: BTreeMap::new(),
                leaving: false,
                instance: None,
            },
        );
        self.by_expiry.insert((expires, key.clone()));
        *self.per_cluster.entry(key.cluster.clone()).or_default() += 1;
        Registered::New
    }

    /// Registers `key` for stream `session`, or updates what that stream registered for it.
    /// The caller checks that no TTL lease or other stream holds `key`.
    pub(super) fn bind(
        &mut self,
        key: &EndpointKey,
        session: &StreamOwner,
        binding: Binding,
        now: Instant,
    ) -> Registered {
        if let Some(lease) = self.by_key.get_mut(key) {
            debug_assert_eq!(lease.session.as_ref(), Some(session));
            let changed = lease.weight != binding.weight || lease.zone != binding.zone;
            lease.weight = binding.weight;
            lease.zone = binding.zone;
            lease.metadata = binding.metadata;
            lease.instance = binding.instance;
            lease.renewals += 1;
            return Registered::Renewed { changed };
        }
        self.by_key.insert(
            key.clone(),
            Lease {
                weight: binding.weight,
                ttl: Duration::ZERO,
                expires: now,
                registered: SystemTime::now(),
                renewals: 0,
                session: Some(session.clone()),
                zone: binding.zone,
                metadata: binding.metadata,
                leaving: false,
                instance: binding.instance,
            },
        );
        self.by_session
            .entry(session.clone())
            .or_default()
            .insert(key.clone());
        *self.per_cluster.entry(key.cluster.clone()).or_default() += 1;
        Registered::New
    }

    /// Marks a stream registration DRAINING; false when it was already, or is no stream's.
    pub(super) fn set_leaving(&mut self, key: &EndpointKey) -> bool {
        match self.by_key.get_mut(key) {
            Some(lease) if lease.session.is_some() && !lease.leaving => {
                lease.leaving = true;
                self.leaving.insert(key.clone());
                true
            }
            _ => false,
        }
    }

    /// Removes every endpoint of stream `session` and returns them.
    pub(super) fn end_session(&mut self, session: &StreamOwner) -> Vec<EndpointKey> {
        let gone: Vec<EndpointKey> = self
            .by_session
            .remove(session)
            .map(|keys| keys.into_iter().collect())
            .unwrap_or_default();
        for key in &gone {
            self.remove(key);
        }
        gone
    }

    pub(super) fn remove(&mut self, key: &EndpointKey) -> bool {
        let Some(lease) = self.by_key.remove(key) else {
            return false;
        };
        match lease.session {
            None => {
                self.by_expiry.remove(&(lease.expires, key.clone()));
            }
            Some(id) => {
                if let Some(keys) = self.by_session.get_mut(&id) {
                    keys.remove(key);
                    if keys.is_empty() {
                        self.by_session.remove(&id);
                    }
                }
                self.leaving.remove(key);
            }
        }
        if let Some(n) = self.per_cluster.get_mut(&key.cluster) {
            *n -= 1;
            if *n == 0 {
                self.per_cluster.remove(&key.cluster);
            }
        }
        true
    }

    /// When the next lease runs out (the store expires leases; this checks the index).
    #[cfg(test)]
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.by_expiry.first().map(|(at, _)| *at)
    }

    /// Removes and returns the leases run out by `now`.
    #[cfg(test)]
    pub(super) fn expire(&mut self, now: Instant) -> Vec<EndpointKey> {
        let mut gone = Vec::new();
        while let Some((at, key)) = self.by_expiry.first().cloned() {
            if at > now {
                break;
            }
            self.remove(&key);
            gone.push(key);
        }
        gone
    }

    /// The registered endpoints per cluster, as the overlay holds them.
    pub(super) fn endpoints(&self) -> BTreeMap<String, Vec<Endpoint>> {
        let mut out: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
        for (key, lease) in &self.by_key {
            let endpoint = Endpoint {
                zone: lease.zone.clone(),
                ..Endpoint::registered(key.address, lease.weight)
            };
            // Keys are ordered by cluster: the entry is the last one or a new one.
            match out.last_entry() {
                Some(mut last) if *last.key() == key.cluster => last.get_mut().push(endpoint),
                _ => {
                    out.insert(key.cluster.clone(), vec![endpoint]);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(cluster: &str, port: u16) -> EndpointKey {
        EndpointKey::new(cluster, std::net::SocketAddr::from(([10, 0, 0, 1], port)))
    }

    const S: Duration = Duration::from_secs(1);

    fn s(session: u64) -> StreamOwner {
        StreamOwner {
            replica: "r".into(),
            session,
        }
    }

    #[test]
    fn a_new_endpoint_counts_a_renewal_does_not() {
        let now = Instant::now();
        let mut l = Leases::default();
        assert_eq!(l.register(&key("a", 1), 1, S, now), Registered::New);
        assert_eq!(
            l.register(&key("a", 1), 1, S, now),
            Registered::Renewed { changed: false }
        );
        assert_eq!(
            l.register(&key("a", 1), 2, S, now),
            Registered::Renewed { changed: true }
        );
        assert_eq!(l.count("a"), 1);
        assert_eq!(l.get(&key("a", 1)).unwrap().renewals, 2);
    }

    #[test]
    fn a_renewal_moves_the_expiry() {
        let now = Instant::now();
        let mut l = Leases::default();
        l.register(&key("a", 1), 1, S, now);
        l.register(&key("a", 2), 1, 2 * S, now);
        l.register(&key("a", 1), 1, 3 * S, now);
        assert_eq!(l.next_expiry(), Some(now + 2 * S));
        assert_eq!(l.expire(now + 2 * S), vec![key("a", 2)]);
        assert_eq!(l.expire(now + 2 * S), vec![]);
        assert_eq!(l.expire(now + 3 * S), vec![key("a", 1)]);
        assert_eq!(l.next_expiry(), None);
        assert_eq!(l.count("a"), 0);
    }

    #[test]
    fn removing_forgets_everywhere() {
        let now = Instant::now();
        let mut l = Leases::default();
        l.register(&key("a", 1), 1, S, now);
        assert!(l.remove(&key("a", 1)));
        assert!(!l.remove(&key("a", 1)));
        assert!(!l.contains(&key("a", 1)));
        assert_eq!((l.count("a"), l.next_expiry()), (0, None));
    }

    #[test]
    fn endpoints_are_grouped_by_cluster() {
        let now = Instant::now();
        let mut l = Leases::default();
        for (c, p) in [("b", 1), ("a", 2), ("a", 1)] {
            l.register(&key(c, p), u32::from(p), S, now);
        }
        let e = l.endpoints();
        assert_eq!(e.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(e["a"].iter().map(|e| e.weight).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(e["b"].len(), 1);
    }

    fn binding(weight: u32) -> Binding {
        Binding {
            weight,
            ..Binding::default()
        }
    }

    #[test]
    fn a_stream_registration_counts_but_never_expires() {
        let now = Instant::now();
        let mut l = Leases::default();
        assert_eq!(
            l.bind(&key("a", 1), &s(7), binding(1), now),
            Registered::New
        );
        assert_eq!(
            l.bind(&key("a", 1), &s(7), binding(2), now),
            Registered::Renewed { changed: true }
        );
        assert_eq!(l.count("a"), 1);
        assert_eq!(l.next_expiry(), None);
        assert!(l.expire(now + 100 * S).is_empty());
        assert_eq!(l.of_session(&s(7)).map(BTreeSet::len), Some(1));
    }

    #[test]
    fn a_stream_end_removes_its_endpoints_only() {
        let now = Instant::now();
        let mut l = Leases::default();
        l.bind(&key("a", 1), &s(7), binding(1), now);
        l.bind(&key("a", 2), &s(7), binding(1), now);
        l.bind(&key("a", 3), &s(8), binding(1), now);
        l.register(&key("a", 4), 1, S, now);
        assert!(l.set_leaving(&key("a", 1)));
        assert!(!l.set_leaving(&key("a", 1)), "leaving already");
        assert!(!l.set_leaving(&key("a", 4)), "a TTL lease does not leave");
        assert_eq!(l.end_session(&s(7)), vec![key("a", 1), key("a", 2)]);
        assert!(l.leaving().is_empty());
        assert_eq!((l.count("a"), l.of_session(&s(7))), (2, None));
    }

    proptest! {
        /// Whatever the operations, the indexes agree with the leases.
        #[test]
        fn indexes_follow_the_leases(ops in prop::collection::vec((0u8..6, 0u8..2, 0u16..6, 1u64..5), 0..60)) {
            let start = Instant::now();
            let mut l = Leases::default();
            let mut now = start;
            for (op, cluster, port, secs) in ops {
                let k = key(if cluster == 0 { "a" } else { "b" }, port);
                let held_by = l.get(&k).map(|lease| lease.session.clone());
                match op {
                    // As the runtime does: a key held one way is refused the other way.
                    0 if held_by.as_ref().is_none_or(|h| h.is_none()) => { l.register(&k, 1, Duration::from_secs(secs), now); }
                    3 if held_by.as_ref().is_none_or(|h| *h == Some(s(secs))) => { l.bind(&k, &s(secs), binding(1), now); }
                    4 => { l.end_session(&s(secs)); }
                    5 => { l.set_leaving(&k); }
                    1 => { l.remove(&k); }
                    2 => { now += Duration::from_secs(secs); l.expire(now); }
                    _ => {}
                }
                for c in ["a", "b"] {
                    prop_assert_eq!(l.count(c), l.iter().filter(|(k, _)| k.cluster == c).count());
                }
                let ttl = l.by_key.values().filter(|v| v.session.is_none()).count();
                prop_assert_eq!(l.by_expiry.len(), ttl);
                let bound: usize = l.by_session.values().map(BTreeSet::len).sum();
                prop_assert_eq!(bound, l.by_key.len() - ttl);
                prop_assert!(l.by_session.iter().all(|(id, keys)| !keys.is_empty()
                    && keys.iter().all(|k| l.by_key[k].session.as_ref() == Some(id))));
                prop_assert!(l.leaving.iter().all(|k| l.by_key[k].leaving));
                prop_assert_eq!(l.leaving.len(), l.by_key.values().filter(|v| v.leaving).count());
                prop_assert!(l.by_key.iter().filter(|(_, v)| v.session.is_none()).all(|(k, v)| l.by_expiry.contains(&(v.expires, k.clone()))));
                prop_assert!(l.next_expiry().is_none_or(|at| at > now));
            }
        }
    }
}
