//! Counts over the last minute in one-second slots, and quantiles from bucket counts.

/// Slots kept: rates can be read over any window up to this many seconds.
pub const SLOTS: u64 = 60;

/// The most one report may add to a count: no Envoy completes 2^40 requests between two
/// flushes, and with this bound no sum over reporters and slots comes near `u64::MAX`.
pub const MAX_COUNT: u64 = 1 << 40;

/// The most one report may add to a count when the reporter is not authenticated (plaintext
/// xDS port, or no client certificate): what one Envoy can plausibly send, 1,000,000 requests
/// a second over a 10-second flush. Without it anyone who can reach the port could report 2^40
/// errors for a real cluster.
pub const MAX_UNAUTHENTICATED_COUNT: u64 = 10_000_000;

/// The per-report bound for a reporter on `peer`'s connection.
pub fn max_count(peer: Option<&crate::identity::XdsPeer>) -> u64 {
    if peer.is_some_and(|p| p.cert.is_some()) {
        MAX_COUNT
    } else {
        MAX_UNAUTHENTICATED_COUNT
    }
}

/// A counter's increments, per second, over the last [`SLOTS`] seconds.
#[derive(Debug, Clone, Default)]
pub struct Rate {
    slots: Vec<(u64, u64)>,
}

impl Rate {
    pub fn add(&mut self, second: u64, n: u64) {
        if self.slots.is_empty() {
            self.slots = vec![(u64::MAX, 0); SLOTS as usize];
        }
        let slot = &mut self.slots[(second % SLOTS) as usize];
        if slot.0 != second {
            *slot = (second, 0);
        }
        // A fake Envoy may report anything: counts saturate rather than overflow.
        slot.1 = slot.1.saturating_add(n);
    }

    /// Increments in the `window` seconds ending with `now` (inclusive).
    pub fn sum(&self, now: u64, window: u64) -> u64 {
        self.slots
            .iter()
            .filter(|(s, _)| *s <= now && s.saturating_add(window) > now)
            .fold(0u64, |acc, (_, n)| acc.saturating_add(*n))
    }
}

/// A histogram's increments per bucket over the last minute; `bounds` are the buckets' upper
/// bounds (Envoy's, in milliseconds), the last bucket being everything above.
#[derive(Debug, Clone, Default)]
pub struct BucketRates {
    pub bounds: Vec<f64>,
    pub buckets: Vec<Rate>,
}

impl BucketRates {
    /// Adds per-bucket (non-cumulative) increments; bounds changing resets the series.
    pub fn add(&mut self, second: u64, bounds: &[f64], increments: &[u64]) {
        if self.bounds != bounds {
            self.bounds = bounds.to_vec();
            self.buckets = vec![Rate::default(); bounds.len() + 1];
        }
        for (rate, n) in self.buckets.iter_mut().zip(increments) {
            if *n > 0 {
                rate.add(second, *n);
            }
        }
    }

    /// The `q` quantile (0..1) of values recorded in the window, interpolated linearly within
    /// its bucket; None when nothing was recorded.
    pub fn quantile(&self, now: u64, window: u64, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self.buckets.iter().map(|r| r.sum(now, window)).collect();
        quantile(&self.bounds, &counts, q)
    }
}

/// Quantile from per-bucket counts (`counts.len() == bounds.len() + 1`).
pub fn quantile(bounds: &[f64], counts: &[u64], q: f64) -> Option<f64> {
    let total = counts.iter().fold(0u64, |acc, n| acc.saturating_add(*n));
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &n) in counts.iter().enumerate() {
        if n > 0 && below.saturating_add(n) as f64 >= rank {
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            let Some(&upper) = bounds.get(i) else {
                return Some(lower); // open-ended last bucket: its lower bound
            };
            let within = (rank - below as f64) / n as f64;
            return Some(lower + (upper - lower) * within.clamp(0.0, 1.0));
        }
        below = below.saturating_add(n);
    }
    bounds.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_sum_over_the_window_and_forget_old_slots() {
        let mut r = Rate::default();
        r.add(100, 5);
        r.add(101, 7);
        r.add(109, 1);
        assert_eq!(r.sum(109, 10), 13);
        assert_eq!(r.sum(110, 10), 8);
        assert_eq!(r.sum(109, 1), 1);
        r.add(160, 2); // takes slot 100's place: 100 is more than a minute old
        assert_eq!(r.sum(160, 60), 7 + 1 + 2);
    }

    #[test]
    fn counts_saturate_instead_of_overflowing() {
        // Found by the stats_sink fuzz target: a counter of 1e20 overflowed a slot.
        let mut r = Rate::default();
        r.add(100, u64::MAX);
        r.add(100, 5);
        r.add(101, u64::MAX);
        assert_eq!(r.sum(101, 10), u64::MAX);
        assert_eq!(r.sum(u64::MAX, u64::MAX), 0);
        let q = quantile(&[1.0], &[u64::MAX, u64::MAX], 0.5);
        assert_eq!(q, Some(0.5));
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let bounds = [1.0, 5.0, 10.0];
        // 50 values in (0,1], 40 in (1,5], 10 in (5,10].
        let counts = [50, 40, 10, 0];
        assert_eq!(quantile(&bounds, &counts, 0.5), Some(1.0));
        let p95 = quantile(&bounds, &counts, 0.95).unwrap();
        assert!((p95 - 7.5).abs() < 1e-9, "{p95}");
        assert_eq!(quantile(&bounds, &[0, 0, 0, 0], 0.5), None);
        assert_eq!(quantile(&bounds, &[0, 0, 0, 3], 0.99), Some(10.0));
    }
}
