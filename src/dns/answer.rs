//! DNS answers → the addresses a name stands for, bounded: sorted, without duplicates, at most
//! [`MAX_ADDRESSES`], with the lowest TTL among the records used, clamped to
//! [`MIN_TTL`]..=[`MAX_TTL`]. What a DNS server sends is input like any other: the resolver
//! crate parses the message, this bounds what is kept of it, and the fuzz target `dns_answer`
//! drives both from raw bytes.

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::proto::op::{Message, ResponseCode};

use super::{LookupError, MAX_ADDRESSES, MAX_TTL, MIN_TTL};

/// What a successful lookup gave: the addresses, and how long they may be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub addresses: Vec<IpAddr>,
    pub ttl: Duration,
}

impl Answer {
    /// From (address, TTL in seconds) records. No record at all is "no such name": a name
    /// with no address cannot be an endpoint. Addresses that cannot be endpoints are dropped,
    /// as they are from registrations: `0.0.0.0` (what filtering resolvers answer for a
    /// blocked name; Envoy would connect to its own host), multicast and broadcast, link-local
    /// and cloud metadata services (a rebound name must not put them behind a listener). A
    /// name that answers only such addresses is a failed lookup: the last good ones stay.
    pub fn bounded(
        records: impl IntoIterator<Item = (IpAddr, u32)>,
    ) -> Result<Answer, LookupError> {
        let mut dropped = None;
        let mut all: Vec<(IpAddr, u32)> = records
            .into_iter()
            .filter(|(ip, _)| match crate::runtime::admission::refused(*ip) {
                Some(why) => {
                    dropped.get_or_insert((*ip, why));
                    false
                }
                None => true,
            })
            .collect();
        if all.is_empty()
            && let Some((ip, why)) = dropped
        {
            return Err(LookupError::Failed(format!(
                "answered only addresses that cannot be endpoints ({ip} is {why})"
            )));
        }
        all.sort();
        all.dedup_by_key(|(ip, _)| *ip);
        all.truncate(MAX_ADDRESSES);
        let Some(ttl) = all.iter().map(|(_, ttl)| *ttl).min() else {
            return Err(LookupError::NoSuchName);
        };
        Ok(Answer {
            addresses: all.into_iter().map(|(ip, _)| ip).collect(),
            ttl: Duration::from_secs(u64::from(ttl)).clamp(MIN_TTL, MAX_TTL),
        })
    }

    /// From a raw DNS response message (what the fuzz target feeds): its A and AAAA answers.
    pub fn from_response(bytes: &[u8]) -> Result<Answer, LookupError> {
        let message = Message::from_vec(bytes)
            .map_err(|e| LookupError::Failed(format!("bad DNS message: {e}")))?;
        match message.metadata.response_code {
            ResponseCode::NoError => {}
            ResponseCode::NXDomain => return Err(LookupError::NoSuchName),
            code => return Err(LookupError::Failed(format!("server answered {code}"))),
        }
        Answer::bounded(
            message
                .answers
                .iter()
                .filter_map(|r| Some((r.data.ip_addr()?, r.ttl))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_sorted_and_unique_with_the_lowest_ttl() {
        let a = Answer::bounded([
            (ip("10.0.0.2"), 30),
            (ip("10.0.0.1"), 20),
            (ip("10.0.0.2"), 10),
        ])
        .unwrap();
        assert_eq!(a.addresses, [ip("10.0.0.1"), ip("10.0.0.2")]);
        assert_eq!(a.ttl, Duration::from_secs(10));
    }

    #[test]
    fn the_ttl_is_clamped() {
        assert_eq!(Answer::bounded([(ip("10.0.0.1"), 0)]).unwrap().ttl, MIN_TTL);
        assert_eq!(
            Answer::bounded([(ip("10.0.0.1"), 86_400)]).unwrap().ttl,
            MAX_TTL
        );
    }

    #[test]
    fn at_most_max_addresses_are_kept() {
        let many = (0..200u32).map(|i| (IpAddr::from(i.to_be_bytes()), 60));
        assert_eq!(
            Answer::bounded(many).unwrap().addresses.len(),
            MAX_ADDRESSES
        );
    }

    #[test]
    fn addresses_that_cannot_be_endpoints_are_dropped() {
        let a = Answer::bounded([
            (ip("0.0.0.0"), 60),
            (ip("10.0.0.1"), 60),
            (ip("169.254.169.254"), 60),
            (ip("224.0.0.1"), 60),
            (ip("255.255.255.255"), 60),
            (ip("::"), 60),
            (ip("::ffff:0.0.0.0"), 60),
            (ip("fe80::1"), 60),
            (ip("ff02::1"), 60),
        ])
        .unwrap();
        assert_eq!(a.addresses, [ip("10.0.0.1")]);
        match Answer::bounded([(ip("0.0.0.0"), 60)]) {
            Err(LookupError::Failed(why)) => {
                assert!(why.contains("0.0.0.0 is unspecified"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_record_is_no_such_name() {
        assert_eq!(Answer::bounded([]), Err(LookupError::NoSuchName));
    }

    #[test]
    fn garbage_is_a_failure_not_a_panic() {
        for bytes in [&b""[..], b"\x00", &[0xff; 40]] {
            assert!(Answer::from_response(bytes).is_err());
        }
    }
}
