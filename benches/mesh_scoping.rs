//! Scoping: what one mesh sidecar receives compared with an Envoy that gets the whole mesh
//! (Istio's most common complaint without `Sidecar` resources). A mesh of 1,000 services, each
//! with a VIP, one instance, and 10 calls; the sidecar of one service gets its own inbound
//! listener and app, and per call a cluster and a listener at the callee's VIP.
//!
//! Counted, not timed: resources and the bytes of their encoded xDS (SotW `Any`) form, which
//! are deterministic. Run with `cargo bench --bench mesh_scoping` (BENCHMARKS.md).

#![allow(clippy::print_stdout)] // the table is this bench's output

use std::fmt::Write as _;

use flotilla::cache::{ClientKind, EncodedSet, ResourceType, Snapshot};
use flotilla::config::model::{Endpoint, service_cluster};
use flotilla::overlay::Overlay;
use flotilla::translate::{Transport, select_instance, translate};

const SERVICES: usize = 1000;
const CALLS: usize = 10;

fn vip(i: usize) -> String {
    format!("127.240.{}.{}:80", i / 250, i % 250 + 1)
}

fn inbound(i: usize) -> std::net::SocketAddr {
    format!("10.{}.{}.1:15006", i / 250, i % 250)
        .parse()
        .unwrap()
}

fn config() -> String {
    let mut y = String::from("version: 1\nmesh:\n  default: allow\n  services:\n");
    for i in 0..SERVICES {
        let calls: Vec<String> = (1..=CALLS)
            .map(|k| format!("s{}", (i + k) % SERVICES))
            .collect();
        let _ = writeln!(
            y,
            "    s{i}: {{ port: 8080, vip: {}, calls: [{}] }}",
            vip(i),
            calls.join(", ")
        );
    }
    y
}

/// (resources, bytes) of a snapshot, per type and in total.
fn count(s: &Snapshot) -> (Vec<(ResourceType, usize, usize)>, usize, usize) {
    let per: Vec<_> = ResourceType::ALL
        .iter()
        .map(|t| {
            let set = s.get(*t);
            let bytes = set.resources.values().map(|r| r.sotw.len()).sum();
            (*t, set.resources.len(), bytes)
        })
        .collect();
    let n = per.iter().map(|p| p.1).sum();
    let b = per.iter().map(|p| p.2).sum();
    (per, n, b)
}

fn main() {
    let config = flotilla::config::parse_str("mesh.yaml", &config()).expect("config");
    let mut overlay = Overlay::default();
    for i in 0..SERVICES {
        overlay.registered.insert(
            service_cluster(&format!("s{i}")),
            vec![Endpoint::registered(inbound(i), 1)],
        );
    }
    let t = translate(&config, &overlay, Transport::Ads);
    let encoded = EncodedSet::encode(&t, None);
    let everything = encoded.snapshot(None, ClientKind::Other);
    let selection = select_instance(&config, "s0", Some(inbound(0)));
    let sidecar = encoded.snapshot(selection.as_ref(), ClientKind::Other);
    println!("mesh: {SERVICES} services, {CALLS} calls each, one instance each");
    println!("| type | whole mesh: resources | bytes | one sidecar: resources | bytes |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let (all, all_n, all_b) = count(&everything);
    let (one, one_n, one_b) = count(&sidecar);
    for ((t, n, b), (_, m, c)) in all.iter().zip(one.iter()) {
        println!("| {} | {n} | {b} | {m} | {c} |", t.short_name());
    }
    println!("| total | {all_n} | {all_b} | {one_n} | {one_b} |");
    println!(
        "a sidecar receives {:.2}% of the bytes ({}x less)",
        100.0 * one_b as f64 / all_b as f64,
        all_b / one_b.max(1)
    );
}
