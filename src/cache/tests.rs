use std::sync::Arc;

use super::{Inputs, SnapshotCache};
use crate::cache::ResourceType;
use crate::config::parse_str;
use crate::overlay::Overlay;
use crate::translate::Transport;

fn inputs(fleets: &str) -> Inputs {
    let yaml = format!(
        "version: 1
clusters:
  web: {{ endpoints: [127.0.0.1:8081] }}
  admin: {{ endpoints: [127.0.0.1:8082] }}
listeners:
  public: {{ address: 127.0.0.1:10000, routes: [ {{ to: web }} ] }}
  private: {{ address: 127.0.0.1:10001, routes: [ {{ to: admin }} ] }}
{fleets}"
    );
    Inputs {
        config: Arc::new(parse_str("t.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"))),
        overlay: Arc::new(Overlay::default()),
    }
}

fn listeners(cache: &SnapshotCache, fleet: &str) -> Vec<String> {
    let rx = cache.watch(fleet, Transport::Ads);
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
    let rx = cache.watch("intruder", Transport::Ads);
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
        .map(|i| cache.watch(&format!("name-{i}"), Transport::Ads))
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
    let _one = cache.watch("edge", Transport::Ads);
    assert_eq!(
        cache.lock().channels.len(),
        1,
        "the gone fleets' channels are freed"
    );
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
    let rx = cache.watch("edge", Transport::Ads);
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
