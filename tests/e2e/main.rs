//! End-to-end tests: the flotilla binary, real Envoy 1.40 processes, real backends.
#![allow(unreachable_pub)]

#[path = "../support/mod.rs"]
mod support;

mod access_log;
mod admin_guard;
mod admin_limits;
mod affinity;
mod alerts;
mod balancing;
mod client_kind;
mod dashboard;
mod dashboard_fixture;
mod deploy;
mod ext_authz;
mod fault;
mod fleet_traffic;
mod gitops;
mod gitops_pipeline;
mod golden;
mod grafana;
mod health;
mod hostile_config;
mod hostnames;
mod jwt;
mod large_config;
mod live;
mod loadgen;
mod lost_network;
mod mesh;
mod mesh_transparent;
mod nack;
mod operations;
mod package;
mod protocol;
mod proxyless_grpc;
mod quickstart;
mod reference_bootstraps;
mod registry;
mod registry_python;
mod reload_guard;
mod replica_health;
mod replica_registrations;
mod replicas;
mod replicas_tls;
mod restart;
mod routing;
mod tcp;
mod tls;
mod tracing;
mod traffic;
mod traffic_limits;
mod validate;
mod watch_replace;
mod xds_limits;
mod xds_mtls;
