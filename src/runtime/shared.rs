//! Drains and weight overrides in etcd, shared by every replica: one key per drain
//! (`<prefix>drains/<cluster>/<address>`) and per override (`<prefix>weights/<cluster>/<address>`,
//! the weight as its value). A change is one transaction of the keys that differ; every
//! replica, the writer included, learns it from its watch on the prefix.
//!
//! A leased registration is `<prefix>registrations/<cluster>/<address>` (its weight and TTL as
//! JSON) bound to an etcd lease of the registration's TTL: a heartbeat through any replica
//! renews that lease, and when it runs out etcd deletes the key, which every replica's watch
//! turns into the endpoint leaving.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::etcd::proto::mvccpb::{Event, KeyValue, event::EventType};
use crate::etcd::{Client, EtcdError, Op, StoreUrl, Watch};
use crate::health::ownership::HealthFact;
use crate::overlay::EndpointKey;

use super::store::Persistent;

const DRAINS: &str = "drains/";
const WEIGHTS: &str = "weights/";
const REGISTRATIONS: &str = "registrations/";
const HEALTH: &str = "health/";
const REPLICAS: &str = "replicas/";

/// A leased registration as etcd holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedLease {
    pub weight: u32,
    pub ttl_ms: u64,
}

impl SharedLease {
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }
}

/// What a key other than a drain or override says.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// A leased registration; `None` when it left.
    Registration(EndpointKey, Option<SharedLease>),
    /// A replica announced itself (`true`) or its lease ended.
    Replica(String, bool),
    /// What the owner of an endpoint found.
    /// `None`: deleted (the endpoint lost its health check).
    Health(EndpointKey, Option<HealthFact>),
}

/// Everything under the prefix, read at `revision`.
pub struct Loaded {
    pub persistent: Persistent,
    pub seen: Vec<Seen>,
    pub revision: i64,
}

#[derive(Clone)]
pub struct SharedState {
    client: Client,
    prefix: String,
}

/// One stored fact, as a key names it.
#[derive(Debug, PartialEq, Eq)]
enum Fact {
    Drain(EndpointKey),
    Weight(EndpointKey),
    Registration(EndpointKey),
    Health(EndpointKey),
}

impl SharedState {
    pub fn new(url: &StoreUrl) -> Result<SharedState, EtcdError> {
        Ok(SharedState {
            client: Client::new(url)?,
            prefix: url.prefix.clone(),
        })
    }

