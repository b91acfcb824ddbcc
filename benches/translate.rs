//! Translation of 1,000 clusters x 10 endpoints (and 4 listeners routing to all of them) into
//! Envoy protos: the work of every config reload, once per transport in use.

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
}

criterion_group!(benches, bench);
criterion_main!(benches);
