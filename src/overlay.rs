//! What flotilla knows about endpoints beyond the YAML: health verdicts, drains, weight
//! overrides and runtime registrations. It is an input to translation like the config itself,
//! so translation stays a pure function of (config, overlay).
//!
//! The health checker and the runtime write it (through the controller); translate, the
//! metrics and the admin API read it. The two questions they all ask are answered here once:
//! which endpoints a cluster has ([`Overlay::endpoints`]: configured, then registered ones the
//! config does not list) and what state an endpoint is in ([`Overlay::state`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::config::model::{Cluster, Endpoint};

/// An endpoint in a cluster: the unit that health, drains and overrides apply to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointKey {
    pub cluster: String,
    pub address: SocketAddr,
}

impl EndpointKey {
    pub fn new(cluster: impl Into<String>, address: SocketAddr) -> EndpointKey {
        EndpointKey {
            cluster: cluster.into(),
            address,
        }
    }
}

/// The active checker's verdict on an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Healthy,
    Unhealthy,
}

/// Where an endpoint of a cluster comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Listed in the YAML.
    Config,
    /// Registered at run time with a lease.
    Registration,
    /// An address a hostname endpoint of the config resolved to.
    Dns,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Registration => "registration",
            Source::Dns => "dns",
        }
    }
}

/// What Envoy is told about an endpoint (before translate's fail-open rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndpointState {
    Healthy,
    Unhealthy,
    /// Not probed, or no verdict yet: Envoy serves it like a healthy one.
    Unknown,
    /// Drained by an operator: no new requests, whatever its health.
    Draining,
}

impl EndpointState {
    pub const ALL: [EndpointState; 4] = [
        EndpointState::Healthy,
        EndpointState::Unhealthy,
        EndpointState::Unknown,
        EndpointState::Draining,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EndpointState::Healthy => "healthy",
            EndpointState::Unhealthy => "unhealthy",
            EndpointState::Unknown => "unknown",
            EndpointState::Draining => "draining",
        }
    }
}

/// Everything about endpoints that does not come from the YAML. The default (empty) overlay
/// means: no verdicts yet, nothing drained, no overrides, no registrations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Overlay {
    /// Verdicts of active checks. An endpoint without one is unknown, and Envoy serves unknown
    /// endpoints like healthy ones: a new endpoint takes traffic before its first probe.
    pub verdicts: BTreeMap<EndpointKey, Verdict>,
    /// Endpoints being drained: Envoy sends them no new requests.
    pub draining: BTreeSet<EndpointKey>,
    /// Weights an operator set at run time; they win over everything else.
    pub weights: BTreeMap<EndpointKey, u32>,
    /// Weights least_response_time derived from measured latency; they replace the configured
    /// weight unless an operator override exists.
    pub measured_weights: BTreeMap<EndpointKey, u32>,
    /// Endpoints that registered themselves at runtime, per cluster.
    pub registered: BTreeMap<String, Vec<Endpoint>>,
    /// The addresses of each cluster's hostname endpoints, as flotilla last resolved them
    /// (see `crate::dns`), one endpoint per address.
    pub resolved: BTreeMap<String, Vec<Endpoint>>,
    /// Stream registrations leaving (the drain handshake): drained like `draining`, but
    /// published with `registered`, as they end with their registration.
    pub leaving: BTreeSet<EndpointKey>,
    /// The mesh's workload certificates and trust bundle (`identity::workload`), once minted.
    pub mesh: Option<std::sync::Arc<crate::identity::workload::MeshIdentities>>,
}

impl Overlay {
    /// The weight Envoy should use for an endpoint configured with `configured`.
    pub fn weight(&self, key: &EndpointKey, configured: u32) -> u32 {
        self.weights
            .get(key)
            .or_else(|| self.measured_weights.get(key))
            .copied()
            .unwrap_or(configured)
    }

