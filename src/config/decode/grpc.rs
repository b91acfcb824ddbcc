//! What proxyless gRPC clients can run: a cluster that a `proxyless_grpc` listener routes to
//! must use features gRPC implements, or its clients would reject the cluster (NACK) or
//! silently run something else than the YAML says.
//!
//! gRPC runs the `round_robin` and `ring_hash` policies (gRFC A27, A42; `least_request` only
//! in grpc-java, A48), hashes requests on headers only, and ignores endpoint weights under
//! `round_robin` (gRPC's xDS features page: "`load_balancing_weight` is always ignored").

use std::collections::{BTreeMap, BTreeSet};

use crate::config::diagnostic::Sink;
use crate::config::model::{Affinity, Cluster, Policy};
use crate::config::yaml::{Node, Value};

use super::listener::ClusterRef;

/// Checks every cluster a proxyless gRPC route names; errors point at the cluster's field and
/// name the route that makes gRPC clients run it.
pub(crate) fn check_clusters(
    sink: &mut Sink,
    refs: &[ClusterRef],
    clusters: &BTreeMap<String, Cluster>,
    nodes: &BTreeMap<&str, &Node>,
) {
    let mut checked: BTreeSet<&str> = BTreeSet::new();
    for r in refs {
        let Some(listener) = &r.grpc_listener else {
            continue;
        };
        let (Some(c), Some(node)) = (clusters.get(&r.cluster), nodes.get(r.cluster.as_str()))
        else {
            continue;
        };
        if !checked.insert(&r.cluster) {
            continue;
        }
        let used_by = format!(
            "cluster `{}` is used by proxyless_grpc listener `{listener}` ({} at {})",
            c.name, r.field, r.loc
        );
        let path = |field: &str| format!("clusters.{}.{field}", c.name);
        let at = |field: &str| child(node, field).unwrap_or(node);
        if !matches!(c.policy, Policy::RoundRobin | Policy::RingHash) {
            sink.error(
                at("policy"),
                &path("policy"),
                format!(
                    "gRPC clients cannot run policy {} (they run round_robin and ring_hash); {used_by}",
                    c.policy.name()
                ),
            );
        }
        if let Some(a) = &c.affinity
            && !matches!(a, Affinity::Header(_))
        {
            sink.error(
                at("affinity"),
                &path("affinity"),
                format!(
                    "gRPC clients keep sessions by header only (`affinity: {{ header: <name> }}`); {used_by}"
                ),
            );
        }
        let mut weights = c.endpoints.iter().map(|e| e.weight);
        let first = weights.next();
        if c.policy == Policy::RoundRobin && weights.any(|w| Some(w) != first) {
            sink.error(
                at("endpoints"),
                &path("endpoints"),
                format!(
                    "gRPC's round_robin ignores endpoint weights: use policy ring_hash (which weighs endpoints) or a weighted split; {used_by}"
                ),
            );
        }
    }
}

