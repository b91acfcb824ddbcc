//! The DNS SAN identity rule: for CAs that cannot write SPIFFE IDs (a corporate CA, ACME), a
//! pattern such as `{node}.{fleet}.envoy.example.com` says which DNS names of a client
//! certificate name a fleet (and a node).
//!
//! `{fleet}` and `{node}` each stand for one whole DNS label, so a name has exactly one
//! reading: a fleet or node id with a dot (or any character a DNS label cannot hold) can never
//! be claimed through a DNS name, and `a.b` in a certificate cannot pass for fleet `a.b`. DNS
//! names are case-insensitive, so they are read in lowercase: `E1.Edge.envoy.example.com`
//! allows node `e1` of fleet `edge`, never `E1` of `Edge`. A wildcard name (`*.edge…`) allows
//! nothing: `*` is not a label a node can be named.

use std::fmt;
use std::str::FromStr;

use super::peer::{Identity, Source};

/// Most patterns `serve` takes (`--identity-dns-pattern` repeated).
pub const MAX_DNS_PATTERNS: usize = 8;
/// Longest DNS name (RFC 1035), pattern or certificate SAN.
const MAX_NAME: usize = 253;
/// Longest DNS label (RFC 1035).
const MAX_LABEL: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Label {
    Literal(String),
    Fleet,
    Node,
}

/// A parsed `--identity-dns-pattern`: labels, each fixed or `{fleet}`/`{node}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsPattern {
    text: String,
    labels: Vec<Label>,
}

/// Why a pattern is refused (`serve` exits with it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("must be 1 to {MAX_NAME} bytes")]
    Length,
    #[error("needs {{fleet}} as one whole label, e.g. {{node}}.{{fleet}}.envoy.example.com")]
    NoFleet,
    #[error("{0} appears twice")]
    Repeated(&'static str),
    #[error(
        "label {0:?} is neither {{fleet}}, {{node}} nor a DNS label (letters, digits and '-', 1 to 63 bytes; no wildcards)"
    )]
    BadLabel(String),
    #[error(
        "needs at least one fixed label (a domain of its own), e.g. {{fleet}}.envoy.example.com"
    )]
    NoDomain,
}

/// A DNS label as a certificate or pattern may hold it: letters, digits and `-`.
fn is_label(label: &str) -> bool {
    (1..=MAX_LABEL).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl FromStr for DnsPattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<DnsPattern, PatternError> {
        if text.is_empty() || text.len() > MAX_NAME {
            return Err(PatternError::Length);
        }
        let mut labels = Vec::new();
        for label in text.split('.') {
            let parsed = match label {
                "{fleet}" => Label::Fleet,
                "{node}" => Label::Node,
                l if is_label(l) => Label::Literal(l.to_ascii_lowercase()),
                l => return Err(PatternError::BadLabel(l.to_string())),
            };
            if parsed != Label::Fleet && parsed != Label::Node {
                labels.push(parsed);
                continue;
            }
            if labels.contains(&parsed) {
                let name = if parsed == Label::Fleet {
                    "{fleet}"
                } else {
                    "{node}"
                };
                return Err(PatternError::Repeated(name));
            }
            labels.push(parsed);
        }
        if !labels.contains(&Label::Fleet) {
            return Err(PatternError::NoFleet);
        }
        if !labels.iter().any(|l| matches!(l, Label::Literal(_))) {
            return Err(PatternError::NoDomain);
        }
        Ok(DnsPattern {
            text: text.to_string(),
            labels,
        })
    }
}

