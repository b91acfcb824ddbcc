//! Where each cluster, listener and fleet was written: the side table that lets a NACK, a
//! diff or a status line point at `file:line:col` long after decoding.
//!
//! It rides along in [`Config`](super::Config) but never takes part in its equality: moving
//! a listener down a file does not change what Envoys run, so it must not count as a change.

use std::collections::BTreeMap;

use super::yaml::Location;

/// The location of the key that named each item, per section.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub clusters: BTreeMap<String, Location>,
    pub listeners: BTreeMap<String, Location>,
    pub fleets: BTreeMap<String, Location>,
}

/// Sources never make two configs differ: where things were written is not what they mean.
impl PartialEq for Sources {
    fn eq(&self, _: &Sources) -> bool {
        true
    }
}
