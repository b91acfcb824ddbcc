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
