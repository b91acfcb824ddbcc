//! State-of-the-world requests, decoded without a `String` per subscribed name.
//!
//! Envoy repeats its whole subscription in every SotW request, ACKs included: an EDS ACK of a
//! fleet with a thousand clusters lists a thousand names. Decoded by prost that is a thousand
//! allocations per ACK per stream, a quarter of flotilla's CPU at a few thousand streams, only
//! to find the list unchanged. [`SotwRequest`] is `DiscoveryRequest` with the names kept as the
//! bytes they came in ([`NameList`]): one buffer, a fingerprint to tell "same list as last
//! time" at once, and the names read out only when the list changed.

use std::hash::{DefaultHasher, Hasher};

use bytes::{Buf, BufMut};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::rpc::Status;
use prost::encoding::{
    DecodeContext, WireType, check_wire_type, decode_varint, encode_varint, encoded_len_varint,
    message, skip_field, string,
};
use prost::{DecodeError, Message};

/// `envoy.service.discovery.v3.DiscoveryRequest`, field for field (resource_locators, which
/// flotilla does not serve, are skipped).
#[derive(Debug, Clone, Default)]
pub(crate) struct SotwRequest {
    pub(crate) version_info: String,
    pub(crate) node: Option<Node>,
    pub(crate) resource_names: NameList,
    pub(crate) type_url: String,
    pub(crate) response_nonce: String,
    pub(crate) error_detail: Option<Status>,
}

/// The names of a request in the order sent, as length-prefixed UTF-8 in one buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NameList {
    raw: Vec<u8>,
}

impl NameList {
    pub(crate) fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> {
        let mut rest = self.raw.as_slice();
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let len = decode_varint(&mut rest).ok()? as usize;
            let (name, tail) = rest.split_at(len);
            rest = tail;
            // Checked when decoded.
            std::str::from_utf8(name).ok()
        })
    }

    /// Equal lists (same names, same order) have equal fingerprints.
    pub(crate) fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        h.write(&self.raw);
        h.finish()
    }

    /// A list of `names`, as if decoded from a request (for tests of the state machine).
    #[cfg(test)]
    pub(crate) fn from_names(names: &[&str]) -> NameList {
        let mut list = NameList::default();
        for name in names {
            list.push(name);
        }
        list
    }

    fn push(&mut self, name: &str) {
        encode_varint(name.len() as u64, &mut self.raw);
        self.raw.extend_from_slice(name.as_bytes());
    }

    /// Appends one entry of field 3 from the wire, copied once, straight into the list, and
    /// checked to be UTF-8 there (as prost checks a `string`). A SotW client repeats every
    /// name it subscribes to in every ACK: at 10,000 streams of 1,000 clusters, decoding the
    /// names through a `String` first (a second copy) was a tenth of flotilla's CPU per
    /// endpoint change.
    fn merge(
        &mut self,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        check_wire_type(WireType::LengthDelimited, wire_type)?;
        let len = decode_varint(buf)?;
        let Some(len) = usize::try_from(len).ok().filter(|l| *l <= buf.remaining()) else {
            // A length past the end: prost's own error ("buffer underflow").
            return Err(string_error(&[1], ctx));
        };
        let start = self.raw.len();
        encode_varint(len as u64, &mut self.raw);
        let body = self.raw.len();
        self.raw.reserve(len);
        self.raw.put((&mut *buf).take(len));
        if std::str::from_utf8(&self.raw[body..]).is_err() {
            self.raw.truncate(start);
            return Err(string_error(&[1, 0xff], ctx));
        }
        Ok(())
    }
}

/// The error prost gives for `wire`, a length-delimited string it cannot decode: its
/// constructor of errors is internal, so the same fault is decoded through it again.
fn string_error(wire: &[u8], ctx: DecodeContext) -> DecodeError {
    match string::merge(
        WireType::LengthDelimited,
        &mut String::new(),
        &mut &*wire,
        ctx,
    ) {
        Err(e) => e,
        // `wire` is always faulty; if it were not, a one-byte non-UTF-8 string is.
        Ok(()) => string_error(&[1, 0xff], DecodeContext::default()),
    }
}

impl<S: AsRef<str>> FromIterator<S> for NameList {
    fn from_iter<I: IntoIterator<Item = S>>(names: I) -> NameList {
        let mut list = NameList::default();
        for n in names {
            list.push(n.as_ref());
        }
        list
    }
}

