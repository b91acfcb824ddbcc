//! `auth`, `fault` and `tracing` in the protos: which filters a listener gets and how each
//! route switches them on or off.

use super::{Transport, translate};
use crate::config::parse_str;
use crate::overlay::Overlay;

const YAML: &str = r#"
version: 1
clusters:
  web: { endpoints: [127.0.0.1:1] }
  authz: { endpoints: [127.0.0.1:3] }
  otel: { endpoints: [127.0.0.1:4], upstream_protocol: http2 }
listeners:
  public:
    address: 127.0.0.1:2
    auth: { jwt: { issuer: https://i, jwks: "https://login.example.com/keys" } }
    tracing: { collector: otel, sampling: 5 }
    routes:
      - { match: { prefix: /open }, to: web, auth: none }
      - { match: { prefix: /ext }, to: web, auth: { external: { cluster: authz } } }
      - { match: { prefix: /chaos }, to: web, fault: { abort: { status: 503 } } }
"#;

#[test]
fn a_listener_gets_its_filters_and_each_route_its_own_auth() {
    let config = parse_str("t.yaml", YAML).expect("valid");
    let t = translate(&config, &Overlay::default(), Transport::Ads);
    assert!(t.clusters.contains_key("jwks:login.example.com:443"));
    let listener = crate::envoy::json::message_to_json(&t.listeners["public"])
        .expect("json")
        .to_string();
    let order: Vec<usize> = [
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.fault",
        "envoy.filters.http.router",
    ]
    .iter()
    .map(|f| listener.find(&format!("\"name\":\"{f}\"")).expect(f))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{listener}");
    assert!(listener.contains("envoy.tracers.opentelemetry"));
    let routes = &t.routes["public"].virtual_hosts[0].routes;
    let filters = |i: usize| {
        let mut names: Vec<&str> = routes[i]
            .typed_per_filter_config
            .keys()
            .map(String::as_str)
            .collect();
        names.sort();
        names
    };
    // Every route says what jwt_authn does for it; only /ext keeps ext_authz on.
    assert_eq!(
        filters(0),
        [
            "envoy.filters.http.ext_authz",
            "envoy.filters.http.jwt_authn"
        ]
    );
    assert_eq!(filters(1), ["envoy.filters.http.jwt_authn"]);
    assert_eq!(
        filters(2),
        [
            "envoy.filters.http.ext_authz",
            "envoy.filters.http.fault",
            "envoy.filters.http.jwt_authn"
        ]
    );
    assert_eq!(
        routes[2].decorator.as_ref().map(|d| d.operation.as_str()),
        Some("public.routes[2]")
    );
}

#[test]
fn clusters_envoy_resolves_ask_the_dns_servers_serve_was_given() {
    let yaml = r#"
version: 1
clusters:
  db: { endpoints: [db.internal:5432], resolve: envoy }
  web: { endpoints: [127.0.0.1:1] }
listeners:
  public:
    address: 127.0.0.1:2
    auth: { jwt: { issuer: https://i, jwks: "https://login.example.com/keys", jwks_cache: 10s } }
    routes: [ { to: db } ]
"#;
    let resolver = |t: &super::Translation, name: &str| {
        t.clusters[name]
            .typed_dns_resolver_config
            .as_ref()
            .map(|r| {
                crate::envoy::json::message_to_json(r)
                    .expect("json")
                    .to_string()
            })
    };
    // Without --dns-server: Envoy's own resolver configuration.
    let config = parse_str("t.yaml", yaml).expect("valid");
    let t = translate(&config, &Overlay::default(), Transport::Ads);
    assert_eq!(resolver(&t, "db"), None);
    assert_eq!(resolver(&t, "jwks:login.example.com:443"), None);
    // With it: exactly those servers, for every cluster Envoy resolves, and no other.
    let policy = crate::config::LoadPolicy {
        dns_servers: vec!["127.0.0.1:5353".parse().unwrap()],
        ..Default::default()
    };
    let config = crate::config::parse_sources_with(&[("t.yaml".into(), yaml.to_string())], &policy)
        .expect("valid");
    let t = translate(&config, &Overlay::default(), Transport::Ads);
    for name in ["db", "jwks:login.example.com:443"] {
        let r = resolver(&t, name).expect(name);
        assert!(r.contains("envoy.network.dns_resolver.cares"), "{r}");
        assert!(r.contains("\"port_value\":5353"), "{r}");
        assert!(r.contains("\"no_default_search_domain\":true"), "{r}");
    }
    assert_eq!(resolver(&t, "web"), None, "an EDS cluster resolves nothing");
    assert_eq!(
        t.endpoints.keys().collect::<Vec<_>>(),
        ["web"],
        "no EDS resource for a cluster Envoy resolves (it never asks for one)"
    );
    let listener = crate::envoy::json::message_to_json(&t.listeners["public"])
        .expect("json")
        .to_string();
    assert!(
        listener.contains("\"cache_duration\":\"10s\""),
        "{listener}"
    );
}
