//! Virtual hosts, matches, actions, header edits and traffic policy: what decodes and every
//! mistake reported at once with its place.

use crate::config::model::*;
use crate::config::{Diagnostics, parse_str};

const CLUSTERS: &str =
    "version: 1\nclusters: { a: { endpoints: [127.0.0.1:1] }, b: { endpoints: [127.0.0.1:2] } }\n";

fn errors(listeners: &str) -> Vec<String> {
    match parse_str("t.yaml", &format!("{CLUSTERS}listeners:\n{listeners}")) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(Diagnostics(d)) => d.iter().map(ToString::to_string).collect(),
    }
}

fn config(listeners: &str) -> Config {
    parse_str("t.yaml", &format!("{CLUSTERS}listeners:\n{listeners}"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn assert_errors(got: &[String], want: &[&str]) {
    for w in want {
        assert!(
            got.iter().any(|e| e.contains(w)),
            "no error contains {w:?}; got:\n{}",
            got.join("\n")
        );
    }
    assert_eq!(got.len(), want.len(), "{}", got.join("\n"));
}

#[test]
fn routes_on_a_listener_are_one_host_for_every_domain() {
    let c = config("  l: { address: 127.0.0.1:3, routes: [ { to: a } ] }\n");
    let hosts = &c.listeners["l"].hosts;
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].name, "l");
    assert_eq!(hosts[0].domains, vec!["*"]);
}

#[test]
fn hosts_decode_in_name_order_with_their_own_routes() {
    let c = config(
        r#"  l:
    address: 127.0.0.1:3
    hosts:
      web: { domains: [WWW.example.com, "*.example.com"], routes: [ { to: a } ] }
      api: { domains: [api.example.net], routes: [ { to: b, mirror: { to: a, percent: 5 } } ] }
"#,
    );
    let l = &c.listeners["l"];
    let names: Vec<&str> = l.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["api", "web"]);
    assert_eq!(l.hosts[1].domains, ["www.example.com", "*.example.com"]);
    let clusters: Vec<&str> = l.clusters().collect();
    assert_eq!(clusters, ["b", "a", "a"], "mirror clusters count as used");
}

#[test]
fn a_domain_on_two_hosts_is_an_error_at_the_second() {
    let got = errors(
        r#"  l:
    address: 127.0.0.1:3
    hosts:
      one: { domains: [example.com], routes: [ { to: a } ] }
      two: { domains: [Example.com, "example.com:80", "a*b"], routes: [ { to: a } ] }
"#,
    );
    assert_errors(
        &got,
        &[
            "t.yaml:8:24: listeners.l.hosts.two.domains[0]: `example.com` is already a domain of host `one` (t.yaml:7:24)",
            "listeners.l.hosts.two.domains[1]: `example.com:80`: Envoy listeners match the Host without its port",
            "listeners.l.hosts.two.domains[2]: `a*b` is not a domain",
        ],
    );
}

#[test]
fn matches_cover_regex_headers_query_and_methods() {
    let c = config(
        r#"  l:
    address: 127.0.0.1:3
    routes:
      - match:
          regex: "^/v[0-9]+/users/[a-z]+$"
          headers: { x-a: { regex: "^b.*" }, x-b: { absent: true }, x-c: { present: true } }
          query: { debug: "1", trace: { present: true } }
          methods: [get, HEAD]
        to: a
"#,
    );
    let m = &c.listeners["l"].hosts[0].routes[0].matcher;
    assert_eq!(m.path, PathMatch::Regex("^/v[0-9]+/users/[a-z]+$".into()));
    assert_eq!(m.headers[0].rule, HeaderRule::Regex("^b.*".into()));
    assert_eq!(m.headers[1].rule, HeaderRule::Present(false));
    assert_eq!(m.query[0].rule, HeaderRule::Exact("1".into()));
    assert_eq!(m.methods, ["GET", "HEAD"]);
}

#[test]
fn re2_rejects_look_around_and_backreferences() {
    let got = errors(
        r#"  l:
    address: 127.0.0.1:3
    routes:
      - { match: { regex: "^/(?!admin)" }, to: a }
      - { match: { regex: "(a)\\1" }, to: a }
      - { match: { prefix: /, headers: { x: { regex: "[" } } }, to: a }
      - { match: { prefix: /, query: { q: { absent: true } }, methods: [FETCH] }, to: a }
"#,
    );
    assert_errors(
        &got,
        &[
            "t.yaml:7:27: listeners.l.routes[0].match.regex: `^/(?!admin)` is not an RE2 regex: error: look-around, including look-ahead and look-behind, is not supported (RE2 has no look-around)",
            "listeners.l.routes[1].match.regex: `(a)\\1` is not an RE2 regex",
            "listeners.l.routes[2].match.headers.x.regex: `[` is not an RE2 regex",
            "listeners.l.routes[3].match.query.q: Envoy matches query parameters that are present",
            "listeners.l.routes[3].match.methods[0]: `FETCH` is not an HTTP method",
        ],
    );
}

