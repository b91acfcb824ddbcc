//! Registrations through the store: one set of checks for every way an endpoint arrives (a
//! heartbeat, a registration stream, another replica through the store), and the mirror of
//! what the store holds that the overlay is built from.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::leases::{Binding, Registered};
use super::session::{MAX_METADATA_BYTES, MAX_METADATA_ENTRIES, MAX_ZONE_BYTES};
use super::{
    FIRST_LISTING, LeaseView, MAX_TTL, MIN_TTL, Runtime, RuntimeError, State, admission,
    parse_address, view,
};
use crate::events::{self, Kind, NewEvent};
use crate::overlay::EndpointKey;
use crate::store::{LeaseKind, Registration, StoreError};

/// Whether a registration is checked for the writer (the cluster's `max` and who holds the
/// address apply) or as read back from the store (what another replica admitted).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    Write,
    Read,
}

impl Runtime {
    /// Refuses a change while the store does not answer; a call made before the store's
    /// first listing waits for it a little (a replica that just started).
    pub(super) async fn check_store(&self) -> Result<(), RuntimeError> {
        let mut up = self.store_up.subscribe();
        match tokio::time::timeout(FIRST_LISTING, up.wait_for(|up| *up)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(RuntimeError::StoreUnavailable(
                StoreError::Unavailable("the store is not connected".into()).to_string(),
            )),
        }
    }

