//! `protocol: tcp | tls_passthrough` on a listener: `to: <cluster>` forwards every connection,
//! `sni: { <server name>: <cluster> }` picks the cluster by the TLS ClientHello's SNI.

use std::collections::BTreeMap;

use crate::config::diagnostic::Sink;
use crate::config::model::{Affinity, Cluster, Config, SniRoute, TcpForward};
use crate::config::reader::{self, Fields};
use crate::config::shape::{Field, Kind, optional};
use crate::config::yaml::Node;

use super::listener::ClusterRef;

/// What a listener carries.
const PROTOCOLS: &[&str] = &["http", "tcp", "tls_passthrough"];

pub(crate) const PROTOCOL: Field = optional(
    "protocol",
    Kind::Enum(PROTOCOLS),
    "http (default), tcp (forward to `to`) or tls_passthrough (by SNI, see `sni`).",
)
.defaults_to("http");

/// Past this a listener is better split; Envoy keeps one filter chain per server name.
pub(crate) const MAX_SERVER_NAMES: usize = 1000;
/// DNS's limit for a full name.
const MAX_SERVER_NAME_LEN: usize = 253;

/// The listener's forwarding: `Some(None)` for an HTTP listener (which has `routes`),
/// `Some(Some(_))` for a TCP one, `None` after reporting an error.
pub(crate) fn forward(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    f: &Fields<'_>,
    grpc: bool,
    refs: &mut Vec<ClusterRef>,
) -> Option<Option<TcpForward>> {
    let protocol = match f.get("protocol") {
        Some(n) => Some(reader::non_empty_string(sink, n, &f.path("protocol"))?),
        None => None,
    };
    let mut ok = true;
    let mut refuse = |sink: &mut Sink, key: &str, why: &str| {
        if let Some(n) = f.key_node(key) {
            sink.error(n, &f.path(key), why);
            ok = false;
        }
    };
    let forward = match protocol.as_deref() {
        None | Some("http") => {
            refuse(sink, "to", "`to` on a listener needs `protocol: tcp`");
            refuse(sink, "sni", "`sni` needs `protocol: tls_passthrough`");
            None
        }
        Some(p @ ("tcp" | "tls_passthrough")) => {
            let why =
                format!("a `protocol: {p}` listener forwards connections: it has no `routes`");
            refuse(sink, "routes", &why);
            refuse(sink, "hosts", &why.replace("`routes`", "`hosts`"));
            if grpc {
                refuse(
                    sink,
                    "proxyless_grpc",
                    "gRPC clients speak HTTP/2: no `protocol` here",
                );
            }
            if p == "tcp" {
                refuse(sink, "sni", "`sni` needs `protocol: tls_passthrough`");
                match f.get("to") {
                    Some(n) => cluster(sink, n, &f.path("to"), refs).map(TcpForward::To),
                    None => {
                        sink.error(
                            node,
                            path,
                            "missing field `to` (the cluster connections go to)",
                        );
                        None
                    }
                }
            } else {
                refuse(
                    sink,
                    "to",
                    "a tls_passthrough listener picks clusters by `sni`",
                );
                match f.get("sni") {
                    Some(n) => sni(sink, n, &f.path("sni"), refs).map(TcpForward::Sni),
                    None => {
                        sink.error(node, path, "missing field `sni` (server name → cluster)");
                        None
                    }
                }
            }
        }
        Some(other) => {
            let n = f.get("protocol")?;
            sink.error(
                n,
                &f.path("protocol"),
                format!(
                    "unknown protocol `{other}`: expected {}",
                    PROTOCOLS.join(", ")
                ),
            );
            return None;
        }
    };
    let tcp = protocol.as_deref().is_some_and(|p| p != "http");
    if tcp && forward.is_none() {
        return None;
    }
    ok.then_some(forward)
}

fn cluster(sink: &mut Sink, node: &Node, path: &str, refs: &mut Vec<ClusterRef>) -> Option<String> {
    let name = reader::non_empty_string(sink, node, path)?;
    refs.push(ClusterRef {
        cluster: name.clone(),
        loc: node.loc.clone(),
        field: path.to_string(),
        grpc_listener: None,
        needs_http2: None,
    });
    Some(name)
}

