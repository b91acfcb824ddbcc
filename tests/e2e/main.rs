//! End-to-end tests: the flotilla binary, real Envoy 1.40 processes, real backends.
#![allow(unreachable_pub)]

#[path = "../support/mod.rs"]
mod support;

mod access_log;
mod admin_guard;
mod affinity;
mod alerts;
mod balancing;
mod client_kind;
mod dashboard;
mod dashboard_fixture;
mod deploy;
mod fleet_traffic;
mod gitops;
mod golden;
mod grafana;
mod health;
mod hostile_config;
mod live;
mod loadgen;
mod lost_network;
mod mesh;
mod nack;
mod operations;
mod protocol;
mod proxyless_grpc;
mod quickstart;
mod reference_bootstraps;
mod registry;
mod registry_python;
mod reload_guard;
mod replica_health;
mod replicas;
mod replicas_tls;
mod restart;
mod routing;
mod tcp;
mod tls;
mod traffic;
mod traffic_limits;
mod validate;
mod watch_replace;
mod xds_limits;
mod xds_mtls;
