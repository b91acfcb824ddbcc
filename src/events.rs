//! Recent events, for the dashboard and `/api/v1/events`: reloads, NACKs, health transitions,
//! drains, weight overrides, registrations, Envoys connecting and leaving.
//!
//! A bounded ring (the last [`CAPACITY`] events) in one process-wide log, like the metrics
//! registry: anything may record, the admin API reads.

use std::collections::VecDeque;
use std::sync::{LazyLock, Mutex};
use std::time::SystemTime;

use serde::Serialize;

/// Events kept; older ones are dropped.
pub const CAPACITY: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Reload,
    Nack,
    Health,
    Drain,
    Weight,
    Registration,
    Node,
    /// Hostname endpoints: a lookup failed (the last good addresses stay).
    Dns,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: u64,
    #[serde(with = "crate::util::unix_millis")]
    pub at: SystemTime,
    pub kind: Kind,
    pub message: String,
    pub cluster: Option<String>,
    pub endpoint: Option<String>,
    pub node: Option<String>,
}

/// What to record; the log adds the id and time.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: Kind,
    pub message: String,
    pub cluster: Option<String>,
    pub endpoint: Option<String>,
    pub node: Option<String>,
}

impl NewEvent {
    pub fn new(kind: Kind, message: impl Into<String>) -> NewEvent {
        NewEvent {
            kind,
            message: message.into(),
            cluster: None,
            endpoint: None,
            node: None,
        }
    }

    pub fn cluster(mut self, cluster: impl Into<String>) -> NewEvent {
        self.cluster = Some(cluster.into());
        self
    }

    pub fn endpoint(mut self, endpoint: impl ToString) -> NewEvent {
        self.endpoint = Some(endpoint.to_string());
        self
    }

    pub fn node(mut self, node: impl Into<String>) -> NewEvent {
        self.node = Some(node.into());
        self
    }
}

#[derive(Default)]
struct Ring {
    next_id: u64,
    events: VecDeque<Event>,
}

static LOG: LazyLock<Mutex<Ring>> = LazyLock::new(Mutex::default);

/// Records an event.
pub fn record(e: NewEvent) {
    LazyLock::force(&STARTED);
    let mut ring = LOG.lock().unwrap_or_else(|p| p.into_inner());
    ring.next_id += 1;
    let event = Event {
        id: ring.next_id,
        at: SystemTime::now(),
        kind: e.kind,
        message: e.message,
        cluster: e.cluster,
        endpoint: e.endpoint,
        node: e.node,
    };
    if ring.events.len() == CAPACITY {
        ring.events.pop_front();
    }
    ring.events.push_back(event);
}

/// Events with an id above `since`, oldest first.
pub fn since(since: u64) -> Vec<Event> {
    let ring = LOG.lock().unwrap_or_else(|p| p.into_inner());
    ring.events
        .iter()
        .filter(|e| e.id > since)
        .cloned()
        .collect()
}

/// The id of the newest event (0 when none), so a client can tell a restarted flotilla
/// (ids start again from 1) from one with nothing new.
pub fn latest_id() -> u64 {
    LOG.lock().unwrap_or_else(|p| p.into_inner()).next_id
}

static STARTED: LazyLock<SystemTime> = LazyLock::new(SystemTime::now);

/// When this process's event log began (ids count from here).
pub fn started_at() -> SystemTime {
    *STARTED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_filters_by_id() {
        let before = since(0).last().map_or(0, |e| e.id);
        for i in 0..(CAPACITY + 10) {
            record(NewEvent::new(Kind::Reload, format!("event {i}")).cluster("web"));
        }
        let all = since(0);
        assert_eq!(all.len(), CAPACITY);
        let newest = all.last().unwrap();
        assert!(newest.message.starts_with("event "));
        let after = since(newest.id - 3);
        assert_eq!(after.len(), 3);
        assert!(after.windows(2).all(|w| w[0].id < w[1].id));
        assert!(newest.id > before);
    }
}