impl fmt::Display for DnsPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl DnsPattern {
    /// The identity a certificate's DNS SAN `name` carries under this pattern, if it matches.
    pub fn identity(&self, name: &str) -> Option<Identity> {
        if name.len() > MAX_NAME {
            return None;
        }
        let name = name.to_ascii_lowercase();
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() != self.labels.len() {
            return None;
        }
        let (mut fleet, mut node) = (None, None);
        for (label, part) in self.labels.iter().zip(&parts) {
            if !is_label(part) {
                return None;
            }
            match label {
                Label::Literal(l) if l == part => {}
                Label::Literal(_) => return None,
                Label::Fleet => fleet = Some(part.to_string()),
                Label::Node => node = Some(part.to_string()),
            }
        }
        Some(Identity {
            fleet: fleet?,
            node,
            san: name,
            source: Source::Dns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> DnsPattern {
        text.parse().unwrap()
    }

    fn allows(id: &Option<Identity>) -> Option<(&str, Option<&str>)> {
        id.as_ref().map(|i| (i.fleet.as_str(), i.node.as_deref()))
    }

    #[test]
    fn patterns_are_whole_labels_with_one_fleet_and_a_domain() {
        let table: [(&str, Result<(), PatternError>); 12] = [
            ("{node}.{fleet}.envoy.example.com", Ok(())),
            ("{fleet}.envoy.example.com", Ok(())),
            ("{fleet}.{node}.Envoy.Example.com", Ok(())),
            ("{node}.envoy.example.com", Err(PatternError::NoFleet)),
            ("{node}.{fleet}", Err(PatternError::NoDomain)),
            (
                "{fleet}.{fleet}.example.com",
                Err(PatternError::Repeated("{fleet}")),
            ),
            (
                "{node}.{node}.{fleet}.example.com",
                Err(PatternError::Repeated("{node}")),
            ),
            (
                "*.{fleet}.example.com",
                Err(PatternError::BadLabel("*".into())),
            ),
            (
                "edge-{node}.{fleet}.example.com",
                Err(PatternError::BadLabel("edge-{node}".into())),
            ),
            (
                "{fleet}..example.com",
                Err(PatternError::BadLabel(String::new())),
            ),
            ("", Err(PatternError::Length)),
            (
                &format!("{{fleet}}.{}", "a.".repeat(127)),
                Err(PatternError::Length),
            ),
        ];
        for (text, want) in table {
            assert_eq!(text.parse::<DnsPattern>().map(|_| ()), want, "{text}");
        }
    }

    #[test]
    fn a_matching_name_names_a_fleet_and_its_node() {
        let p = pattern("{node}.{fleet}.envoy.example.com");
        let id = p.identity("e1.edge.envoy.example.com");
        assert_eq!(allows(&id), Some(("edge", Some("e1"))));
        assert_eq!(id.unwrap().san, "e1.edge.envoy.example.com");
    }

    #[test]
    fn a_pattern_without_node_is_fleet_wide() {
        let p = pattern("{fleet}.envoy.example.com");
        let id = p.identity("edge.envoy.example.com").unwrap();
        assert!(id.allows("edge", "any-node"));
        assert!(!id.allows("mesh", "any-node"));
    }

    #[test]
    fn other_domains_and_label_counts_do_not_match() {
        let p = pattern("{node}.{fleet}.envoy.example.com");
        for name in [
            "e1.edge.envoy.example.org",
            "e1.edge.envoy.example.com.evil.net",
            "edge.envoy.example.com",
            "e1.edge.envoy.example.com.",
            "example.com",
        ] {
            assert_eq!(p.identity(name), None, "{name}");
        }
    }

    #[test]
    fn wildcard_names_allow_nothing() {
        let p = pattern("{node}.{fleet}.envoy.example.com");
        assert_eq!(p.identity("*.edge.envoy.example.com"), None);
        assert_eq!(p.identity("e1.*.envoy.example.com"), None);
        let fleet_wide = pattern("{fleet}.envoy.example.com");
        assert_eq!(fleet_wide.identity("*.envoy.example.com"), None);
    }

    #[test]
    fn a_fleet_with_a_dot_cannot_be_claimed_by_a_dns_name() {
        // Fleet "a.b" would read as node "a" of fleet "b" or not match at all, never as "a.b".
        let p = pattern("{node}.{fleet}.envoy.example.com");
        let id = p.identity("a.b.envoy.example.com").unwrap();
        assert!(!id.allows("a.b", "a"));
        assert!(id.allows("b", "a"));
        assert_eq!(p.identity("n.a.b.envoy.example.com"), None);
        let fleet_wide = pattern("{fleet}.envoy.example.com");
        assert_eq!(fleet_wide.identity("a.b.envoy.example.com"), None);
        for odd in ["e_1.edge.envoy.example.com", "e1.ed ge.envoy.example.com"] {
            assert_eq!(p.identity(odd), None, "{odd}");
        }
    }

    #[test]
    fn dns_names_are_read_in_lowercase() {
        let p = pattern("{node}.{fleet}.Envoy.EXAMPLE.com");
        let id = p.identity("E1.Edge.envoy.example.COM").unwrap();
        assert!(id.allows("edge", "e1"));
        assert!(
            !id.allows("Edge", "E1"),
            "a mixed-case claim is another fleet"
        );
        assert_eq!(id.san, "e1.edge.envoy.example.com");
    }

    #[test]
    fn overlong_names_do_not_match() {
        let p = pattern("{node}.{fleet}.envoy.example.com");
        let long = format!("{}.edge.envoy.example.com", "n".repeat(64));
        assert_eq!(p.identity(&long), None);
        assert_eq!(p.identity(&"a.".repeat(200)), None);
    }

    proptest::proptest! {
        #[test]
        fn names_made_from_the_pattern_read_back_and_no_name_panics(
            fleet in "[a-z0-9-]{1,20}",
            node in "[a-z0-9-]{1,20}",
            junk in ".{0,300}",
        ) {
            let p = pattern("{node}.{fleet}.envoy.example.com");
            let id = p.identity(&format!("{node}.{fleet}.envoy.example.com")).unwrap();
            proptest::prop_assert!(id.allows(&fleet, &node));
            let other = format!("{fleet}x");
            proptest::prop_assert!(!id.allows(&other, &node));
            let _ = p.identity(&junk);
        }
    }
}
