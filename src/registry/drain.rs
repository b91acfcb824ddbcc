//! Waiting for a leaving endpoint to have no request in flight on any Envoy.

use std::time::Duration;

use crate::overlay::EndpointKey;
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

/// Waits until every Envoy that reports load has reported, `SETTLE` after now, no request in
/// flight to `keys`, or until `deadline`. Envoys that send no load reports cannot be asked:
/// for them only `SETTLE` is waited.
pub(super) async fn until_idle(
    traffic: &TrafficAggregate,
    keys: &[EndpointKey],
    deadline: Duration,
) -> Drained {
    let start = std::time::Instant::now();
    let since = start + SETTLE;
    let endpoints: Vec<(String, String)> = keys
        .iter()
        .map(|k| (k.cluster.clone(), k.address.to_string()))
        .collect();
    let mut last = 0;
    loop {
        let now = std::time::Instant::now();
        if now >= since {
            match traffic.in_flight_since(&endpoints, since) {
                Some(0) => {
                    return Drained {
                        deadline_passed: false,
                        in_flight: 0,
                    };
                }
                Some(n) => last = n,
                None => {}
            }
        }
        if now >= start + deadline {
            return Drained {
                deadline_passed: true,
                in_flight: last,
            };
        }
        tokio::time::sleep(POLL).await;
    }
}
