use std::sync::Arc;

use super::{Inputs, SnapshotCache};
use crate::cache::ResourceType;
use crate::config::parse_str;
use crate::overlay::Overlay;
use crate::translate::Transport;

fn inputs(fleets: &str) -> Inputs {
    inputs_with("", fleets)
}

/// Two socket listeners, plus `listeners` (YAML lines under `listeners:`), and `fleets`.
fn inputs_with(listeners: &str, fleets: &str) -> Inputs {
    let yaml = format!(
        "version: 1
clusters:
  web: {{ endpoints: [127.0.0.1:8081] }}
  admin: {{ endpoints: [127.0.0.1:8082] }}
listeners:
  public: {{ address: 127.0.0.1:10000, routes: [ {{ to: web }} ] }}
  private: {{ address: 127.0.0.1:10001, routes: [ {{ to: admin }} ] }}
{listeners}{fleets}"
    );
    Inputs {
        config: Arc::new(parse_str("t.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"))),
        overlay: Arc::new(Overlay::default()),
    }
}

fn listeners(cache: &SnapshotCache, fleet: &str) -> Vec<String> {
    let rx = cache.watch(fleet, Transport::Ads, crate::cache::ClientKind::Other);
    rx.borrow()
        .get(ResourceType::Listener)
        .resources
        .keys()
        .cloned()
        .collect()
}

#[test]
fn without_fleets_every_envoy_gets_everything() {
    let cache = SnapshotCache::new();
    cache.update(inputs(""));
    assert_eq!(listeners(&cache, "anything"), ["private", "public"]);
}

#[test]
fn once_fleets_are_declared_an_undeclared_fleet_gets_nothing() {
    let cache = SnapshotCache::new();
    cache.update(inputs("fleets:\n  edge: { listeners: [public] }\n"));
    assert_eq!(listeners(&cache, "edge"), ["public"]);
    let rx = cache.watch("intruder", Transport::Ads, crate::cache::ClientKind::Other);
    let snapshot = rx.borrow().clone();
    for t in ResourceType::ALL {
        assert!(snapshot.get(t).resources.is_empty(), "{t}");
    }
    let events = crate::events::since(0);
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("\"intruder\"") && e.message.contains("not declared")),
        "{events:?}"
    );
    // Declaring the fleet later serves it its listeners on the open stream.
    cache.update(inputs(
        "fleets:\n  edge: { listeners: [public] }\n  intruder: { listeners: [private] }\n",
    ));
    assert_eq!(
        rx.borrow()
            .get(ResourceType::Listener)
            .resources
            .keys()
            .collect::<Vec<_>>(),
        ["private"]
    );
}

#[test]
fn undeclared_fleets_share_one_snapshot_and_channels_go_with_their_streams() {
    let cache = SnapshotCache::new();
    cache.update(inputs(""));
    let receivers: Vec<_> = (0..100)
        .map(|i| {
            cache.watch(
                &format!("name-{i}"),
                Transport::Ads,
                crate::cache::ClientKind::Other,
            )
        })
        .collect();
    let first = receivers[0].borrow().clone();
    assert!(receivers.iter().all(|r| Arc::ptr_eq(&r.borrow(), &first)));
    // After a change, every undeclared fleet still shares one snapshot.
    cache.update(inputs("\n"));
    let mut changed = inputs("");
    Arc::make_mut(&mut changed.config).clusters.remove("admin");
    Arc::make_mut(&mut changed.config)
        .listeners
        .remove("private");
    cache.update(changed);
    let second = receivers[0].borrow().clone();
    assert_ne!(second.version, first.version);
    assert!(receivers.iter().all(|r| Arc::ptr_eq(&r.borrow(), &second)));
    assert_eq!(cache.lock().channels.len(), 100);
    drop(receivers);
    let _one = cache.watch("edge", Transport::Ads, crate::cache::ClientKind::Other);
    assert_eq!(
        cache.lock().channels.len(),
        1,
        "the gone fleets' channels are freed"
    );
}

const GRPC_LISTENER: &str =
    "  \"greeter.test:50051\": { proxyless_grpc: true, routes: [ { to: web } ] }\n";

fn with_grpc_listener(fleets: &str) -> Inputs {
    inputs_with(GRPC_LISTENER, fleets)
}

#[test]
fn each_kind_of_client_is_served_its_own_listeners_and_told_of_the_others() {
    use super::ClientKind::{Envoy, Grpc, Other};
    const G: &str = "greeter.test:50051";
    let edge = "fleets:\n  edge: { listeners: [public, \"greeter.test:50051\"] }\n";
    // (gRPC listener in the config, fleets, kind, listeners served, listeners withheld)
    type Case<'a> = (
        bool,
        &'a str,
        super::ClientKind,
        &'a [&'a str],
        &'a [&'a str],
    );
    let cases: &[Case<'_>] = &[
        (true, "", Envoy, &["private", "public"], &[G]),
        (true, "", Grpc, &[G], &["private", "public"]),
        (true, "", Other, &[G, "private", "public"], &[]),
        (true, edge, Envoy, &["public"], &[G]),
        (true, edge, Grpc, &[G], &["public"]),
        (false, "", Envoy, &["private", "public"], &[]),
        (false, "", Grpc, &[], &["private", "public"]),
    ];
    for (grpc, fleets, kind, served, withheld) in cases {
        let cache = SnapshotCache::new();
        cache.update(if *grpc {
            with_grpc_listener(fleets)
        } else {
            inputs(fleets)
        });
        let snapshot = cache.watch("edge", Transport::Ads, *kind).borrow().clone();
        let what = format!("gRPC listener {grpc}, fleets {fleets:?}, {kind:?}");
        let names: Vec<&str> = snapshot
            .get(ResourceType::Listener)
            .resources
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(names, served.to_vec(), "{what}: served");
        let held_back: Vec<&str> = snapshot
            .withheld_listeners
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(held_back, withheld.to_vec(), "{what}: withheld");
        assert!(snapshot.is_consistent(), "{what}");
    }
}

