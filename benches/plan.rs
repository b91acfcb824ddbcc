//! The per-stream work after a snapshot change: diffing what the client holds against the new
//! snapshot and planning responses (make-before-break order). A flotilla serving N Envoys
//! does this N times per change, so it bounds how fast a change reaches all of them.

mod common;

use std::hint::black_box;

use common::ChangeKind;
use criterion::{Criterion, criterion_group, criterion_main};
use flotilla::cache::{EncodedSet, Snapshot};
use flotilla::overlay::Overlay;
use flotilla::translate::{Transport, select_fleet, translate};
use flotilla::xds::Mode;
use flotilla::xds::bench::PlanBench;

fn snapshots(kind: ChangeKind) -> (Snapshot, Snapshot) {
    let (before, after) = common::configs(kind);
    let fleet = common::fleet();
    let overlay = Overlay::default();
    let snapshot = |config| {
        let encoded = EncodedSet::encode(&translate(config, &overlay, Transport::Ads), None);
        encoded.snapshot(select_fleet(config, &fleet).as_ref())
    };
    let before = snapshot(&before);
    // Linked as the cache links a fleet's consecutive snapshots.
    let after = snapshot(&after).follow(&before);
    (before, after)
}

fn bench(c: &mut Criterion) {
    for (kind, label) in [
        (ChangeKind::Endpoint, "one endpoint changed"),
        (ChangeKind::Rewrite, "everything changed"),
    ] {
        let (before, after) = snapshots(kind);
        for (mode, name) in [(Mode::Sotw, "sotw"), (Mode::Delta, "delta")] {
            let mut client = PlanBench::synced(mode, &before);
            c.bench_function(&format!("plan, {name}, {label}"), |b| {
                b.iter(|| client.plan(black_box(&after)))
            });
        }
    }
    let (current, _) = snapshots(ChangeKind::Endpoint);
    let mut client = PlanBench::synced(Mode::Sotw, &current);
    c.bench_function("plan, sotw, nothing changed", |b| {
        b.iter(|| client.plan(black_box(&current)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
