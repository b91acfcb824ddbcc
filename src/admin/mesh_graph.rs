//! `GET /api/v1/mesh/graph`: the mesh as a graph. Services are nodes (with the calls into
//! them that their sidecars' RBAC allowed and denied); each `calls:` entry is an edge with the
//! caller's request rate and success rate to the callee, from the stats the caller's sidecars
//! flush for their cluster of that call (`mesh-call:<caller>:<called>`), as the traffic view
//! holds them, and the calls the callee's sidecars denied to that caller (their per-caller
//! shadow RBAC rules, `translate::mesh_edges`).

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AdminState;
use crate::config::model::Mesh;
use crate::traffic::TrafficView;
use crate::traffic::mesh_calls::Decisions;
use crate::translate::mesh::call_cluster;

#[derive(Debug, Serialize, PartialEq)]
pub struct MeshGraph {
    pub window_seconds: u64,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct GraphNode {
    pub service: String,
    pub vip: Option<String>,
    /// Calls into the service, as its sidecars' RBAC decided them (since flotilla started).
    pub calls_in: Decisions,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct GraphEdge {
    pub from: String,
    pub to: String,
    /// `vip` (through the callee's VIP only) or `port` (a local port, and the VIP if any).
    pub via: &'static str,
    /// Requests per second from the caller's sidecars over the traffic window.
    pub rps: f64,
    /// Share of those that did not end in a 5xx; null without requests.
    pub success_rate: Option<f64>,
    /// Calls from the caller the callee's sidecars denied (since flotilla started).
    pub denied: u64,
}

pub async fn graph(State(s): State<AdminState>) -> Json<MeshGraph> {
    let config = s.controller.config();
    let traffic = s.traffic.latest();
    let graph = match config.as_ref().and_then(|c| c.mesh.as_ref()) {
        Some(mesh) => graph_of(
            mesh,
            &traffic,
            |svc| s.traffic.mesh_calls.of(svc),
            |from, to| s.traffic.mesh_calls.denied_from(from, to),
        ),
        None => MeshGraph {
            window_seconds: traffic.window_seconds,
            nodes: Vec::new(),
            edges: Vec::new(),
        },
    };
    Json(graph)
}

/// The graph of `mesh` with the rates of `traffic`, the decisions `calls_in` gives, and the
/// denied calls per edge `denied` gives.
pub fn graph_of(
    mesh: &Mesh,
    traffic: &TrafficView,
    calls_in: impl Fn(&str) -> Decisions,
    denied: impl Fn(&str, &str) -> u64,
) -> MeshGraph {
    let nodes = mesh
        .services
        .iter()
        .map(|(name, s)| GraphNode {
            service: name.clone(),
            vip: s.vip.map(|v| v.to_string()),
            calls_in: calls_in(name),
        })
        .collect();
    // By name once: a mesh of 1,000 services × 10 calls has as many call clusters as edges.
    let by_name: std::collections::HashMap<&str, &crate::traffic::ClusterTraffic> = traffic
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    let edges = mesh
        .services
        .iter()
        .flat_map(|(caller, s)| {
            let (denied, by_name) = (&denied, &by_name);
            s.calls.iter().map(move |(called, local)| {
                let cluster = call_cluster(caller, called);
                let t = by_name.get(cluster.as_str());
                GraphEdge {
                    from: caller.clone(),
                    to: called.clone(),
                    via: if local.is_some() { "port" } else { "vip" },
                    rps: t.map_or(0.0, |t| t.rps),
                    success_rate: t.and_then(|t| t.success_rate),
                    denied: denied(caller, called),
                }
            })
        })
        .collect();
    MeshGraph {
        window_seconds: traffic.window_seconds,
        nodes,
        edges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::ClusterTraffic;

    #[test]
    fn services_are_nodes_and_calls_are_edges_with_their_rates() {
        let yaml = "version: 1
mesh:
  services:
    payments: { port: 9090, vip: 127.240.0.2:80 }
    orders: { port: 8080, calls: { payments: 15101 } }
    frontend: { calls: [payments] }
";
        let config = crate::config::parse_str("m.yaml", yaml).unwrap();
        let traffic = TrafficView {
            window_seconds: 10,
            reporting_envoys: 1,
            clusters: vec![ClusterTraffic {
                name: call_cluster("frontend", "payments"),
                rps: 2.5,
                success_rate: Some(0.5),
                p50_ms: None,
                p95_ms: None,
                p99_ms: None,
                active_connections: 0.0,
                active_requests: 0.0,
                retries_per_s: 0.0,
                ejections_active: 0.0,
                endpoints: Vec::new(),
            }],
        };
        let g = graph_of(
            config.mesh.as_ref().unwrap(),
            &traffic,
            |s| Decisions {
                allowed: u64::from(s == "payments") * 7,
                denied: u64::from(s == "payments"),
            },
            |from, to| u64::from((from, to) == ("orders", "payments")) * 3,
        );
        assert_eq!(g.window_seconds, 10);
        let names: Vec<&str> = g.nodes.iter().map(|n| n.service.as_str()).collect();
        assert_eq!(names, ["frontend", "orders", "payments"]);
        assert_eq!(g.nodes[2].vip.as_deref(), Some("127.240.0.2:80"));
        assert_eq!(
            g.nodes[2].calls_in,
            Decisions {
                allowed: 7,
                denied: 1
            }
        );
        assert_eq!(
            g.edges,
            [
                GraphEdge {
                    from: "frontend".into(),
                    to: "payments".into(),
                    via: "vip",
                    rps: 2.5,
                    success_rate: Some(0.5),
                    denied: 0,
                },
                GraphEdge {
                    from: "orders".into(),
                    to: "payments".into(),
                    via: "port",
                    rps: 0.0,
                    success_rate: None,
                    denied: 3,
                },
            ]
        );
    }
}
