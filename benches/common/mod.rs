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

/// One listener with `hosts` virtual hosts of `routes` routes each over 100 clusters, every
/// route with a match on path and header; `edit` changes one route of one host.
pub(crate) fn hosts_config(hosts: usize, routes: usize, edit: bool) -> Config {
    let mut yaml = String::from("version: 1\nclusters:\n");
    for c in 0..100 {
        yaml.push_str(&format!("  c{c}: {{ endpoints: [10.1.{c}.1:8080] }}\n"));
    }
    yaml.push_str("listeners:\n  edge:\n    address: 0.0.0.0:8080\n    hosts:\n");
    for h in 0..hosts {
        yaml.push_str(&format!(
            "      h{h}:\n        domains: [site{h}.example.com, \"*.site{h}.example.com\"]\n        routes:\n"
        ));
        for r in 0..routes {
            let version = if edit && h == hosts / 2 && r == 0 {
                2
            } else {
                1
            };
            yaml.push_str(&format!(
                "          - {{ match: {{ prefix: /p{r}/v{version}, headers: {{ x-t: \"{r}\" }} }}, to: c{} }}\n",
                (h + r) % 100
            ));
        }
    }
    parse(&yaml)
}
