//! Bounds on request bytes held in memory: a stream's partial message waits in its reader's
//! buffer until the rest arrives, so a client that opens 128 streams and starts a 4 MiB
//! message on each, never finishing any, would hold half a gigabyte per connection. Every
//! reader charges what it holds against its connection's [`Budget`] and the server's, and a
//! stream whose next message does not fit ends with RESOURCE_EXHAUSTED. What a stream holds
//! is given back when it ends, so a closed connection returns all of its memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::metrics::gauge::Gauge;
use tonic::Status;

/// A number of bytes shared by everyone who charges against it.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    limit: usize,
    /// What it is called in an error (and the flag that sets it).
    name: &'static str,
    /// Mirrors `used`, for the metrics (the server's budget only).
    gauge: Option<Gauge>,
}

impl Budget {
    pub fn new(limit: usize, name: &'static str, gauge: Option<Gauge>) -> Arc<Budget> {
        Arc::new(Budget {
            used: AtomicUsize::new(0),
            limit,
            name,
            gauge,
        })
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn try_take(&self, n: usize) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.limit)
            })
            .is_ok();
        if taken && let Some(g) = &self.gauge {
            g.inc_by(n as i64);
        }
        taken
    }

    /// Charges memory already allocated, over the limit if need be.
    fn take(&self, n: usize) {
        self.used.fetch_add(n, Ordering::AcqRel);
        if let Some(g) = &self.gauge {
            g.inc_by(n as i64);
        }
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
        if let Some(g) = &self.gauge {
            g.dec_by(n as i64);
        }
    }
}

/// What one stream's reader holds against its budgets (its connection's and the server's).
#[derive(Debug, Default)]
pub(crate) struct Charge {
    budgets: Vec<Arc<Budget>>,
    held: usize,
}

impl Charge {
    pub(crate) fn new(budgets: Vec<Arc<Budget>>) -> Charge {
        Charge { budgets, held: 0 }
    }

    /// Makes room for holding `bytes` in all, before allocating them; an error when a budget
    /// has no room (nothing is charged then).
    pub(crate) fn reserve(&mut self, bytes: usize) -> Result<(), Status> {
        if bytes <= self.held {
            return Ok(());
        }
        let more = bytes - self.held;
        for (i, b) in self.budgets.iter().enumerate() {
            if !b.try_take(more) {
                for taken in &self.budgets[..i] {
                    taken.give_back(more);
                }
                return Err(Status::resource_exhausted(format!(
                    "request bytes buffered would exceed {} bytes ({}); a request must be sent whole",
                    b.limit, b.name
                )));
            }
        }
        self.held = bytes;
        Ok(())
    }

    /// Records that exactly `bytes` are held now (after an allocation, or a release).
    pub(crate) fn holds(&mut self, bytes: usize) {
        if bytes > self.held {
            for b in &self.budgets {
                b.take(bytes - self.held);
            }
        } else {
            for b in &self.budgets {
                b.give_back(self.held - bytes);
            }
        }
        self.held = bytes;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.holds(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_that_does_not_fit_takes_nothing_and_dropping_gives_all_back() {
        let connection = Budget::new(100, "per connection", None);
        let server = Budget::new(150, "in total", None);
        let mut a = Charge::new(vec![connection.clone(), server.clone()]);
        let mut b = Charge::new(vec![Budget::new(100, "other", None), server.clone()]);
        a.reserve(80).unwrap();
        assert_eq!(
            b.reserve(80).unwrap_err().code(),
            tonic::Code::ResourceExhausted
        );
        assert_eq!((connection.used(), server.used()), (80, 80));
        b.reserve(70).unwrap();
        a.holds(10);
        assert_eq!((connection.used(), server.used()), (10, 80));
        drop((a, b));
        assert_eq!((connection.used(), server.used()), (0, 0));
    }
}
