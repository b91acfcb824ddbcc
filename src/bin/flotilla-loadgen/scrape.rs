//! One histogram read from flotilla's `/metrics` (Prometheus text): the difference of two
//! readings is what happened in between, e.g. the etcd writes of a series of drains.

/// Count, sum and cumulative buckets (`le`, count) of one unlabelled histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Histogram {
    pub(crate) count: f64,
    pub(crate) sum: f64,
    buckets: Vec<(f64, f64)>,
}

/// Reads histogram `name` from `text`; absent, it is empty.
pub(crate) fn histogram(text: &str, name: &str) -> Histogram {
    let mut h = Histogram::default();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let Some(rest) = series.strip_prefix(name) else {
            continue;
        };
        match rest {
            "_count" => h.count = value,
            "_sum" => h.sum = value,
            _ => {
                if let Some(le) = rest
                    .strip_prefix("_bucket{le=\"")
                    .and_then(|r| r.strip_suffix("\"}"))
                {
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().unwrap_or(f64::NAN)
                    };
                    h.buckets.push((le, value));
                }
            }
        }
    }
    h
}

impl Histogram {
    /// What was recorded after `before` (same series, read earlier).
    pub(crate) fn since(&self, before: &Histogram) -> Histogram {
        Histogram {
            count: self.count - before.count,
            sum: self.sum - before.sum,
            buckets: self
                .buckets
                .iter()
                .map(|(le, n)| {
                    let was = before
                        .buckets
                        .iter()
                        .find(|(l, _)| l == le)
                        .map_or(0.0, |b| b.1);
                    (*le, n - was)
                })
                .collect(),
        }
    }

    pub(crate) fn mean_ms(&self) -> f64 {
        if self.count == 0.0 {
            0.0
        } else {
            self.sum / self.count * 1000.0
        }
    }

    /// The upper bound of the bucket holding quantile `q` (0–1), in ms: the histogram cannot
    /// say more precisely.
    pub(crate) fn quantile_bound_ms(&self, q: f64) -> f64 {
        let want = (q * self.count).ceil().max(1.0);
        self.buckets
            .iter()
            .find(|(_, n)| *n >= want)
            .map_or(f64::NAN, |(le, _)| le * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# HELP flotilla_store_write_seconds x\n\
        flotilla_store_write_seconds_sum 0.001\n\
        flotilla_store_write_seconds_count 1\n\
        flotilla_store_write_seconds_bucket{le=\"0.002\"} 1\n\
        flotilla_store_write_seconds_bucket{le=\"0.004\"} 1\n\
        flotilla_store_write_seconds_bucket{le=\"+Inf\"} 1\n\
        flotilla_store_available 1\n";
    const AFTER: &str = "flotilla_store_write_seconds_sum 0.011\n\
        flotilla_store_write_seconds_count 4\n\
        flotilla_store_write_seconds_bucket{le=\"0.002\"} 2\n\
        flotilla_store_write_seconds_bucket{le=\"0.004\"} 4\n\
        flotilla_store_write_seconds_bucket{le=\"+Inf\"} 4\n";

    #[test]
    fn the_difference_of_two_readings_is_what_happened_between() {
        let name = "flotilla_store_write_seconds";
        let d = histogram(AFTER, name).since(&histogram(BEFORE, name));
        assert_eq!(d.count, 3.0);
        assert!((d.mean_ms() - 10.0 / 3.0).abs() < 1e-9);
        // 1 of 3 within 2 ms, all 3 within 4 ms.
        assert_eq!(d.quantile_bound_ms(0.3), 2.0);
        assert_eq!(d.quantile_bound_ms(0.5), 4.0);
        assert_eq!(d.quantile_bound_ms(0.99), 4.0);
    }

    #[test]
    fn an_absent_histogram_is_empty() {
        let h = histogram(
            "flotilla_store_available 1\n",
            "flotilla_store_write_seconds",
        );
        assert_eq!(h, Histogram::default());
        assert_eq!(h.mean_ms(), 0.0);
    }
}
