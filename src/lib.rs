//! flotilla: an Envoy xDS control plane.
//!
//! Operators describe services in YAML kept in git; flotilla checks the backends itself and
//! serves a fleet of Envoys the resulting Listeners, Routes, Clusters and endpoints over xDS
//! (ADS or per-type streams, state-of-the-world or delta). Envoy forwards; flotilla decides.
//!
//! # A tour, in the direction data flows
//!
//! - [`config`] reads the YAML (a file or a directory, watched for changes) into a validated
//!   [`config::Config`], reporting every mistake as `path:line:col: field: message`.
//! - [`health`] probes endpoints (HTTP, TCP, gRPC) and turns results into verdicts and
//!   least_response_time weights; [`runtime`] holds what operators change without git
//!   (drains, weight overrides, leased registrations, and the stream-bound ones [`registry`]
//!   serves); [`dns`] resolves hostname endpoints into addresses. They feed the [`overlay`],
//!   which also answers which endpoints a cluster has and
//!   what state each is in.
//! - [`control`] is the one place that combines the newest valid config with the overlay
//!   and publishes it.
//! - [`translate`] is a pure function: config + overlay → Envoy protos, per transport.
//! - [`cache`] encodes each resource once (content-hash version, and its entry in either
//!   response) and keeps a snapshot per fleet, linked to the previous one so that what
//!   changed is known once; only the streams whose snapshot changed wake.
//! - [`xds`] serves the snapshots: one stream loop for SotW and delta, one response in flight
//!   per type, make-before-break ordering on ADS, NACKs recorded and never re-sent; responses
//!   are the snapshot's shared bytes plus a header, never re-encoded per stream.
//! - [`traffic`] receives what every Envoy reports back (stats sink, load reports), keeps
//!   only names the Envoy was sent, and aggregates it over every Envoy of every fleet.
//! - [`admin`] reads all of the above over HTTP (JSON API, Prometheus [`metrics`], the
//!   dashboard) and routes operator changes to [`runtime`]; [`events`] is its recent history.
//!
//! [`identity`] decides who a client of the xDS port is and what it may claim, and mints the
//! mesh's workload certificates.
//!
//! [`tls`] reads and checks certificates and keys (for TLS listeners and clusters, whose
//! files reach Envoy only as SDS Secrets) and says what each certificate is.
//!
//! [`envoy`] holds Envoy's own formats (proto3 JSON, YAML, the bootstrap), [`grpc_bootstrap`]
//! the bootstrap of proxyless gRPC clients, [`serve`] wires
//! the server together, [`quickstart`] runs the demo, [`render`] prints what a fleet receives.

pub mod admin;
pub mod cache;
pub mod config;
pub mod control;
pub mod dns;
pub mod envoy;
pub mod etcd;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub mod gitops;
pub mod grpc_bootstrap;
pub mod health;
pub mod identity;
pub mod metrics;
pub mod overlay;
pub mod quickstart;
pub mod registry;
pub mod render;
pub mod runtime;
pub mod serve;
pub mod store;
pub mod throttle;
pub mod tls;
pub mod traffic;
pub mod translate;
pub mod util;
pub mod xds;
