//! Discovery responses assembled from pre-encoded pieces, and framed for gRPC.
//!
//! Every stream of a fleet sends the same resources; only the nonce (and for SotW the version)
//! differs. Each resource is therefore encoded once, by the cache, as the exact bytes of its
//! entry in either response (`cache::entries`), and a response is a list of shared `Bytes`: a
//! small header and prefix, the resources' entries (reference-counted, never copied per
//! stream), a small suffix. Protobuf
//! lets fields come in any order and concatenated entries of a repeated field are that field,
//! so these pieces decode as the message prost would have built.

use bytes::{BufMut, Bytes, BytesMut};

use crate::cache::entries::{field_bytes, field_len};

/// One gRPC message (5-byte prefix included) as pieces that are written out in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Frames {
    pub(crate) parts: Vec<Bytes>,
}

#[cfg(test)]
impl Frames {
    fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    /// The message (without the gRPC prefix) in one buffer.
    fn message(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len());
        for p in &self.parts {
            out.put_slice(p);
        }
        out.freeze().slice(5..)
    }
}

/// Assembles one message: `head` fields, the shared `entries`, `tail` fields.
fn message(
    head: &[(u32, &str)],
    entries: impl Iterator<Item = Bytes>,
    tail: &[(u32, &str)],
) -> Frames {
    let entries: Vec<Bytes> = entries.collect();
    let fields_len = |fields: &[(u32, &str)]| -> usize {
        fields
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(f, v)| field_len(*f, v.len()))
            .sum()
    };
    let total = fields_len(head) + entries.iter().map(Bytes::len).sum::<usize>() + fields_len(tail);
    let mut prefix = BytesMut::with_capacity(5 + fields_len(head));
    prefix.put_u8(0); // not compressed
    prefix.put_u32(u32::try_from(total).unwrap_or(u32::MAX));
    for (f, v) in head.iter().filter(|(_, v)| !v.is_empty()) {
        field_bytes(&mut prefix, *f, v.as_bytes());
    }
    let mut suffix = BytesMut::with_capacity(fields_len(tail));
    for (f, v) in tail.iter().filter(|(_, v)| !v.is_empty()) {
        field_bytes(&mut suffix, *f, v.as_bytes());
    }
    let mut parts = Vec::with_capacity(entries.len() + 2);
    parts.push(prefix.freeze());
    parts.extend(entries);
    if !suffix.is_empty() {
        parts.push(suffix.freeze());
    }
    Frames { parts }
}

/// A state-of-the-world `DiscoveryResponse`.
pub(crate) fn sotw_response(
    version_info: &str,
    entries: impl Iterator<Item = Bytes>,
    type_url: &str,
    nonce: &str,
) -> Frames {
    message(&[(1, version_info)], entries, &[(4, type_url), (5, nonce)])
}

/// An incremental `DeltaDiscoveryResponse`.
pub(crate) fn delta_response(
    system_version_info: &str,
    entries: impl Iterator<Item = Bytes>,
    type_url: &str,
    removed: &[String],
    nonce: &str,
) -> Frames {
    let mut tail: Vec<(u32, &str)> = vec![(4, type_url), (5, nonce)];
    tail.extend(removed.iter().map(|r| (6, r.as_str())));
    message(&[(1, system_version_info)], entries, &tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entries::{delta_entry, sotw_entry};
    use envoy_types::pb::envoy::service::discovery::v3::{
        DeltaDiscoveryResponse, DiscoveryResponse, Resource,
    };
    use envoy_types::pb::google::protobuf::Any;
    use prost::Message;

    fn any(n: u8) -> Any {
        Any {
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
            value: vec![n; 300],
        }
    }

    #[test]
    fn sotw_pieces_decode_as_the_message_prost_builds() {
        let frames = sotw_response("v1", [any(1), any(2)].iter().map(sotw_entry), "type/x", "7");
        let header = &frames.parts[0][..5];
        assert_eq!(header[0], 0);
        assert_eq!(
            u32::from_be_bytes(header[1..5].try_into().unwrap()) as usize,
            frames.len() - 5
        );
        let decoded = DiscoveryResponse::decode(frames.message()).unwrap();
        assert_eq!(
            decoded,
            DiscoveryResponse {
                version_info: "v1".into(),
                resources: vec![any(1), any(2)],
                type_url: "type/x".into(),
                nonce: "7".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn delta_pieces_decode_as_the_message_prost_builds() {
        let entries = [("a", "va", any(1)), ("b", "vb", any(2))];
        let frames = delta_response(
            "sys",
            entries.iter().map(|(n, v, a)| delta_entry(n, v, a)),
            "type/x",
            &["gone".to_string()],
            "9",
        );
        let decoded = DeltaDiscoveryResponse::decode(frames.message()).unwrap();
        assert_eq!(
            decoded,
            DeltaDiscoveryResponse {
                system_version_info: "sys".into(),
                resources: entries
                    .iter()
                    .map(|(n, v, a)| Resource {
                        name: n.to_string(),
                        version: v.to_string(),
                        resource: Some(a.clone()),
                        ..Default::default()
                    })
                    .collect(),
                type_url: "type/x".into(),
                removed_resources: vec!["gone".into()],
                nonce: "9".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn an_empty_response_is_still_a_message() {
        let frames = sotw_response("", std::iter::empty(), "type/x", "1");
        let decoded = DiscoveryResponse::decode(frames.message()).unwrap();
        assert!(decoded.resources.is_empty());
        assert_eq!(decoded.nonce, "1");
    }
}
