//! etcd, the store several replicas share their runtime state through (`serve --store
//! etcd://…`): drains and weight overrides as keys under a prefix, registrations as keys
//! bound to etcd leases.
//!
//! The client is generated from etcd's own v3 API (`proto/etcd/`, compiled by build.rs with
//! protox like flotilla's own API, so that no `protoc` is needed); `client` wraps the few
//! calls flotilla makes, each with a deadline, so that an etcd that is down answers an admin
//! call with an error in seconds rather than never.

mod client;
mod metrics;
mod url;

pub use client::{CALL_TIMEOUT, Client, EtcdError, Op, Watch};
pub use metrics::StoreMetrics;

/// The flags naming the TLS files towards etcd (named like etcdctl's `--cacert`, `--cert`,
/// `--key`), read by [`crate::tls::ClientPem::load_flags`].
pub const STORE_TLS_FLAGS: crate::tls::ClientTlsFlags = crate::tls::ClientTlsFlags {
    ca: "--store-cacert",
    cert: "--store-cert",
    key: "--store-key",
};
pub use url::{DEFAULT_PREFIX, MAX_ENDPOINTS, StoreUrl, UrlError};

/// Code generated from `proto/etcd/` by build.rs.
#[allow(unreachable_pub, clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    pub mod authpb {
        tonic::include_proto!("authpb");
    }
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}

/// The end of the key range holding every key that starts with `prefix` (etcd's
/// `range_end` convention: the prefix with its last byte incremented).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every key: etcd reads "\0" as "no upper bound".
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/flotilla/"), b"/flotilla0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }
}
