//! `ordering::clusters_warm` answers from the gaps a snapshot computes once per pair of held
//! sets plus each client's own differences. These tests check it against the definition,
//! walked cluster by cluster, over random snapshots and client states, several clients
//! sharing each snapshot (and so its remembered gaps).

use std::sync::Arc;

use proptest::prelude::*;

use super::held::{HeldRef, UNKNOWN};
use super::ordering::clusters_warm;
use super::subscription::ClientState;
use crate::cache::{Resource, ResourceType, Snapshot};
use envoy_types::pb::google::protobuf::Any;

const CLUSTERS: usize = 6;

/// The definition: every used cluster the client subscribes to is held at a known version
/// and, once it asks for endpoints and the snapshot has some, holds them at a known version.
fn warm_by_walk(snapshot: &Snapshot, client: &ClientState) -> bool {
    let cds = client.get(ResourceType::Cluster);
    let eds = client.get(ResourceType::Endpoint);
    let assignments = &snapshot.get(ResourceType::Endpoint).resources;
    let surely = |h: Option<HeldRef<'_>>| h.is_some_and(|h| h.version != UNKNOWN);
    snapshot.used_clusters().iter().all(|c| {
        !cds.subscribed(c)
            || (surely(cds.known.get(c))
                && (!eds.requested || !assignments.contains_key(c) || surely(eds.known.get(c))))
    })
}

/// One snapshot's shape: per cluster whether it exists, its content, whether it has
/// endpoints, whether the route uses it.
#[derive(Debug, Clone)]
struct Shape {
    clusters: Vec<(bool, u8, bool, bool)>,
}

fn shape() -> impl Strategy<Value = Shape> {
    proptest::collection::vec(
        (any::<bool>(), 0..2u8, any::<bool>(), any::<bool>()),
        CLUSTERS,
    )
    .prop_map(|clusters| Shape { clusters })
}

fn name(i: usize) -> String {
    format!("c{i}")
}

fn snapshot(shape: &Shape) -> Snapshot {
    let present = || shape.clusters.iter().enumerate().filter(|(_, c)| c.0);
    let clusters = present()
        .map(|(i, c)| Resource::test(&name(i), c.1))
        .collect();
    let endpoints = present()
        .filter(|(_, c)| c.2)
        .map(|(i, c)| Resource::test(&name(i), 10 + c.1))
        .collect();
    let used: Vec<String> = present()
        .filter(|(_, c)| c.3)
        .map(|(i, _)| name(i))
        .collect();
    // The route's content names its clusters, as a real one does: a route whose clusters
    // change is a new version (and the snapshot stays consistent).
    let any = Any {
        type_url: "t".into(),
        value: used.join(",").into_bytes(),
    };
    let route = Arc::new(Resource::new("r".into(), any, used));
    Snapshot::of([clusters, endpoints, Vec::new(), vec![route], Vec::new()])
}

/// What one client does to a held set, on top of its base.
#[derive(Debug, Clone)]
enum Op {
    HoldPrevious(usize),
    HoldCurrent(usize),
    Remove(usize),
    Forget(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..CLUSTERS).prop_map(Op::HoldPrevious),
        (0..CLUSTERS).prop_map(Op::HoldCurrent),
        (0..CLUSTERS).prop_map(Op::Remove),
        (0..CLUSTERS).prop_map(Op::Forget),
    ]
}

#[derive(Debug, Clone)]
struct Client {
    /// 0: nothing, 1: the previous snapshot's set, 2: the current one's.
    cds_base: u8,
    eds_base: u8,
    cds_ops: Vec<Op>,
    eds_ops: Vec<Op>,
    /// None: wildcard.
    subscribed: Option<Vec<bool>>,
    eds_requested: bool,
}

