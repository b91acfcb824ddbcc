//! flotilla: an Envoy xDS control plane.
pub mod cache;
pub mod config;
pub mod envoy;
pub mod render;
pub mod translate;
