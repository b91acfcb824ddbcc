//! Envoy's own formats: packing protos into `Any`, proto3 JSON (the form of `/config_dump`),
//! the bootstrap that points an Envoy at flotilla, and the xDS config sources that lead back
//! to it (`xds_source`).

pub mod bootstrap;
pub mod canonical;
pub mod iptables;
pub mod json;
pub mod transparent;
pub mod xds_source;
pub mod xds_tls;
pub mod yaml;

use std::net::SocketAddr;

use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use envoy_types::pb::google::protobuf::Any;

/// Packs a message into an `Any` without consuming it.
pub fn pack<T: prost::Name>(message: &T) -> Any {
    Any {
        type_url: T::type_url(),
        value: message.encode_to_vec(),
    }
}

/// Packs a resource served over xDS: like [`pack`], with its map entries in a fixed order, so
/// that equal resources always have equal bytes and so the same version ([`canonical`]).
pub fn pack_resource<T: prost::Name>(message: &T) -> Any {
    Any {
        type_url: T::type_url(),
        value: canonical::encode(&T::full_name(), message.encode_to_vec()),
    }
}

/// A protobuf duration (millisecond precision is all flotilla's durations carry).
pub fn duration(d: std::time::Duration) -> envoy_types::pb::google::protobuf::Duration {
    envoy_types::pb::google::protobuf::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// An Envoy TCP socket address.
pub fn socket_address(addr: SocketAddr) -> Address {
    named_address(&addr.ip().to_string(), addr.port())
}

/// An Envoy TCP address by IP or host name (host names for STRICT_DNS clusters).
pub fn named_address(host: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: host.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}
