//! What a web page in the operator's browser may do with the admin API: nothing.
//!
//! Without a token, the admin API trusts whoever can reach loopback, and a browser can: a
//! page on any site may send a POST (a "simple" cross-site request needs no preflight), and a
//! page on a name the attacker re-points at 127.0.0.1 (DNS rebinding) is even same-origin. So:
//! the `Host` must be one this server answers to (rebinding sends the attacker's name), a
//! change must not come from another origin, and a body must be `application/json` (which a
//! cross-site form cannot send).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::Body as _;

use super::AdminState;
use super::errors::error;

/// At most this many `--admin-allowed-host` values, each a DNS name of at most 253 bytes.
pub const MAX_ALLOWED_HOSTS: usize = 64;
const MAX_HOST_NAME: usize = 253;

/// The `Host` values the admin server answers to.
#[derive(Debug, Clone)]
pub struct Hosts {
    /// `--admin-allowed-host '*'`: no check (behind a proxy that rewrites `Host`, say).
    any: bool,
    /// Lower case, without a trailing dot.
    names: Vec<String>,
    listen: IpAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("--admin-allowed-host: at most {MAX_ALLOWED_HOSTS} values, got {0}")]
    TooMany(usize),
    #[error(
        "--admin-allowed-host {0:?}: not a host name (no port, scheme or path; at most {MAX_HOST_NAME} bytes)"
    )]
    Invalid(String),
}

impl Hosts {
    /// Loopback names and addresses, the listen address, and `allowed` (names or addresses;
    /// `*` for any). A server listening on every address (0.0.0.0, ::) answers to any IP
    /// literal: a rebinding page always sends a name.
    pub fn new(listen: SocketAddr, allowed: &[String]) -> Result<Hosts, HostsError> {
        if allowed.len() > MAX_ALLOWED_HOSTS {
            return Err(HostsError::TooMany(allowed.len()));
        }
        let mut hosts = Hosts {
            any: false,
            names: Vec::new(),
            listen: listen.ip(),
        };
        for a in allowed {
            if a == "*" {
                hosts.any = true;
                continue;
            }
            let name = normalise(a);
            let valid = !name.is_empty()
                && name.len() <= MAX_HOST_NAME
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
            if !valid || name.parse::<SocketAddr>().is_ok() {
                return Err(HostsError::Invalid(a.clone()));
            }
            hosts.names.push(name);
        }
        Ok(hosts)
    }

    /// Whether `host` (a `Host` header or `:authority`, port included) is one of ours.
    pub fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        let Some(name) = host_name(host) else {
            return false;
        };
        if let Ok(ip) = name.parse::<IpAddr>() {
            return ip.is_loopback()
                || ip == self.listen
                || self.listen.is_unspecified()
                || self.names.contains(&ip.to_string());
        }
        let name = normalise(&name);
        name == "localhost" || name.ends_with(".localhost") || self.names.contains(&name)
    }
}

/// Lower case, no trailing dot, an IPv6 address without its brackets.
fn normalise(name: &str) -> String {
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The host part of an authority: `name`, `name:port`, `[v6]`, `[v6]:port` (no user info).
fn host_name(authority: &str) -> Option<String> {
    let authority: axum::http::uri::Authority = authority.parse().ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some(host.to_string()).filter(|h| !h.is_empty())
}

fn safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Middleware in front of the whole admin router.
pub async fn guard(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        });
    let Some(host) = host.filter(|h| s.hosts.allows(h)) else {
        return error(
            StatusCode::FORBIDDEN,
            "this Host is not one the admin server answers to (loopback names, its listen \
             address, and --admin-allowed-host)",
        );
    };
    if safe(req.method()) {
        return next.run(req).await;
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let same = origin.to_str().is_ok_and(|o| {
            let o = o.to_ascii_lowercase();
            let host = host.to_ascii_lowercase();
            o.strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
                == Some(host.as_str())
        });
        if !same {
            return error(
                StatusCode::FORBIDDEN,
                "changes from another origin are refused (a web page may not call the admin API)",
            );
        }
    }
    let has_body = req.body().size_hint().upper() != Some(0);
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if has_body && !json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a request body must be sent as content-type: application/json",
        );
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(listen: &str, allowed: &[&str]) -> Hosts {
        let allowed: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        Hosts::new(listen.parse().unwrap(), &allowed).unwrap()
    }

    #[test]
    fn which_hosts_are_answered() {
        let loopback = hosts("127.0.0.1:18080", &[]);
        let public = hosts("10.0.0.5:18080", &["flotilla.internal"]);
        let everywhere = hosts("0.0.0.0:18080", &[]);
        let any = hosts("127.0.0.1:18080", &["*"]);
        for (hosts, host, allowed) in [
            (&loopback, "127.0.0.1:18080", true),
            (&loopback, "localhost", true),
            (&loopback, "LOCALHOST.:18080", true),
            (&loopback, "app.localhost:18080", true),
            (&loopback, "[::1]:18080", true),
            (&loopback, "127.0.0.2", true),
            (&loopback, "rebind.evil.example:18080", false),
            (&loopback, "localhost.evil.example", false),
            (&loopback, "10.0.0.5:18080", false),
            (&loopback, "user@localhost", false),
            (&loopback, "", false),
            (&loopback, "local host", false),
            (&public, "10.0.0.5:18080", true),
            (&public, "flotilla.internal:18080", true),
            (&public, "Flotilla.Internal", true),
            (&public, "flotilla.internal.evil.example", false),
            (&public, "10.0.0.6:18080", false),
            (&everywhere, "192.0.2.7:18080", true),
            (&everywhere, "[2001:db8::1]:18080", true),
            (&everywhere, "rebind.evil.example", false),
            (&any, "rebind.evil.example", true),
        ] {
            assert_eq!(hosts.allows(host), allowed, "{host} with {hosts:?}");
        }
    }

    #[test]
    fn allowed_hosts_are_names_within_limits() {
        let listen = "127.0.0.1:1".parse().unwrap();
        for bad in ["", "a b", "http://x", "x/y", "1.2.3.4:80", &"a".repeat(254)] {
            assert!(
                matches!(
                    Hosts::new(listen, &[bad.to_string()]),
                    Err(HostsError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        let many = vec!["x".to_string(); MAX_ALLOWED_HOSTS + 1];
        assert!(matches!(
            Hosts::new(listen, &many),
            Err(HostsError::TooMany(_))
        ));
        assert!(Hosts::new(listen, &["[::1]".to_string(), "192.0.2.1".to_string()]).is_ok());
    }
}
