//! Each resource's entry in a discovery response, encoded once when the snapshot is built.
//!
//! `DiscoveryResponse.resources` (field 2, an `Any`) and `DeltaDiscoveryResponse.resources`
//! (field 2, a `Resource`) are repeated fields; the bytes of one entry, key included, are the
//! same in every response that carries it, so the xDS server concatenates these instead of
//! encoding a message per stream (see `xds::wire`).

use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

pub(crate) fn field_bytes(out: &mut BytesMut, field: u32, value: &[u8]) {
    encode_key(field, WireType::LengthDelimited, out);
    encode_varint(value.len() as u64, out);
    out.put_slice(value);
}

pub(crate) fn field_len(field: u32, len: usize) -> usize {
    prost::encoding::key_len(field) + encoded_len_varint(len as u64) + len
}

/// The entry of a resource in `DiscoveryResponse.resources` (field 2).
pub(crate) fn sotw_entry(any: &Any) -> Bytes {
    let body = any.encode_to_vec();
    let mut out = BytesMut::with_capacity(field_len(2, body.len()));
    field_bytes(&mut out, 2, &body);
    out.freeze()
}

/// The entry of a resource in `DeltaDiscoveryResponse.resources` (field 2): a `Resource`
/// with its version (1), the `Any` (2) and its name (3).
pub(crate) fn delta_entry(name: &str, version: &str, any: &Any) -> Bytes {
    let any_bytes = any.encode_to_vec();
    let inner_len =
        field_len(1, version.len()) + field_len(2, any_bytes.len()) + field_len(3, name.len());
    let mut out = BytesMut::with_capacity(field_len(2, inner_len));
    encode_key(2, WireType::LengthDelimited, &mut out);
    encode_varint(inner_len as u64, &mut out);
    field_bytes(&mut out, 1, version.as_bytes());
    field_bytes(&mut out, 2, &any_bytes);
    field_bytes(&mut out, 3, name.as_bytes());
    out.freeze()
}
