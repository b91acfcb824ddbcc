//! What one client may cost the xDS port: connections, streams, time to first request, and the
//! size of the node it claims to be. Each is a `serve` flag; docs/reference/limits.md lists them.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use prost::Message;
use tonic::Status;

use super::request::SotwRequest;

/// Bounds on what clients of the xDS port may hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// flotilla sends an HTTP/2 PING on a connection that has been silent this long, so that a
    /// client whose network vanished without a FIN or RST (cable, VM, NAT state lost) is found
    /// within `keepalive_interval + keepalive_timeout` and its registrations leave Envoy. One
    /// 17-byte frame and its answer per connection per interval: at 10,000 connections and
    /// 1 s, 10,000 small frames a second each way.
    pub keepalive_interval: Duration,
    /// A connection that leaves that PING unanswered this long is closed as dead, and its
    /// streams (and the endpoints they registered) with it.
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
    /// Request bytes the xDS streams of one connection may hold buffered (messages not yet
    /// whole); a stream whose next message does not fit ends with RESOURCE_EXHAUSTED.
    pub max_buffered_bytes_per_connection: usize,
    /// The same, over every connection.
    pub max_buffered_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            keepalive_interval: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 50_000,
            max_streams_per_connection: 128,
            max_node_id_bytes: 1024,
            max_node_bytes: 256 * 1024,
            max_buffered_bytes_per_connection: 64 << 20,
            max_buffered_bytes: 1 << 30,
        }
    }
}

/// The range `--xds-keepalive-interval` and `--xds-keepalive-timeout` accept: below it pings
/// would be noise, above it a dead client would hold its registrations for hours.
pub const KEEPALIVE_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(3600));

/// Reads `--xds-keepalive-interval` / `--xds-keepalive-timeout`: a duration within
/// [`KEEPALIVE_RANGE`].
pub fn parse_keepalive(text: &str) -> Result<Duration, String> {
    use crate::config::duration;
    let d = duration::parse(text)?;
    let (min, max) = KEEPALIVE_RANGE;
    if d < min || d > max {
        return Err(format!(
            "{text} is out of range ({}..={})",
            duration::format(min),
            duration::format(max)
        ));
    }
    Ok(d)
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
    fn keepalive_flags_are_bounded() {
        assert_eq!(parse_keepalive("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_keepalive("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_keepalive("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(
            parse_keepalive("50ms").unwrap_err(),
            "50ms is out of range (100ms..=1h)"
        );
        assert!(parse_keepalive("2h").unwrap_err().contains("out of range"));
        assert!(parse_keepalive("1").unwrap_err().contains("needs a unit"));
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
