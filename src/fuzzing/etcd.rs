//! Key-values read from etcd: anything with write access to flotilla's prefix can put them
//! there, so whatever the bytes, reading them must not panic, and what is accepted must be
//! valid as the API would have it.

use crate::etcd::proto::mvccpb::KeyValue;
use crate::store::etcd::keys::decode;
use crate::store::{Change, Listing};

/// The prefix the inputs are read under.
pub(super) const PREFIX: &str = "/flotilla/";

/// Input: one flags byte (bit 0: a deletion; bit 1: written under a lease), then the key, a
/// NUL, and the value.
pub fn etcd_value(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (key, value) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let kv = KeyValue {
        key: key.to_vec(),
        value: value.to_vec(),
        lease: i64::from(flags & 2 != 0),
        ..KeyValue::default()
    };
    let Ok(change) = decode(PREFIX, &kv, flags & 1 != 0) else {
        return;
    };
    match &change {
        Change::Weight(_, Some(w)) => assert!((1..=crate::config::MAX_WEIGHT).contains(w)),
        Change::Registration(_, Some(r)) => {
            assert!((1..=crate::config::MAX_WEIGHT).contains(&r.weight));
            assert!(kv.lease != 0, "a registration without a lease was accepted");
            let again: crate::store::Registration =
                serde_json::from_slice(&serde_json::to_vec(r).expect("encodes"))
                    .expect("what was read is written back the same");
            assert_eq!(&again, r);
        }
        Change::Member(_, true) => assert!(kv.lease != 0, "a member without a lease"),
        _ => {}
    }
    Listing::default().apply(&change);
}

/// Flotilla's own writes, as seeds.
pub(super) fn seeds() -> Vec<Vec<u8>> {
    let entry = |flags: u8, key: &str, value: &[u8]| {
        let mut out = vec![flags];
        out.extend_from_slice(format!("{PREFIX}{key}").as_bytes());
        out.push(0);
        out.extend_from_slice(value);
        out
    };
    vec![
        entry(0, "state/drains/web/127.0.0.1:80", b""),
        entry(0, "state/weights/team/api/[::1]:8080", b"7"),
        entry(2, "registrations/web/10.0.0.1:80", br#"{"weight":3,"ttl_ms":10000}"#),
        entry(
            2,
            "registrations/web/10.0.0.2:80",
            br#"{"weight":1,"stream":{"replica":"a-1","session":4},"zone":"z1","metadata":{"k":"v"},"leaving":true}"#,
        ),
        entry(2, "replicas/a-1", b""),
        entry(0, "health/web/10.0.0.1:80", b"unhealthy 40"),
        entry(2, "acks/a-1/web/10.0.0.2:80", br#"{"in_flight":3}"#),
        entry(1, "registrations/web/10.0.0.1:80", b""),
        entry(0, "registrations/web/169.254.169.254:80", br#"{"weight":4000000000,"ttl_ms":1}"#),
    ]
}
