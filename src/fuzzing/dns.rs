//! DNS responses, as hostname endpoints read them (`crate::dns::Answer::from_response`).

use crate::dns::{Answer, MAX_ADDRESSES, MAX_TTL, MIN_TTL};

/// Whatever a DNS server sends, what flotilla keeps is bounded: sorted unique addresses, at
/// most [`MAX_ADDRESSES`], a TTL within [`MIN_TTL`]..=[`MAX_TTL`].
pub fn dns_answer(data: &[u8]) {
    if let Ok(a) = Answer::from_response(data) {
        assert!(!a.addresses.is_empty(), "an answer without addresses");
        assert!(a.addresses.len() <= MAX_ADDRESSES, "too many addresses");
        assert!(
            a.addresses.windows(2).all(|w| w[0] < w[1]),
            "addresses not sorted and unique"
        );
        assert!((MIN_TTL..=MAX_TTL).contains(&a.ttl), "TTL out of bounds");
        assert!(
            a.addresses
                .iter()
                .all(|ip| crate::runtime::admission::refused(*ip).is_none()),
            "an address that cannot be an endpoint"
        );
    }
}

/// Responses as a DNS server sends them (wire format, RFC 1035 section 4): A and AAAA
/// answers, a mix with a CNAME, NXDOMAIN, and a server failure.
pub(super) fn seeds() -> Vec<Vec<u8>> {
    let question = |qtype: u16| {
        let mut q = vec![2, b'd', b'b', 8];
        q.extend_from_slice(b"internal");
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    };
    let header = |flags: u16, answers: u16| {
        let mut h = vec![0x12, 0x34];
        h.extend_from_slice(&flags.to_be_bytes());
        for count in [1, answers, 0, 0] {
            h.extend_from_slice(&count.to_be_bytes());
        }
        h
    };
    // An answer for the question's name (a pointer to offset 12).
    let record = |rtype: u16, ttl: u32, data: &[u8]| {
        let mut r = vec![0xc0, 0x0c];
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&1u16.to_be_bytes());
        r.extend_from_slice(&ttl.to_be_bytes());
        r.extend_from_slice(&(data.len() as u16).to_be_bytes());
        r.extend_from_slice(data);
        r
    };
    let response = |flags: u16, qtype: u16, records: &[Vec<u8>]| {
        let mut m = header(flags, records.len() as u16);
        m.extend(question(qtype));
        for r in records {
            m.extend_from_slice(r);
        }
        m
    };
    let ok = 0x8180;
    vec![
        response(
            ok,
            1,
            &[record(1, 30, &[10, 0, 0, 1]), record(1, 60, &[10, 0, 0, 2])],
        ),
        response(
            ok,
            28,
            &[record(
                28,
                0,
                &[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            )],
        ),
        response(
            ok,
            1,
            &[
                record(5, 300, &[0xc0, 0x0c]),
                record(1, 86_400, &[127, 0, 0, 1]),
            ],
        ),
        response(0x8183, 1, &[]),
        response(0x8182, 1, &[]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::LookupError;

    #[test]
    fn the_seeds_parse_as_the_answers_they_are() {
        let seeds = seeds();
        let a = Answer::from_response(&seeds[0]).unwrap();
        assert_eq!(
            a.addresses,
            [
                "10.0.0.1".parse::<std::net::IpAddr>().unwrap(),
                "10.0.0.2".parse().unwrap()
            ]
        );
        assert_eq!(a.ttl, std::time::Duration::from_secs(30));
        assert_eq!(Answer::from_response(&seeds[1]).unwrap().ttl, MIN_TTL);
        assert_eq!(Answer::from_response(&seeds[2]).unwrap().ttl, MAX_TTL);
        assert_eq!(
            Answer::from_response(&seeds[3]),
            Err(LookupError::NoSuchName)
        );
        assert!(matches!(
            Answer::from_response(&seeds[4]),
            Err(LookupError::Failed(_))
        ));
        for s in &seeds {
            dns_answer(s);
        }
    }
}
