//! What one client may cost the xDS port: connections, streams, time to first request, and the
//! size of the node it claims to be. Each is a `serve` flag; README "Limits" lists them.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use prost::Message;
use tonic::Status;

use super::request::SotwRequest;

/// Bounds on what clients of the xDS port may hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A connection that leaves flotilla's HTTP/2 PING (every 30 s) unanswered this long is
    /// closed as dead, and its streams with it.
    pub keepalive_timeout: Duration,
    /// A connection that has not opened its first request (HTTP/2 preface, SETTINGS, HEADERS)
    /// this long after it was accepted is closed: idle sockets cannot pile up.
    pub handshake_timeout: Duration,
    /// Open connections at most; more are accepted and closed at once (Envoy retries with
    /// back-off). Generous: one Envoy is one connection, and 10,000 Envoys are benchmarked.
    pub max_connections: usize,
    /// HTTP/2 streams at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS). An Envoy
    /// uses one to six (ADS or one per type, stats, load reports); the benchmark's load
    /// generator multiplexes 100.
    pub max_streams_per_connection: u32,
    /// Longest `node.id` and `node.cluster` accepted, in bytes.
    pub max_node_id_bytes: usize,
    /// Largest node (id, cluster, metadata, locality, extensions…) accepted, encoded, in bytes.
    pub max_node_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            keepalive_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 50_000,
            max_streams_per_connection: 128,
            max_node_id_bytes: 1024,
            max_node_bytes: 256 * 1024,
        }
    }
}

impl Limits {
    /// Refuses a node whose names or whole description are larger than allowed: they are kept
    /// for the life of the stream (registry, logs, events), so their size is bounded here.
    pub(crate) fn check_node(&self, node: &Node) -> Result<(), Status> {
        for (field, value) in [("node.id", &node.id), ("node.cluster", &node.cluster)] {
            if value.len() > self.max_node_id_bytes {
                return Err(Status::invalid_argument(format!(
                    "{field} is {} bytes, more than the {} allowed (serve --xds-max-node-id-bytes)",
                    value.len(),
                    self.max_node_id_bytes
                )));
            }
        }
        let size = node.encoded_len();
        if size > self.max_node_bytes {
            return Err(Status::invalid_argument(format!(
                "the node is {size} bytes (metadata included), more than the {} allowed \
                 (serve --xds-max-node-bytes)",
                self.max_node_bytes
            )));
        }
        Ok(())
    }
}

/// Requests that may carry the Envoy node.
pub(crate) trait CarriesNode {
    fn node(&self) -> Option<&Node>;
}

impl CarriesNode for SotwRequest {
    fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }
}

impl CarriesNode for DeltaDiscoveryRequest {
    fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }
}

impl CarriesNode for DiscoveryRequest {
    fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: usize, cluster: usize, metadata: usize) -> Node {
        let mut n = Node {
            id: "i".repeat(id),
            cluster: "c".repeat(cluster),
            ..Default::default()
        };
        if metadata > 0 {
            n.user_agent_name = "m".repeat(metadata);
        }
        n
    }

    #[test]
    fn node_names_and_size_are_bounded() {
        let l = Limits::default();
        assert!(l.check_node(&node(1024, 1024, 0)).is_ok());
        let e = l.check_node(&node(1025, 1, 0)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("node.id is 1025 bytes"), "{e:?}");
        let e = l.check_node(&node(1, 1_000_000, 0)).unwrap_err();
        assert!(e.message().contains("node.cluster"), "{e:?}");
        let e = l.check_node(&node(1, 1, 300_000)).unwrap_err();
        assert!(e.message().contains("--xds-max-node-bytes"), "{e:?}");
    }
}