    /// The endpoints of a cluster: the configured ones, then the addresses its hostnames
    /// resolved to, then the registered ones the config does not list. A registration whose
    /// address git later adds to the cluster lives on until its lease ends, but the
    /// configured endpoint is the one that counts.
    pub fn endpoints<'a>(
        &'a self,
        cluster: &'a Cluster,
    ) -> impl Iterator<Item = (&'a Endpoint, Source)> + 'a {
        let of = |m: &'a BTreeMap<String, Vec<Endpoint>>| {
            m.get(&cluster.name).map(Vec::as_slice).unwrap_or_default()
        };
        let (resolved, registered) = (of(&self.resolved), of(&self.registered));
        let configured =
            move |r: &&Endpoint| !cluster.endpoints.iter().any(|e| e.address == r.address);
        cluster
            .endpoints
            .iter()
            .map(|e| (e, Source::Config))
            .chain(resolved.iter().filter(configured).map(|e| (e, Source::Dns)))
            .chain(
                registered
                    .iter()
                    .filter(configured)
                    .filter(move |r| !resolved.iter().any(|e| e.address == r.address))
                    .map(|e| (e, Source::Registration)),
            )
    }

    /// The health the checker found, ignoring drains: healthy, unhealthy or unknown.
    pub fn health(&self, key: &EndpointKey) -> EndpointState {
        match self.verdicts.get(key) {
            Some(Verdict::Healthy) => EndpointState::Healthy,
            Some(Verdict::Unhealthy) => EndpointState::Unhealthy,
            None => EndpointState::Unknown,
        }
    }

    /// Drained by an operator, or leaving with its registration stream.
    pub fn is_draining(&self, key: &EndpointKey) -> bool {
        self.draining.contains(key) || self.leaving.contains(key)
    }

    /// The endpoint's state: a drain wins over any verdict.
    pub fn state(&self, key: &EndpointKey) -> EndpointState {
        if self.is_draining(key) {
            EndpointState::Draining
        } else {
            self.health(key)
        }
    }
}

impl Overlay {
    /// Whether `other` differs in more than endpoints (the mesh's workload certificates):
    /// such a change cannot take the endpoint fast path.
    pub fn differs_beyond_endpoints(&self, other: &Overlay) -> bool {
        self.mesh != other.mesh
    }

    /// The clusters whose endpoints `self` and `other` see differently: only their
    /// ClusterLoadAssignments can differ between the two when `differs_beyond_endpoints` is
    /// false (translation reads the overlay nowhere else), which is what lets an overlay
    /// change take the endpoint fast path.
    /// One ordered walk over each map: no lookups.
    pub fn changed_clusters(&self, other: &Overlay) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut by_key = |key: &EndpointKey| {
            if !out.contains(&key.cluster) {
                out.insert(key.cluster.clone());
            }
        };
        differing(&self.verdicts, &other.verdicts, &mut by_key);
        differing(&self.weights, &other.weights, &mut by_key);
        differing(&self.measured_weights, &other.measured_weights, &mut by_key);
        self.draining
            .symmetric_difference(&other.draining)
            .chain(self.leaving.symmetric_difference(&other.leaving))
            .for_each(&mut by_key);
        let mut by_cluster = |c: &String| {
            out.insert(c.clone());
        };
        differing(&self.registered, &other.registered, &mut by_cluster);
        differing(&self.resolved, &other.resolved, &mut by_cluster);
        out
    }
}

impl Overlay {
    /// This overlay without the verdicts and measured weights of endpoints that `config` does
    /// not probe (gone from the config, or from a cluster without a health check); `None` if
    /// there are none. The checker stops probing exactly those endpoints.
    pub fn without_unprobed(&self, config: &crate::config::Config) -> Option<Overlay> {
        let probed = |k: &EndpointKey| {
            config.clusters.get(&k.cluster).is_some_and(|c| {
                c.health_check.is_some() && self.endpoints(c).any(|(e, _)| e.address == k.address)
            })
        };
        let stale = self
            .verdicts
            .keys()
            .chain(self.measured_weights.keys())
            .any(|k| !probed(k));
        if !stale {
            return None;
        }
        let mut out = self.clone();
        out.verdicts.retain(|k, _| probed(k));
        out.measured_weights.retain(|k, _| probed(k));
        Some(out)
    }
}