    /// Times every write to etcd into `metrics`.
    pub fn with_metrics(mut self, metrics: crate::etcd::StoreMetrics) -> SharedState {
        self.client = self.client.with_metrics(metrics);
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn state_prefix(&self) -> String {
        format!("{}state/", self.prefix)
    }

    /// Everything stored, and the revision it was read at (watch from the next one).
    pub async fn load(&self) -> Result<Loaded, EtcdError> {
        let (kvs, revision) = self.client.get_prefix(&self.prefix).await?;
        let mut persistent = Persistent::default();
        let mut seen = Vec::new();
        for kv in &kvs {
            match self.seen(kv, false) {
                Some(s) => seen.push(s),
                None => apply_put(&mut persistent, &self.state_prefix(), kv),
            }
        }
        Ok(Loaded {
            persistent,
            seen,
            revision,
        })
    }

    /// What `kv` says if it is not a drain or override.
    fn seen(&self, kv: &KeyValue, deleted: bool) -> Option<Seen> {
        let replicas = format!("{}{REPLICAS}", self.prefix);
        if let Some(id) = std::str::from_utf8(&kv.key).ok()?.strip_prefix(&replicas) {
            return Some(Seen::Replica(id.to_string(), !deleted));
        }
        if let Some(Fact::Health(key)) = parse_key(&self.prefix, &kv.key) {
            if deleted {
                return Some(Seen::Health(key, None));
            }
            return HealthFact::decode(&kv.value).map(|f| Seen::Health(key, Some(f)));
        }
        self.registration(kv, deleted)
            .map(|(key, lease)| Seen::Registration(key, lease))
    }

    /// Announces replica `id` under a lease of `ttl`; returns the lease to keep alive.
    pub async fn announce(&self, id: &str, ttl: Duration) -> Result<i64, EtcdError> {
        let lease = self.client.grant(ttl).await?;
        self.client
            .txn(vec![Op::Put {
                key: format!("{}{REPLICAS}{id}", self.prefix).into_bytes(),
                value: Vec::new(),
                lease,
            }])
            .await?;
        Ok(lease)
    }

    /// Publishes what this replica found about the endpoints it owns.
    pub async fn publish_health(
        &self,
        facts: &BTreeMap<EndpointKey, Option<HealthFact>>,
    ) -> Result<(), EtcdError> {
        let ops = facts
            .iter()
            .map(|(k, f)| match f {
                Some(f) => Op::Put {
                    key: key(&self.prefix, HEALTH, k),
                    value: f.encode(),
                    lease: 0,
                },
                None => Op::Delete {
                    key: key(&self.prefix, HEALTH, k),
                },
            })
            .collect();
        self.client.txn(ops).await.map(drop)
    }

    fn registration_key(&self, key: &EndpointKey) -> Vec<u8> {
        self::key(&self.prefix, REGISTRATIONS, key)
    }

    /// The registration change a key-value stands for, if it is a registration.
    fn registration(
        &self,
        kv: &KeyValue,
        deleted: bool,
    ) -> Option<(EndpointKey, Option<SharedLease>)> {
        let Some(Fact::Registration(key)) = parse_key(&self.prefix, &kv.key) else {
            return None;
        };
        if deleted {
            return Some((key, None));
        }
        match serde_json::from_slice::<SharedLease>(&kv.value) {
            Ok(lease) => Some((key, Some(lease))),
            Err(e) => {
                tracing::warn!(key = %String::from_utf8_lossy(&kv.key), error = %e,
                    "ignoring a registration that is not one flotilla wrote");
                None
            }
        }
    }

    /// Registers `key`, or renews its lease: the etcd lease the key holds is kept alive, or a
    /// new one granted if it ran out (or the key is new).
    pub async fn register(&self, key: &EndpointKey, lease: SharedLease) -> Result<(), EtcdError> {
        let k = self.registration_key(key);
        let value = serde_json::to_vec(&lease).expect("plain struct");
        let (kvs, _) = self.client.get_key(&k).await?;
        if let Some(kv) = kvs.first()
            && kv.lease != 0
            && self.client.keep_alive(kv.lease).await?
        {
            if kv.value != value {
                self.client
                    .txn(vec![Op::Put {
                        key: k,
                        value,
                        lease: kv.lease,
                    }])
                    .await?;
            }
            return Ok(());
        }
        let id = self.client.grant(lease.ttl()).await?;
        self.client
            .txn(vec![Op::Put {
                key: k,
                value,
                lease: id,
            }])
            .await
            .map(drop)
    }

    /// Ends a registration everywhere now.
    pub async fn deregister(&self, key: &EndpointKey) -> Result<(), EtcdError> {
        let k = self.registration_key(key);
        let (kvs, _) = self.client.get_key(&k).await?;
        match kvs.first() {
            Some(kv) if kv.lease != 0 => self.client.revoke(kv.lease).await,
            Some(_) => self.client.txn(vec![Op::Delete { key: k }]).await.map(drop),
            None => Ok(()),
        }
    }

    /// Writes what differs between `prev` and `next` in one transaction.
    pub async fn save(&self, prev: &Persistent, next: &Persistent) -> Result<(), EtcdError> {
        let ops = diff(&self.state_prefix(), prev, next);
        if ops.is_empty() {
            return Ok(());
        }
        self.client.txn(ops).await.map(drop)
    }

    pub async fn watch(&self, from_revision: i64) -> Result<Watch, EtcdError> {
        self.client.watch_prefix(&self.prefix, from_revision).await
    }

    /// Applies watched events to `state`; returns what the other keys said.
    pub fn apply(&self, state: &mut Persistent, events: &[Event]) -> Vec<Seen> {
        let prefix = self.state_prefix();
        let mut seen = Vec::new();
        for event in events {
            let Some(kv) = &event.kv else { continue };
            let deleted = event.r#type == EventType::Delete as i32;
            if let Some(s) = self.seen(kv, deleted) {
                seen.push(s);
                continue;
            }
            if deleted {
                match parse_key(&prefix, &kv.key) {
                    Some(Fact::Drain(k)) => {
                        state.drains.remove(&k);
                    }
                    Some(Fact::Weight(k)) => {
                        state.weights.remove(&k);
                    }
                    Some(Fact::Registration(_) | Fact::Health(_)) | None => {}
                }
            } else {
                apply_put(state, &prefix, kv);
            }
        }
        seen
    }
}

fn apply_put(state: &mut Persistent, prefix: &str, kv: &KeyValue) {
    match parse_key(prefix, &kv.key) {
        Some(Fact::Drain(k)) => {
            state.drains.insert(k);
        }
        Some(Fact::Weight(k)) => {
            let weight = std::str::from_utf8(&kv.value)
                .ok()
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|w| (1..=crate::config::MAX_WEIGHT).contains(w));
            match weight {
                Some(w) => {
                    state.weights.insert(k, w);
                }
                None => tracing::warn!(key = %String::from_utf8_lossy(&kv.key),
                    "ignoring a weight override whose value is not a weight"),
            }
        }
        Some(Fact::Registration(_) | Fact::Health(_)) | None => {}
    }
}

