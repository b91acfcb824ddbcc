//! Rate limits for log lines that clients can cause at will (NACKs, made-up fleet names):
//! a thousand misbehaving Envoys must not write gigabytes of log. Each call site keeps one
//! [`Throttle`] in a `static`; a line that passes says how many were suppressed before it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Allows `burst` lines per `window`, then suppresses (and counts) the rest of the window.
pub struct Throttle {
    burst: u32,
    window: Duration,
    state: Mutex<State>,
}

struct State {
    window_start: Option<Instant>,
    passed: u32,
    suppressed: u64,
}

impl Throttle {
    pub const fn new(burst: u32, window: Duration) -> Throttle {
        Throttle {
            burst,
            window,
            state: Mutex::new(State {
                window_start: None,
                passed: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were suppressed since the
    /// last one that was; `None` when this one is to be suppressed.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.window_start
            .is_none_or(|start| now.duration_since(start) >= self.window)
        {
            s.window_start = Some(now);
            s.passed = 0;
        }
        if s.passed >= self.burst {
            s.suppressed += 1;
            return None;
        }
        s.passed += 1;
        Some(std::mem::take(&mut s.suppressed))
    }
}

/// The usual throttle for a client-caused warning: 10 lines per 10 seconds per call site.
pub const fn per_site() -> Throttle {
    Throttle::new(10, Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_lines_are_counted_until_the_window_ends() {
        let t = Throttle::new(2, Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(t.allow_at(start), Some(0));
        assert_eq!(t.allow_at(start), Some(0));
        for _ in 0..1000 {
            assert_eq!(t.allow_at(start + Duration::from_secs(1)), None);
        }
        // The next window's first line reports what was suppressed.
        assert_eq!(t.allow_at(start + Duration::from_secs(10)), Some(1000));
        assert_eq!(t.allow_at(start + Duration::from_secs(10)), Some(0));
    }
}
