//! Schema and validation behaviour, checked on in-memory YAML.

use std::path::PathBuf;
use std::time::Duration;

use super::model::*;
use super::{Diagnostics, parse_sources, parse_str};

fn errors(yaml: &str) -> Vec<String> {
    match parse_str("t.yaml", yaml) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(Diagnostics(d)) => d.iter().map(ToString::to_string).collect(),
    }
}

fn assert_has(errors: &[String], needle: &str) {
    assert!(
        errors.iter().any(|e| e.contains(needle)),
        "no error contains {needle:?}; got:\n{}",
        errors.join("\n")
    );
}

const FULL: &str = r#"
version: 1
defaults:
  health_check: { interval: 2s, timeout: 1s }
clusters:
  api:
    policy: least_request
    endpoints:
      - 127.0.0.1:8081
      - { address: 127.0.0.1:8082, weight: 3, zone: a, priority: 0 }
      - { address: "[::1]:8083", priority: 1 }
    connect_timeout: 250ms
    upstream_protocol: http2
    health_check:
      http: { path: /healthz, expected_statuses: [200, "300-399"], body_contains: ok, host: api.local }
      jitter: 50ms
    outlier_detection: { consecutive_5xx: 3, base_ejection_time: 30s }
    circuit_breakers: { max_connections: 100, max_retries: 5 }
  web-v1:
    endpoints: [127.0.0.1:9001]
    affinity:
      cookie: { name: fl-session, ttl: 1h, path: / }
  web-v2:
    policy: maglev
    endpoints: [127.0.0.1:9002]
    affinity: { header: X-User-Id }
  sticky:
    endpoints: [127.0.0.1:9003]
    affinity: { sticky_cookie: { name: fl-sticky, ttl: 1h } }
listeners:
  public:
    address: 127.0.0.1:10000
    routes:
      - match: { prefix: /api, headers: { x-canary: "true", x-beta: { present: true } } }
        to: api
        timeout: 5s
        retries: { attempts: 3, on: [connect-failure, 5xx], previous_hosts: true, per_try_timeout: 1s }
      - match: { path: /sticky }
        to: sticky
        retries: false
      - split: { web-v1: 90, web-v2: 10 }
fleets:
  edge: { listeners: [public] }
"#;

#[test]
fn full_schema_decodes_with_defaults_applied() {
    let c = parse_str("t.yaml", FULL).unwrap_or_else(|e| panic!("{e}"));
    let api = &c.clusters["api"];
    assert_eq!(api.policy, Policy::LeastRequest);
    assert_eq!(api.endpoints.len(), 3);
    assert_eq!(api.endpoints[1].weight, 3);
    assert_eq!(api.endpoints[1].zone.as_deref(), Some("a"));
    assert_eq!(api.endpoints[2].priority, 1);
    assert_eq!(api.connect_timeout, Duration::from_millis(250));
    assert_eq!(api.upstream_protocol, UpstreamProtocol::Http2);
    let hc = api.health_check.as_ref().unwrap();
    assert_eq!(hc.interval, Duration::from_secs(2), "from defaults");
    assert_eq!(hc.timeout, Duration::from_secs(1), "from defaults");
    assert_eq!(hc.jitter, Duration::from_millis(50), "own");
    assert_eq!(hc.healthy_threshold, 2, "built-in");
    let Probe::Http(http) = &hc.probe else {
        panic!()
    };
    assert_eq!(http.expected_statuses, vec![(200, 200), (300, 399)]);
    let od = api.outlier_detection.as_ref().unwrap();
    assert_eq!(od.consecutive_5xx, Some(3));
    assert_eq!(od.consecutive_gateway_failure, Some(2), "built-in");
    assert_eq!(od.base_ejection_time, Duration::from_secs(30));
    assert_eq!(
        api.circuit_breakers.as_ref().unwrap().max_connections,
        Some(100)
    );

    assert_eq!(
        c.clusters["web-v1"].policy,
        Policy::RingHash,
        "implied by cookie"
    );
    assert_eq!(
        c.clusters["web-v2"].affinity,
        Some(Affinity::Header("x-user-id".into()))
    );
    assert!(matches!(
        c.clusters["sticky"].affinity,
        Some(Affinity::StickyCookie { strict: false, .. })
    ));
    assert_eq!(c.clusters["sticky"].policy, Policy::RoundRobin);
    assert!(
        c.clusters["web-v1"].health_check.is_none(),
        "no probe, no check"
    );

    let routes = &c.listeners["public"].hosts[0].routes;
    assert_eq!(routes[0].matcher.path, PathMatch::Prefix("/api".into()));
    assert_eq!(routes[0].matcher.headers.len(), 2);
    assert_eq!(routes[0].timeout, Some(Duration::from_secs(5)));
    assert_eq!(routes[0].retries.as_ref().unwrap().attempts, 3);
    assert_eq!(routes[1].retries, None, "switched off");
    assert_eq!(
        routes[2].action,
        RouteAction::Split(vec![("web-v1".into(), 90), ("web-v2".into(), 10)])
    );
    let default_retries = parse_str(
        "t.yaml",
        "version: 1\nclusters: { a: { endpoints: [127.0.0.1:1] } }\nlisteners: { l: { address: 127.0.0.1:2, routes: [ { to: a } ] } }\n",
    )
    .unwrap();
    let r = default_retries.listeners["l"].hosts[0].routes[0]
        .retries
        .clone()
        .unwrap();
    assert_eq!(r.attempts, 2);
    assert!(r.previous_hosts);
    assert!(r.on.contains(&"connect-failure".to_string()));
    assert_eq!(c.fleets["edge"].listeners, vec!["public".to_string()]);
}

