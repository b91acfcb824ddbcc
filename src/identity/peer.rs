//! What a verified client certificate lets its holder claim: a fleet, and optionally one node
//! id in it, read from a URI SAN `spiffe://<trust-domain>/fleet/<fleet>[/node/<node-id>]`.
//!
//! The format is SPIFFE's, so certificates issued by SPIRE (or any CA that writes SPIFFE IDs)
//! work unchanged; `flotilla certs issue` writes the same. A certificate without such an ID
//! may name its fleet in a DNS SAN instead, by the rules of `--identity-dns-pattern`
//! ([`super::dns_rule`]); one with a SPIFFE ID is judged by it alone, so DNS names a CA adds to
//! an SVID never widen what it allows. An SVID carries exactly one SPIFFE ID (X.509-SVID
//! spec, 4.1): a certificate with several is refused outright rather than allowed for each.

use std::fmt;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::dns_rule::DnsPattern;

/// Longest SPIFFE ID accepted (the SPIFFE spec's limit is 2048 bytes).
const MAX_ID: usize = 2048;

/// Where an identity was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A URI SAN `spiffe://<trust-domain>/fleet/…`.
    Spiffe,
    /// A DNS SAN matching an `--identity-dns-pattern`.
    Dns,
}

/// An identity a certificate carries: a fleet-wide one may claim any node id of its fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub fleet: String,
    pub node: Option<String>,
    /// The SAN it was read from (a SPIFFE ID, or a DNS name in lowercase): what a node id is
    /// bound to while connected, and what `/api/v1/nodes` shows.
    pub san: String,
    pub source: Source,
}

impl Identity {
    /// Whether a client presenting this identity may call itself `node_id` in `fleet`.
    pub fn allows(&self, fleet: &str, node_id: &str) -> bool {
        self.fleet == fleet && self.node.as_deref().is_none_or(|n| n == node_id)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.node {
            Some(node) => write!(f, "fleet {:?}, node {:?}", self.fleet, node)?,
            None => write!(f, "fleet {:?}, any node", self.fleet)?,
        }
        match self.source {
            Source::Spiffe => Ok(()),
            Source::Dns => write!(f, " (DNS name {})", self.san),
        }
    }
}

/// How identities are read from client certificates: SPIFFE IDs of the trust domain, and
/// DNS names by the patterns for certificates without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRules {
    pub trust_domain: String,
    pub dns_patterns: Vec<DnsPattern>,
}

impl IdentityRules {
    /// SPIFFE IDs of `trust_domain` only.
    pub fn spiffe(trust_domain: &str) -> IdentityRules {
        IdentityRules {
            trust_domain: trust_domain.to_string(),
            dns_patterns: Vec::new(),
        }
    }
}

/// A verified client certificate as the streams see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// The identities of its SPIFFE IDs of the trust domain, in order; without any, those of
    /// its DNS names matching a pattern.
    pub identities: Vec<Identity>,
    /// Every URI and DNS SAN, for messages ("the certificate allows nothing: its SANs are …").
    pub sans: Vec<String>,
    /// How many `spiffe://` URI SANs it carries: more than one is no SVID, and allows nothing.
    pub spiffe_ids: usize,
}

