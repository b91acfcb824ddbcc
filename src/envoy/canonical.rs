//! Deterministic encoding of Envoy resources.
//!
//! Envoy's protos have map fields (`typed_per_filter_config`, `Struct.fields`, metadata),
//! which `envoy-types` holds as `HashMap`s: prost writes their entries in hash order, which
//! differs between two maps with the same contents. A resource whose maps hold two or more
//! entries would then encode to different bytes, get a new content-hash version, and be
//! re-sent on a reload that changed nothing; two replicas would disagree on its version.
//! `encode` rewrites the bytes with every map's entries sorted, walking the wire format with
//! the descriptors `envoy-types` was generated from (into `Any` values as well). Field order
//! on the wire carries no meaning in protobuf, so the result decodes to the same message.

use prost::bytes::Buf;
use prost::encoding::{WireType, decode_key, decode_varint, encode_key, encode_varint};
use prost_reflect::{Kind, MessageDescriptor};

use super::json::pool;

const ANY: &str = "google.protobuf.Any";

/// The message `bytes` of type `type_name` (a full name, `envoy.config.route.v3.Route`),
/// with the entries of every map sorted. Bytes it cannot read are returned as they are.
pub fn encode(type_name: &str, bytes: Vec<u8>) -> Vec<u8> {
    match pool().get_message_by_name(type_name) {
        Some(descriptor) => canonical(&descriptor, &bytes).unwrap_or(bytes),
        None => bytes,
    }
}

/// One field as it stands on the wire.
struct Field<'a> {
    number: u32,
    wire_type: WireType,
    /// The whole field, key included.
    raw: &'a [u8],
    /// The payload of a length-delimited field.
    payload: &'a [u8],
}

fn fields(mut bytes: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let start = bytes;
        let (number, wire_type) = decode_key(&mut bytes).ok()?;
        let payload: &[u8] = match wire_type {
            WireType::Varint => {
                decode_varint(&mut bytes).ok()?;
                &[]
            }
            WireType::SixtyFourBit => {
                bytes = bytes.get(8..)?;
                &[]
            }
            WireType::ThirtyTwoBit => {
                bytes = bytes.get(4..)?;
                &[]
            }
            WireType::LengthDelimited => {
                let len = usize::try_from(decode_varint(&mut bytes).ok()?).ok()?;
                let payload = bytes.get(..len)?;
                bytes.advance(len);
                payload
            }
            WireType::StartGroup | WireType::EndGroup => return None,
        };
        let raw = &start[..start.len() - bytes.len()];
        out.push(Field {
            number,
            wire_type,
            raw,
            payload,
        });
    }
    Some(out)
}

fn length_delimited(number: u32, payload: &[u8], out: &mut Vec<u8>) {
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

fn canonical(descriptor: &MessageDescriptor, bytes: &[u8]) -> Option<Vec<u8>> {
    if descriptor.full_name() == ANY {
        return canonical_any(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut maps: Vec<(u32, Vec<Vec<u8>>)> = Vec::new();
    for f in fields(bytes)? {
        let message = match descriptor.get_field(f.number) {
            Some(field) if f.wire_type == WireType::LengthDelimited => match field.kind() {
                Kind::Message(m) => Some((field.is_map(), m)),
                _ => None,
            },
            _ => None,
        };
        match message {
            Some((true, entry)) => {
                let entry = canonical(&entry, f.payload)?;
                match maps.iter_mut().find(|(n, _)| *n == f.number) {
                    Some((_, entries)) => entries.push(entry),
                    None => maps.push((f.number, vec![entry])),
                }
            }
            Some((false, m)) => length_delimited(f.number, &canonical(&m, f.payload)?, &mut out),
            None => out.extend_from_slice(f.raw),
        }
    }
    for (number, mut entries) in maps {
        // An entry is its key (field 1) then its value: sorting entries sorts by key.
        entries.sort();
        for entry in entries {
            length_delimited(number, &entry, &mut out);
        }
    }
    Some(out)
}

/// An `Any`: its value is canonical for the type its URL names.
fn canonical_any(bytes: &[u8]) -> Option<Vec<u8>> {
    let fields = fields(bytes)?;
    let type_url = fields
        .iter()
        .find(|f| f.number == 1 && f.wire_type == WireType::LengthDelimited)
        .and_then(|f| std::str::from_utf8(f.payload).ok())?;
    let name = type_url.rsplit('/').next().unwrap_or(type_url);
    let inner = pool().get_message_by_name(name);
    let mut out = Vec::with_capacity(bytes.len());
    for f in &fields {
        match (&inner, f.number, f.wire_type) {
            (Some(m), 2, WireType::LengthDelimited) => {
                length_delimited(2, &canonical(m, f.payload)?, &mut out);
            }
            _ => out.extend_from_slice(f.raw),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};
    use envoy_types::pb::google::protobuf::{Any, Duration};
    use prost::{Message, Name};

    use super::encode;
    use crate::envoy::pack;

    fn route_configuration() -> RouteConfiguration {
        let filters = || {
            (0..6)
                .map(|i| {
                    (
                        format!("envoy.filters.http.f{i}"),
                        pack(&Duration {
                            seconds: i,
                            nanos: 0,
                        }),
                    )
                })
                .collect()
        };
        RouteConfiguration {
            name: "edge".into(),
            virtual_hosts: vec![VirtualHost {
                name: "site".into(),
                domains: vec!["*".into()],
                routes: vec![Route {
                    name: "r".into(),
                    typed_per_filter_config: filters(),
                    ..Default::default()
                }],
                typed_per_filter_config: filters(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn maps_encode_the_same_whatever_their_hash_order() {
        let first = encode(
            RouteConfiguration::full_name().as_str(),
            route_configuration().encode_to_vec(),
        );
        for _ in 0..20 {
            let again = encode(
                RouteConfiguration::full_name().as_str(),
                route_configuration().encode_to_vec(),
            );
            assert_eq!(again, first);
        }
        assert_eq!(
            RouteConfiguration::decode(first.as_slice()).expect("decodes"),
            route_configuration()
        );
    }

    #[test]
    fn inside_an_any_too() {
        let packed = || pack(&route_configuration()).encode_to_vec();
        let first = encode(Any::full_name().as_str(), packed());
        for _ in 0..20 {
            assert_eq!(encode(Any::full_name().as_str(), packed()), first);
        }
    }
}
