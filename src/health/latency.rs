//! least_response_time: measured latency → endpoint weights that do not move on noise.
//!
//! Each endpoint's probe latency is smoothed (an exponentially weighted moving average).
//! Within a cluster, the fastest endpoint sets the scale: an endpoint `k` times slower
//! deserves `1/k` of its weight. That ratio is quantised onto a geometric ladder of levels
//! (each √2 below the last), and an endpoint only changes level once its ratio has moved
//! three quarters of a step away, so latency wobbling around a boundary causes no pushes.

use std::time::Duration;

/// Weight of the fastest endpoints (level 0); level `n` weighs `FULL / √2ⁿ`.
pub const FULL: u32 = 100;
const LEVELS: u32 = 13;
/// How far (in levels) the ideal level must move before an endpoint changes level.
const HYSTERESIS: f64 = 0.75;
/// Latencies under this count as this: sub-millisecond differences on a LAN are noise.
pub const FLOOR: Duration = Duration::from_millis(5);
/// Weight of a new sample in the moving average.
const ALPHA: f64 = 0.3;

/// A smoothed latency.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Smoothed(Option<f64>);

impl Smoothed {
    pub fn observe(&mut self, sample: Duration) {
        let s = sample.as_secs_f64();
        self.0 = Some(match self.0 {
            None => s,
            Some(prev) => prev + ALPHA * (s - prev),
        });
    }

    pub fn get(&self) -> Option<Duration> {
        self.0.map(Duration::from_secs_f64)
    }
}

/// The weight of a level.
pub fn level_weight(level: u32) -> u32 {
    let w = f64::from(FULL) / 2f64.sqrt().powi(level as i32);
    (w.round() as u32).max(1)
}

/// Ideal (fractional) level of an endpoint with latency `own` when the fastest has `fastest`.
fn ideal_level(own: Duration, fastest: Duration) -> f64 {
    let own = own.max(FLOOR).as_secs_f64();
    let fastest = fastest.max(FLOOR).as_secs_f64();
    let ratio = own / fastest;
    (ratio.ln() / 2f64.sqrt().ln()).clamp(0.0, f64::from(LEVELS - 1))
}

/// New levels for a cluster's endpoints, given their smoothed latencies (None: no sample
/// yet, full weight) and their current levels.
pub fn levels(latencies: &[Option<Duration>], current: &[u32]) -> Vec<u32> {
    let fastest = latencies.iter().flatten().min().copied();
    latencies
        .iter()
        .zip(current)
        .map(|(latency, &level)| {
            let (Some(own), Some(fastest)) = (latency, fastest) else {
                return 0;
            };
            let ideal = ideal_level(*own, fastest);
            if (ideal - f64::from(level)).abs() > HYSTERESIS {
                ideal.round() as u32
            } else {
                level
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn a_slower_endpoint_weighs_less() {
        let l = levels(&[ms(1), ms(51)], &[0, 0]);
        assert_eq!(l[0], 0);
        assert!(
            level_weight(l[1]) <= 12,
            "51 ms vs ≤5 ms: about a tenth, got {}",
            level_weight(l[1])
        );
    }

    #[test]
    fn noise_below_the_floor_and_within_a_step_changes_nothing() {
        assert_eq!(
            levels(&[ms(1), ms(3)], &[0, 0]),
            vec![0, 0],
            "both under the floor"
        );
        assert_eq!(
            levels(&[ms(20), ms(24)], &[0, 0]),
            vec![0, 0],
            "within a step"
        );
    }

    #[test]
    fn hysteresis_holds_a_level_near_its_boundary() {
        // 40 ms vs 20 ms is exactly two steps.
        let l = levels(&[ms(20), ms(40)], &[0, 0]);
        assert_eq!(l, vec![0, 2]);
        // Drifting to 35 ms (ideal ≈ 1.6) keeps level 2; 28 ms (≈ 0.97) moves it.
        assert_eq!(levels(&[ms(20), ms(35)], &l), vec![0, 2]);
        assert_eq!(levels(&[ms(20), ms(28)], &l), vec![0, 1]);
    }

    #[test]
    fn unknown_latency_gets_full_weight() {
        assert_eq!(levels(&[None, ms(50)], &[3, 3]), vec![0, 0]);
    }

    #[test]
    fn smoothing_averages_samples() {
        let mut s = Smoothed::default();
        s.observe(Duration::from_millis(10));
        s.observe(Duration::from_millis(20));
        let v = s.get().unwrap().as_secs_f64() * 1000.0;
        assert!((v - 13.0).abs() < 0.01, "{v}");
    }

    #[test]
    fn level_weights_fall_by_root_two() {
        assert_eq!(level_weight(0), 100);
        assert_eq!(level_weight(1), 71);
        assert_eq!(level_weight(2), 50);
        assert_eq!(level_weight(12), 2);
    }
}
