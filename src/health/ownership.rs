//! Replicas split the probing: each endpoint is probed by one live replica, chosen by
//! rendezvous hashing (every replica computes the same owner from the same live set, and a
//! replica that leaves moves only its own endpoints). A least_response_time cluster is owned
//! whole by one replica, because its weights compare the latencies of all its endpoints.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use crate::overlay::{EndpointKey, Verdict};

/// The live replicas and which one this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owners {
    pub me: String,
    /// Sorted, `me` included.
    pub live: Vec<String>,
}

impl Owners {
    /// Whether this replica probes `key` (`measured`: its cluster is least_response_time).
    pub fn owns(&self, key: &EndpointKey, measured: bool) -> bool {
        let subject = if measured {
            key.cluster.clone()
        } else {
            format!("{}/{}", key.cluster, key.address)
        };
        self.owner(&subject) == Some(self.me.as_str())
    }

    fn owner(&self, subject: &str) -> Option<&str> {
        self.live
            .iter()
            .max_by_key(|replica| score(replica, subject))
            .map(String::as_str)
    }
}

fn score(replica: &str, subject: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(replica.as_bytes());
    h.update([0]);
    h.update(subject.as_bytes());
    h.finalize().into()
}

/// What the owner of an endpoint publishes for the other replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthFact {
    pub verdict: Option<Verdict>,
    /// Its least_response_time weight, if measured.
    pub weight: Option<u32>,
}

impl HealthFact {
    pub fn encode(&self) -> Vec<u8> {
        let verdict = match self.verdict {
            Some(Verdict::Healthy) => "healthy",
            Some(Verdict::Unhealthy) => "unhealthy",
            None => "unknown",
        };
        match self.weight {
            Some(w) => format!("{verdict} {w}"),
            None => verdict.to_string(),
        }
        .into_bytes()
    }

    pub fn decode(value: &[u8]) -> Option<HealthFact> {
        let text = std::str::from_utf8(value).ok()?;
        let mut words = text.split(' ');
        let verdict = match words.next()? {
            "healthy" => Some(Verdict::Healthy),
            "unhealthy" => Some(Verdict::Unhealthy),
            "unknown" => None,
            _ => return None,
        };
        let weight = match words.next() {
            Some(w) => Some(w.parse().ok()?),
            None => None,
        };
        if words.next().is_some() {
            return None;
        }
        Some(HealthFact { verdict, weight })
    }
}

/// A fact about an endpoint, or `None`: it no longer has a health check (its fact is deleted,
/// so that an endpoint added again later starts from unknown, not from an old verdict).
pub type FactUpdate = (EndpointKey, Option<HealthFact>);

/// Every endpoint with a health check, and whether its weight is measured
/// (least_response_time): the endpoints whose facts the overlay serves.
pub type Checked = Arc<std::collections::HashMap<EndpointKey, bool>>;

/// The checker's side of sharing health with other replicas (with one flotilla, the only
/// replica is itself). Data flows one way: the checker says what it probes and what it
/// found; the runtime writes the findings to the store and serves what the store holds (this
/// replica's findings included) in the overlay. The checker never reads them back.
pub struct ReplicaHealth {
    /// `None` while etcd is out of reach: then every replica probes everything.
    pub owners: watch::Receiver<Option<Arc<Owners>>>,
    /// Facts this replica found about the endpoints it probes (`None`: the endpoint is
    /// probed afresh or no longer checked; its fact is deleted).
    pub publish: mpsc::UnboundedSender<FactUpdate>,
    /// Which endpoints have a health check now.
    pub checked: watch::Sender<Checked>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(me: &str, live: &[&str]) -> Owners {
        Owners {
            me: me.into(),
            live: live.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn key(i: u16) -> EndpointKey {
        EndpointKey::new("web", format!("10.0.0.1:{i}").parse().unwrap())
    }

    #[test]
    fn every_endpoint_has_exactly_one_owner() {
        let live = ["a", "b", "c"];
        let mut per_replica = [0; 3];
        for i in 1..=300 {
            let owning: Vec<usize> = (0..3)
                .filter(|r| owners(live[*r], &live).owns(&key(i), false))
                .collect();
            assert_eq!(owning.len(), 1, "{i}");
            per_replica[owning[0]] += 1;
        }
        assert!(per_replica.iter().all(|n| *n > 60), "{per_replica:?}");
    }

    #[test]
    fn a_replica_leaving_moves_only_its_own_endpoints() {
        for i in 1..=200 {
            let before = ["a", "b", "c"]
                .into_iter()
                .find(|r| owners(r, &["a", "b", "c"]).owns(&key(i), false))
                .unwrap();
            if before != "c" {
                assert!(owners(before, &["a", "b"]).owns(&key(i), false), "{i}");
            }
        }
    }

    #[test]
    fn a_measured_cluster_is_owned_whole() {
        let live = ["a", "b", "c"];
        let owner = live
            .into_iter()
            .find(|r| owners(r, &live).owns(&key(1), true))
            .unwrap();
        for i in 2..=50 {
            assert!(owners(owner, &live).owns(&key(i), true));
        }
    }

    #[test]
    fn facts_round_trip() {
        for fact in [
            HealthFact {
                verdict: Some(Verdict::Healthy),
                weight: None,
            },
            HealthFact {
                verdict: Some(Verdict::Unhealthy),
                weight: Some(40),
            },
            HealthFact {
                verdict: None,
                weight: Some(1),
            },
        ] {
            assert_eq!(HealthFact::decode(&fact.encode()), Some(fact));
        }
        for bad in ["", "sick", "healthy x", "healthy 1 2"] {
            assert_eq!(HealthFact::decode(bad.as_bytes()), None, "{bad}");
        }
    }
}