#[test]
fn reports_every_error_with_location_and_field() {
    let e = errors(
        "version: 1
clusters:
  api:
    polcy: round_robin
    endpoints:
      - 127.0.0.1:8081
      - 127.0.0.1:99999
listeners:
  public:
    address: 127.0.0.1:10000
    routes:
      - to: apii
",
    );
    assert_eq!(e.len(), 3, "{e:#?}");
    assert_eq!(
        e[0],
        "t.yaml:4:5: clusters.api.polcy: unknown field `polcy` (did you mean `policy`?)"
    );
    assert_eq!(
        e[1],
        "t.yaml:7:9: clusters.api.endpoints[1]: port 99999 out of range (1..=65535)"
    );
    assert_eq!(
        e[2],
        "t.yaml:12:13: listeners.public.routes[0].to: unknown cluster `apii` (did you mean `api`?)"
    );
}

#[test]
fn long_form_address_error_names_the_address_field() {
    let e = errors(
        "version: 1\nclusters:\n  api:\n    endpoints:\n      - { address: 127.0.0.1:99999 }\n",
    );
    assert_eq!(
        e,
        vec!["t.yaml:5:20: clusters.api.endpoints[0].address: port 99999 out of range (1..=65535)"]
    );
}

#[test]
fn split_weights_must_be_positive() {
    let e = errors(
        "version: 1
clusters: { a: { endpoints: [127.0.0.1:1] }, b: { endpoints: [127.0.0.1:2] } }
listeners:
  l: { address: 127.0.0.1:3, routes: [ { split: { a: 0, b: 10 } }, { split: {} } ] }
",
    );
    assert_has(&e, "routes[0].split.a: weight 0");
    assert_has(&e, "routes[1].split: a split needs at least one cluster");
}

#[test]
fn hash_affinity_conflicts_with_other_policies() {
    let e = errors(
        "version: 1
clusters:
  a: { policy: least_request, endpoints: [127.0.0.1:1], affinity: { source_ip: true } }
",
    );
    assert_eq!(
        e,
        vec![
            "t.yaml:3:16: clusters.a.policy: source_ip affinity needs policy ring_hash or maglev, not least_request"
        ]
    );
    // Sticky cookies work with any policy.
    parse_str(
        "t.yaml",
        "version: 1\nclusters: { a: { policy: least_request, endpoints: [127.0.0.1:1], affinity: { sticky_cookie: {} } } }\n",
    )
    .unwrap();
}

#[test]
fn ranges_and_timeouts_are_checked() {
    let e = errors(
        "version: 1
clusters:
  a:
    endpoints: [127.0.0.1:1]
    health_check: { tcp: {}, interval: 1s, timeout: 2s, healthy_threshold: 0 }
    outlier_detection: { max_ejection_percent: 101 }
    connect_timeout: 10
",
    );
    assert_has(
        &e,
        "clusters.a.health_check.timeout: timeout (2s) must not exceed interval (1s)",
    );
    assert_has(
        &e,
        "clusters.a.health_check.healthy_threshold: 0 is out of range (1..=100)",
    );
    assert_has(
        &e,
        "clusters.a.outlier_detection.max_ejection_percent: 101 is out of range",
    );
    assert_has(&e, "clusters.a.connect_timeout: `10` needs a unit");
}

#[test]
fn active_checks_need_endpoints() {
    let e =
        errors("version: 1\nclusters:\n  a:\n    endpoints: []\n    health_check: { tcp: {} }\n");
    assert_has(
        &e,
        "clusters.a.endpoints: an active health check is configured but there are no endpoints",
    );
}

#[test]
fn duplicates_across_files_name_both_places() {
    let sources = vec![
        (
            PathBuf::from("a.yaml"),
            "version: 1\nclusters:\n  api: { endpoints: [127.0.0.1:1] }\n".to_string(),
        ),
        (
            PathBuf::from("b.yaml"),
            "version: 1\nclusters:\n  web: { endpoints: [127.0.0.1:2] }\n  api: { endpoints: [127.0.0.1:3] }\n"
                .to_string(),
        ),
    ];
    let Err(Diagnostics(d)) = parse_sources(&sources) else {
        panic!()
    };
    assert_eq!(
        d[0].to_string(),
        "b.yaml:4:3: clusters.api: defined twice: here and at a.yaml:3:3"
    );
}

