//! flotilla: an Envoy xDS control plane.
pub mod admin;
pub mod cache;
pub mod config;
pub mod control;
pub mod envoy;
pub mod events;
pub mod health;
pub mod metrics;
pub mod quickstart;
pub mod render;
pub mod runtime;
pub mod serve;
pub mod translate;
pub mod util;
pub mod xds;