fn client() -> impl Strategy<Value = Client> {
    (
        0..3u8,
        0..3u8,
        proptest::collection::vec(op(), 0..3),
        proptest::collection::vec(op(), 0..3),
        proptest::option::of(proptest::collection::vec(any::<bool>(), CLUSTERS)),
        any::<bool>(),
    )
        .prop_map(
            |(cds_base, eds_base, cds_ops, eds_ops, subscribed, eds_requested)| Client {
                cds_base,
                eds_base,
                cds_ops,
                eds_ops,
                subscribed,
                eds_requested,
            },
        )
}

fn build(c: &Client, previous: &Snapshot, current: &Snapshot) -> ClientState {
    let mut client = ClientState::default();
    for (t, base, ops) in [
        (ResourceType::Cluster, c.cds_base, &c.cds_ops),
        (ResourceType::Endpoint, c.eds_base, &c.eds_ops),
    ] {
        let state = client.get_mut(t);
        match base {
            1 => state.known.rebase(previous.set(t)),
            2 => state.known.rebase(current.set(t)),
            _ => {}
        }
        for op in ops {
            match op {
                Op::HoldPrevious(i) | Op::HoldCurrent(i) => {
                    let from = if matches!(op, Op::HoldPrevious(_)) {
                        previous
                    } else {
                        current
                    };
                    if let Some(r) = from.get(t).get(&name(*i)) {
                        state.known.hold(r);
                    }
                }
                Op::Remove(i) => state.known.remove(&name(*i)),
                Op::Forget(i) => state.known.forget_version(&name(*i)),
            }
        }
    }
    let cds = client.get_mut(ResourceType::Cluster);
    match &c.subscribed {
        None => cds.wildcard = true,
        Some(wanted) => cds.set_names((0..CLUSTERS).filter(|i| wanted[*i]).map(name).collect()),
    }
    client.get_mut(ResourceType::Endpoint).requested = c.eds_requested;
    client
}

proptest! {
    #[test]
    fn warm_from_gaps_is_warm_by_definition(
        before in shape(),
        after in shape(),
        clients in proptest::collection::vec(client(), 1..5),
    ) {
        let previous = snapshot(&before);
        let current = snapshot(&after).follow(&previous);
        for c in &clients {
            let state = build(c, &previous, &current);
            prop_assert_eq!(
                clusters_warm(&current, &state),
                warm_by_walk(&current, &state),
                "{:?}", c
            );
        }
    }
}

/// One row per way a stream mid-update can differ from the sets it is recorded against.
#[test]
fn each_difference_from_the_held_sets_counts() {
    let previous = snapshot(&Shape {
        clusters: vec![(true, 0, true, true), (false, 0, false, false)],
    });
    // c1 is added, with endpoints, and the route now uses it.
    let current = snapshot(&Shape {
        clusters: vec![(true, 0, true, true), (true, 0, true, true)],
    })
    .follow(&previous);
    let on = |cds_base, eds_base, cds_ops: Vec<Op>, eds_ops: Vec<Op>| Client {
        cds_base,
        eds_base,
        cds_ops,
        eds_ops,
        subscribed: None,
        eds_requested: true,
    };
    let rows = [
        (
            "holding the previous sets: c1 is cold",
            on(1, 1, vec![], vec![]),
            false,
        ),
        (
            "c1's cluster held, not its endpoints",
            on(2, 1, vec![], vec![]),
            false,
        ),
        (
            "c1's cluster held as a difference, endpoints too",
            on(1, 1, vec![Op::HoldCurrent(1)], vec![Op::HoldCurrent(1)]),
            true,
        ),
        ("holding the current sets", on(2, 2, vec![], vec![]), true),
        (
            "current sets, but c0's version unknown",
            on(2, 2, vec![Op::Forget(0)], vec![]),
            false,
        ),
        (
            "current sets, but c0's endpoints dropped",
            on(2, 2, vec![], vec![Op::Remove(0)]),
            false,
        ),
    ];
    for (what, c, warm) in rows {
        let state = build(&c, &previous, &current);
        assert_eq!(clusters_warm(&current, &state), warm, "{what}");
        assert_eq!(warm_by_walk(&current, &state), warm, "{what} (definition)");
    }
}