impl PeerCert {
    /// Reads the URI and DNS SANs of a DER certificate (already verified by rustls).
    pub fn from_der(der: &[u8], rules: &IdentityRules) -> PeerCert {
        let (mut uris, mut dns) = (Vec::new(), Vec::new());
        if let Ok((_, cert)) = X509Certificate::from_der(der)
            && let Ok(Some(san)) = cert.subject_alternative_name()
        {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => uris.push(u.to_string()),
                    GeneralName::DNSName(d) => dns.push(d.to_string()),
                    _ => {}
                }
            }
        }
        let spiffe_ids = uris.iter().filter(|u| is_spiffe(u)).count();
        let mut identities: Vec<Identity> = uris
            .iter()
            .filter_map(|u| parse_spiffe(u, &rules.trust_domain))
            .collect();
        if spiffe_ids > 1 {
            // Not an SVID: neither its SPIFFE IDs nor its DNS names allow anything.
            identities.clear();
        } else if identities.is_empty() {
            identities = dns
                .iter()
                .flat_map(|d| rules.dns_patterns.iter().filter_map(|p| p.identity(d)))
                .collect();
        }
        let sans = uris.into_iter().chain(dns).collect();
        PeerCert {
            identities,
            sans,
            spiffe_ids,
        }
    }

    /// The first identity allowing `node_id` in `fleet`, if any.
    pub fn allowing(&self, fleet: &str, node_id: &str) -> Option<&Identity> {
        self.identities.iter().find(|i| i.allows(fleet, node_id))
    }

    /// What the certificate allows, for an error message.
    pub fn describe(&self) -> String {
        if self.spiffe_ids > 1 {
            return format!(
                "nothing (it carries {} SPIFFE IDs: {}; an SVID carries exactly one)",
                self.spiffe_ids,
                self.sans
                    .iter()
                    .filter(|s| is_spiffe(s))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if self.identities.is_empty() {
            let sans = if self.sans.is_empty() {
                "none".to_string()
            } else {
                self.sans.join(", ")
            };
            return format!(
                "nothing (no spiffe://<trust-domain>/fleet/… URI SAN nor a DNS SAN matching an identity DNS pattern; its SANs: {sans})"
            );
        }
        self.identities
            .iter()
            .map(Identity::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Whether a URI SAN is a SPIFFE ID (of any trust domain; the scheme is case-insensitive).
fn is_spiffe(uri: &str) -> bool {
    uri.get(..9)
        .is_some_and(|s| s.eq_ignore_ascii_case("spiffe://"))
}

/// `spiffe://<trust_domain>/fleet/<fleet>[/node/<node>]`, or None for any other URI.
pub fn parse_spiffe(uri: &str, trust_domain: &str) -> Option<Identity> {
    if uri.len() > MAX_ID {
        return None;
    }
    let path = uri
        .strip_prefix("spiffe://")?
        .strip_prefix(trust_domain)?
        .strip_prefix("/fleet/")?;
    let mut parts = path.split('/');
    let fleet = parts.next().filter(|f| !f.is_empty())?;
    let node = match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => None,
        (Some("node"), Some(n), None) if !n.is_empty() => Some(n.to_string()),
        _ => return None,
    };
    Some(Identity {
        fleet: fleet.to_string(),
        node,
        san: uri.to_string(),
        source: Source::Spiffe,
    })
}

/// The SPIFFE ID of an identity, as `flotilla certs issue` writes it.
pub fn spiffe_id(trust_domain: &str, fleet: &str, node: Option<&str>) -> String {
    match node {
        Some(n) => format!("spiffe://{trust_domain}/fleet/{fleet}/node/{n}"),
        None => format!("spiffe://{trust_domain}/fleet/{fleet}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TD: &str = "flotilla.local";

    fn id(fleet: &str, node: Option<&str>) -> Option<Identity> {
        Some(Identity {
            fleet: fleet.into(),
            node: node.map(str::to_string),
            san: spiffe_id(TD, fleet, node),
            source: Source::Spiffe,
        })
    }

    fn certificate(sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn dns(name: &str) -> rcgen::SanType {
        rcgen::SanType::DnsName(name.try_into().unwrap())
    }

    fn with_dns_rule() -> IdentityRules {
        IdentityRules {
            trust_domain: TD.into(),
            dns_patterns: vec![
                "{node}.{fleet}.envoy.example.com".parse().unwrap(),
                "{fleet}.fleets.example.com".parse().unwrap(),
            ],
        }
    }

    #[test]
    fn spiffe_ids_name_a_fleet_and_optionally_a_node() {
        let table = [
            ("spiffe://flotilla.local/fleet/edge", id("edge", None)),
            (
                "spiffe://flotilla.local/fleet/edge/node/e1",
                id("edge", Some("e1")),
            ),
            ("spiffe://other.domain/fleet/edge", None),
            ("spiffe://flotilla.local.evil/fleet/edge", None),
            ("spiffe://flotilla.local/fleet/", None),
            ("spiffe://flotilla.local/fleet/edge/node/", None),
            ("spiffe://flotilla.local/fleet/edge/node/e1/x", None),
            ("spiffe://flotilla.local/fleet/edge/pod/e1", None),
            ("https://flotilla.local/fleet/edge", None),
        ];
        for (uri, want) in table {
            assert_eq!(parse_spiffe(uri, TD), want, "{uri}");
        }
    }

    #[test]
    fn a_fleet_wide_identity_allows_any_node_of_its_fleet_only() {
        let fleet = id("edge", None).unwrap();
        assert!(fleet.allows("edge", "anything"));
        assert!(!fleet.allows("mesh", "anything"));
        let node = id("edge", Some("e1")).unwrap();
        assert!(node.allows("edge", "e1"));
        assert!(!node.allows("edge", "e2"));
        assert!(!node.allows("mesh", "e1"));
    }

    #[test]
    fn identities_are_read_from_a_certificate() {
        let der = certificate(vec![
            rcgen::SanType::URI(spiffe_id(TD, "edge", Some("e1")).try_into().unwrap()),
            rcgen::SanType::URI("https://elsewhere/fleet/mesh".try_into().unwrap()),
            dns("edge.example"),
        ]);
        let peer = PeerCert::from_der(&der, &IdentityRules::spiffe(TD));
        assert_eq!(peer.identities, vec![id("edge", Some("e1")).unwrap()]);
        assert_eq!(peer.sans.len(), 3);
        assert!(peer.allowing("edge", "e1").is_some());
        assert!(peer.allowing("edge", "e2").is_none());
        assert_eq!(peer.describe(), "fleet \"edge\", node \"e1\"");
        let none = PeerCert::from_der(b"not a certificate", &IdentityRules::spiffe(TD));
        assert!(
            none.describe().starts_with("nothing"),
            "{}",
            none.describe()
        );
    }

    #[test]
    fn without_a_spiffe_id_dns_names_matching_a_pattern_are_the_identities() {
        let der = certificate(vec![
            dns("e1.edge.envoy.example.com"),
            dns("mesh.fleets.example.com"),
            dns("www.example.com"),
        ]);
        let peer = PeerCert::from_der(&der, &with_dns_rule());
        assert!(peer.allowing("edge", "e1").is_some());
        assert!(peer.allowing("edge", "e2").is_none());
        assert!(peer.allowing("mesh", "m7").is_some());
        assert_eq!(
            peer.describe(),
            "fleet \"edge\", node \"e1\" (DNS name e1.edge.envoy.example.com); fleet \"mesh\", any node (DNS name mesh.fleets.example.com)"
        );
        // Without patterns, the same certificate allows nothing and says what it holds.
        let plain = PeerCert::from_der(&der, &IdentityRules::spiffe(TD));
        assert!(plain.identities.is_empty());
        assert!(
            plain
                .describe()
                .contains("its SANs: e1.edge.envoy.example.com"),
            "{}",
            plain.describe()
        );
    }

    #[test]
    fn a_spiffe_id_alone_decides_when_present() {
        let der = certificate(vec![
            rcgen::SanType::URI(spiffe_id(TD, "edge", Some("e1")).try_into().unwrap()),
            dns("e2.edge.envoy.example.com"),
            dns("mesh.fleets.example.com"),
        ]);
        let peer = PeerCert::from_der(&der, &with_dns_rule());
        assert_eq!(peer.identities, vec![id("edge", Some("e1")).unwrap()]);
        assert!(peer.allowing("edge", "e2").is_none());
        assert!(peer.allowing("mesh", "m1").is_none());
        // A SPIFFE ID of another trust domain is no identity: the DNS names speak.
        let foreign = certificate(vec![
            rcgen::SanType::URI("spiffe://elsewhere/fleet/edge".try_into().unwrap()),
            dns("e2.edge.envoy.example.com"),
        ]);
        let peer = PeerCert::from_der(&foreign, &with_dns_rule());
        assert!(peer.allowing("edge", "e2").is_some());
    }

    #[test]
    fn a_certificate_with_two_spiffe_ids_is_no_svid_and_allows_nothing() {
        let two = certificate(vec![
            rcgen::SanType::URI(spiffe_id(TD, "edge", None).try_into().unwrap()),
            rcgen::SanType::URI(spiffe_id(TD, "mesh", None).try_into().unwrap()),
        ]);
        let peer = PeerCert::from_der(&two, &IdentityRules::spiffe(TD));
        assert!(peer.identities.is_empty());
        assert!(peer.allowing("edge", "e1").is_none());
        assert!(peer.allowing("mesh", "m1").is_none());
        assert!(
            peer.describe().contains("2 SPIFFE IDs") && peer.describe().contains("exactly one"),
            "{}",
            peer.describe()
        );
        // Nor do its DNS names speak for it, nor a second ID of another trust domain.
        let mixed = certificate(vec![
            rcgen::SanType::URI(spiffe_id(TD, "edge", None).try_into().unwrap()),
            rcgen::SanType::URI("SPIFFE://elsewhere/fleet/edge".try_into().unwrap()),
            dns("mesh.fleets.example.com"),
        ]);
        let peer = PeerCert::from_der(&mixed, &with_dns_rule());
        assert!(peer.identities.is_empty(), "{:?}", peer.identities);
    }

    proptest::proptest! {
        #[test]
        fn issued_ids_read_back_and_no_uri_panics(
            fleet in "[a-z0-9._-]{1,20}",
            node in proptest::option::of("[a-zA-Z0-9._-]{1,20}"),
            junk in ".{0,80}",
        ) {
            let id = spiffe_id(TD, &fleet, node.as_deref());
            let want = Identity {
                fleet: fleet.clone(),
                node: node.clone(),
                san: id.clone(),
                source: Source::Spiffe,
            };
            proptest::prop_assert_eq!(parse_spiffe(&id, TD), Some(want));
            proptest::prop_assert_eq!(parse_spiffe(&id, "other.domain"), None);
            let _ = parse_spiffe(&junk, TD);
        }
    }
}