#[test]
fn files_merge_and_reference_each_other() {
    let sources = vec![
        (
            PathBuf::from("clusters.yaml"),
            "version: 1\nclusters:\n  api: { endpoints: [127.0.0.1:1] }\n".to_string(),
        ),
        (
            PathBuf::from("listeners.yaml"),
            "version: 1\nlisteners:\n  l: { address: 127.0.0.1:2, routes: [ { to: api } ] }\n"
                .to_string(),
        ),
    ];
    let c = parse_sources(&sources).unwrap();
    assert_eq!(c.clusters.len(), 1);
    assert_eq!(c.listeners.len(), 1);
}

#[test]
fn misc_schema_errors() {
    let e = errors(
        "version: 2
clusters:
  flotilla_xds: { endpoints: [127.0.0.1:1] }
  \"bad name\": { endpoints: [127.0.0.1:1] }
  a: { endpoints: [127.0.0.1:1, 127.0.0.1:1], policy: fastest, affinity: { cookie: {}, header: x } }
  b: { endpoints: [ { address: 127.0.0.1:1, priority: 1 } ] }
  c: { endpoints: [api..local:80], upstream_protocol: http3 }
listeners:
  l1: { address: 127.0.0.1:5, routes: [ { to: a, split: { a: 1 } }, { match: { prefix: api }, to: a } ] }
  l2: { address: 127.0.0.1:5, routes: [] }
fleets:
  f: { listeners: [l3] }
",
    );
    for needle in [
        "version: unsupported schema version",
        "clusters.flotilla_xds: names starting with `flotilla_` are reserved",
        "clusters.bad name: `bad name` is not a valid name",
        "clusters.a.endpoints[1]: 127.0.0.1:1 is listed twice",
        "clusters.a.policy: unknown policy `fastest`",
        "clusters.a.affinity: choose one kind of affinity, not cookie and header",
        "clusters.b.endpoints: priorities must run from 0 without gaps",
        "clusters.c.endpoints[0]: `api..local` is not a valid DNS name",
        "clusters.c.upstream_protocol: unknown protocol `http3`",
        "listeners.l1.routes[0].split: a route has one action: `split` cannot go with `to`",
        "listeners.l1.routes[1].match.prefix: `api` must start with /",
        "listeners.l2.routes: a listener needs at least one route",
        "fleets.f.listeners[0]: unknown listener `l3`",
    ] {
        assert_has(&e, needle);
    }
}

#[test]
fn yaml_syntax_and_empty_files() {
    assert_has(
        &errors("version: 1\nclusters: [\n"),
        "t.yaml:3:1: invalid YAML",
    );
    assert_has(&errors(""), "t.yaml:1:1: empty file");
    assert_has(&errors("clusters: {}\n"), "missing `version: 1`");
}

#[test]
fn same_input_in_any_key_order_decodes_equal() {
    let a = parse_str(
        "t.yaml",
        "version: 1\nclusters: { x: { endpoints: [127.0.0.1:1] }, y: { endpoints: [127.0.0.1:2] } }\n",
    )
    .unwrap();
    let b = parse_str(
        "t.yaml",
        "clusters: { y: { endpoints: [127.0.0.1:2] }, x: { endpoints: [127.0.0.1:1] } }\nversion: 1\n",
    )
    .unwrap();
    assert_eq!(a, b);
}

#[test]
fn version_is_the_number_one() {
    let e = errors("version: \"1\"\n");
    assert_has(
        &e,
        "t.yaml:1:10: version: the schema version is the number 1, not the string \"1\"",
    );
    assert_has(&errors("version: '1'\n"), "not the string");
    assert_has(&errors("version: 2\n"), "unsupported schema version");
}

#[test]
fn defaults_are_validated_when_nothing_inherits_them() {
    let e = errors("version: 1\ndefaults:\n  connect_timeout: -1s\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_has(&e, "t.yaml:3:20: defaults.connect_timeout:");
    // Inherited, it is reported once, where a cluster takes it.
    let e = errors("version: 1\ndefaults:\n  connect_timeout: -1s\nclusters:\n  api: {}\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_has(&e, "t.yaml:3:20: clusters.api.connect_timeout:");
}

#[test]
fn allow_empty_is_a_boolean() {
    let c = parse_str("t.yaml", "version: 1\nallow_empty: true\n").expect("valid");
    assert!(c.allow_empty);
    assert!(
        !parse_str("t.yaml", "version: 1\n")
            .expect("valid")
            .allow_empty
    );
    assert_has(
        &errors("version: 1\nallow_empty: yes\n"),
        "allow_empty: expected true or false",
    );
}

#[test]
fn many_unknown_references_are_all_reported() {
    let mut yaml = "version: 1\nclusters:\n  web: {}\nlisteners:\n  l:\n    address: 127.0.0.1:1\n    routes:\n".to_string();
    for i in 0..300 {
        yaml.push_str(&format!(
            "      - {{ match: {{ path: /{i} }}, to: wbe{i} }}\n"
        ));
    }
    let e = errors(&yaml);
    assert_eq!(e.len(), 300);
    assert_has(&e, "unknown cluster `wbe0` (did you mean `web`?)");
}