    /// flotilla's own listening addresses (the port and what it is), refused as
    /// registrations from now on.
    pub fn set_own_addresses(&self, own: Vec<(std::net::SocketAddr, &'static str)>) {
        *self.own.lock().unwrap_or_else(|e| e.into_inner()) = own;
    }

    /// Whether `r` may be registered at `key`: the API's checks, for every way in.
    pub(super) fn admit(
        &self,
        state: &State,
        key: &EndpointKey,
        r: &Registration,
        who: admission::Registrant<'_>,
        check: Check,
    ) -> Result<(), RuntimeError> {
        let bad = |m: String| Err(RuntimeError::BadRequest(m));
        if !(1..=crate::config::MAX_WEIGHT).contains(&r.weight) {
            return bad(format!(
                "weight {} is out of range (1..={})",
                r.weight,
                crate::config::MAX_WEIGHT
            ));
        }
        if r.stream.is_none() && !(MIN_TTL..=MAX_TTL).contains(&r.ttl()) {
            return bad(format!(
                "ttl {} is out of range ({}..={})",
                crate::config::duration::format(r.ttl()),
                crate::config::duration::format(MIN_TTL),
                crate::config::duration::format(MAX_TTL)
            ));
        }
        if r.zone.as_ref().is_some_and(|z| z.len() > MAX_ZONE_BYTES) {
            return bad(format!("zone is longer than {MAX_ZONE_BYTES} bytes"));
        }
        if r.metadata.len() > MAX_METADATA_ENTRIES {
            return bad(format!(
                "metadata has more than {MAX_METADATA_ENTRIES} entries"
            ));
        }
        if r.metadata
            .iter()
            .any(|(k, v)| k.len() > MAX_METADATA_BYTES || v.len() > MAX_METADATA_BYTES)
        {
            return bad(format!(
                "a metadata key or value is longer than {MAX_METADATA_BYTES} bytes"
            ));
        }
        let config = self.controller.config().ok_or(RuntimeError::NoConfig)?;
        let c = config
            .clusters
            .get(&key.cluster)
            .ok_or_else(|| RuntimeError::UnknownCluster(key.cluster.clone()))?;
        if c.endpoints.iter().any(|e| e.address == key.address) {
            return Err(RuntimeError::Configured {
                cluster: key.cluster.clone(),
                address: key.address,
            });
        }
        let rules = admission::open(&key.cluster, c, who)?;
        admission::check(key.address.ip(), rules).map_err(RuntimeError::BadRequest)?;
        admission::not_flotilla(
            key.address,
            &self.own.lock().unwrap_or_else(|e| e.into_inner()),
        )?;
        if check == Check::Read {
            return Ok(());
        }
        let held = state.leases.get(key);
        if held.is_some_and(|l| l.session != r.stream && !super::drain_on_end::takes_over(l, r)) {
            return Err(RuntimeError::Taken {
                cluster: key.cluster.clone(),
                address: key.address,
            });
        }
        let max = rules.max;
        if held.is_none() && state.leases.count(&key.cluster) >= max {
            return Err(RuntimeError::Full {
                cluster: key.cluster.clone(),
                max,
            });
        }
        Ok(())
    }

    /// Registers an endpoint (or renews it) through the store: acknowledged once the store
    /// holds it, so that a heartbeat through any replica renews the same lease.
    pub async fn lease(
        &self,
        cluster: &str,
        address: &str,
        weight: u32,
        ttl: Duration,
    ) -> Result<LeaseView, RuntimeError> {
        let key = EndpointKey::new(cluster, parse_address(address)?);
        let r = Registration::leased(weight, ttl);
        self.admit(
            &self.lock(),
            &key,
            &r,
            admission::Registrant::Operator,
            Check::Write,
        )?;
        self.check_store().await?;
        self.store
            .put_registration(&key, &r, LeaseKind::Ttl(ttl))
            .await?;
        let now = Instant::now();
        // Applied at once (the store's echo then changes nothing); a plain renewal counted.
        if !self.absorb_registration(key.clone(), Some(r)) {
            self.lock().leases.register(&key, weight, ttl, now);
        }
        let state = self.lock();
        let lease = state.leases.get(&key).ok_or_else(|| {
            RuntimeError::StoreUnavailable("the registration ended as it was made".into())
        })?;
        Ok(view(&key, lease, now))
    }

    /// Ends a heartbeat registration everywhere; `false` if there was none.
    pub async fn end_lease(&self, cluster: &str, address: &str) -> Result<bool, RuntimeError> {
        let key = EndpointKey::new(cluster, parse_address(address)?);
        match self.lock().leases.get(&key) {
            None => return Ok(false),
            Some(l) if l.session.is_some() => {
                return Err(RuntimeError::Taken {
                    cluster: cluster.to_string(),
                    address: key.address,
                });
            }
            Some(_) => {}
        }
        self.check_store().await?;
        self.store.end_registration(&key).await?;
        self.absorb_registration(key.clone(), None);
        events::record(
            NewEvent::new(
                Kind::Registration,
                format!("{} deregistered from {cluster}", key.address),
            )
            .cluster(cluster)
            .endpoint(key.address),
        );
        Ok(true)
    }

    /// Applies a registration the store holds (new, changed, or gone) to the mirror the
    /// overlay is built from. A registration that fails the checks is skipped (another writer
    /// than flotilla, or a config that changed since). Returns whether the mirror changed.
    pub(super) fn absorb_registration(&self, key: EndpointKey, r: Option<Registration>) -> bool {
        let mut state = self.lock();
        let message = match r {
            Some(r) => {
                if let Err(e) = self.admit(
                    &state,
                    &key,
                    &r,
                    admission::Registrant::Operator,
                    Check::Read,
                ) && !matches!(e, RuntimeError::NoConfig)
                {
                    warn!(cluster = %key.cluster, endpoint = %key.address, error = %e,
                        "skipping a registration from the store that fails the checks");
                    return false;
                }
                let held = state.leases.get(&key);
                let same = held.is_some_and(|l| {
                    l.session == r.stream
                        && l.weight == r.weight
                        && l.zone == r.zone
                        && l.metadata == r.metadata
                        && l.leaving == r.leaving
                        && l.instance == r.instance
                        && (r.stream.is_some() || l.ttl == r.ttl())
                });
                if same {
                    return false;
                }
                let new = held.is_none();
                if held.is_some_and(|l| l.session != r.stream) {
                    state.leases.remove(&key);
                }
                let now = Instant::now();
                let registered = match &r.stream {
                    None => state.leases.register(&key, r.weight, r.ttl(), now),
                    Some(owner) => {
                        let binding = Binding {
                            weight: r.weight,
                            zone: r.zone.clone(),
                            metadata: r.metadata.clone(),
                            instance: r.instance.clone(),
                        };
                        let registered = state.leases.bind(&key, owner, binding, now);
                        if r.leaving {
                            state.leases.set_leaving(&key);
                        }
                        registered
                    }
                };
                (new && registered == Registered::New).then(|| match &r.stream {
                    None => format!("{} registered in {}", key.address, key.cluster),
                    Some(o) => format!(
                        "{} registered in {} (stream, through replica {})",
                        key.address, key.cluster, o.replica
                    ),
                })
            }
            None => {
                if !state.leases.remove(&key) {
                    return false;
                }
                Some(format!("{} left {}: lease ended", key.address, key.cluster))
            }
        };
        state.registry_version += 1;
        self.leases_changed.notify_one();
        drop(state);
        if let Some(message) = message {
            info!(cluster = %key.cluster, endpoint = %key.address, "{message}");
            events::record(
                NewEvent::new(Kind::Registration, message)
                    .cluster(key.cluster.clone())
                    .endpoint(key.address),
            );
        }
        true
    }

    /// Makes the mirror exactly `listed` (after a listing of the store).
    pub(super) fn absorb_registrations(
        &self,
        listed: std::collections::BTreeMap<EndpointKey, Registration>,
    ) {
        let gone: Vec<EndpointKey> = self
            .lock()
            .leases
            .iter()
            .filter(|(k, _)| !listed.contains_key(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            self.absorb_registration(key, None);
        }
        for (key, r) in listed {
            self.absorb_registration(key, Some(r));
        }
    }
}
