//! What an edge listener does besides routing: who may pass (`auth`: JWT or an external
//! authorization service), which requests are traced (`tracing`), and which routes fail on
//! purpose for resilience tests (`fault`). Envoy does all of it; flotilla only says what.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `auth` on a listener, a host or a route. The nearest one wins: a route's own, else its
/// host's, else its listener's.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// `auth: none`: this route (or host) is exempt from what its listener requires.
    None,
    Jwt(Jwt),
    External(ExternalAuth),
}

/// `auth: { jwt: {...} }`: requests need a bearer token signed by one of the JWKS's keys,
/// from `issuer`, for one of `audiences`, not expired.
#[derive(Debug, Clone, PartialEq)]
pub struct Jwt {
    pub issuer: String,
    /// Empty: any audience.
    pub audiences: Vec<String>,
    pub jwks: Jwks,
    /// Claim name → request header the backend receives it in.
    pub claims_to_headers: BTreeMap<String, String>,
}

/// Where the verification keys come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Jwks {
    /// A file beside the YAML, read (and checked) at every load and watched like
    /// certificates: a rotation reaches Envoy inline in the listener.
    File { path: PathBuf, json: String },
    /// An https URL Envoy fetches itself (and caches), through a cluster flotilla makes.
    Remote(RemoteJwks),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub url: String,
    pub host: String,
    pub port: u16,
    /// The roots the JWKS server's certificate must chain to (`jwks_ca`; default the
    /// system's), for the URL's host.
    pub ca: super::TrustedCa,
    /// How long Envoy keeps the keys before fetching them again (`jwks_cache`).
    pub cache: Duration,
}

impl RemoteJwks {
    /// The name of the cluster flotilla makes for Envoy to fetch the keys through: one per
    /// server and trusted CA (two providers of one server share it). A `jwks_ca` file is
    /// named by a short digest of its Secret name, not the name itself: that is the file's
    /// absolute path, which would land in every Envoy stat of the cluster. The digest is of
    /// the name, not the content, so that rotating the CA's certificates does not re-create
    /// the cluster.
    pub fn cluster_name(&self) -> String {
        match &self.ca {
            super::TrustedCa::System => format!("jwks:{}:{}", self.host, self.port),
            super::TrustedCa::Secret(ca) => {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(ca.as_bytes());
                let short = hex::encode(&digest[..4]);
                format!("jwks:{}:{}:ca-{short}", self.host, self.port)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::TrustedCa;

    fn remote(ca: TrustedCa) -> RemoteJwks {
        RemoteJwks {
            url: "https://login.example.com:8443/keys".into(),
            host: "login.example.com".into(),
            port: 8443,
            ca,
            cache: Duration::from_secs(300),
        }
    }

    #[test]
    fn a_jwks_cluster_is_named_by_host_port_and_a_short_stable_digest_of_its_ca() {
        let secret = |path: &str| TrustedCa::Secret(format!("ca:{path}"));
        assert_eq!(
            remote(TrustedCa::System).cluster_name(),
            "jwks:login.example.com:8443"
        );
        let name = remote(secret("/etc/flotilla/certs/idp-ca.pem")).cluster_name();
        let (prefix, digest) = name.rsplit_once(":ca-").expect(&name);
        assert_eq!(prefix, "jwks:login.example.com:8443");
        assert_eq!(digest.len(), 8, "{name}");
        assert!(digest.chars().all(|c| c.is_ascii_hexdigit()), "{name}");
        assert!(!name.contains('/'), "no path in the name: {name}");
        assert_eq!(
            name,
            remote(secret("/etc/flotilla/certs/idp-ca.pem")).cluster_name(),
            "stable"
        );
        assert_ne!(
            name,
            remote(secret("/etc/flotilla/certs/other-ca.pem")).cluster_name(),
            "another CA, another cluster"
        );
    }
}

/// `auth: { external: {...} }`: Envoy asks a service (Envoy's ext_authz protocol) whether
/// each request may pass.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalAuth {
    pub cluster: String,
    pub protocol: AuthProtocol,
    pub timeout: Duration,
    /// What happens when the service cannot be asked (down, timed out): `failure: allow`
    /// lets the request pass, `deny` (the default) answers 403.
    pub failure_allow: bool,
    /// Request headers sent to the service besides Envoy's defaults (Host, Method, Path,
    /// Content-Length, Authorization); lower case.
    pub headers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthProtocol {
    /// The service answers a copy of the request's headers with 200 (allow) or anything
    /// else (deny, passed back to the client with its status, headers and body).
    Http,
    /// envoy.service.auth.v3.Authorization/Check.
    Grpc,
}

/// `listeners.<name>.tracing`: Envoy's OpenTelemetry tracer, exporting spans over OTLP/gRPC to
/// a collector cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    pub collector: String,
    /// Share of requests traced, 0–100 (a request that arrives with a sampled `traceparent`
    /// is traced anyway).
    pub sampling: f64,
    /// The service name spans carry (default: the listener's name).
    pub service_name: String,
}

/// `fault` on a route: delays and aborts injected by Envoy, for resilience testing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fault {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultDelay {
    pub duration: Duration,
    /// 1–100: share of requests delayed.
    pub percent: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultAbort {
    pub status: AbortStatus,
    /// 1–100: share of requests answered with `status`.
    pub percent: u32,
}

/// What an aborted request is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortStatus {
    /// `status`: an HTTP status (gRPC clients map it to a gRPC status, gRFC A33).
    Http(u16),
    /// `grpc_status`: a gRPC status code (1–16) in a trailers-only gRPC answer.
    Grpc(u32),
}
