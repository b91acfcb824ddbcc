//! Waiting for a leaving endpoint to have no request in flight on any Envoy of any replica,
//! and saying so for this replica's Envoys (`witness`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::overlay::EndpointKey;
use crate::runtime::Runtime;
use crate::store::Ack;
use crate::traffic::TrafficAggregate;

/// How long an Envoy is given to receive the DRAINING endpoint before its load reports count:
/// a report must arrive this long after the drain began, so that no request can reach the
/// endpoint after the report that shows it idle.
pub const SETTLE: Duration = Duration::from_secs(1);
/// How long a drain waits when the instance names no deadline.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// The longest deadline an instance may ask for.
pub const MAX_DEADLINE: Duration = Duration::from_secs(600);

const POLL: Duration = Duration::from_millis(100);

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Drained {
    pub deadline_passed: bool,
    /// Requests in flight when the deadline passed (as last reported).
    pub in_flight: u64,
}

/// Waits until every live replica has said that its Envoys hold `keys` DRAINING with no
/// request in flight, or until `deadline`.
pub(super) async fn until_idle(
    runtime: &Runtime,
    keys: &[EndpointKey],
    deadline: Duration,
) -> Drained {
    let end = tokio::time::Instant::now() + deadline;
    let mut changed = runtime.acks_changed();
    let mut last = 0;
    loop {
        match runtime.in_flight_everywhere(keys) {
            Some(0) => {
                return Drained {
                    deadline_passed: false,
                    in_flight: 0,
                };
            }
            Some(n) => last = n,
            None => {}
        }
        tokio::select! {
            () = tokio::time::sleep_until(end) => {
                return Drained {
                    deadline_passed: true,
                    in_flight: last,
                };
            }
            _ = changed.changed() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// This replica's side of every drain: for each leaving endpoint (whichever replica holds
/// its stream), once this replica's overlay holds it DRAINING, publishes how many requests
/// its Envoys report in flight to it, as reported at least `SETTLE` later. Envoys that send
/// no load reports cannot be asked: for them only `SETTLE` is waited.
pub async fn witness(
    runtime: Arc<Runtime>,
    traffic: Arc<TrafficAggregate>,
    shutdown: CancellationToken,
) {
    // Per leaving endpoint: since when its reports count, and the last ack published.
    let mut seen: HashMap<EndpointKey, (Instant, Option<u64>)> = HashMap::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(POLL) => {}
        }
        let leaving = runtime.leaving();
        let gone: Vec<EndpointKey> = seen
            .keys()
            .filter(|k| !leaving.contains(k))
            .cloned()
            .collect();
        for key in gone {
            seen.remove(&key);
            let _ = runtime.acknowledge(&key, None).await;
        }
        let fresh = leaving.iter().any(|k| !seen.contains_key(k));
        if fresh {
            // Envoy's next EDS holds them DRAINING from here on.
            runtime.registrations_published().await;
        }
        let now = Instant::now();
        for key in leaving {
            let (since, last) = seen.entry(key.clone()).or_insert((now + SETTLE, None));
            if now < *since {
                continue;
            }
            let endpoint = [(key.cluster.clone(), key.address.to_string())];
            let Some(in_flight) = traffic.in_flight_since(&endpoint, *since) else {
                continue;
            };
            if *last == Some(in_flight) {
                continue;
            }
            match runtime.acknowledge(&key, Some(Ack { in_flight })).await {
                Ok(()) => {
                    debug!(cluster = %key.cluster, endpoint = %key.address, in_flight, "drain acknowledged");
                    *last = Some(in_flight);
                }
                Err(e) => debug!(error = %e, "could not acknowledge a drain; retrying"),
            }
        }
    }
}
