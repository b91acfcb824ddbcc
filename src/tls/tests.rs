//! Generated certificates (rcgen) against every check: nothing on disk, nothing committed.

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

use super::*;

/// A CA and a leaf it signed for `names`, as PEM: (leaf + CA chain, leaf key, CA).
pub(crate) fn issued(names: &[&str]) -> (String, String, String) {
    issued_with(names, |_| {})
}

/// A certificate that expired in 2001.
pub(crate) fn expired(names: &[&str]) -> (String, String, String) {
    issued_with(names, |p| {
        p.not_before = rcgen::date_time_ymd(2000, 1, 1);
        p.not_after = rcgen::date_time_ymd(2001, 1, 1);
    })
}

fn issued_with(
    names: &[&str],
    adjust: impl Fn(&mut CertificateParams),
) -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    adjust(&mut params);
    let key = KeyPair::generate().unwrap();
    let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
    (
        format!("{}{}", leaf.pem(), ca.pem()),
        key.serialize_pem(),
        ca.pem(),
    )
}

fn check(chain: &str, key: &str) -> Result<(), TlsError> {
    check_pair(&parse_chain(chain.as_bytes())?, &parse_key(key.as_bytes())?)
}

#[test]
fn a_leaf_with_its_key_and_chain_passes() {
    let (chain, key, _) = issued(&["a.example.com"]);
    assert_eq!(check(&chain, &key), Ok(()));
}

#[test]
fn a_key_of_another_certificate_is_a_mismatch() {
    let (chain, _, _) = issued(&["a.example.com"]);
    let (_, other, _) = issued(&["a.example.com"]);
    assert!(matches!(
        check(&chain, &other),
        Err(TlsError::KeyMismatch { .. })
    ));
}

#[test]
fn a_chain_out_of_order_is_refused() {
    let (chain, key, ca) = issued(&["a.example.com"]);
    let leaf = chain.strip_suffix(&ca).unwrap();
    let (_, _, stranger) = issued(&["x"]);
    let wrong = format!("{leaf}{stranger}");
    assert!(matches!(
        check(&wrong, &key),
        Err(TlsError::ChainOrder { index: 0, .. })
    ));
}

#[test]
fn garbage_and_missing_blocks_are_named() {
    assert_eq!(parse_chain(b"hello").unwrap_err(), TlsError::NoCertificate);
    assert_eq!(parse_key(b"hello").unwrap_err(), TlsError::NoKey);
    let (chain, _, _) = issued(&["a"]);
    assert_eq!(parse_key(chain.as_bytes()).unwrap_err(), TlsError::NoKey);
    let broken = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        parse_chain(broken.as_bytes()),
        Err(TlsError::Pem(_))
    ));
}

#[test]
fn describe_reads_names_issuer_and_fingerprint() {
    let (chain, _, _) = issued(&["a.example.com", "127.0.0.1"]);
    let certs = parse_chain(chain.as_bytes()).unwrap();
    let info = describe(&certs[0], 0).unwrap();
    assert_eq!(info.sans, vec!["a.example.com", "127.0.0.1"]);
    assert_eq!(info.sha256, fingerprint(&certs[0]));
    assert_eq!(info.sha256.len(), 64);
    assert!(!info.is_ca);
    assert!(describe(&certs[1], 1).unwrap().is_ca);
    assert!(info.not_after > info.not_before);
}

#[test]
fn covers_follows_sans_and_wildcards() {
    let (chain, _, _) = issued(&["a.example.com", "*.b.example.com"]);
    let leaf = &parse_chain(chain.as_bytes()).unwrap()[0];
    assert!(covers(leaf, "a.example.com"));
    assert!(covers(leaf, "x.b.example.com"));
    assert!(covers(leaf, "*.b.example.com"));
    assert!(!covers(leaf, "c.example.com"));
    assert!(!covers(leaf, "*.example.com"));
}

#[test]
fn a_key_never_shows_in_debug() {
    let (_, key, _) = issued(&["a"]);
    let held = PrivateKeyPem::new(key.clone().into_bytes());
    assert_eq!(format!("{held:?}"), "PrivateKeyPem(<redacted>)");
    assert_eq!(held.expose(), key.as_bytes());
}
