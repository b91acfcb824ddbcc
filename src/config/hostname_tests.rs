//! Hostname endpoints and `resolve` / `logical` (see `crate::dns`).

use super::model::*;
use super::{Diagnostics, parse_str};

fn errors(yaml: &str) -> Vec<String> {
    match parse_str("t.yaml", yaml) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(Diagnostics(d)) => d.iter().map(ToString::to_string).collect(),
    }
}

fn cluster(body: &str) -> Cluster {
    let yaml = format!("version: 1\nclusters:\n  db: {body}\n");
    parse_str("t.yaml", &yaml)
        .unwrap_or_else(|e| panic!("{e}"))
        .clusters["db"]
        .clone()
}

#[test]
fn hostnames_and_addresses_mix_with_their_own_weights() {
    let c = cluster(
        "{ endpoints: [10.0.0.1:5432, DB.Internal:5432, { address: replica.internal.:5433, weight: 3, zone: b }] }",
    );
    assert_eq!(c.endpoints.len(), 1);
    let names: Vec<(&str, u16, u32)> = c
        .hostnames
        .iter()
        .map(|h| (h.host.as_str(), h.port, h.weight))
        .collect();
    assert_eq!(
        names,
        [("db.internal", 5432, 1), ("replica.internal", 5433, 3)]
    );
    assert_eq!(c.hostnames[1].zone.as_deref(), Some("b"));
    assert_eq!(c.hostnames[0].field, "clusters.db.endpoints[1]");
    assert_eq!(c.hostnames[1].field, "clusters.db.endpoints[2].address");
    assert_eq!((c.hostnames[0].loc.line, c.hostnames[0].loc.col), (3, 36));
    assert_eq!(c.resolve, Resolve::Flotilla);
}

#[test]
fn resolve_envoy_and_logical() {
    assert_eq!(
        cluster("{ endpoints: [db.internal:5432], resolve: envoy }").resolve,
        Resolve::Envoy { logical: false }
    );
    assert_eq!(
        cluster("{ endpoints: [db.internal:5432], resolve: envoy, logical: true }").resolve,
        Resolve::Envoy { logical: true }
    );
}

#[test]
fn one_hostname_is_the_upstream_sni() {
    let c = cluster("{ endpoints: [db.internal:5432], tls: { ca: system } }");
    assert_eq!(c.tls.unwrap().sni.as_deref(), Some("db.internal"));
    let c = cluster("{ endpoints: [a.internal:1, b.internal:1], tls: { ca: system } }");
    assert_eq!(
        c.tls.unwrap().sni,
        None,
        "two names: tls.sni must say which"
    );
    let c = cluster("{ endpoints: [db.internal:5432], tls: { ca: system, sni: other.example } }");
    assert_eq!(c.tls.unwrap().sni.as_deref(), Some("other.example"));
}

#[test]
fn a_name_listed_twice_is_an_error() {
    let e = errors("version: 1\nclusters:\n  db: { endpoints: [db.internal:1, DB.internal:1] }\n");
    assert!(
        e.iter()
            .any(|e| e.starts_with("t.yaml:3:") && e.contains("db.internal:1 is listed twice")),
        "{e:?}"
    );
}

#[test]
fn bad_names_and_resolve_combinations_have_their_place() {
    let e = errors(
        "version: 1
clusters:
  a: { endpoints: [-db.internal:1] }
  b: { endpoints: [db.internal:1], logical: true }
  c: { endpoints: [db.internal:1, db2.internal:1], resolve: envoy, logical: true }
  d: { endpoints: [db.internal:1], resolve: envoy, health_check: { tcp: } }
  e: { endpoints: [db.internal:1], resolve: dns }
",
    );
    for (needle, line) in [
        (
            "clusters.a.endpoints[0]: `-db.internal` is not a valid DNS name",
            3,
        ),
        ("clusters.b.logical: logical: true needs resolve: envoy", 4),
        (
            "clusters.c.logical: a LOGICAL_DNS cluster takes exactly one endpoint",
            5,
        ),
        ("clusters.d.resolve: flotilla cannot health-check", 6),
        ("clusters.e.resolve:", 7),
    ] {
        assert!(
            e.iter()
                .any(|e| e.starts_with(&format!("t.yaml:{line}:")) && e.contains(needle)),
            "{needle}: {e:#?}"
        );
    }
}

#[test]
fn more_than_the_hostname_cap_is_an_error() {
    let names: Vec<String> = (0..=crate::config::MAX_HOSTNAMES)
        .map(|i| format!("h{i}.internal:80"))
        .collect();
    let e = errors(&format!(
        "version: 1\nclusters:\n  db: {{ endpoints: [{}] }}\n",
        names.join(", ")
    ));
    assert!(
        e.iter()
            .any(|e| e.contains("more than 64 hostname endpoints")),
        "{e:?}"
    );
}
