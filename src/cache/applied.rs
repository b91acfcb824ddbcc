//! Which applied config each snapshot version was published for, so that an Envoy's
//! acknowledged snapshot can be named by the git revision it came from.
//!
//! Versions are content hashes: the same content published again (a revert, a commit that
//! only touched a README) maps to the newest config that produced it. Bounded: versions no
//! stream has held for [`CAPACITY`] publications are forgotten.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Versions remembered.
pub const CAPACITY: usize = 4096;

/// One applied config: a counter that moves on every new config or revision, and the
/// revision's label (None: no revision source).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    pub generation: u64,
    pub revision: Option<Arc<str>>,
}

#[derive(Debug, Default)]
pub(crate) struct AppliedIndex {
    current: Applied,
    by_version: HashMap<String, Applied>,
    order: VecDeque<String>,
}

impl AppliedIndex {
    pub(crate) fn current(&self) -> &Applied {
        &self.current
    }

    pub(crate) fn set_current(&mut self, applied: Applied) {
        self.current = applied;
    }

    /// Records that `version` is published for the current config.
    pub(crate) fn record(&mut self, version: &str) {
        if version.is_empty() {
            return;
        }
        let current = self.current.clone();
        if let Some(held) = self.by_version.get_mut(version) {
            *held = current;
            return;
        }
        if self.order.len() == CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.by_version.remove(&old);
        }
        self.order.push_back(version.to_string());
        self.by_version.insert(version.to_string(), current);
    }

    pub(crate) fn get(&self, version: &str) -> Option<&Applied> {
        self.by_version.get(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(generation: u64, rev: &str) -> Applied {
        Applied {
            generation,
            revision: Some(rev.into()),
        }
    }

    #[test]
    fn a_version_maps_to_the_newest_config_that_published_it_and_old_ones_are_forgotten() {
        let mut index = AppliedIndex::default();
        index.set_current(applied(1, "a"));
        index.record("v1");
        index.set_current(applied(2, "b"));
        index.record("v2");
        assert_eq!(index.get("v1"), Some(&applied(1, "a")));
        index.record("v1");
        assert_eq!(index.get("v1"), Some(&applied(2, "b")), "a revert");
        for i in 0..CAPACITY {
            index.record(&format!("x{i}"));
        }
        assert_eq!(index.get("v1"), None);
        assert_eq!(index.by_version.len(), CAPACITY);
        index.record("");
        assert_eq!(index.get(""), None);
    }
}