/// The value of `key` in a map node, for pointing an error at it.
fn child<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    let Value::Map(entries) = &node.value else {
        return None;
    };
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use crate::config::model::{ListenerKind, Policy};
    use crate::config::{Diagnostics, parse_str};

    fn grpc_config(cluster: &str, route: &str) -> String {
        format!(
            r#"
version: 1
clusters:
  greeter:
{cluster}
listeners:
  "greeter.prod:50051":
    proxyless_grpc: true
    routes:
      - {route}
"#
        )
    }

    fn errors(yaml: &str) -> Vec<String> {
        match parse_str("t.yaml", yaml) {
            Ok(c) => panic!("expected errors, got {c:#?}"),
            Err(Diagnostics(d)) => d.iter().map(ToString::to_string).collect(),
        }
    }

    fn one_error(yaml: &str) -> String {
        let e = errors(yaml);
        assert_eq!(e.len(), 1, "{e:#?}");
        e[0].clone()
    }

    const RR: &str = "    endpoints: [127.0.0.1:50051, 127.0.0.1:50052]";

    #[test]
    fn a_proxyless_listener_has_no_address_and_a_port_in_its_name() {
        let c = parse_str(
            "t.yaml",
            &grpc_config(RR, "{ to: greeter, timeout: 2s, retries: { attempts: 2 } }"),
        )
        .expect("valid");
        let l = &c.listeners["greeter.prod:50051"];
        assert_eq!(l.kind, ListenerKind::ProxylessGrpc);
        assert_eq!(l.address(), None);
        let retries = l.routes[0].retries.as_ref().expect("retries");
        assert_eq!(retries.on, ["unavailable"], "gRPC's default condition");
    }

    #[test]
    fn a_proxyless_listener_with_an_address_is_an_error() {
        let yaml = grpc_config(RR, "{ to: greeter }").replace(
            "proxyless_grpc: true",
            "proxyless_grpc: true\n    address: 127.0.0.1:9000",
        );
        let e = one_error(&yaml);
        assert!(
            e.starts_with("t.yaml:9:14: listeners.greeter.prod:50051.address: a proxyless_grpc listener has no address"),
            "{e}"
        );
    }

    #[test]
    fn only_proxyless_listeners_carry_a_port_in_their_name() {
        let yaml = grpc_config(RR, "{ to: greeter }")
            .replace("proxyless_grpc: true", "address: 127.0.0.1:9000");
        let e = one_error(&yaml);
        assert!(
            e.contains("only proxyless_grpc listeners may have `:port`"),
            "{e}"
        );
        let yaml = grpc_config(RR, "{ to: greeter }").replace("prod:50051", "prod:http");
        let e = one_error(&yaml);
        assert!(e.contains("the part after `:` must be a port"), "{e}");
    }

    #[test]
    fn a_policy_grpc_cannot_run_names_the_cluster_and_the_route() {
        for policy in ["maglev", "random", "least_request"] {
            let cluster = format!("    policy: {policy}\n{RR}");
            let e = one_error(&grpc_config(&cluster, "{ to: greeter }"));
            assert!(
                e.starts_with(&format!(
                    "t.yaml:5:13: clusters.greeter.policy: gRPC clients cannot run policy {policy}"
                )),
                "{e}"
            );
            assert!(
                e.contains("proxyless_grpc listener `greeter.prod:50051` (listeners.greeter.prod:50051.routes[0].to at t.yaml:11:"),
                "{e}"
            );
        }
    }

    #[test]
    fn envoy_listeners_keep_every_policy() {
        let yaml = grpc_config(&format!("    policy: maglev\n{RR}"), "{ to: greeter }")
            .replace("proxyless_grpc: true", "address: 127.0.0.1:9000")
            .replace("\"greeter.prod:50051\"", "public");
        let c = parse_str("t.yaml", &yaml).expect("valid for Envoy");
        assert_eq!(c.clusters["greeter"].policy, Policy::Maglev);
    }

    #[test]
    fn a_split_reaches_the_cluster_check_too() {
        let cluster = format!("    policy: random\n{RR}");
        let e = one_error(&grpc_config(&cluster, "{ split: { greeter: 3 } }"));
        assert!(e.contains("routes[0].split.greeter at t.yaml:11:"), "{e}");
    }

    #[test]
    fn only_header_affinity_works_for_grpc() {
        let ok = format!("{RR}\n    affinity: {{ header: x-user }}");
        parse_str("t.yaml", &grpc_config(&ok, "{ to: greeter }")).expect("header affinity");
        for kind in ["cookie: {}", "source_ip: true", "sticky_cookie: {}"] {
            let cluster = format!("{RR}\n    affinity: {{ {kind} }}");
            let e = one_error(&grpc_config(&cluster, "{ to: greeter }"));
            assert!(
                e.contains("clusters.greeter.affinity: gRPC clients keep sessions by header only"),
                "{e}"
            );
        }
    }

    #[test]
    fn round_robin_with_unequal_weights_is_an_error_ring_hash_is_not() {
        let weighted = "    endpoints: [127.0.0.1:50051, { address: 127.0.0.1:50052, weight: 3 }]";
        let e = one_error(&grpc_config(weighted, "{ to: greeter }"));
        assert!(
            e.contains("clusters.greeter.endpoints: gRPC's round_robin ignores endpoint weights"),
            "{e}"
        );
        let ring = format!("    policy: ring_hash\n{weighted}");
        parse_str("t.yaml", &grpc_config(&ring, "{ to: greeter }")).expect("ring_hash weighs");
    }

    #[test]
    fn grpc_routes_retry_on_grpc_status_names_only() {
        let e = one_error(&grpc_config(RR, "{ to: greeter, retries: { on: [5xx] } }"));
        assert!(e.contains("`5xx` is not a retry condition gRPC clients know (gRPC routes take gRPC status names: cancelled, deadline-exceeded"), "{e}");
        let ok = "{ to: greeter, retries: { attempts: 3, on: [unavailable, cancelled, deadline-exceeded, resource-exhausted] } }";
        parse_str("t.yaml", &grpc_config(RR, ok)).expect("gRPC names");
        for extra in ["per_try_timeout: 1s", "previous_hosts: true"] {
            let route = format!("{{ to: greeter, retries: {{ {extra} }} }}");
            let e = one_error(&grpc_config(RR, &route));
            assert!(e.contains("gRPC clients do not run this"), "{e}");
        }
    }
}
