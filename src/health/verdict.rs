//! One endpoint's health as the probes see it: thresholds turn results into verdicts.
//!
//! A new endpoint is *unknown* and Envoy serves it (EDS health UNKNOWN counts as healthy):
//! taking it out before any evidence would shrink capacity on every deploy. One success makes
//! it healthy; `unhealthy_threshold` failures in a row make it unhealthy, the same count that
//! takes a healthy endpoint out. An unhealthy endpoint needs `healthy_threshold` successes in a
//! row to come back. Only a change of verdict is reported, so flapping probes cost no pushes.

use crate::overlay::Verdict;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracker {
    verdict: Option<Verdict>,
    successes: u32,
    failures: u32,
}

impl Tracker {
    pub fn verdict(&self) -> Option<Verdict> {
        self.verdict
    }

    /// Records one probe result; returns the new verdict if it changed.
    pub fn record(
        &mut self,
        ok: bool,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<Verdict> {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
        }
        let next = match (self.verdict, ok) {
            (None, true) => Some(Verdict::Healthy),
            (Some(Verdict::Unhealthy), true) if self.successes >= healthy_threshold => {
                Some(Verdict::Healthy)
            }
            (None | Some(Verdict::Healthy), false) if self.failures >= unhealthy_threshold => {
                Some(Verdict::Unhealthy)
            }
            _ => None,
        }?;
        self.verdict = Some(next);
        Some(next)
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_success_makes_a_new_endpoint_healthy() {
        let mut t = Tracker::default();
        assert_eq!(t.record(true, 3, 3), Some(Verdict::Healthy));
        assert_eq!(t.record(true, 3, 3), None, "no repeated report");
    }

    #[test]
    fn a_new_endpoint_needs_the_full_failure_count_to_go_unhealthy() {
        let mut t = Tracker::default();
        assert_eq!(t.record(false, 2, 3), None);
        assert_eq!(t.record(false, 2, 3), None);
        assert_eq!(t.verdict(), None, "still unknown, still served");
        assert_eq!(t.record(false, 2, 3), Some(Verdict::Unhealthy));
    }

    #[test]
    fn thresholds_debounce_flapping() {
        let mut t = Tracker::default();
        t.record(true, 2, 2);
        // Alternating results never reach either threshold.
        for _ in 0..10 {
            assert_eq!(t.record(false, 2, 2), None);
            assert_eq!(t.record(true, 2, 2), None);
        }
        assert_eq!(t.verdict(), Some(Verdict::Healthy));
        assert_eq!(t.record(false, 2, 2), None);
        assert_eq!(t.record(false, 2, 2), Some(Verdict::Unhealthy));
        assert_eq!(t.record(true, 2, 2), None);
        assert_eq!(t.record(false, 2, 2), None);
        assert_eq!(t.record(true, 2, 2), None);
        assert_eq!(t.record(true, 2, 2), Some(Verdict::Healthy));
    }
}