/// Calls `found` with every key whose entry differs between two maps (present in one only, or
/// with different values), walking both in order once.
fn differing<K: Ord, V: PartialEq>(
    a: &BTreeMap<K, V>,
    b: &BTreeMap<K, V>,
    found: &mut impl FnMut(&K),
) {
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => return,
            (Some((k, _)), None) => {
                found(k);
                a.next();
            }
            (None, Some((k, _))) => {
                found(k);
                b.next();
            }
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    found(ka);
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    found(kb);
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if va != vb {
                        found(ka);
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(address: &str) -> Endpoint {
        Endpoint::registered(address.parse().unwrap(), 1)
    }

    /// Cluster `web` with one configured endpoint, 127.0.0.1:8081.
    fn web() -> Cluster {
        let config = crate::config::parse_str(
            "t.yaml",
            "version: 1\nclusters:\n  web: { endpoints: [127.0.0.1:8081] }\n",
        )
        .unwrap();
        config.clusters["web"].clone()
    }

    fn key(address: &str) -> EndpointKey {
        EndpointKey::new("web", address.parse().unwrap())
    }

    #[test]
    fn endpoints_lists_configured_then_registered() {
        let web = web();
        let mut overlay = Overlay::default();
        overlay
            .registered
            .insert("web".into(), vec![endpoint("127.0.0.1:9000")]);
        let got: Vec<(String, Source)> = overlay
            .endpoints(&web)
            .map(|(e, s)| (e.address.to_string(), s))
            .collect();
        assert_eq!(
            got,
            [
                ("127.0.0.1:8081".to_string(), Source::Config),
                ("127.0.0.1:9000".to_string(), Source::Registration)
            ]
        );
    }

    #[test]
    fn a_registration_git_also_lists_counts_once_as_configured() {
        let web = web();
        let mut overlay = Overlay::default();
        overlay
            .registered
            .insert("web".into(), vec![endpoint("127.0.0.1:8081")]);
        let got: Vec<Source> = overlay.endpoints(&web).map(|(_, s)| s).collect();
        assert_eq!(got, [Source::Config]);
    }

    #[test]
    fn changed_clusters_names_each_cluster_whose_endpoints_differ() {
        let mut a = Overlay::default();
        a.verdicts.insert(key("127.0.0.1:1"), Verdict::Healthy);
        a.weights
            .insert(EndpointKey::new("api", "127.0.0.1:2".parse().unwrap()), 3);
        let mut b = a.clone();
        assert!(a.changed_clusters(&b).is_empty());
        b.verdicts.insert(key("127.0.0.1:1"), Verdict::Unhealthy);
        b.draining
            .insert(EndpointKey::new("db", "127.0.0.1:3".parse().unwrap()));
        b.registered
            .insert("reg".into(), vec![endpoint("127.0.0.1:9000")]);
        b.leaving
            .insert(EndpointKey::new("gone", "127.0.0.1:4".parse().unwrap()));
        b.measured_weights
            .insert(EndpointKey::new("lrt", "127.0.0.1:5".parse().unwrap()), 2);
        let got: Vec<String> = a.changed_clusters(&b).into_iter().collect();
        assert_eq!(got, ["db", "gone", "lrt", "reg", "web"]);
        assert_eq!(b.changed_clusters(&a), a.changed_clusters(&b));
    }

    #[test]
    fn state_without_a_verdict_is_unknown() {
        assert_eq!(
            Overlay::default().state(&key("127.0.0.1:1")),
            EndpointState::Unknown
        );
    }

    #[test]
    fn state_follows_the_verdict() {
        let mut o = Overlay::default();
        o.verdicts.insert(key("127.0.0.1:1"), Verdict::Healthy);
        o.verdicts.insert(key("127.0.0.1:2"), Verdict::Unhealthy);
        assert_eq!(o.state(&key("127.0.0.1:1")), EndpointState::Healthy);
        assert_eq!(o.state(&key("127.0.0.1:2")), EndpointState::Unhealthy);
    }

    #[test]
    fn a_drain_wins_over_the_verdict_in_state_but_not_in_health() {
        let mut o = Overlay::default();
        o.verdicts.insert(key("127.0.0.1:1"), Verdict::Healthy);
        o.draining.insert(key("127.0.0.1:1"));
        assert_eq!(o.state(&key("127.0.0.1:1")), EndpointState::Draining);
        assert_eq!(o.health(&key("127.0.0.1:1")), EndpointState::Healthy);
    }
}
