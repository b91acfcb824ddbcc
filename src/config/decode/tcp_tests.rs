//! `protocol: tcp | tls_passthrough` listeners: what decodes, and every mistake at once.

use crate::config::model::{SniRoute, TcpForward};
use crate::config::{Diagnostics, parse_str};

fn errors(yaml: &str) -> Vec<String> {
    match parse_str("t.yaml", yaml) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(Diagnostics(d)) => d.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn tcp_and_passthrough_listeners_decode() {
    let c = parse_str(
        "t.yaml",
        "version: 1
clusters:
  pg: { endpoints: [127.0.0.1:1], policy: maglev, affinity: { source_ip: true } }
  a: { endpoints: [127.0.0.1:2] }
  b: { endpoints: [127.0.0.1:3] }
listeners:
  db: { address: 127.0.0.1:5, protocol: tcp, to: pg }
  tls:
    address: 127.0.0.1:6
    protocol: tls_passthrough
    sni: { \"*.B.example.com\": b, a.example.com: a }
  web: { address: 127.0.0.1:7, protocol: http, routes: [ { to: a } ] }
",
    )
    .unwrap();
    assert_eq!(c.listeners["db"].tcp, Some(TcpForward::To("pg".into())));
    assert!(c.listeners["db"].hosts.is_empty());
    let sni = |n: &str, c: &str| SniRoute {
        server_name: n.into(),
        cluster: c.into(),
    };
    assert_eq!(
        c.listeners["tls"].tcp,
        Some(TcpForward::Sni(vec![
            sni("*.b.example.com", "b"),
            sni("a.example.com", "a")
        ]))
    );
    assert_eq!(c.listeners["web"].tcp, None);
    let used: Vec<&str> = c.listeners["tls"].clusters().collect();
    assert_eq!(used, ["b", "a"]);
}

#[test]
fn tcp_mistakes_are_all_reported_with_their_place() {
    let e = errors(
        "version: 1
clusters:
  a: { endpoints: [127.0.0.1:1], policy: ring_hash, affinity: { header: x-user } }
listeners:
  t1: { address: 127.0.0.1:5, protocol: tcp, to: a, routes: [ { to: a } ] }
  t2: { address: 127.0.0.1:6, protocol: tcp, to: nope }
  t3: { address: 127.0.0.1:7, protocol: tcp }
  t4: { address: 127.0.0.1:8, protocol: tls_passthrough, sni: { \"a.*.com\": a, A.com: a, a.com: a, x.com: zz } }
  t5: { address: 127.0.0.1:9, protocol: udp, to: a }
  t6: { address: 127.0.0.1:10, to: a, routes: [ { to: a } ] }
  t7: { address: 127.0.0.1:11, protocol: tls_passthrough, sni: {} }
  t8: { proxyless_grpc: true, protocol: tcp, to: a }
  t9: { address: 127.0.0.1:12, protocol: tcp, to: a }
",
    );
    let expected = [
        "t.yaml:5:53: listeners.t1.routes: a `protocol: tcp` listener forwards connections: it has no `routes`",
        "t.yaml:6:50: listeners.t2.to: unknown cluster `nope`",
        "t.yaml:7:7: listeners.t3: missing field `to`",
        "t.yaml:8:65: listeners.t4.sni.a.*.com: `a.*.com` is not a server name",
        "t.yaml:8:89: listeners.t4.sni.a.com: `a.com` is the same server name as `A.com`",
        "t.yaml:8:106: listeners.t4.sni.x.com: unknown cluster `zz`",
        "t.yaml:9:41: listeners.t5.protocol: unknown protocol `udp`",
        "t.yaml:10:32: listeners.t6.to: `to` on a listener needs `protocol: tcp`",
        "t.yaml:11:64: listeners.t7.sni: a tls_passthrough listener needs at least one server name",
        "t.yaml:12:9: listeners.t8.proxyless_grpc: gRPC clients speak HTTP/2",
        "t.yaml:3:63: clusters.a.affinity: listener `t9` forwards TCP connections to this cluster: only `affinity: source_ip` works without HTTP",
    ];
    for needle in expected {
        assert!(
            e.iter().any(|l| l.contains(needle)),
            "no error contains {needle:?}; got:\n{}",
            e.join("\n")
        );
    }
}
