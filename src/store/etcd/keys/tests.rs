//! What is read from etcd is checked as the API checks it: one rule per case.

use super::*;

fn kv(key: &str, value: &[u8], lease: i64) -> KeyValue {
    KeyValue {
        key: key.as_bytes().to_vec(),
        value: value.to_vec(),
        lease,
        ..Default::default()
    }
}

fn k(cluster: &str, address: &str) -> EndpointKey {
    EndpointKey::new(cluster, address.parse().unwrap())
}

#[test]
fn keys_round_trip_including_ipv6_and_slashes_in_cluster_names() {
    for (kind, endpoint) in [
        (DRAINS, k("web", "127.0.0.1:80")),
        (WEIGHTS, k("team/api", "[::1]:8080")),
        (HEALTH, k("web", "10.0.0.1:80")),
    ] {
        let key = String::from_utf8(endpoint_key("/p/", kind, &endpoint)).unwrap();
        let change = decode("/p/", &kv(&key, b"", 0), true).unwrap();
        let decoded = match change {
            Change::Drain(e, _) | Change::Weight(e, _) | Change::Health(e, _) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(decoded, endpoint);
    }
}

#[test]
fn every_rule_on_what_is_read() {
    let json = br#"{"weight":3,"ttl_ms":10000}"#;
    type Case<'a> = (&'a str, &'a [u8], i64, Result<(), Invalid>);
    let cases: &[Case<'_>] = &[
        // Flotilla's own writes.
        ("/p/state/drains/web/127.0.0.1:80", b"", 0, Ok(())),
        ("/p/state/weights/web/127.0.0.1:80", b"7", 0, Ok(())),
        ("/p/registrations/web/10.0.0.1:80", json, 5, Ok(())),
        ("/p/replicas/a-1", b"", 5, Ok(())),
        ("/p/health/web/10.0.0.1:80", b"healthy 3", 0, Ok(())),
        (
            "/p/acks/a-1/web/10.0.0.1:80",
            br#"{"in_flight":0}"#,
            5,
            Ok(()),
        ),
        // A registration without a lease would never expire.
        (
            "/p/registrations/web/10.0.0.1:80",
            json,
            0,
            Err(Invalid::NoLease),
        ),
        // Membership only from leased keys: 50 fake replicas stopped every replica's probes.
        ("/p/replicas/fake", b"", 0, Err(Invalid::NoLease)),
        (
            "/p/acks/a-1/web/10.0.0.1:80",
            br#"{"in_flight":0}"#,
            0,
            Err(Invalid::NoLease),
        ),
        // Values as the API would refuse them.
        (
            "/p/state/weights/web/127.0.0.1:80",
            b"4000000000",
            0,
            Err(Invalid::Value(String::new())),
        ),
        (
            "/p/state/weights/web/127.0.0.1:80",
            b"0",
            0,
            Err(Invalid::Value(String::new())),
        ),
        (
            "/p/state/drains/web/127.0.0.1:80",
            b"x",
            0,
            Err(Invalid::Value(String::new())),
        ),
        (
            "/p/registrations/web/10.0.0.1:80",
            br#"{"weight":4000000000,"ttl_ms":1}"#,
            5,
            Err(Invalid::Value(String::new())),
        ),
        (
            "/p/registrations/web/10.0.0.1:80",
            br#"{"weight":1,"evil":1}"#,
            5,
            Err(Invalid::Value(String::new())),
        ),
        (
            "/p/health/web/10.0.0.1:80",
            b"healthy 0",
            0,
            Err(Invalid::Value(String::new())),
        ),
        (
            "/p/health/web/10.0.0.1:80",
            b"sick",
            0,
            Err(Invalid::Value(String::new())),
        ),
        // Keys flotilla does not write.
        ("/p/other/web/127.0.0.1:80", b"", 0, Err(Invalid::Key)),
        (
            "/p/state/drains/web/not-an-address",
            b"",
            0,
            Err(Invalid::Key),
        ),
        ("/p/state/drains/127.0.0.1:80", b"", 0, Err(Invalid::Key)),
        ("/p/replicas/bad id", b"", 5, Err(Invalid::Key)),
        (
            "/q/state/drains/web/127.0.0.1:80",
            b"",
            0,
            Err(Invalid::Key),
        ),
    ];
    for (key, value, lease, want) in cases {
        let got = decode("/p/", &kv(key, value, *lease), false).map(drop);
        match (want, &got) {
            (Ok(()), Ok(())) => {}
            (Err(Invalid::Value(_)), Err(Invalid::Value(_))) => {}
            (Err(w), Err(g)) if w == g => {}
            _ => panic!(
                "{key} {:?}: want {want:?}, got {got:?}",
                String::from_utf8_lossy(value)
            ),
        }
    }
}

#[test]
fn a_value_over_the_limit_is_skipped_not_read() {
    let big = vec![b'x'; MAX_VALUE_BYTES + 1];
    assert_eq!(
        decode("/p/", &kv("/p/health/web/10.0.0.1:80", &big, 0), false),
        Err(Invalid::TooLarge(MAX_VALUE_BYTES + 1))
    );
}

#[test]
fn a_deletion_needs_only_a_valid_key() {
    assert_eq!(
        decode("/p/", &kv("/p/replicas/a-1", b"", 0), true),
        Ok(Change::Member("a-1".into(), false))
    );
    assert_eq!(
        decode("/p/", &kv("/p/registrations/web/10.0.0.1:80", b"", 0), true),
        Ok(Change::Registration(k("web", "10.0.0.1:80"), None))
    );
}
