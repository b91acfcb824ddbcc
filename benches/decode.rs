//! Reading and validating large configurations: the work `validate` and every reload do
//! before translation. Decoding must stay linear in the size of the config (issue 12: 100,000
//! clusters once took 45 s), and hostile inputs (an alias bomb, a map of unknown keys) must be
//! refused in time proportional to their size, not to what they would expand into.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use flotilla::config::parse_str;

/// `clusters` clusters of two endpoints each, routed to by 100 listeners (one route per
/// cluster), so that every cross-reference check sees them all.
fn clusters_yaml(clusters: usize) -> String {
    let mut yaml = String::with_capacity(clusters * 120);
    yaml.push_str("version: 1\nclusters:\n");
    for i in 0..clusters {
        let (a, b, c) = (i >> 16, (i >> 8) & 255, i & 255);
        yaml.push_str(&format!(
            "  c{i}: {{ endpoints: [10.{a}.{b}.{c}:8080, 10.{a}.{b}.{c}:8081] }}\n"
        ));
    }
    yaml.push_str("listeners:\n");
    let listeners = 100;
    for l in 0..listeners {
        yaml.push_str(&format!(
            "  l{l}:\n    address: 127.0.0.1:{}\n    routes:\n",
            20000 + l
        ));
        for i in (l..clusters).step_by(listeners) {
            yaml.push_str(&format!(
                "      - {{ match: {{ path: /c{i} }}, to: c{i} }}\n"
            ));
        }
    }
    yaml
}

/// A map of `keys` unknown fields: every one an error with a suggestion to compute.
fn unknown_keys_yaml(keys: usize) -> String {
    let mut yaml = String::from("version: 1\nclusters:\n  web:\n");
    for i in 0..keys {
        yaml.push_str(&format!("    field{i}: 1\n"));
    }
    yaml
}

/// The 8-level "billion laughs" (about 320 bytes; 43 million nodes if expanded).
fn alias_bomb_yaml() -> String {
    let mut yaml = "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n".to_string();
    for level in 1..8u8 {
        let (name, below) = ((b'a' + level) as char, (b'a' + level - 1) as char);
        yaml.push_str(&format!(
            "{name}: &{name} [{}]\n",
            vec![format!("*{below}"); 9].join(",")
        ));
    }
    yaml
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for clusters in [10_000, 25_000, 50_000, 100_000] {
        let yaml = clusters_yaml(clusters);
        group.bench_with_input(BenchmarkId::new("clusters", clusters), &yaml, |b, y| {
            b.iter(|| parse_str("bench.yaml", black_box(y)).expect("valid"))
        });
    }
    let yaml = clusters_yaml(100_000);
    group.bench_function("yaml only, 100000 clusters", |b| {
        b.iter(|| {
            flotilla::config::yaml::parse(black_box(&yaml), Arc::new(PathBuf::from("bench.yaml")))
        })
    });
    let yaml = unknown_keys_yaml(50_000);
    group.bench_function("50000 unknown keys", |b| {
        b.iter(|| parse_str("bench.yaml", black_box(&yaml)).expect_err("invalid"))
    });
    let yaml = alias_bomb_yaml();
    group.bench_function("8-level alias bomb", |b| {
        b.iter(|| parse_str("bench.yaml", black_box(&yaml)).expect_err("refused"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
