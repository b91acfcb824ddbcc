//! Hostname endpoints: `endpoints: [db.internal:5432]`.
//!
//! flotilla resolves each name itself (unless the cluster says `resolve: envoy`) and turns
//! every address into an endpoint in the overlay, so it is health-checked, weighted and
//! drained like a configured one and reaches Envoy over EDS through the endpoint fast path.
//! Resolution runs in its own task ([`Dns::run`]) and never holds up a reload: only a name
//! the served config does not have yet is looked up while a reload is checked (bounded by
//! [`ADMIT_TIMEOUT`]), so that a name that does not exist is refused with its place in the
//! file. When a later lookup fails, the last good addresses stay.
//!
//! Layout: [`answer`] turns DNS answers into bounded address sets (a parser input, fuzzed),
//! [`names`] is the pure schedule (TTLs, retries, last good), [`lookup`] the resolver seam
//! (hickory-resolver, or a fake in tests), [`resolver`] the task that feeds the overlay.

pub mod answer;
pub mod lookup;
pub mod names;
mod resolver;

use std::time::Duration;

pub use answer::Answer;
pub use lookup::{HickoryLookup, Lookup, LookupError};
pub use resolver::{Dns, DnsMetrics};

/// The shortest a name's addresses are kept before asking again, whatever its TTL (a TTL of 0
/// would otherwise mean a query per tick).
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// The longest: a name with a TTL of a day is still re-checked every five minutes.
pub const MAX_TTL: Duration = Duration::from_secs(300);
/// Addresses kept per name (the lowest, in order): a name answering with hundreds of records
/// would otherwise make as many endpoints and health checks.
pub const MAX_ADDRESSES: usize = 64;
/// How long one lookup may take before it counts as failed.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long checking a reload may wait for names the served config does not have yet.
pub const ADMIT_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest wait before retrying a failed lookup (1 s, 2 s, 4 s ... up to this).
pub const MAX_RETRY: Duration = Duration::from_secs(30);
/// Lookups in flight at once.
pub const CONCURRENT_LOOKUPS: usize = 16;

/// `host:port` where host is a DNS name. `Ok(None)`: not name-shaped at all (an IP address,
/// or something mistyped as one), so the IP address error applies; `Err`: a name, but not a
/// valid one. Names are lowercased and lose a trailing dot.
pub fn parse_host_port(text: &str) -> Result<Option<(String, u16)>, String> {
    let Some((host, port)) = text.rsplit_once(':') else {
        return Ok(None);
    };
    if host.contains(':')
        || host.starts_with('[')
        || host.chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        return Ok(None);
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("`{port}` is not a port number (1..=65535)"))?;
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let bad = |why: &str| Err(format!("`{host}` is not a valid DNS name: {why}"));
    if name.is_empty() || name.len() > 253 {
        return bad("1 to 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("each dot-separated label has 1 to 63 characters");
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad("letters, digits, hyphens and dots only");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label cannot start or end with a hyphen");
        }
    }
    Ok(Some((name, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercased_without_the_trailing_dot() {
        assert_eq!(
            parse_host_port("DB.Internal.:5432"),
            Ok(Some(("db.internal".to_string(), 5432)))
        );
        assert_eq!(
            parse_host_port("localhost:80"),
            Ok(Some(("localhost".to_string(), 80)))
        );
    }

    #[test]
    fn addresses_and_near_addresses_are_not_names() {
        for text in [
            "127.0.0.1:80",
            "300.1.1.1:80",
            "[::1]:80",
            "::1:80",
            "nocolon",
        ] {
            assert_eq!(parse_host_port(text), Ok(None), "{text}");
        }
    }

    #[test]
    fn bad_names_and_ports_are_errors() {
        for (text, why) in [
            ("db.internal:0", "not a port"),
            ("db.internal:99999", "not a port"),
            ("db..internal:80", "1 to 63"),
            ("-db.internal:80", "hyphen"),
            ("db internal:80", "letters, digits"),
            (&format!("{}.example:80", "a".repeat(64)), "1 to 63"),
        ] {
            let e = parse_host_port(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