fn sni(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    refs: &mut Vec<ClusterRef>,
) -> Option<Vec<SniRoute>> {
    let entries = reader::named_entries(sink, node, path)?;
    if entries.is_empty() {
        sink.error(
            node,
            path,
            "a tls_passthrough listener needs at least one server name",
        );
        return None;
    }
    if entries.len() > MAX_SERVER_NAMES {
        sink.error(
            node,
            path,
            format!(
                "{} server names, more than {MAX_SERVER_NAMES}",
                entries.len()
            ),
        );
        return None;
    }
    // Lower-cased name → (spelling as written, cluster); Envoy matches server names
    // case-insensitively, so `A.example.com` and `a.example.com` are one name.
    let mut out: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut ok = true;
    for (k, v) in entries {
        let Some(name) = reader::non_empty_string(sink, k, path) else {
            ok = false;
            continue;
        };
        let npath = reader::join(path, &name);
        let lower = name.to_ascii_lowercase();
        let cluster = cluster(sink, v, &npath, refs);
        if let Err(why) = check_server_name(&lower) {
            sink.error(k, &npath, format!("`{name}` is not a server name: {why}"));
            ok = false;
        } else if let Some((first, _)) = out.get(&lower) {
            sink.error(
                k,
                &npath,
                format!("`{name}` is the same server name as `{first}`"),
            );
            ok = false;
        } else if let Some(cluster) = cluster {
            out.insert(lower, (name, cluster));
        } else {
            ok = false;
        }
    }
    ok.then(|| {
        out.into_iter()
            .map(|(server_name, (_, cluster))| SniRoute {
                server_name,
                cluster,
            })
            .collect()
    })
}

/// Exact DNS names and a leading `*.` wildcard: what Envoy's `server_names` matches.
fn check_server_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_SERVER_NAME_LEN {
        return Err(format!("longer than {MAX_SERVER_NAME_LEN} characters"));
    }
    let rest = name.strip_prefix("*.").unwrap_or(name);
    if rest.contains('*') {
        return Err("`*` may only start the name, as `*.example.com`".to_string());
    }
    for label in rest.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(format!(
                "bad label `{label}` (letters, digits and inner `-`)"
            ));
        }
    }
    Ok(())
}

/// Hash affinity on a cookie or a header needs HTTP; a cluster behind a TCP listener can only
/// hash on the connection's source address.
pub(crate) fn check_clusters(
    sink: &mut Sink,
    config: &Config,
    cluster_nodes: &BTreeMap<&str, &Node>,
) {
    for l in config.listeners.values() {
        for name in l.tcp.iter().flat_map(TcpForward::clusters) {
            let (Some(c), Some(node)) = (config.clusters.get(name), cluster_nodes.get(name)) else {
                continue;
            };
            if needs_http(c) {
                let f = affinity_node(node).unwrap_or(node);
                sink.error(
                    f,
                    &format!("clusters.{name}.affinity"),
                    format!(
                        "listener `{}` forwards TCP connections to this cluster: only `affinity: source_ip` works without HTTP",
                        l.name
                    ),
                );
            }
        }
    }
}

fn needs_http(c: &Cluster) -> bool {
    c.affinity
        .as_ref()
        .is_some_and(|a| !matches!(a, Affinity::SourceIp))
}

fn affinity_node(cluster: &Node) -> Option<&Node> {
    let crate::config::yaml::Value::Map(entries) = &cluster.value else {
        return None;
    };
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some("affinity"))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::check_server_name;

    #[test]
    fn server_names_are_dns_names_with_an_optional_leading_wildcard() {
        for good in ["a.example.com", "*.b.example.com", "localhost", "x-1.io"] {
            assert_eq!(check_server_name(good), Ok(()), "{good}");
        }
        for bad in ["a.*.com", "*", "a..com", "-a.com", "a_b.com", "*b.com", ""] {
            assert!(check_server_name(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
#[path = "tcp_tests.rs"]
mod decode_tests;
