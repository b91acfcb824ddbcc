//! The registrations themselves: leases by endpoint, with what every change needs kept at
//! hand so that none of them costs more as the registry grows (the first version scanned
//! every lease on each registration: 10,000 took 52 s).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::config::model::Endpoint;
use crate::overlay::EndpointKey;

#[derive(Debug, Clone)]
pub(super) struct Lease {
    pub(super) weight: u32,
    pub(super) ttl: Duration,
    pub(super) expires: Instant,
    pub(super) registered: SystemTime,
    pub(super) renewals: u64,
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
    /// The same leases in the order they run out.
    by_expiry: BTreeSet<(Instant, EndpointKey)>,
    per_cluster: HashMap<String, usize>,
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

    pub(super) fn iter(&self) -> impl Iterator<Item = (&EndpointKey, &Lease)> {
        self.by_key.iter()
    }

    /// Registers `key` or renews its lease until `now + ttl`.
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
            },
        );
        self.by_expiry.insert((expires, key.clone()));
        *self.per_cluster.entry(key.cluster.clone()).or_default() += 1;
        Registered::New
    }

    pub(super) fn remove(&mut self, key: &EndpointKey) -> bool {
        let Some(lease) = self.by_key.remove(key) else {
            return false;
        };
        self.by_expiry.remove(&(lease.expires, key.clone()));
        if let Some(n) = self.per_cluster.get_mut(&key.cluster) {
            *n -= 1;
            if *n == 0 {
                self.per_cluster.remove(&key.cluster);
            }
        }
        true
    }

    /// When the next lease runs out.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.by_expiry.first().map(|(at, _)| *at)
    }

    /// Removes and returns the leases run out by `now`.
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
            let endpoint = Endpoint::registered(key.address, lease.weight);
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

    proptest! {
        /// Whatever the operations, the indexes agree with the leases.
        #[test]
        fn indexes_follow_the_leases(ops in prop::collection::vec((0u8..3, 0u8..2, 0u16..6, 1u64..5), 0..60)) {
            let start = Instant::now();
            let mut l = Leases::default();
            let mut now = start;
            for (op, cluster, port, secs) in ops {
                let k = key(if cluster == 0 { "a" } else { "b" }, port);
                match op {
                    0 => { l.register(&k, 1, Duration::from_secs(secs), now); }
                    1 => { l.remove(&k); }
                    _ => { now += Duration::from_secs(secs); l.expire(now); }
                }
                for c in ["a", "b"] {
                    prop_assert_eq!(l.count(c), l.iter().filter(|(k, _)| k.cluster == c).count());
                }
                prop_assert_eq!(l.by_expiry.len(), l.by_key.len());
                prop_assert!(l.by_key.iter().all(|(k, v)| l.by_expiry.contains(&(v.expires, k.clone()))));
                prop_assert!(l.next_expiry().is_none_or(|at| at > now));
            }
        }
    }
}