fn key(prefix: &str, kind: &str, k: &EndpointKey) -> Vec<u8> {
    format!("{prefix}{kind}{}/{}", k.cluster, k.address).into_bytes()
}

/// The fact a key names; `None` for keys flotilla did not write. Addresses hold no `/`, so
/// the last one separates the cluster (which may) from the address.
fn parse_key(prefix: &str, key: &[u8]) -> Option<Fact> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix(prefix)?;
    let (kind, rest) = rest.split_at(rest.find('/')? + 1);
    let (cluster, address) = rest.rsplit_once('/')?;
    let k = EndpointKey::new(cluster, address.parse().ok()?);
    match kind {
        DRAINS => Some(Fact::Drain(k)),
        WEIGHTS => Some(Fact::Weight(k)),
        REGISTRATIONS => Some(Fact::Registration(k)),
        HEALTH => Some(Fact::Health(k)),
        _ => None,
    }
}

fn diff(prefix: &str, prev: &Persistent, next: &Persistent) -> Vec<Op> {
    let mut ops = Vec::new();
    for k in next.drains.difference(&prev.drains) {
        ops.push(Op::Put {
            key: key(prefix, DRAINS, k),
            value: Vec::new(),
            lease: 0,
        });
    }
    for k in prev.drains.difference(&next.drains) {
        ops.push(Op::Delete {
            key: key(prefix, DRAINS, k),
        });
    }
    for (k, w) in &next.weights {
        if prev.weights.get(k) != Some(w) {
            ops.push(Op::Put {
                key: key(prefix, WEIGHTS, k),
                value: w.to_string().into_bytes(),
                lease: 0,
            });
        }
    }
    for k in prev.weights.keys() {
        if !next.weights.contains_key(k) {
            ops.push(Op::Delete {
                key: key(prefix, WEIGHTS, k),
            });
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(cluster: &str, address: &str) -> EndpointKey {
        EndpointKey::new(cluster, address.parse().unwrap())
    }

    #[test]
    fn keys_round_trip_including_ipv6_and_slashes_in_cluster_names() {
        for (kind, fact) in [
            (DRAINS, Fact::Drain(k("web", "127.0.0.1:80"))),
            (WEIGHTS, Fact::Weight(k("team/api", "[::1]:8080"))),
            (REGISTRATIONS, Fact::Registration(k("web", "10.0.0.1:80"))),
        ] {
            let endpoint = match &fact {
                Fact::Drain(e) | Fact::Weight(e) | Fact::Registration(e) | Fact::Health(e) => e,
            };
            let key = key("/p/state/", kind, endpoint);
            assert_eq!(parse_key("/p/state/", &key), Some(fact));
        }
    }

    #[test]
    fn foreign_keys_are_ignored() {
        for key in [
            "/p/state/other/web/127.0.0.1:80",
            "/p/state/drains/web/not-an-address",
            "/q/state/drains/web/127.0.0.1:80",
            "/p/state/drains",
        ] {
            assert_eq!(parse_key("/p/state/", key.as_bytes()), None, "{key}");
        }
    }

    #[test]
    fn a_change_writes_only_what_differs() {
        let mut prev = Persistent::default();
        prev.drains.insert(k("web", "127.0.0.1:1"));
        prev.weights.insert(k("web", "127.0.0.1:2"), 3);
        let mut next = prev.clone();
        assert!(diff("/p/", &prev, &next).is_empty());
        next.drains.insert(k("web", "127.0.0.1:3"));
        next.weights.insert(k("web", "127.0.0.1:2"), 4);
        next.drains.remove(&k("web", "127.0.0.1:1"));
        let ops = diff("/p/", &prev, &next);
        let described: Vec<String> = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, .. } => format!(
                    "put {} {}",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(value)
                ),
                Op::Delete { key } => format!("delete {}", String::from_utf8_lossy(key)),
            })
            .collect();
        assert_eq!(
            described,
            [
                "put /p/drains/web/127.0.0.1:3 ",
                "delete /p/drains/web/127.0.0.1:1",
                "put /p/weights/web/127.0.0.1:2 4",
            ]
        );
    }

    #[test]
    fn a_weight_out_of_range_is_ignored() {
        let mut state = Persistent::default();
        for value in ["0", "x", "999999999"] {
            apply_put(
                &mut state,
                "/p/",
                &KeyValue {
                    key: b"/p/weights/web/127.0.0.1:1".to_vec(),
                    value: value.as_bytes().to_vec(),
                    ..Default::default()
                },
            );
        }
        assert!(state.weights.is_empty());
    }
}