#[test]
fn actions_decode() {
    let c = config(
        r#"  l:
    address: 127.0.0.1:3
    routes:
      - { match: { prefix: /old/ }, redirect: { scheme: https, host: new.example.com, port: 8443, prefix: /new/, code: 308 } }
      - { match: { path: /down }, direct_response: { status: 503, body: "back soon" } }
      - { to: a, rewrite: { regex: { pattern: "^/api/(.*)", substitution: "/\\1" }, auto_host: true } }
"#,
    );
    let r = &c.listeners["l"].hosts[0].routes;
    assert_eq!(
        r[0].action,
        RouteAction::Redirect(Redirect {
            scheme: Some("https".into()),
            host: Some("new.example.com".into()),
            port: Some(8443),
            path: Some(RedirectPath::Prefix("/new/".into())),
            code: 308,
        })
    );
    assert_eq!(
        r[1].action,
        RouteAction::DirectResponse {
            status: 503,
            body: Some("back soon".into())
        }
    );
    let rw = r[2].rewrite.as_ref().expect("rewrite");
    assert_eq!(rw.host, Some(HostRewrite::Auto));
}

#[test]
fn one_action_per_route_and_answers_take_no_forwarding_policy() {
    let got = errors(
        r#"  l:
    address: 127.0.0.1:3
    routes:
      - { to: a, redirect: { path: /x } }
      - { redirect: { code: 301 } }
      - { redirect: { path: /x, code: 300 } }
      - { redirect: { path: /x }, timeout: 1s }
      - { direct_response: { status: 200, body: "x" }, mirror: { to: a } }
      - { direct_response: { status: 700 } }
      - {}
"#,
    );
    assert_errors(
        &got,
        &[
            "t.yaml:7:18: listeners.l.routes[0].redirect: a route has one action: `redirect` cannot go with `to`",
            "listeners.l.routes[1].redirect: a redirect changes at least one of",
            "listeners.l.routes[2].redirect.code: 300 is not a redirect code",
            "listeners.l.routes[3].timeout: `timeout` applies to forwarded requests",
            "listeners.l.routes[4].mirror: `mirror` applies to forwarded requests",
            "listeners.l.routes[5].direct_response.status: 700 is out of range",
            "listeners.l.routes[6]: a route needs one of",
        ],
    );
}

#[test]
fn headers_and_policies_decode_and_are_checked() {
    let c = config(
        r#"  l:
    address: 127.0.0.1:3
    hosts:
      h:
        domains: ["*"]
        headers: { response: { remove: [Server] } }
        routes:
          - to: a
            headers: { request: { add: { x-a: "1" }, set: { x-client: "%DOWNSTREAM_REMOTE_ADDRESS%" } } }
            rate_limit: { requests_per_second: 100, burst: 200 }
            websocket: true
            cors: { allow_origins: ["*"], max_age: 10m }
"#,
    );
    let h = &c.listeners["l"].hosts[0];
    assert_eq!(h.headers.response.remove, ["server"]);
    let r = &h.routes[0];
    assert_eq!(
        r.headers.request.set["x-client"],
        "%DOWNSTREAM_REMOTE_ADDRESS%"
    );
    assert_eq!(
        r.rate_limit,
        Some(RateLimit {
            requests_per_second: 100,
            burst: 200
        })
    );
    assert!(r.websocket);
    let got = errors(
        r#"  l:
    address: 127.0.0.1:3
    routes:
      - to: a
        headers: { request: { set: { host: x, ":path": y } }, response: { add: { x-a: "bad\nvalue" } } }
        rate_limit: { requests_per_second: 10, burst: 5 }
        mirror: { to: nope, percent: 101 }
        cors: { allow_methods: [GET] }
"#,
    );
    assert_errors(
        &got,
        &[
            "listeners.l.routes[0].headers.request.set: `host` cannot be edited",
            "listeners.l.routes[0].headers.request.set: `:path` cannot be edited",
            "listeners.l.routes[0].headers.response.add.x-a: not a header value",
            "listeners.l.routes[0].rate_limit.burst: burst 5 is below requests_per_second 10",
            "listeners.l.routes[0].mirror.percent: 101 is out of range",
            "listeners.l.routes[0].mirror.to: unknown cluster `nope`",
            "listeners.l.routes[0].cors: missing field `allow_origins`",
        ],
    );
}

#[test]
fn grpc_listeners_refuse_what_grpc_clients_cannot_run() {
    let got = errors(
        r#"  svc:
    proxyless_grpc: true
    hosts:
      h:
        domains: [svc]
        routes:
          - { match: { prefix: /, methods: [POST], query: { a: "1" } }, to: a, rate_limit: { requests_per_second: 1 } }
          - { direct_response: { status: 503 } }
"#,
    );
    assert_errors(
        &got,
        &[
            "listeners.svc.hosts.h.routes[0].match.methods: gRPC clients cannot run method matches",
            "listeners.svc.hosts.h.routes[0].match.query: gRPC clients cannot run query parameter matches",
            "listeners.svc.hosts.h.routes[0].rate_limit: gRPC clients cannot run `rate_limit`",
            "listeners.svc.hosts.h.routes[1].direct_response: gRPC clients cannot run `direct_response`",
        ],
    );
}
