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
