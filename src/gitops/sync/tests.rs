use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::*;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_000 + secs)
}

fn synced() -> NodeInput {
    NodeInput {
        in_sync: true,
        generation: Some(2),
        waiting_since: None,
        connected_at: at(0),
        rejected: false,
    }
}

fn fleet_of(nodes: Vec<NodeInput>) -> FleetInput {
    FleetInput {
        generation: 2,
        applied_at: at(10),
        nodes,
        clusters: vec![(0, 2)],
    }
}

const RULES: Rules = Rules {
    out_of_sync_after: Duration::from_secs(30),
    unhealthy_fraction: 0.5,
};

/// One row per rule: the node, the time, what it is.
#[test]
fn node_rules() {
    let rows: Vec<(&str, NodeInput, u64, Sync)> = vec![
        ("holds the current config", synced(), 100, Sync::Synced),
        (
            "rejected: out of sync at once",
            NodeInput {
                rejected: true,
                ..synced()
            },
            11,
            Sync::OutOfSync,
        ),
        (
            "in sync with an older config, just applied",
            NodeInput {
                generation: Some(1),
                ..synced()
            },
            20,
            Sync::Progressing,
        ),
        (
            "in sync with an older config for too long",
            NodeInput {
                generation: Some(1),
                ..synced()
            },
            41,
            Sync::OutOfSync,
        ),
        (
            "waiting for an ACK within the bound",
            NodeInput {
                in_sync: false,
                waiting_since: Some(at(30)),
                ..synced()
            },
            59,
            Sync::Progressing,
        ),
        (
            "waiting for an ACK past the bound",
            NodeInput {
                in_sync: false,
                waiting_since: Some(at(30)),
                ..synced()
            },
            61,
            Sync::OutOfSync,
        ),
        (
            "connected after the config was applied: the bound counts from then",
            NodeInput {
                in_sync: false,
                connected_at: at(100),
                ..synced()
            },
            120,
            Sync::Progressing,
        ),
        (
            "its snapshot's config forgotten",
            NodeInput {
                generation: None,
                ..synced()
            },
            20,
            Sync::Progressing,
        ),
    ];
    for (what, n, now, want) in rows {
        assert_eq!(node(&n, 2, at(10), at(now), &RULES), want, "{what}");
    }
}

#[test]
fn fleet_rules() {
    let rejected = NodeInput {
        rejected: true,
        ..synced()
    };
    let slow = NodeInput {
        in_sync: false,
        ..synced()
    };
    let rows: Vec<(&str, FleetInput, (Sync, Health))> = vec![
        (
            "no Envoy",
            fleet_of(vec![]),
            (Sync::Synced, Health::Missing),
        ),
        (
            "all synced",
            fleet_of(vec![synced(), synced()]),
            (Sync::Synced, Health::Healthy),
        ),
        (
            "one progressing",
            fleet_of(vec![synced(), slow.clone()]),
            (Sync::Progressing, Health::Healthy),
        ),
        (
            "one rejected beats one progressing",
            fleet_of(vec![slow, rejected]),
            (Sync::OutOfSync, Health::Degraded),
        ),
        (
            "more than half of a cluster unhealthy",
            FleetInput {
                clusters: vec![(0, 2), (2, 3)],
                ..fleet_of(vec![synced()])
            },
            (Sync::Synced, Health::Degraded),
        ),
        (
            "exactly half unhealthy is still healthy",
            FleetInput {
                clusters: vec![(1, 2), (0, 0)],
                ..fleet_of(vec![synced()])
            },
            (Sync::Synced, Health::Healthy),
        ),
    ];
    for (what, f, want) in rows {
        assert_eq!(fleet(&f, at(20), &RULES), want, "{what}");
    }
}

fn any_node() -> impl Strategy<Value = NodeInput> {
    (
        any::<bool>(),
        prop::option::of(0u64..4),
        prop::option::of(0u64..100),
        0u64..100,
        any::<bool>(),
    )
        .prop_map(
            |(in_sync, generation, waiting, connected, rejected)| NodeInput {
                in_sync,
                generation,
                waiting_since: waiting.map(at),
                connected_at: at(connected),
                rejected,
            },
        )
}

proptest! {
    #[test]
    fn the_rules_hold_for_any_fleet(
        nodes in prop::collection::vec(any_node(), 0..6),
        generation in 0u64..4,
        applied in 0u64..100,
        now in 0u64..200,
        later in 0u64..200,
    ) {
        let f = FleetInput { generation, applied_at: at(applied), nodes, clusters: vec![] };
        let (sync, health) = fleet(&f, at(now), &RULES);
        // Missing exactly when no Envoy is connected.
        prop_assert_eq!(health == Health::Missing, f.nodes.is_empty());
        // Synced exactly when every Envoy holds the current config and refused nothing.
        let all = f.nodes.iter().all(|n| n.in_sync && n.generation == Some(generation) && !n.rejected);
        prop_assert_eq!(sync == Sync::Synced, all);
        // A rejection is always OutOfSync and Degraded.
        if f.nodes.iter().any(|n| n.rejected) {
            prop_assert_eq!((sync, health), (Sync::OutOfSync, Health::Degraded));
        }
        // Time only makes things worse: what is OutOfSync stays so, what is Synced stays so.
        let (later_sync, _) = fleet(&f, at(now + later), &RULES);
        if sync == Sync::OutOfSync || sync == Sync::Synced {
            prop_assert_eq!(later_sync, sync);
        } else {
            prop_assert!(later_sync >= sync);
        }
    }
}
