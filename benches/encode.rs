//! Encoding a translation into shared resources, and cutting snapshots from it: the rest of
//! a reload's work, done once per reload (not per stream).

mod common;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use flotilla::cache::EncodedSet;
use flotilla::overlay::Overlay;
use flotilla::translate::{Transport, select_fleet, translate};

fn bench(c: &mut Criterion) {
    let (before, after) = common::configs(common::ChangeKind::Endpoint);
    let overlay = Overlay::default();
    let t0 = translate(&before, &overlay, Transport::Ads);
    let t1 = translate(&after, &overlay, Transport::Ads);
    let previous = EncodedSet::encode(&t0, None);
    c.bench_function("encode 1000 clusters", |b| {
        b.iter(|| EncodedSet::encode(black_box(&t1), None))
    });
    c.bench_function("encode 1000 clusters, reusing the previous set", |b| {
        b.iter(|| EncodedSet::encode(black_box(&t1), Some(&previous)))
    });
    c.bench_function("snapshot(None) of 1000 clusters", |b| {
        b.iter(|| black_box(&previous).snapshot(None))
    });
    let selection = select_fleet(&before, &common::fleet());
    c.bench_function("snapshot(fleet) of 1000 clusters", |b| {
        b.iter(|| black_box(&previous).snapshot(selection.as_ref()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
