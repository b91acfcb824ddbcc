//! One health verdict published through the controller (issue 26 point 2: the endpoint fast
//! path), at 1,000 and 10,000 clusters x 10 endpoints over 4 fleets, with one held stream
//! per fleet: the overlay change, the one ClusterLoadAssignment re-encoded, every snapshot that
//! holds it patched. The work should barely grow with the config (goal: 10k within 3x of 1k).
//!
//! `scripts/bench-micro -- verdict`, or for instruction counts on a busy machine:
//! `valgrind --tool=callgrind <bench binary> --bench --profile-time 5 verdict`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use flotilla::cache::{ClientKind, SnapshotCache};
use flotilla::control::{ControlMetrics, Controller};
use flotilla::overlay::{EndpointKey, Verdict};
use flotilla::translate::Transport;

const FLEETS: usize = 4;
/// Routes per virtual host (the config limit is 1,000 per host).
const ROUTES_PER_HOST: usize = 500;

/// `clusters` clusters of 10 endpoints, every fleet's listener routing to its share.
fn yaml(clusters: usize) -> String {
    let mut y = String::from("version: 1\nclusters:\n");
    for c in 0..clusters {
        let endpoints: Vec<String> = (0..10)
            .map(|e| format!("10.{}.{}.{e}:8080", c / 256, c % 256))
            .collect();
        y.push_str(&format!(
            "  c{c}: {{ endpoints: [{}] }}\n",
            endpoints.join(", ")
        ));
    }
    y.push_str("listeners:\n");
    for f in 0..FLEETS {
        y.push_str(&format!(
            "  l{f}:\n    address: 0.0.0.0:{}\n    hosts:\n",
            20000 + f
        ));
        let mine: Vec<usize> = (f..clusters).step_by(FLEETS).collect();
        for (h, chunk) in mine.chunks(ROUTES_PER_HOST).enumerate() {
            y.push_str(&format!(
                "      h{h}:\n        domains: [\"h{h}.f{f}.example.com\"]\n        routes:\n"
            ));
            for c in chunk {
                y.push_str(&format!(
                    "          - {{ match: {{ prefix: /c{c} }}, to: c{c} }}\n"
                ));
            }
        }
    }
    y.push_str("fleets:\n");
    for f in 0..FLEETS {
        y.push_str(&format!("  fleet{f}: {{ listeners: [l{f}] }}\n"));
    }
    y
}

fn bench(c: &mut Criterion) {
    for clusters in [1_000, 10_000] {
        let config = flotilla::config::parse_str("bench.yaml", &yaml(clusters))
            .expect("generated config is valid");
        let cache = Arc::new(SnapshotCache::new());
        let controller = Controller::new(cache.clone(), ControlMetrics::default());
        controller.set_config(Arc::new(config));
        // One held stream per fleet (and transport in use), as the streams would.
        let _streams: Vec<_> = (0..FLEETS)
            .map(|f| cache.watch(&format!("fleet{f}"), Transport::Ads, ClientKind::Other))
            .collect();
        let address: SocketAddr = "10.0.7.3:8080".parse().expect("constant address");
        let key = EndpointKey::new("c7", address);
        let mut healthy = false;
        c.bench_function(&format!("verdict at {clusters} clusters"), |b| {
            b.iter(|| {
                healthy = !healthy;
                let v = if healthy {
                    Verdict::Healthy
                } else {
                    Verdict::Unhealthy
                };
                black_box(controller.update_overlay(|o| {
                    o.verdicts.insert(key.clone(), v);
                }))
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
