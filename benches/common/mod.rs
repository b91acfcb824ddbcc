//! The configuration every microbenchmark works on: the load generator's 1,000 clusters x 10
//! endpoints over 4 fleets, so micro and macro numbers describe the same config.
#![allow(dead_code)] // each bench uses part of it

#[allow(dead_code)]
#[path = "../../src/bin/flotilla-loadgen/scenario.rs"]
mod scenario;

use flotilla::config::Config;
pub(crate) use scenario::ChangeKind;

pub(crate) const CLUSTERS: usize = 1000;

/// The config before and after one change of `kind`.
pub(crate) fn configs(kind: ChangeKind) -> (Config, Config) {
    let mut s = scenario::Scenario::new(scenario::Shape {
        clusters: CLUSTERS,
        endpoints: 10,
        fleets: 4,
        listener_port: 20000,
    });
    let before = parse(&s.yaml());
    s.apply(kind);
    (before, parse(&s.yaml()))
}

pub(crate) fn fleet() -> String {
    scenario::fleet_name(0)
}

fn parse(yaml: &str) -> Config {
    flotilla::config::parse_str("bench.yaml", yaml).expect("generated config is valid")
}
