//! `mesh:`: values, defaults, and one test per mistake.

use std::time::Duration;

use crate::config::model::{MeshDefault, MeshProtocol, service_cluster};
use crate::config::{Config, Diagnostics, parse_str};

fn parse(mesh: &str) -> Result<Config, Vec<String>> {
    let yaml = format!("version: 1\nmesh:\n{mesh}");
    parse_str("m.yaml", &yaml).map_err(|Diagnostics(d)| d.iter().map(ToString::to_string).collect())
}

const OK: &str = "  services:
    payments: { port: 9090 }
    orders:
      port: 8080
      protocol: grpc
      calls: { payments: 15101 }
    frontend:
      calls: { orders: 15102 }
  allow:
    - { from: orders, to: payments, methods: [POST], paths: [/charge, /v1/*] }
    - { from: frontend, to: orders }
";

#[test]
fn a_mesh_with_defaults() {
    let c = parse(OK).unwrap();
    let m = c.mesh.as_ref().unwrap();
    assert_eq!(m.trust_domain, None);
    assert_eq!(m.certificate_ttl, Duration::from_secs(24 * 3600));
    assert_eq!(m.default, MeshDefault::Deny);
    assert_eq!(m.services["payments"].port, Some(9090));
    assert_eq!(m.services["payments"].protocol, MeshProtocol::Http);
    assert_eq!(m.services["orders"].protocol, MeshProtocol::Grpc);
    assert_eq!(m.services["orders"].calls["payments"], Some(15101));
    assert_eq!(m.services["frontend"].port, None);
    assert_eq!(m.allow[0].paths, ["/charge", "/v1/*"]);
    assert_eq!(m.allow[1].methods, Vec::<String>::new());
    // Callable services get a cluster of instances; frontend (no port) does not.
    assert!(c.clusters.contains_key(&service_cluster("payments")));
    assert!(c.clusters.contains_key(&service_cluster("orders")));
    assert!(!c.clusters.contains_key(&service_cluster("frontend")));
    let c =
        parse("  trust_domain: example.org\n  certificate_ttl: 1m\n  default: allow\n").unwrap();
    let m = c.mesh.unwrap();
    assert_eq!(m.trust_domain.as_deref(), Some("example.org"));
    assert_eq!(m.certificate_ttl, Duration::from_secs(60));
    assert_eq!(m.default, MeshDefault::Allow);
}

#[test]
fn mistakes_are_located() {
    let table = [
        (
            "  certificate_ttl: 30s\n",
            "m.yaml:3:20: mesh.certificate_ttl: 30s is out of range",
        ),
        ("  default: maybe\n", "mesh.default: unknown value `maybe`"),
        (
            "  trust_domain: Example.ORG\n",
            "mesh.trust_domain: 'E' is not allowed",
        ),
        (
            "  services:\n    a: { calls: { b: 1 } }\n",
            "mesh.services.a.calls.b: unknown service `b`",
        ),
        (
            "  services:\n    a: { port: 1, calls: { a: 2 } }\n",
            "does not call itself",
        ),
        (
            "  services:\n    a: { calls: { b: 2 } }\n    b: {}\n",
            "service `b` has no `port`",
        ),
        (
            "  services:\n    a: { port: 80, calls: { b: 80 } }\n    b: { port: 81 }\n",
            "mesh.services.a.calls.b: port 80 is already used by the service's own `port`",
        ),
        (
            "  services:\n    a: { calls: { b: 90, c: 90 } }\n    b: { port: 1 }\n    c: { port: 2 }\n",
            "port 90 is already used by the call to `b`",
        ),
        (
            "  services:\n    a: { port: 1 }\n  allow:\n    - { from: x, to: a }\n",
            "m.yaml:6:15: mesh.allow[0].from: unknown service `x`",
        ),
        (
            "  services:\n    t: { port: 1, protocol: tcp }\n    a: {}\n  allow:\n    - { from: a, to: t, paths: [/x] }\n",
            "mesh.allow[0].paths: `t` is a tcp service",
        ),
        (
            "  services:\n    a: { port: 1 }\n  allow:\n    - { from: a, to: a, paths: [charge] }\n",
            "mesh.allow[0].paths[0]: `charge` must start with /",
        ),
        (
            "  services:\n    a: { port: 1 }\n  allow:\n    - { from: a, to: a, paths: [/a*b] }\n",
            "`*` only at the end",
        ),
        (
            "  services:\n    a: { port: 1 }\n  allow:\n    - { from: a, to: a, methods: [get] }\n",
            "mesh.allow[0].methods[0]: `get` is not an HTTP method",
        ),
        (
            "  services:\n    a: { port: 0 }\n",
            "mesh.services.a.port: 0 is out of range",
        ),
        (
            "  services:\n    a: { prot: http }\n",
            "mesh.services.a.prot",
        ),
        (
            "  services:\n    a: { protocol: udp }\n",
            "unknown value `udp`",
        ),
        ("  services:\n    a:b: {}\n", "is not a valid name"),
        (
            "  allow:\n    - { from: a }\n",
            "mesh.allow[0].to: missing field `to`",
        ),
    ];
    for (yaml, want) in table {
        let errors = parse(yaml).unwrap_err();
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "{yaml}: {errors:?}"
        );
    }
}

#[test]
fn a_fleet_may_not_take_a_service_name_nor_mesh_be_written_twice() {
    let yaml = "version: 1\nmesh:\n  services: { a: { port: 1 } }\nlisteners:\n  l: { address: 127.0.0.1:1, routes: [] }\nfleets:\n  a: { listeners: [l] }\n";
    let e = parse_str("m.yaml", yaml).unwrap_err().to_string();
    assert!(e.contains("fleets.a: is a mesh service"), "{e}");
    let files = [
        ("a.yaml".into(), "version: 1\nmesh: {}\n".to_string()),
        ("b.yaml".into(), "version: 1\nmesh: {}\n".to_string()),
    ];
    let e = crate::config::load::parse_sources(&files)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("b.yaml:2:1: mesh: defined twice: here and at a.yaml:2"),
        "{e}"
    );
}

#[test]
fn limits() {
    let many: String = (0..=crate::config::model::Mesh::MAX_METHODS)
        .map(|_| "GET")
        .collect::<Vec<_>>()
        .join(", ");
    let yaml = format!(
        "  services:\n    a: {{ port: 1 }}\n  allow:\n    - {{ from: a, to: a, methods: [{many}] }}\n"
    );
    let e = parse(&yaml).unwrap_err();
    assert!(e.iter().any(|e| e.contains("at most 16 entries")), "{e:?}");
}

const VIPS: &str = "  outbound: registry_only
  services:
    payments: { port: 9090, vip: 127.240.0.2:80 }
    orders: { port: 8080, vip: 127.240.0.3:80, calls: { payments: 15101 } }
    frontend:
      calls: [orders, payments]
";

#[test]
fn vips_and_calls_through_them() {
    use crate::config::model::MeshOutbound;
    let c = parse(VIPS).unwrap();
    let m = c.mesh.as_ref().unwrap();
    assert_eq!(m.outbound, MeshOutbound::RegistryOnly);
    assert_eq!(
        m.services["payments"].vip,
        Some("127.240.0.2:80".parse().unwrap())
    );
    assert_eq!(m.services["frontend"].calls["orders"], None);
    assert_eq!(m.services["frontend"].calls["payments"], None);
    assert_eq!(m.services["orders"].calls["payments"], Some(15101));
    assert_eq!(m.services["frontend"].vip, None);
    // The default is passthrough.
    let m = parse(OK).unwrap().mesh.unwrap();
    assert_eq!(m.outbound, MeshOutbound::Passthrough);
}

#[test]
fn vip_mistakes_are_located() {
    let table = [
        (
            "  services:\n    a: { port: 1, vip: 127.240.0.2:80 }\n    b: { port: 2, vip: 127.240.0.2:80 }\n",
            "m.yaml:5:5: mesh.services.b.vip: 127.240.0.2:80 is already the VIP of service `a`",
        ),
        (
            "  services:\n    a: { port: 1, vip: payments:80 }\n",
            "m.yaml:4:24: mesh.services.a.vip: `payments` is not an IP address",
        ),
        (
            "  services:\n    a: { port: 1, vip: 127.240.0.2 }\n",
            "mesh.services.a.vip:",
        ),
        (
            "  services:\n    a: { port: 1, vip: 0.0.0.0:80 }\n",
            "a VIP is one address and a port",
        ),
        (
            "  services:\n    a: { port: 1 }\n    b: { calls: [a] }\n",
            "m.yaml:5:5: mesh.services.b.calls.a: service `a` has no `vip`",
        ),
        (
            "  services:\n    b: { calls: [x] }\n",
            "mesh.services.b.calls.x: unknown service `x`",
        ),
        (
            "  services:\n    a: { port: 1, vip: 127.240.0.2:80 }\n    b: { calls: [a, a] }\n",
            "m.yaml:5:21: mesh.services.b.calls[1]: `a` is listed twice",
        ),
        (
            "  services:\n    a: { port: 1, vip: 127.240.0.2:80 }\n    b: { calls: [\"\"] }\n",
            "mesh.services.b.calls[0]",
        ),
        (
            "  services:\n    a: { calls: 7 }\n",
            "mesh.services.a.calls",
        ),
        ("  outbound: open\n", "mesh.outbound: unknown value `open`"),
        // A VIP at a caller's local port was NACKed by its sidecar (duplicate address).
        (
            "  services:\n    a: { port: 1, vip: 127.0.0.1:15101 }\n    b: { calls: { a: 15101 } }\n",
            "m.yaml:4:5: mesh.services.a.vip: 127.0.0.1:15101: 127.0.0.1 is where sidecars listen",
        ),
        (
            "  services:\n    a: { port: 1, vip: \"[::1]:80\" }\n",
            "mesh.services.a.vip: [::1]:80: a VIP is an IPv4 address",
        ),
        (
            "  services:\n    a: { port: 1, vip: 169.254.169.254:80 }\n",
            "mesh.services.a.vip: 169.254.169.254:80 is link-local",
        ),
        (
            "  services:\n    a: { port: 1, vip: 224.0.0.1:80 }\n",
            "not a VIP",
        ),
        (
            "  services:\n    a: { port: 1, vip: 127.240.0.2:80 }\n    b: { port: 2, vip: \"[::ffff:127.240.0.2]:80\" }\n",
            "mesh.services.b.vip: 127.240.0.2:80 is already the VIP of service `a`",
        ),
    ];
    for (yaml, want) in table {
        let errors = parse(yaml).unwrap_err();
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "{yaml}: {errors:?}"
        );
    }
}

#[test]
fn a_vip_may_not_be_a_listener_or_an_endpoint_address() {
    let yaml = "version: 1
listeners:
  l: { address: 127.0.0.2:8000, routes: [{ match: { prefix: / }, to: web }] }
clusters:
  web: { endpoints: [127.0.0.3:9000] }
mesh:
  services:
    a: { port: 1, vip: 127.0.0.2:8000 }
    b: { port: 2, vip: 127.0.0.3:9000 }
";
    let e = parse_str("m.yaml", yaml).unwrap_err().to_string();
    assert!(
        e.contains(
            "m.yaml:8:5: mesh.services.a.vip: 127.0.0.2:8000 is the address of listener `l`"
        ),
        "{e}"
    );
    assert!(
        e.contains("mesh.services.b.vip: 127.0.0.3:9000 is an endpoint of cluster `web`"),
        "{e}"
    );
}

#[test]
fn too_many_calls_in_a_list() {
    let names: Vec<String> = (0..=crate::config::model::Mesh::MAX_CALLS)
        .map(|i| format!("s{i}"))
        .collect();
    let yaml = format!("  services:\n    a: {{ calls: [{}] }}\n", names.join(", "));
    let e = parse(&yaml).unwrap_err();
    assert!(
        e.iter().any(|e| e.contains("257 calls; at most 256")),
        "{e:?}"
    );
}