impl Message for SotwRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if !self.version_info.is_empty() {
            string::encode(1, &self.version_info, buf);
        }
        if let Some(node) = &self.node {
            message::encode(2, node, buf);
        }
        for name in self.resource_names.iter() {
            string::encode(3, &name.to_string(), buf);
        }
        if !self.type_url.is_empty() {
            string::encode(4, &self.type_url, buf);
        }
        if !self.response_nonce.is_empty() {
            string::encode(5, &self.response_nonce, buf);
        }
        if let Some(status) = &self.error_detail {
            message::encode(6, status, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => string::merge(wire_type, &mut self.version_info, buf, ctx),
            2 => message::merge(
                wire_type,
                self.node.get_or_insert_with(Node::default),
                buf,
                ctx,
            ),
            3 => self.resource_names.merge(wire_type, buf, ctx),
            4 => string::merge(wire_type, &mut self.type_url, buf, ctx),
            5 => string::merge(wire_type, &mut self.response_nonce, buf, ctx),
            6 => message::merge(
                wire_type,
                self.error_detail.get_or_insert_with(Status::default),
                buf,
                ctx,
            ),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let str_len = |tag: u32, s: &str| {
            if s.is_empty() {
                0
            } else {
                string::encoded_len(tag, &s.to_string())
            }
        };
        str_len(1, &self.version_info)
            + self.node.as_ref().map_or(0, |n| message::encoded_len(2, n))
            + self
                .resource_names
                .iter()
                .map(|n| 1 + encoded_len_varint(n.len() as u64) + n.len())
                .sum::<usize>()
            + str_len(4, &self.type_url)
            + str_len(5, &self.response_nonce)
            + self
                .error_detail
                .as_ref()
                .map_or(0, |s| message::encoded_len(6, s))
    }

    fn clear(&mut self) {
        *self = SotwRequest::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

    fn full() -> DiscoveryRequest {
        DiscoveryRequest {
            version_info: "v1".into(),
            node: Some(Node {
                id: "edge-1".into(),
                cluster: "edge".into(),
                ..Default::default()
            }),
            resource_names: vec!["web".into(), "api".into(), "é-ünïcode".into()],
            type_url: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment".into(),
            response_nonce: "7".into(),
            error_detail: Some(Status {
                code: 13,
                message: "rejected".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn decodes_what_prost_encodes_and_encodes_back_the_same_bytes() {
        let bytes = full().encode_to_vec();
        let lean = SotwRequest::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(lean.version_info, "v1");
        assert_eq!(lean.node.as_ref().map(|n| n.id.as_str()), Some("edge-1"));
        let names: Vec<&str> = lean.resource_names.iter().collect();
        assert_eq!(names, ["web", "api", "é-ünïcode"]);
        assert_eq!(lean.response_nonce, "7");
        assert_eq!(lean.error_detail.as_ref().map(|s| s.code), Some(13));
        assert_eq!(lean.encode_to_vec(), bytes);
        assert_eq!(lean.encoded_len(), bytes.len());
        assert_eq!(
            DiscoveryRequest::decode(lean.encode_to_vec().as_slice()).unwrap(),
            full()
        );
    }

    #[test]
    fn the_fingerprint_tells_lists_apart_by_names_and_order() {
        let a: NameList = ["web", "api"].into_iter().collect();
        let same: NameList = ["web", "api"].into_iter().collect();
        let reordered: NameList = ["api", "web"].into_iter().collect();
        // Length prefixes keep boundaries: "ab" + "c" differs from "a" + "bc".
        let split1: NameList = ["ab", "c"].into_iter().collect();
        let split2: NameList = ["a", "bc"].into_iter().collect();
        assert_eq!(a.fingerprint(), same.fingerprint());
        assert_ne!(a.fingerprint(), reordered.fingerprint());
        assert_ne!(split1.fingerprint(), split2.fingerprint());
    }

    #[test]
    fn invalid_utf8_and_truncated_names_are_decode_errors() {
        let mut bad = Vec::new();
        encode_varint((3 << 3 | 2) as u64, &mut bad);
        encode_varint(2, &mut bad);
        bad.extend_from_slice(&[0xff, 0xfe]);
        assert!(SotwRequest::decode(bad.as_slice()).is_err());
        let mut short = Vec::new();
        encode_varint((3 << 3 | 2) as u64, &mut short);
        encode_varint(10, &mut short);
        short.extend_from_slice(b"abc");
        assert!(SotwRequest::decode(short.as_slice()).is_err());
    }

    #[test]
    fn fields_it_does_not_know_are_skipped() {
        let mut bytes = full().encode_to_vec();
        // resource_locators (7) and an unknown field (99).
        string::encode(7, &"locator".to_string(), &mut bytes);
        string::encode(99, &"future".to_string(), &mut bytes);
        let lean = SotwRequest::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(lean.resource_names.iter().count(), 3);
    }
}
