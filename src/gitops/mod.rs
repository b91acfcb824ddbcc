//! GitOps that a pipeline can trust: which revision is served ([`revision`]), whether every
//! Envoy took it ([`sync`], [`status`]), which YAML line an Envoy refused ([`attribution`]),
//! what a change would do ([`diff`]) and what was applied before ([`history`]).
//!
//! Everything here reads the controller, the cache and the node registry; none of it changes
//! what Envoys run.

pub mod attribution;
pub mod diff;
pub mod follow;
pub mod git;
pub mod history;
pub mod revision;
pub mod status;
pub mod summary;
pub mod sync;
