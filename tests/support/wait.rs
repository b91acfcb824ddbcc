//! Polling with a deadline: the only way tests wait.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `holds` every 50 ms for `duration` and panics with `what` the first time it is false:
/// how tests check that nothing changes for a while (no push, no probe, no reload), failing as
/// soon as something does rather than sleeping and looking once.
pub async fn holds_for<F, Fut>(what: &str, duration: Duration, mut holds: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if !holds().await {
            panic!("{what} stopped holding after {:?}", start.elapsed());
        }
        if start.elapsed() >= duration {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
