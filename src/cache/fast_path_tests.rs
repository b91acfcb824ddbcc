//! The endpoint fast path (`SnapshotCache::update_endpoints`) against the full path.

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;

use super::{ClientKind, Inputs, ResourceType, Snapshot, SnapshotCache};
use crate::config::model::Endpoint;
use crate::overlay::{EndpointKey, Overlay, Verdict};
use crate::translate::Transport;

const YAML: &str = "version: 1
clusters:
  web:
    endpoints: [127.0.0.1:8081, 127.0.0.1:8082, 127.0.0.1:8083]
    health_check: { http: { path: /healthz }, interval: 1s }
  api: { endpoints: [127.0.0.1:9081, 127.0.0.1:9082] }
  admin: { endpoints: [127.0.0.1:7081] }
listeners:
  public: { address: 127.0.0.1:10000, routes: [ { to: web } ] }
  private: { address: 127.0.0.1:10001, routes: [ { to: admin }, { match: { prefix: /api }, to: api } ] }
fleets:
  edge: { listeners: [public] }
  internal: { listeners: [private] }
";

fn config() -> Arc<crate::config::Config> {
    Arc::new(crate::config::parse_str("t.yaml", YAML).unwrap_or_else(|e| panic!("{e}")))
}

fn key(cluster: &str, port: u16) -> EndpointKey {
    EndpointKey::new(cluster, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

const FLEETS: [&str; 3] = ["edge", "internal", "stranger"];

/// Every fleet's snapshot on both transports, as their streams hold it.
fn snapshots(cache: &SnapshotCache) -> Vec<tokio::sync::watch::Receiver<Arc<Snapshot>>> {
    FLEETS
        .iter()
        .flat_map(|f| {
            [Transport::Ads, Transport::Sotw].map(|t| cache.watch(f, t, ClientKind::Other))
        })
        .collect()
}

/// (type, name, version) of everything in a snapshot.
fn content(s: &Snapshot) -> Vec<(ResourceType, String, String)> {
    ResourceType::ALL
        .iter()
        .flat_map(|t| {
            s.get(*t)
                .resources
                .values()
                .map(|r| (*t, r.name.clone(), r.version.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn an_endpoint_change_reencodes_only_its_cluster_load_assignment() {
    let cache = SnapshotCache::new();
    let config = config();
    cache.update(Inputs {
        config: config.clone(),
        overlay: Arc::new(Overlay::default()),
    });
    let rx = cache.watch("internal", Transport::Ads, ClientKind::Other);
    let before = rx.borrow().clone();
    let mut overlay = Overlay::default();
    overlay.draining.insert(key("api", 9081));
    let summary = cache.update_endpoints(
        Inputs {
            config,
            overlay: Arc::new(overlay),
        },
        &["api".to_string()].into(),
    );
    let after = rx.borrow().clone();
    assert_ne!(before.version, after.version);
    for t in [
        ResourceType::Cluster,
        ResourceType::Listener,
        ResourceType::Route,
        ResourceType::Secret,
    ] {
        assert!(Arc::ptr_eq(before.set(t), after.set(t)), "{t} was rebuilt");
        assert!(after.changes(t).is_none(), "{t}");
    }
    let (b, a) = (
        before.get(ResourceType::Endpoint),
        after.get(ResourceType::Endpoint),
    );
    assert!(Arc::ptr_eq(
        b.get("admin").unwrap(),
        a.get("admin").unwrap()
    ));
    assert_ne!(b.get("api").unwrap().version, a.get("api").unwrap().version);
    let changes = after.changes(ResourceType::Endpoint).unwrap();
    assert!(Arc::ptr_eq(
        &changes.from,
        before.set(ResourceType::Endpoint)
    ));
    let changed: Vec<&str> = changes.changed.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(changed, ["api"]);
    assert!(changes.removed.is_empty());
    // The edge fleet does not hold `api`: its streams do not wake.
    assert_eq!(summary.woken, 1, "only the internal fleet's channel");
}

#[test]
fn a_change_that_encodes_to_the_same_bytes_wakes_nobody() {
    let cache = SnapshotCache::new();
    let config = config();
    cache.update(Inputs {
        config: config.clone(),
        overlay: Arc::new(Overlay::default()),
    });
    let _streams = snapshots(&cache);
    let mut overlay = Overlay::default();
    // A weight override equal to the configured weight: a different overlay, the same CLA.
    overlay.weights.insert(key("web", 8081), 1);
    let before = cache.update(Inputs {
        config: config.clone(),
        overlay: Arc::new(Overlay::default()),
    });
    let after = cache.update_endpoints(
        Inputs {
            config,
            overlay: Arc::new(overlay),
        },
        &["web".to_string()].into(),
    );
    assert_eq!(after.woken, 0);
    assert_eq!(before.version, after.version);
}

/// One change an operator, the checker, a registration or DNS can make.
#[derive(Debug, Clone)]
enum Change {
    Verdict(usize, Option<bool>),
    Drain(usize, bool),
    Weight(usize, Option<u32>),
    Measured(usize, Option<u32>),
    Leaving(usize, bool),
    Register(usize, u16, bool),
    Resolve(usize, Vec<u16>),
}

const ENDPOINTS: [(&str, u16); 6] = [
    ("web", 8081),
    ("web", 8082),
    ("web", 8083),
    ("api", 9081),
    ("api", 9082),
    ("admin", 7081),
];
const CLUSTERS: [&str; 4] = ["web", "api", "admin", "ghost"];

fn change() -> impl Strategy<Value = Change> {
    let e = 0..ENDPOINTS.len();
    let c = 0..CLUSTERS.len();
    prop_oneof![
        (e.clone(), proptest::option::of(any::<bool>())).prop_map(|(i, v)| Change::Verdict(i, v)),
        (e.clone(), any::<bool>()).prop_map(|(i, on)| Change::Drain(i, on)),
        (e.clone(), proptest::option::of(1u32..5)).prop_map(|(i, w)| Change::Weight(i, w)),
        (e.clone(), proptest::option::of(1u32..5)).prop_map(|(i, w)| Change::Measured(i, w)),
        (e, any::<bool>()).prop_map(|(i, on)| Change::Leaving(i, on)),
        (c.clone(), 9000u16..9004, any::<bool>()).prop_map(|(i, p, on)| Change::Register(i, p, on)),
        (c, proptest::collection::vec(8081u16..8090, 0..4))
            .prop_map(|(i, ps)| Change::Resolve(i, ps)),
    ]
}

fn apply(o: &mut Overlay, change: &Change) {
    let k = |i: usize| key(ENDPOINTS[i].0, ENDPOINTS[i].1);
    let endpoint =
        |p: u16| Endpoint::registered(std::net::SocketAddr::from(([127, 0, 0, 1], p)), 1);
    match change {
        Change::Verdict(i, v) => match v {
            Some(h) => {
                let v = if *h {
                    Verdict::Healthy
                } else {
                    Verdict::Unhealthy
                };
                o.verdicts.insert(k(*i), v);
            }
            None => {
                o.verdicts.remove(&k(*i));
            }
        },
        Change::Drain(i, on) => {
            if *on {
                o.draining.insert(k(*i));
            } else {
                o.draining.remove(&k(*i));
            }
        }
        Change::Weight(i, w) => match w {
            Some(w) => {
                o.weights.insert(k(*i), *w);
            }
            None => {
                o.weights.remove(&k(*i));
            }
        },
        Change::Measured(i, w) => match w {
            Some(w) => {
                o.measured_weights.insert(k(*i), *w);
            }
            None => {
                o.measured_weights.remove(&k(*i));
            }
        },
        Change::Leaving(i, on) => {
            if *on {
                o.leaving.insert(k(*i));
            } else {
                o.leaving.remove(&k(*i));
            }
        }
        Change::Register(c, port, on) => {
            let list = o.registered.entry(CLUSTERS[*c].to_string()).or_default();
            list.retain(|e| e.address.port() != *port);
            if *on {
                list.push(endpoint(*port));
            }
            if list.is_empty() {
                o.registered.remove(CLUSTERS[*c]);
            }
        }
        Change::Resolve(c, ports) => {
            let mut seen = BTreeSet::new();
            let list: Vec<Endpoint> = ports
                .iter()
                .filter(|p| seen.insert(**p))
                .map(|p| endpoint(*p))
                .collect();
            if list.is_empty() {
                o.resolved.remove(CLUSTERS[*c]);
            } else {
                o.resolved.insert(CLUSTERS[*c].to_string(), list);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of overlay changes, published through the fast path, leaves every
    /// fleet's streams with exactly what a full translation gives.
    #[test]
    fn the_fast_path_equals_a_full_translation(
        steps in proptest::collection::vec(proptest::collection::vec(change(), 1..4), 1..12)
    ) {
        let config = config();
        let fast = SnapshotCache::new();
        let full = SnapshotCache::new();
        let mut overlay = Overlay::default();
        let first = Inputs { config: config.clone(), overlay: Arc::new(overlay.clone()) };
        fast.update(first.clone());
        full.update(first);
        let (fast_rx, full_rx) = (snapshots(&fast), snapshots(&full));
        for batch in steps {
            let before = overlay.clone();
            for c in &batch {
                apply(&mut overlay, c);
            }
            let clusters = before.changed_clusters(&overlay);
            let inputs = Inputs { config: config.clone(), overlay: Arc::new(overlay.clone()) };
            let a = fast.update_endpoints(inputs.clone(), &clusters);
            let b = full.update(inputs);
            prop_assert_eq!(&a.version, &b.version);
            for (f, g) in fast_rx.iter().zip(&full_rx) {
                let (f, g) = (f.borrow().clone(), g.borrow().clone());
                prop_assert_eq!(&f.version, &g.version);
                prop_assert_eq!(content(&f), content(&g));
            }
        }
    }
}
