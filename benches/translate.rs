//! Translation into Envoy protos, the work of every config reload (once per transport in use):
//! 1,000 clusters x 10 endpoints (and 4 listeners routing to all of them), and one listener of
//! 1,000 virtual hosts x 10 routes (issue 15: under 100 ms).

mod common;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use flotilla::overlay::Overlay;
use flotilla::translate::{Transport, translate};

fn bench(c: &mut Criterion) {
    let (config, _) = common::configs(common::ChangeKind::Endpoint);
    let overlay = Overlay::default();
    c.bench_function("translate 1000 clusters", |b| {
        b.iter(|| translate(black_box(&config), &overlay, Transport::Ads))
    });
    let hosts = common::hosts_config(1000, 10, false);
    c.bench_function("translate 1000 hosts x 10 routes", |b| {
        b.iter(|| translate(black_box(&hosts), &overlay, Transport::Ads))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
