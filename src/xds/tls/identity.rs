//! What a verified client certificate lets its holder claim: a fleet, and optionally one node
//! id in it, read from a URI SAN `spiffe://<trust-domain>/fleet/<fleet>[/node/<node-id>]`.
//!
//! The format is SPIFFE's, so certificates issued by SPIRE (or any CA that writes SPIFFE IDs)
//! work unchanged; `flotilla certs issue` writes the same.

use std::fmt;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Longest SPIFFE ID accepted (the SPIFFE spec's limit is 2048 bytes).
const MAX_ID: usize = 2048;

/// An identity a certificate carries: a fleet-wide one may claim any node id of its fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub fleet: String,
    pub node: Option<String>,
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
            Some(node) => write!(f, "fleet {:?}, node {:?}", self.fleet, node),
            None => write!(f, "fleet {:?}, any node", self.fleet),
        }
    }
}

/// A verified client certificate as the streams see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// The identities of its URI SANs that belong to the trust domain, in order.
    pub identities: Vec<Identity>,
    /// Every URI SAN, for messages ("the certificate allows nothing: its SANs are …").
    pub uris: Vec<String>,
}

impl PeerCert {
    /// Reads the URI SANs of a DER certificate (already verified by rustls).
    pub fn from_der(der: &[u8], trust_domain: &str) -> PeerCert {
        let uris = match X509Certificate::from_der(der) {
            Ok((_, cert)) => match cert.subject_alternative_name() {
                Ok(Some(san)) => san
                    .value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::URI(u) => Some(u.to_string()),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            },
            Err(_) => Vec::new(),
        };
        let identities = uris
            .iter()
            .filter_map(|u| parse_spiffe(u, trust_domain))
            .collect();
        PeerCert { identities, uris }
    }

    /// The first identity allowing `node_id` in `fleet`, if any.
    pub fn allowing(&self, fleet: &str, node_id: &str) -> Option<&Identity> {
        self.identities.iter().find(|i| i.allows(fleet, node_id))
    }

    /// What the certificate allows, for an error message.
    pub fn describe(&self) -> String {
        if self.identities.is_empty() {
            let sans = if self.uris.is_empty() {
                "none".to_string()
            } else {
                self.uris.join(", ")
            };
            return format!(
                "nothing (no spiffe://<trust-domain>/fleet/… URI SAN; its URI SANs: {sans})"
            );
        }
        self.identities
            .iter()
            .map(Identity::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
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
        })
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
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![
            rcgen::SanType::URI(spiffe_id(TD, "edge", Some("e1")).try_into().unwrap()),
            rcgen::SanType::URI("spiffe://elsewhere/fleet/mesh".try_into().unwrap()),
            rcgen::SanType::DnsName("edge.example".try_into().unwrap()),
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let peer = PeerCert::from_der(cert.der(), TD);
        assert_eq!(peer.identities, vec![id("edge", Some("e1")).unwrap()]);
        assert_eq!(peer.uris.len(), 2);
        assert!(peer.allowing("edge", "e1").is_some());
        assert!(peer.allowing("edge", "e2").is_none());
        assert_eq!(peer.describe(), "fleet \"edge\", node \"e1\"");
        let none = PeerCert::from_der(b"not a certificate", TD);
        assert!(
            none.describe().starts_with("nothing"),
            "{}",
            none.describe()
        );
    }

    proptest::proptest! {
        #[test]
        fn issued_ids_read_back_and_no_uri_panics(
            fleet in "[a-z0-9._-]{1,20}",
            node in proptest::option::of("[a-zA-Z0-9._-]{1,20}"),
            junk in ".{0,80}",
        ) {
            let id = spiffe_id(TD, &fleet, node.as_deref());
            let want = Identity { fleet: fleet.clone(), node: node.clone() };
            proptest::prop_assert_eq!(parse_spiffe(&id, TD), Some(want));
            proptest::prop_assert_eq!(parse_spiffe(&id, "other.domain"), None);
            let _ = parse_spiffe(&junk, TD);
        }
    }
}
