use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};

use super::*;
use crate::identity::{IdentityRules, PeerCert};

const TD: &str = "flotilla.local";
const TTL: Duration = Duration::from_secs(3600);

fn ca_pem() -> (String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn ca(cert: &str, key: &str) -> Result<MeshCa, MeshCaError> {
    MeshCa::from_pem(
        cert.as_bytes().to_vec(),
        key.as_bytes(),
        Path::new("ca.pem"),
        Path::new("ca.key"),
    )
}

fn held(issued_at: i64, lifetime: i64, signer: &str) -> WorkloadCert {
    WorkloadCert {
        spiffe_id: service_id(TD, "payments"),
        cert_pem: Vec::new(),
        key: PrivateKeyPem::new(Vec::new()),
        sha256: String::new(),
        issued_at,
        not_after: issued_at + lifetime,
        signer: signer.to_string(),
    }
}

#[test]
fn renewal_rules() {
    let c = held(1000, 3600, "a");
    type Row<'a> = (
        Option<&'a WorkloadCert>,
        &'a str,
        Duration,
        &'a str,
        i64,
        Option<Renewal>,
    );
    let table: [Row<'_>; 7] = [
        (None, "a", TTL, TD, 1000, Some(Renewal::Missing)),
        (Some(&c), "a", TTL, TD, 1000, None),
        (Some(&c), "a", TTL, TD, 2799, None),
        (Some(&c), "a", TTL, TD, 2800, Some(Renewal::HalfLife)),
        (Some(&c), "b", TTL, TD, 1001, Some(Renewal::NewSigner)),
        (
            Some(&c),
            "a",
            Duration::from_secs(60),
            TD,
            1001,
            Some(Renewal::Changed),
        ),
        (Some(&c), "a", TTL, "other.td", 1001, Some(Renewal::Changed)),
    ];
    for (i, (h, signer, ttl, td, now, want)) in table.into_iter().enumerate() {
        assert_eq!(
            renewal(h, signer, ttl, td, "payments", now),
            want,
            "row {i}"
        );
    }
}

#[test]
fn minted_certificates_carry_one_service_id_and_chain_to_the_ca() {
    let (cert, key) = ca_pem();
    let ca = ca(&cert, &key).unwrap();
    let now = SystemTime::now();
    let w = ca.mint(TD, "payments", TTL, now).unwrap();
    assert_eq!(w.spiffe_id, "spiffe://flotilla.local/service/payments");
    assert_eq!(w.not_after - w.issued_at, 3600);
    assert_eq!(w.signer, ca.signer);
    assert!(!format!("{w:?}").contains("PRIVATE KEY"), "{w:?}");
    let chain = crate::tls::parse_chain(&w.cert_pem).unwrap();
    let leaf = crate::tls::describe(&chain[0], 0).unwrap();
    assert!(!leaf.is_ca);
    // Signed by the CA: the pair check over [leaf, ca] verifies the signature.
    let mut full = chain.clone();
    full.extend(crate::tls::parse_chain(cert.as_bytes()).unwrap());
    let key = crate::tls::parse_key(w.key.expose()).unwrap();
    crate::tls::check_pair(&full, &key).unwrap();
    // One SPIFFE ID: an SVID (a service ID is no fleet identity of the xDS port).
    let peer = PeerCert::from_der(chain[0].as_ref(), &IdentityRules::spiffe(TD));
    assert_eq!(peer.spiffe_ids, 1);
    assert!(peer.identities.is_empty());
    // Two mints: two keys.
    let again = ca.mint(TD, "payments", TTL, now).unwrap();
    assert_ne!(again.key, w.key);
}

#[test]
fn a_key_that_is_not_the_cas_is_refused() {
    let (cert, _) = ca_pem();
    let (_, other_key) = ca_pem();
    let e = ca(&cert, &other_key).unwrap_err();
    assert!(matches!(e, MeshCaError::KeyMismatch { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("is not the key of the first certificate"),
        "{e}"
    );
    let e = ca("junk", &other_key).unwrap_err();
    assert!(e.to_string().contains("ca.pem"), "{e}");
}

#[test]
fn a_leaf_is_no_ca() {
    let (cert, key) = ca_pem();
    let ca = ca(&cert, &key).unwrap();
    let w = ca.mint(TD, "orders", TTL, SystemTime::now()).unwrap();
    let e = MeshCa::from_pem(
        w.cert_pem.clone(),
        w.key.expose(),
        Path::new("leaf.pem"),
        Path::new("leaf.key"),
    )
    .unwrap_err();
    assert!(matches!(e, MeshCaError::NotCa { .. }), "{e}");
}

#[test]
fn a_bundle_trusts_every_ca_and_signs_with_the_first() {
    let (new_cert, new_key) = ca_pem();
    let (old_cert, _) = ca_pem();
    let bundle = format!("{new_cert}{old_cert}");
    let ca = ca(&bundle, &new_key).unwrap();
    assert_eq!(ca.bundle_pem, bundle.as_bytes());
    let first = crate::tls::parse_chain(new_cert.as_bytes()).unwrap();
    assert_eq!(ca.signer, crate::tls::fingerprint(first[0].as_ref()));
}

proptest::proptest! {
    /// With the same signer, lifetime and trust domain, a certificate is renewed exactly from
    /// half its life on.
    #[test]
    fn renewal_is_due_from_half_life_on(issued in 0i64..1_000_000, ttl in 60u64..1_000_000, at in 0i64..3_000_000) {
        let c = held(issued, ttl as i64, "a");
        let due = renewal(Some(&c), "a", Duration::from_secs(ttl), TD, "payments", at);
        let half = issued + ttl as i64 / 2;
        proptest::prop_assert_eq!(due, (at >= half).then_some(Renewal::HalfLife));
    }
}
