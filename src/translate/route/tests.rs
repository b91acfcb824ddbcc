//! Virtual hosts, actions and per-route filters as Envoy receives them.

use envoy_types::pb::envoy::config::route::v3::{redirect_action, route};

use crate::config::parse_str;
use crate::translate::{Overlay, Transport, translate};

const EDGE: &str = r#"
version: 1
clusters: { web: { endpoints: [127.0.0.1:1] }, shadow: { endpoints: [127.0.0.1:2] } }
listeners:
  edge:
    address: 127.0.0.1:3
    hosts:
      www:
        domains: [www.example.com]
        routes:
          - { match: { prefix: /old/ }, redirect: { prefix: /new/, code: 308 } }
          - { to: web, mirror: { to: shadow, percent: 10 }, rate_limit: { requests_per_second: 5 }, cors: { allow_origins: ["*"] } }
      default:
        domains: ["*"]
        routes: [ { direct_response: { status: 404, body: nope } } ]
"#;

#[test]
fn hosts_become_virtual_hosts_with_their_routes_and_filters() {
    let config = parse_str("t.yaml", EDGE).unwrap_or_else(|e| panic!("{e}"));
    let t = translate(&config, &Overlay::default(), Transport::Ads);
    let rc = &t.routes["edge"];
    let names: Vec<&str> = rc.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["default", "www"]);
    let www = &rc.virtual_hosts[1];
    assert_eq!(www.domains, ["www.example.com"]);
    assert_eq!(www.routes[0].name, "edge.hosts.www.routes[0]");
    let Some(route::Action::Redirect(r)) = &www.routes[0].action else {
        panic!("{:?}", www.routes[0].action);
    };
    assert_eq!(
        r.path_rewrite_specifier,
        Some(redirect_action::PathRewriteSpecifier::PrefixRewrite(
            "/new/".into()
        ))
    );
    assert_eq!(r.response_code, 4, "308 is PERMANENT_REDIRECT");
    let Some(route::Action::Route(a)) = &www.routes[1].action else {
        panic!("forwarding route");
    };
    assert_eq!(a.request_mirror_policies[0].cluster, "shadow");
    let mut filters: Vec<&str> = www.routes[1]
        .typed_per_filter_config
        .keys()
        .map(String::as_str)
        .collect();
    filters.sort_unstable();
    assert_eq!(
        filters,
        [
            "envoy.filters.http.cors",
            "envoy.filters.http.local_ratelimit"
        ]
    );
    assert_eq!(t.route_clusters["edge"], ["shadow", "web"]);
    assert!(matches!(
        rc.virtual_hosts[0].routes[0].action,
        Some(route::Action::DirectResponse(_))
    ));
}
