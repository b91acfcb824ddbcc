//! Recent events, for the dashboard and `/api/v1/events`: reloads, NACKs, health transitions,
//! drains, weight overrides, registrations, Envoys connecting and leaving.
//!
//! A bounded ring (the last [`CAPACITY`] events, at most [`MAX_BYTES`] of text) in one
//! process-wide log, like the metrics registry: anything may record, the admin API reads.
//! Each text field is cut to [`MAX_FIELD_BYTES`]: an Envoy's NACK message can be megabytes,
//! and a thousand of them must not make the log (or one `GET /api/v1/events`) gigabytes.

use std::collections::VecDeque;
use std::sync::{LazyLock, Mutex};
use std::time::SystemTime;

use serde::Serialize;

/// Events kept; older ones are dropped.
pub const CAPACITY: usize = 500;
/// Longest text kept per field (message, cluster, endpoint, node); longer text is cut at a
/// character boundary and marked.
pub const MAX_FIELD_BYTES: usize = 4096;
/// Text kept over all events; the oldest events are dropped to stay below it.
pub const MAX_BYTES: usize = 1024 * 1024;

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
    /// Text held by `events` (what [`Event::text_bytes`] counts).
    bytes: usize,
}

impl Event {
    fn text_bytes(&self) -> usize {
        self.message.len()
            + [&self.cluster, &self.endpoint, &self.node]
                .into_iter()
                .flatten()
                .map(String::len)
                .sum::<usize>()
    }
}

/// `text` cut to at most `max` bytes at a character boundary, saying how much was cut.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let total = text.len();
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!("… ({} of {total} bytes shown)", end));
    text
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
        message: truncate(e.message, MAX_FIELD_BYTES),
        cluster: e.cluster.map(|t| truncate(t, MAX_FIELD_BYTES)),
        endpoint: e.endpoint.map(|t| truncate(t, MAX_FIELD_BYTES)),
        node: e.node.map(|t| truncate(t, MAX_FIELD_BYTES)),
    };
    ring.bytes += event.text_bytes();
    ring.events.push_back(event);
    while ring.events.len() > CAPACITY || ring.bytes > MAX_BYTES {
        let Some(old) = ring.events.pop_front() else {
            break;
        };
        ring.bytes -= old.text_bytes();
    }
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

    /// Issue 27: 1,000 NACKs of 3.9 MB each once made the log gigabytes.
    #[test]
    fn huge_messages_are_cut_and_the_log_stays_within_its_bytes() {
        let huge = "é".repeat(2_000_000);
        for _ in 0..50 {
            record(NewEvent::new(Kind::Nack, huge.clone()).node(huge.clone()));
        }
        let all = since(0);
        let bytes: usize = all.iter().map(Event::text_bytes).sum();
        assert!(bytes <= MAX_BYTES, "{bytes}");
        let newest = all.last().unwrap();
        assert!(
            newest.message.len() <= MAX_FIELD_BYTES + 64,
            "{}",
            newest.message.len()
        );
        assert!(
            newest.message.ends_with("of 4000000 bytes shown)"),
            "{}",
            &newest.message[4000..]
        );
        assert!(newest.node.as_ref().unwrap().len() <= MAX_FIELD_BYTES + 64);
    }

    #[test]
    fn truncate_keeps_short_text_and_cuts_at_a_character_boundary() {
        assert_eq!(truncate("short".into(), 10), "short");
        let cut = truncate("ééé".into(), 3);
        assert!(cut.starts_with("é…"), "{cut}");
    }
}
