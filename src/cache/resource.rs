//! Resource types and encoded resources: what the xDS server hands to every stream as is.

use std::fmt;

use bytes::Bytes;
use envoy_types::pb::google::protobuf::Any;
use sha2::{Digest, Sha256};

use super::entries;

/// The xDS resource types flotilla serves. The first four are in make-before-break order: a
/// cluster and its endpoints exist before the listeners and routes that send traffic to them.
/// Secrets (TLS certificates and CAs, SDS) come last: Envoy asks for them by name once a
/// listener or cluster names them, and warms that listener or cluster until they arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum ResourceType {
    Cluster,
    Endpoint,
    Listener,
    Route,
    Secret,
}

impl ResourceType {
    /// How many types there are: the length of every per-type array.
    pub const COUNT: usize = 5;

    pub const ALL: [ResourceType; ResourceType::COUNT] = [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Listener,
        ResourceType::Route,
        ResourceType::Secret,
    ];

    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            ResourceType::Endpoint => {
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
            }
            ResourceType::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            ResourceType::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            ResourceType::Secret => {
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
            }
        }
    }

    pub fn from_type_url(url: &str) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// The discovery service's usual short name, for logs, metrics and the admin API.
    pub fn short_name(self) -> &'static str {
        match self {
            ResourceType::Cluster => "cds",
            ResourceType::Endpoint => "eds",
            ResourceType::Listener => "lds",
            ResourceType::Route => "rds",
            ResourceType::Secret => "sds",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Clusters and listeners are requested by wildcard; endpoints, routes and secrets by name.
    pub fn is_wildcard(self) -> bool {
        matches!(self, ResourceType::Cluster | ResourceType::Listener)
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

/// One resource, encoded once and shared by every stream that sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub name: String,
    /// Content hash of the encoded resource: equal bytes, equal version, on any replica.
    pub version: String,
    pub body: Any,
    /// Clusters this resource sends traffic to (route configurations, and listeners that
    /// forward TCP connections themselves), which must exist in
    /// Envoy before it is applied and may only be removed after it is gone.
    pub clusters: Vec<String>,
    /// This resource's entry in a state-of-the-world response, encoded once for every stream.
    pub sotw: Bytes,
    /// This resource's entry in a delta response (name and version included).
    pub delta: Bytes,
    /// The endpoint addresses of a ClusterLoadAssignment (empty for other types), known from
    /// translation so that nobody decodes the body to learn them.
    pub addresses: Vec<std::net::SocketAddr>,
    /// Its share of its set's version (see [`entry_digest`]), computed once.
    pub digest: u64,
}

impl Resource {
    pub fn new(name: String, body: Any, clusters: Vec<String>) -> Resource {
        let version = content_hash([body.type_url.as_bytes(), &body.value]);
        Resource {
            sotw: entries::sotw_entry(&body),
            delta: entries::delta_entry(&name, &version, &body),
            digest: entry_digest(&name, &version),
            addresses: Vec::new(),
            version,
            name,
            body,
            clusters,
        }
    }
}

impl Resource {
    /// A ClusterLoadAssignment's resource, with the addresses it lists.
    pub fn endpoints(la: crate::translate::LoadAssignment) -> Resource {
        Resource {
            addresses: la.addresses,
            ..Resource::new(
                la.name,
                crate::envoy::pack_resource(&la.assignment),
                Vec::new(),
            )
        }
    }
}

#[cfg(test)]
impl Resource {
    /// A small resource named `name` whose content, and so version, is the byte `body`.
    pub(crate) fn test(name: &str, body: u8) -> std::sync::Arc<Resource> {
        let any = Any {
            type_url: "t".into(),
            value: vec![body],
        };
        std::sync::Arc::new(Resource::new(name.to_string(), any, Vec::new()))
    }
}

/// One (name, version) pair's part of a set's version: a set's version is the sum of its
/// entries' digests (an additive multiset hash), so replacing k entries of a set of n updates
/// its version in O(k) instead of rehashing all n, and equal sets still have equal versions
/// whatever order they were built in.
pub(crate) fn entry_digest(name: &str, version: &str) -> u64 {
    let mut hasher = Sha256::new();
    for part in [name.as_bytes(), version.as_bytes()] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// How a set's summed digest is written as a version (16 hex digits, like [`content_hash`]).
pub(crate) fn digest_version(sum: u64) -> String {
    format!("{sum:016x}")
}

/// A short hex digest of the given byte strings (length-prefixed, so boundaries matter).
pub fn content_hash<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hex::encode(&hasher.finalize()[..8])
}