#[test]
fn a_new_grpc_listener_wakes_envoys_to_withhold_it_and_sends_them_nothing() {
    let cache = SnapshotCache::new();
    cache.update(inputs(""));
    let mut rx = cache.watch("any", Transport::Ads, super::ClientKind::Envoy);
    let before = rx.borrow_and_update().clone();
    cache.update(with_grpc_listener(""));
    assert!(rx.has_changed().unwrap_or(false), "woken");
    let after = rx.borrow_and_update().clone();
    assert_eq!(
        after.version, before.version,
        "Envoys' resources are unchanged"
    );
    assert!(after.withheld_listeners.contains("greeter.test:50051"));
}

/// One listener of 1,000 hosts x 10 routes beside a small one; `edit` changes one route.
fn many_hosts(edit: bool) -> Inputs {
    let mut yaml = String::from(
        "version: 1\nclusters:\n  web: { endpoints: [127.0.0.1:8081] }\n  admin: { endpoints: [127.0.0.1:8082] }\nlisteners:\n  private: { address: 127.0.0.1:10001, routes: [ { to: admin } ] }\n  edge:\n    address: 127.0.0.1:10000\n    hosts:\n",
    );
    for h in 0..1000 {
        yaml.push_str(&format!(
            "      h{h}:\n        domains: [h{h}.example.com]\n        routes:\n"
        ));
        for r in 0..10 {
            let timeout = if edit && h == 500 && r == 3 {
                "2s"
            } else {
                "1s"
            };
            yaml.push_str(&format!(
                "          - {{ match: {{ prefix: /r{r} }}, to: web, timeout: {timeout} }}\n"
            ));
        }
    }
    Inputs {
        config: Arc::new(parse_str("t.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"))),
        overlay: Arc::new(Overlay::default()),
    }
}

#[test]
fn a_one_route_change_among_ten_thousand_changes_only_its_route_configuration() {
    let cache = SnapshotCache::new();
    cache.update(many_hosts(false));
    let rx = cache.watch("edge", Transport::Ads, crate::cache::ClientKind::Other);
    let before = rx.borrow().clone();
    cache.update(many_hosts(true));
    let after = rx.borrow().clone();
    for t in [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Listener,
    ] {
        assert!(after.changes(t).is_none(), "{t:?} must not change");
        assert!(Arc::ptr_eq(after.set(t), before.set(t)));
    }
    let routes = after.changes(ResourceType::Route).expect("routes changed");
    let changed: Vec<&str> = routes.changed.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(changed, ["edge"]);
    assert!(routes.removed.is_empty());
    assert_eq!(
        after.get(ResourceType::Route).get("private"),
        before.get(ResourceType::Route).get("private"),
    );
}

#[test]
fn secrets_go_only_to_fleets_that_use_them_and_never_to_grpc_clients() {
    use super::ClientKind::{Envoy, Grpc, Other};
    let dir = tempfile::tempdir().unwrap();
    let (chain, key, _) = crate::tls::tests::issued(&["a.example.com"]);
    std::fs::write(dir.path().join("a.pem"), chain).unwrap();
    std::fs::write(dir.path().join("a.key"), key).unwrap();
    let yaml = format!(
        "version: 1
clusters:
  web: {{ endpoints: [127.0.0.1:8081] }}
listeners:
  public:
    address: 127.0.0.1:10000
    tls: {{ certificates: [{{ cert: a.pem, key: a.key }}] }}
    routes: [ {{ to: web }} ]
  private: {{ address: 127.0.0.1:10001, routes: [ {{ to: web }} ] }}
{GRPC_LISTENER}fleets:
  edge: {{ listeners: [public, \"greeter.test:50051\"] }}
  inside: {{ listeners: [private, \"greeter.test:50051\"] }}
"
    );
    std::fs::write(dir.path().join("f.yaml"), yaml).unwrap();
    let config = crate::config::load(&dir.path().join("f.yaml"))
        .unwrap()
        .config;
    let cache = SnapshotCache::new();
    cache.update(Inputs {
        config: Arc::new(config),
        overlay: Arc::new(Overlay::default()),
    });
    for (fleet, kind, secrets) in [
        ("edge", Envoy, 1),
        ("edge", Other, 1),
        ("edge", Grpc, 0),
        ("inside", Envoy, 0),
        ("inside", Grpc, 0),
    ] {
        let snapshot = cache.watch(fleet, Transport::Ads, kind).borrow().clone();
        assert_eq!(
            snapshot.get(ResourceType::Secret).resources.len(),
            secrets,
            "{fleet} {kind:?}"
        );
    }
}
