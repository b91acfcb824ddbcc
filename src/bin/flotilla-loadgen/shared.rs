//! What the driver and every stream share: the targets, the current change, and counters.
//!
//! The driver announces change `k` (sets its start time and `epoch`) and then writes the
//! file. A stream, after each ACK, checks whether it now holds target `k`; the first time it
//! does it records the elapsed time. Counters are plain atomics: 10,000 streams touch them a
//! few times per change, far from contention.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flotilla::cache::ResourceType;

use crate::expect::{Names, Target};

/// Per resource type: responses, resources in them, and their encoded bytes.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    responses: [AtomicU64; ResourceType::COUNT],
    resources: [AtomicU64; ResourceType::COUNT],
    bytes: [AtomicU64; ResourceType::COUNT],
    acks: AtomicU64,
}

/// A copy of [`Traffic`] at one moment; differences of two give one phase's traffic.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct TrafficCount {
    pub(crate) responses: [u64; ResourceType::COUNT],
    pub(crate) resources: [u64; ResourceType::COUNT],
    pub(crate) bytes: [u64; ResourceType::COUNT],
    pub(crate) acks: u64,
}

impl Traffic {
    pub(crate) fn response(&self, t: ResourceType, resources: usize, bytes: usize) {
        self.responses[t.index()].fetch_add(1, Ordering::Relaxed);
        self.resources[t.index()].fetch_add(resources as u64, Ordering::Relaxed);
        self.bytes[t.index()].fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn ack(&self) {
        self.acks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count(&self) -> TrafficCount {
        let load = |a: &[AtomicU64; ResourceType::COUNT]| {
            std::array::from_fn(|i| a[i].load(Ordering::Relaxed))
        };
        TrafficCount {
            responses: load(&self.responses),
            resources: load(&self.resources),
            bytes: load(&self.bytes),
            acks: self.acks.load(Ordering::Relaxed),
        }
    }
}

impl TrafficCount {
    pub(crate) fn since(&self, before: &TrafficCount) -> TrafficCount {
        let sub = |a: [u64; ResourceType::COUNT], b: [u64; ResourceType::COUNT]| {
            std::array::from_fn(|i| a[i] - b[i])
        };
        TrafficCount {
            responses: sub(self.responses, before.responses),
            resources: sub(self.resources, before.resources),
            bytes: sub(self.bytes, before.bytes),
            acks: self.acks - before.acks,
        }
    }

    pub(crate) fn total_bytes(&self) -> u64 {
        self.bytes.iter().sum()
    }
}

/// One phase (the initial config, or one change): when it started, who got there and when.
#[derive(Debug)]
pub(crate) struct Phase {
    started: Mutex<Option<Instant>>,
    done: Mutex<Vec<Duration>>,
}

pub(crate) struct Shared {
    pub(crate) names: Names,
    pub(crate) targets: Vec<Target>,
    pub(crate) phases: Vec<Phase>,
    epoch: AtomicUsize,
    pub(crate) traffic: Traffic,
    /// Streams that ended with an error.
    pub(crate) failed: AtomicU64,
    /// The first of those errors (a run that meets a limit names it once, not 50,000 times).
    first_error: Mutex<Option<String>>,
}

impl Shared {
    pub(crate) fn new(names: Names, targets: Vec<Target>) -> Shared {
        let phases = targets
            .iter()
            .map(|_| Phase {
                started: Mutex::new(None),
                done: Mutex::new(Vec::new()),
            })
            .collect();
        Shared {
            names,
            targets,
            phases,
            epoch: AtomicUsize::new(0),
            traffic: Traffic::default(),
            failed: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    /// A stream ended with `error`.
    pub(crate) fn stream_failed(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().expect("lock").get_or_insert(error);
    }

    pub(crate) fn first_error(&self) -> Option<String> {
        self.first_error.lock().expect("lock").clone()
    }

    /// Starts phase `k`: from now on streams are measured against target `k`.
    pub(crate) fn start(&self, k: usize) -> Instant {
        let now = Instant::now();
        *self.phases[k].started.lock().expect("lock") = Some(now);
        self.epoch.store(k, Ordering::Release);
        now
    }

    pub(crate) fn epoch(&self) -> usize {
        self.epoch.load(Ordering::Acquire)
    }

    /// Records that one stream reached target `k` now.
    pub(crate) fn reached(&self, k: usize) {
        let now = Instant::now();
        let started = self.phases[k].started.lock().expect("lock").unwrap_or(now);
        self.phases[k]
            .done
            .lock()
            .expect("lock")
            .push(now.duration_since(started));
    }

    pub(crate) fn done_count(&self, k: usize) -> usize {
        self.phases[k].done.lock().expect("lock").len()
    }

    pub(crate) fn latencies(&self, k: usize) -> Vec<Duration> {
        self.phases[k].done.lock().expect("lock").clone()
    }
}
