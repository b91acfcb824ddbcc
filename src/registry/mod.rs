//! flotilla's registration API (`proto/flotilla/registry/v1/registry.proto`): instances
//! register their endpoints for as long as a stream lives, and leave through a drain
//! handshake so that no request in flight to them is lost.
//!
//! `service` serves one stream per instance over the xDS port; the endpoints themselves are
//! held by [`crate::runtime`] in the store, so that every replica's Envoys get them; `drain`
//! waits until every replica says its Envoys' load reports show no request in flight to a
//! leaving endpoint (and says so for this replica's Envoys: `witness`); `client` is
//! the other end, and `command` is `flotilla register`, which runs an instance under it.

pub mod client;
pub mod command;
mod drain;
mod service;

pub use drain::{DEFAULT_DEADLINE, MAX_DEADLINE, SETTLE, witness};
pub use service::{MAX_MESSAGE_BYTES, RegistryService, StreamToken};

/// Code generated from `proto/` by build.rs.
#[allow(unreachable_pub, clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("flotilla.registry.v1");
}
