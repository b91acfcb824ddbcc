//! The keys under flotilla's etcd prefix, and what their values may be. Anything else with
//! write access to etcd can write there too, so every key-value read back is checked as the
//! admin API checks a request (weights in range, a registration under a lease, a replica
//! announced under a lease, values of bounded size); what fails is skipped and counted, never
//! applied, and never stops the replica from following the rest.
//!
//! Layout: `state/drains/<cluster>/<address>`, `state/weights/<cluster>/<address>` (the
//! weight), `registrations/<cluster>/<address>` (JSON, under a lease), `health/<cluster>/<address>`
//! (a health fact), `replicas/<id>` (under the replica's lease) and
//! `acks/<replica>/<cluster>/<address>` (JSON, under the replica's lease).

use crate::etcd::proto::mvccpb::KeyValue;
use crate::health::ownership::HealthFact;
use crate::overlay::EndpointKey;
use crate::store::{Ack, Change, Registration};

pub(super) const DRAINS: &str = "state/drains/";
pub(super) const WEIGHTS: &str = "state/weights/";
pub(super) const REGISTRATIONS: &str = "registrations/";
pub(super) const HEALTH: &str = "health/";
pub(super) const REPLICAS: &str = "replicas/";
pub(super) const ACKS: &str = "acks/";

/// The largest value flotilla reads; a larger one is skipped (flotilla's own are < 5 KiB).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The longest key flotilla reads.
pub const MAX_KEY_BYTES: usize = 1024;

/// Why a key-value was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("not a key flotilla writes")]
    Key,
    #[error("value of {0} bytes is over the {MAX_VALUE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("{0}")]
    Value(String),
    #[error("written without a lease: it would never expire")]
    NoLease,
}

impl Invalid {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Invalid::Key => "key",
            Invalid::TooLarge(_) => "too_large",
            Invalid::Value(_) => "value",
            Invalid::NoLease => "no_lease",
        }
    }
}

pub(super) fn endpoint_key(prefix: &str, kind: &str, k: &EndpointKey) -> Vec<u8> {
    format!("{prefix}{kind}{}/{}", k.cluster, k.address).into_bytes()
}

pub(super) fn replica_key(prefix: &str, id: &str) -> Vec<u8> {
    format!("{prefix}{REPLICAS}{id}").into_bytes()
}

pub(super) fn ack_key(prefix: &str, replica: &str, k: &EndpointKey) -> Vec<u8> {
    format!("{prefix}{ACKS}{replica}/{}/{}", k.cluster, k.address).into_bytes()
}

/// `<cluster>/<address>`: addresses hold no `/`, so the last one separates the cluster (which
/// may hold some) from the address.
fn parse_endpoint(rest: &str) -> Result<EndpointKey, Invalid> {
    let (cluster, address) = rest.rsplit_once('/').ok_or(Invalid::Key)?;
    if cluster.is_empty() || cluster.len() > 256 || cluster.chars().any(char::is_control) {
        return Err(Invalid::Key);
    }
    let address = crate::config::parse_socket_address(address).map_err(|_| Invalid::Key)?;
    Ok(EndpointKey::new(cluster, address))
}

/// The change a key-value (put, or deleted) under `prefix` stands for. `Ok(None)`: a key of
/// another kind flotilla ignores (the prefix is flotilla's, so this is rare).
pub fn decode(prefix: &str, kv: &KeyValue, deleted: bool) -> Result<Change, Invalid> {
    if kv.key.len() > MAX_KEY_BYTES {
        return Err(Invalid::Key);
    }
    let rest = std::str::from_utf8(&kv.key)
        .ok()
        .and_then(|k| k.strip_prefix(prefix))
        .ok_or(Invalid::Key)?;
    if !deleted && kv.value.len() > MAX_VALUE_BYTES {
        return Err(Invalid::TooLarge(kv.value.len()));
    }
    if let Some(id) = rest.strip_prefix(REPLICAS) {
        crate::runtime::replicated::check_replica_id(id).map_err(|_| Invalid::Key)?;
        if !deleted && kv.lease == 0 {
            return Err(Invalid::NoLease);
        }
        return Ok(Change::Member(id.to_string(), !deleted));
    }
    if let Some(rest) = rest.strip_prefix(ACKS) {
        let (replica, endpoint) = rest.split_once('/').ok_or(Invalid::Key)?;
        crate::runtime::replicated::check_replica_id(replica).map_err(|_| Invalid::Key)?;
        let key = parse_endpoint(endpoint)?;
        if deleted {
            return Ok(Change::Ack(key, replica.to_string(), None));
        }
        if kv.lease == 0 {
            return Err(Invalid::NoLease);
        }
        let ack: Ack =
            serde_json::from_slice(&kv.value).map_err(|e| Invalid::Value(e.to_string()))?;
        return Ok(Change::Ack(key, replica.to_string(), Some(ack)));
    }
    let (kind, endpoint) = [DRAINS, WEIGHTS, REGISTRATIONS, HEALTH]
        .into_iter()
        .find_map(|kind| rest.strip_prefix(kind).map(|e| (kind, e)))
        .ok_or(Invalid::Key)?;
    let key = parse_endpoint(endpoint)?;
    match (kind, deleted) {
        (DRAINS, d) => {
            if !d && !kv.value.is_empty() {
                return Err(Invalid::Value("a drain has an empty value".into()));
            }
            Ok(Change::Drain(key, !d))
        }
        (WEIGHTS, true) => Ok(Change::Weight(key, None)),
        (WEIGHTS, false) => Ok(Change::Weight(key, Some(weight(&kv.value)?))),
        (HEALTH, true) => Ok(Change::Health(key, None)),
        (HEALTH, false) => {
            let fact = HealthFact::decode(&kv.value)
                .ok_or_else(|| Invalid::Value("not a health fact".into()))?;
            if let Some(w) = fact.weight {
                check_weight(w)?;
            }
            Ok(Change::Health(key, Some(fact)))
        }
        (_, true) => Ok(Change::Registration(key, None)),
        (_, false) => {
            if kv.lease == 0 {
                return Err(Invalid::NoLease);
            }
            let r: Registration =
                serde_json::from_slice(&kv.value).map_err(|e| Invalid::Value(e.to_string()))?;
            check_weight(r.weight)?;
            Ok(Change::Registration(key, Some(r)))
        }
    }
}

fn check_weight(w: u32) -> Result<u32, Invalid> {
    if (1..=crate::config::MAX_WEIGHT).contains(&w) {
        Ok(w)
    } else {
        Err(Invalid::Value(format!(
            "weight {w} is out of range (1..={})",
            crate::config::MAX_WEIGHT
        )))
    }
}

fn weight(value: &[u8]) -> Result<u32, Invalid> {
    let w = std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| Invalid::Value("not a weight".into()))?;
    check_weight(w)
}

#[cfg(test)]
mod tests;
