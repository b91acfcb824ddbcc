//! `clusters.<name>.registrations`: whether endpoints may register themselves into the
//! cluster at all (only with this key: registration is opt-in per cluster), how many, from
//! which fleets' identities, and which refused addresses it accepts anyway.
//!
//! ```yaml
//! registrations:
//!   max: 200                          # default 1000, at most 10000
//!   allow_addresses: [169.254.0.0/16] # CIDR ranges or single addresses
//!   from: [workers]                   # fleets whose mTLS identities may register (streams)
//! ```
//!
//! `registrations: {}` opens the cluster with the defaults.

use crate::config::diagnostic::Sink;
use crate::config::model::Registrations;
use crate::config::reader::{self, Fields};
use crate::config::shape::{Kind, Object, object, optional};
use crate::config::yaml::Node;

pub(crate) const REGISTRATIONS: Object = object(
    "registrations",
    "Endpoints that register themselves into the cluster.",
    &[
        optional(
            "max",
            Kind::Integer {
                min: 1,
                max: Registrations::MAX as u64,
            },
            "Registered endpoints at most (default 1000).",
        )
        .defaults_to("1000"),
        optional(
            "allow_addresses",
            Kind::List(&Kind::String),
            "Otherwise refused addresses accepted anyway: IPs or CIDR ranges.",
        ),
        optional(
            "from",
            Kind::List(&Kind::String),
            "Fleets whose identities (xDS client certificates) may register over a stream; under mTLS, required.",
        ),
    ],
);

pub(super) fn registrations(sink: &mut Sink, node: &Node, path: &str) -> Option<Registrations> {
    let f = Fields::read(sink, node, path, &REGISTRATIONS)?;
    let max = match f.get("max") {
        Some(n) => f.integer(sink, n, "max").map(|m| m as usize),
        None => Some(Registrations::DEFAULT_MAX),
    };
    let allow_addresses = match f.get("allow_addresses") {
        Some(n) => allow_addresses(sink, n, &f.path("allow_addresses")),
        None => Some(Vec::new()),
    };
    let from = match f.get("from") {
        Some(n) => from(sink, n, &f.path("from")).map(Some),
        None => Some(None),
    };
    Some(Registrations {
        max: max?,
        allow_addresses: allow_addresses?,
        from: from?,
    })
}

/// `from`: fleet names (as `node.cluster` and certificates spell them), 1 to 64 of them.
fn from(sink: &mut Sink, node: &Node, path: &str) -> Option<Vec<String>> {
    let items = reader::list(sink, node, path)?;
    if items.is_empty() || items.len() > Registrations::MAX_FROM {
        sink.error(
            node,
            path,
            format!(
                "{} fleets; `from` names 1 to {}",
                items.len(),
                Registrations::MAX_FROM
            ),
        );
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        let Some(name) = reader::non_empty_string(sink, item, &ipath) else {
            ok = false;
            continue;
        };
        match super::check_name(&name) {
            Ok(()) => out.push(name),
            Err(e) => {
                sink.error(item, &ipath, e);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn allow_addresses(sink: &mut Sink, node: &Node, path: &str) -> Option<Vec<ipnet::IpNet>> {
    let items = reader::list(sink, node, path)?;
    if items.len() > Registrations::MAX_ALLOWED {
        sink.error(
            node,
            path,
            format!(
                "{} entries; at most {} are accepted",
                items.len(),
                Registrations::MAX_ALLOWED
            ),
        );
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        let Some(text) = reader::string(sink, item, &ipath) else {
            ok = false;
            continue;
        };
        let parsed = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => out.push(net.trunc()),
            Err(_) => {
                sink.error(
                    item,
                    &ipath,
                    format!("`{text}` is not an IP address or a CIDR range (like 169.254.0.0/16)"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use crate::config::model::Registrations;
    use crate::config::{Diagnostics, parse_str};

    fn cluster(registrations: &str) -> Result<Option<Registrations>, Vec<String>> {
        let yaml = format!(
            "version: 1\nclusters:\n  web:\n    endpoints: [127.0.0.1:1]\n    registrations: {registrations}\n"
        );
        match parse_str("t.yaml", &yaml) {
            Ok(c) => Ok(c.clusters["web"].registrations.clone()),
            Err(Diagnostics(d)) => Err(d.iter().map(ToString::to_string).collect()),
        }
    }

    #[test]
    fn defaults_limits_and_ranges() {
        assert_eq!(cluster("{}").unwrap(), Some(Registrations::default()));
        let r = cluster("{ from: [workers, batch] }").unwrap().unwrap();
        assert_eq!(
            r.from,
            Some(vec!["workers".to_string(), "batch".to_string()])
        );
        let r =
            cluster("{ max: 5, allow_addresses: [169.254.0.0/16, \"::\", 169.254.169.254/24] }")
                .unwrap()
                .unwrap();
        assert_eq!(r.max, 5);
        let ranges: Vec<String> = r.allow_addresses.iter().map(ToString::to_string).collect();
        assert_eq!(ranges, ["169.254.0.0/16", "::/128", "169.254.169.0/24"]);
    }

    #[test]
    fn mistakes_are_located() {
        for (yaml, expected) in [
            (
                "{ max: 0 }",
                "t.yaml:5:27: clusters.web.registrations.max: 0 is out of range (1..=10000)",
            ),
            ("{ max: 10001 }", "out of range (1..=10000)"),
            (
                "{ allow_addresses: [nope] }",
                "t.yaml:5:40: clusters.web.registrations.allow_addresses[0]: `nope` is not an IP address",
            ),
            (
                "{ allow_addresses: [10.0.0.0/33] }",
                "not an IP address or a CIDR range",
            ),
            (
                "{ alow_addresses: [] }",
                "clusters.web.registrations.alow_addresses",
            ),
            ("{ from: [] }", "clusters.web.registrations.from: 0 fleets"),
            (
                "{ from: [\"bad name\"] }",
                "registrations.from[0]: `bad name` is not a valid name",
            ),
        ] {
            let errors = cluster(yaml).unwrap_err();
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{yaml}: {errors:?}"
            );
        }
        let many = format!(
            "{{ allow_addresses: [{}] }}",
            vec!["10.0.0.1"; 65].join(", ")
        );
        assert!(cluster(&many).unwrap_err()[0].contains("at most 64"));
    }

    #[test]
    fn registrations_are_opt_in() {
        let yaml = "version: 1\nclusters:\n  web:\n    endpoints: [127.0.0.1:1]\n";
        let c = parse_str("t.yaml", yaml).unwrap();
        assert_eq!(c.clusters["web"].registrations, None);
    }
}
