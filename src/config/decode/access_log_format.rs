//! Envoy command operators in a custom access-log `format` value (`%REQ(:METHOD)%`,
//! `%START_TIME(%s.%3f)%`, `%REQ(USER-AGENT):64%`), checked by flotilla: Envoy refuses a whole
//! listener for one unknown operator, so a typo would otherwise be a NACK from every Envoy of
//! the fleet instead of a `path:line:col` error that keeps the last good config.

/// Fields a custom format may hold.
pub const MAX_FORMAT_FIELDS: usize = 64;
/// Bytes in a field name.
pub const MAX_FIELD_NAME: usize = 128;
/// Bytes in a field's value.
pub const MAX_FORMAT_VALUE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Args {
    None,
    Optional,
    Required,
    /// `X` or `X?Y`: a header, or another header when the first is absent.
    Headers,
    /// `KEY` or `KEY:PLAIN` / `KEY:TYPED`.
    FilterState,
}

/// What an operator logs on a TCP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Any,
    /// HTTP only: Envoy logs `-` (or 0) for it on a connection.
    Http,
}

use Args as A;
use Scope::{Any, Http};

/// The operators Envoy 1.40 accepts, with the arguments each takes (`tests/e2e/access_log.rs`
/// pushes every one of them through `envoy --mode validate`). Others Envoy has (`%CEL%`,
/// `%METADATA%`, `%COMMON_DURATION%`) take arguments flotilla cannot check, so they are refused.
const OPERATORS: &[(&str, Args, Scope)] = &[
    ("ACCESS_LOG_TYPE", A::None, Any),
    ("BYTES_RECEIVED", A::None, Any),
    ("BYTES_SENT", A::None, Any),
    ("CLUSTER_METADATA", A::Required, Http),
    ("CONNECTION_ID", A::None, Any),
    ("CONNECTION_TERMINATION_DETAILS", A::None, Any),
    ("CUSTOM_FLAGS", A::None, Any),
    ("DOWNSTREAM_DIRECT_LOCAL_ADDRESS", A::None, Any),
    ("DOWNSTREAM_DIRECT_LOCAL_PORT", A::None, Any),
    ("DOWNSTREAM_DIRECT_REMOTE_ADDRESS", A::None, Any),
    ("DOWNSTREAM_DIRECT_REMOTE_PORT", A::None, Any),
    ("DOWNSTREAM_HANDSHAKE_DURATION", A::None, Any),
    ("DOWNSTREAM_HEADER_BYTES_RECEIVED", A::None, Http),
    ("DOWNSTREAM_HEADER_BYTES_SENT", A::None, Http),
    ("DOWNSTREAM_LOCAL_ADDRESS", A::None, Any),
    ("DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", A::Optional, Any),
    ("DOWNSTREAM_LOCAL_PORT", A::None, Any),
    ("DOWNSTREAM_LOCAL_SUBJECT", A::None, Any),
    ("DOWNSTREAM_LOCAL_URI_SAN", A::None, Any),
    ("DOWNSTREAM_PEER_CERT", A::None, Any),
    ("DOWNSTREAM_PEER_CERT_V_END", A::Optional, Any),
    ("DOWNSTREAM_PEER_CERT_V_START", A::Optional, Any),
    ("DOWNSTREAM_PEER_FINGERPRINT_1", A::None, Any),
    ("DOWNSTREAM_PEER_FINGERPRINT_256", A::None, Any),
    ("DOWNSTREAM_PEER_ISSUER", A::None, Any),
    ("DOWNSTREAM_PEER_SERIAL", A::None, Any),
    ("DOWNSTREAM_PEER_SUBJECT", A::None, Any),
    ("DOWNSTREAM_PEER_URI_SAN", A::None, Any),
    ("DOWNSTREAM_REMOTE_ADDRESS", A::None, Any),
    ("DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", A::Optional, Any),
    ("DOWNSTREAM_REMOTE_PORT", A::None, Any),
    ("DOWNSTREAM_TLS_CIPHER", A::None, Any),
    ("DOWNSTREAM_TLS_SESSION_ID", A::None, Any),
    ("DOWNSTREAM_TLS_VERSION", A::None, Any),
    ("DOWNSTREAM_TRANSPORT_FAILURE_REASON", A::None, Any),
    ("DOWNSTREAM_WIRE_BYTES_RECEIVED", A::None, Any),
    ("DOWNSTREAM_WIRE_BYTES_SENT", A::None, Any),
    ("DURATION", A::None, Any),
    ("DYNAMIC_METADATA", A::Required, Http),
    ("EMIT_TIME", A::Optional, Any),
    ("ENVIRONMENT", A::Required, Any),
    ("FILTER_CHAIN_NAME", A::None, Any),
    ("FILTER_STATE", A::FilterState, Any),
    ("GRPC_STATUS", A::None, Http),
    ("GRPC_STATUS_NUMBER", A::None, Http),
    ("HOSTNAME", A::None, Any),
    ("LOCAL_REPLY_BODY", A::None, Http),
    ("PATH", A::None, Http),
    ("PROTOCOL", A::None, Http),
    ("QUERY_PARAM", A::Required, Http),
    ("REQ", A::Headers, Http),
    ("REQUESTED_SERVER_NAME", A::None, Any),
    ("REQUEST_DURATION", A::None, Http),
    ("REQUEST_HEADER", A::Headers, Http),
    ("REQUEST_HEADERS_BYTES", A::None, Http),
    ("REQUEST_TX_DURATION", A::None, Http),
    ("RESP", A::Headers, Http),
    ("RESPONSE_CODE", A::None, Http),
    ("RESPONSE_CODE_DETAILS", A::Optional, Http),
    ("RESPONSE_DURATION", A::None, Http),
    ("RESPONSE_FLAGS", A::None, Any),
    ("RESPONSE_FLAGS_LONG", A::None, Any),
    ("RESPONSE_HEADER", A::Headers, Http),
    ("RESPONSE_HEADERS_BYTES", A::None, Http),
    ("RESPONSE_TRAILER", A::Headers, Http),
    ("RESPONSE_TRAILERS_BYTES", A::None, Http),
    ("RESPONSE_TX_DURATION", A::None, Http),
    ("ROUNDTRIP_DURATION", A::None, Any),
    ("ROUTE_NAME", A::None, Any),
    ("START_TIME", A::Optional, Any),
    ("STREAM_ID", A::None, Any),
    ("TRACE_ID", A::None, Http),
    ("TRAILER", A::Headers, Http),
    ("UNIQUE_ID", A::None, Any),
    ("UPSTREAM_CLUSTER", A::None, Any),
    ("UPSTREAM_CLUSTER_RAW", A::None, Any),
    ("UPSTREAM_CONNECTION_ID", A::None, Any),
    ("UPSTREAM_CONNECTION_POOL_READY_DURATION", A::None, Any),
    ("UPSTREAM_HEADER_BYTES_RECEIVED", A::None, Http),
    ("UPSTREAM_HEADER_BYTES_SENT", A::None, Http),
    ("UPSTREAM_HOST", A::None, Any),
    ("UPSTREAM_HOST_NAME", A::None, Any),
    ("UPSTREAM_HOST_NAME_WITHOUT_PORT", A::None, Any),
    ("UPSTREAM_LOCAL_ADDRESS", A::None, Any),
    ("UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", A::Optional, Any),
    ("UPSTREAM_LOCAL_PORT", A::None, Any),
    ("UPSTREAM_METADATA", A::Required, Any),
    ("UPSTREAM_PEER_CERT", A::None, Any),
    ("UPSTREAM_PEER_CERT_V_END", A::Optional, Any),
    ("UPSTREAM_PEER_CERT_V_START", A::Optional, Any),
    ("UPSTREAM_PEER_ISSUER", A::None, Any),
    ("UPSTREAM_PEER_SUBJECT", A::None, Any),
    ("UPSTREAM_PROTOCOL", A::None, Http),
    ("UPSTREAM_REMOTE_ADDRESS", A::None, Any),
    ("UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", A::Optional, Any),
    ("UPSTREAM_REMOTE_PORT", A::None, Any),
    ("UPSTREAM_REQUEST_ATTEMPT_COUNT", A::None, Any),
    ("UPSTREAM_TLS_CIPHER", A::None, Any),
    ("UPSTREAM_TLS_SESSION_ID", A::None, Any),
    ("UPSTREAM_TLS_VERSION", A::None, Any),
    ("UPSTREAM_TRANSPORT_FAILURE_REASON", A::None, Http),
    ("UPSTREAM_WIRE_BYTES_RECEIVED", A::None, Any),
    ("UPSTREAM_WIRE_BYTES_SENT", A::None, Any),
    ("VIRTUAL_CLUSTER_NAME", A::None, Http),
];

/// Every operator flotilla accepts, each written with an argument where it needs one: what the
/// end-to-end test hands to Envoy to show the list and Envoy agree.
pub fn sample_operators() -> Vec<String> {
    OPERATORS
        .iter()
        .map(|(name, args, _)| match args {
            A::None | A::Optional => format!("%{name}%"),
            A::Required => format!("%{name}(x)%"),
            A::Headers => format!("%{name}(x-a?x-b):16%"),
            A::FilterState => format!("%{name}(x:PLAIN)%"),
        })
        .collect()
}

/// Checks one format value: plain text with command operators, `%%` for a literal `%`.
/// `tcp`: the listener forwards connections, so HTTP-only operators are refused.
pub fn check(value: &str, tcp: bool) -> Result<(), String> {
    let mut rest = value;
    while let Some(at) = rest.find('%') {
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('%') {
            rest = after;
            continue;
        }
        rest = operator(rest, tcp)?;
    }
    Ok(())
}

/// Reads one operator after its opening `%`; returns what follows its closing `%`.
fn operator(text: &str, tcp: bool) -> Result<&str, String> {
    let name_len = text
        .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .unwrap_or(text.len());
    let name = &text[..name_len];
    if name.is_empty() {
        return Err(
            "`%` starts a command operator such as `%START_TIME%`; write `%%` for a literal `%`"
                .to_string(),
        );
    }
    let mut rest = &text[name_len..];
    let mut arg = None;
    if let Some(open) = rest.strip_prefix('(') {
        let close = open
            .find(')')
            .ok_or_else(|| format!("`%{name}(` has no closing `)`"))?;
        arg = Some(&open[..close]);
        rest = &open[close + 1..];
    }
    if let Some(limit) = rest.strip_prefix(':') {
        let digits = limit
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(limit.len());
        if digits == 0 || digits > 6 {
            return Err(format!("`%{name}…:` takes a length limit of 1 to 6 digits"));
        }
        rest = &limit[digits..];
    }
    let rest = rest
        .strip_prefix('%')
        .ok_or_else(|| format!("`%{name}` is not closed by `%`"))?;
    let Some((_, args, scope)) = OPERATORS.iter().find(|(n, _, _)| *n == name) else {
        return Err(unknown(name));
    };
    if tcp && *scope == Http {
        return Err(format!(
            "`%{name}%` describes HTTP requests: a connection logs `-` for it"
        ));
    }
    check_arg(name, *args, arg)?;
    Ok(rest)
}

fn check_arg(name: &str, args: Args, arg: Option<&str>) -> Result<(), String> {
    match (args, arg) {
        (A::None, Some(_)) => Err(format!("`%{name}%` takes no argument")),
        (A::None | A::Optional, None) | (A::Optional, Some(_)) => Ok(()),
        (_, None) | (_, Some("")) => Err(format!("`%{name}(…)%` needs an argument")),
        (A::Required, Some(_)) => Ok(()),
        (A::Headers, Some(a)) => {
            let names: Vec<&str> = a.split('?').collect();
            if names.len() > 2 || !names.iter().all(|h| is_header_name(h)) {
                return Err(format!(
                    "`%{name}({a})%`: expected a header name, or two as `X?Y`"
                ));
            }
            Ok(())
        }
        (A::FilterState, Some(a)) => match a.split_once(':') {
            Some((key, "PLAIN" | "TYPED")) if !key.is_empty() => Ok(()),
            None => Ok(()),
            _ => Err(format!(
                "`%{name}({a})%`: expected KEY, KEY:PLAIN or KEY:TYPED"
            )),
        },
    }
}

/// Header names as HTTP defines them, and Envoy's pseudo-headers (`:authority`, `:path`).
fn is_header_name(h: &str) -> bool {
    let bare = h.strip_prefix(':').unwrap_or(h);
    !bare.is_empty()
        && bare
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!#$&'*+^`|~".contains(&b))
}

fn unknown(name: &str) -> String {
    let closest = OPERATORS
        .iter()
        .map(|(n, _, _)| (strsim::levenshtein(name, n), *n))
        .filter(|(d, _)| *d <= 3)
        .min();
    match closest {
        Some((_, n)) => format!("unknown command operator `%{name}%` (did you mean `%{n}%`?)"),
        None => format!(
            "unknown command operator `%{name}%` (see Envoy's access log command operators; docs/guides/access-logs.md lists those flotilla accepts)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_are_listed_in_name_order_once() {
        let names: Vec<&str> = OPERATORS.iter().map(|(n, _, _)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn values_envoy_accepts_pass() {
        for ok in [
            "%START_TIME%",
            "%START_TIME(%s.%3f)%",
            "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
            "%REQ(USER-AGENT):64%",
            "plain text",
            "100%% sure",
            "%DURATION%ms",
            "%FILTER_STATE(k:TYPED)%",
            "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
            "%DYNAMIC_METADATA(envoy.lb:canary)%",
        ] {
            assert_eq!(check(ok, false), Ok(()), "{ok}");
        }
    }

    /// One rule per case: what Envoy would refuse (or log as `-`) is an error naming it.
    #[test]
    fn mistakes_are_refused_with_a_reason() {
        let cases = [
            ("%RESPONSE_COD%", false, "did you mean `%RESPONSE_CODE%`"),
            ("%WHATEVER_THIS_IS%", false, "unknown command operator"),
            ("50%", false, "write `%%` for a literal"),
            ("%DURATION", false, "is not closed by `%`"),
            ("%REQ%", false, "needs an argument"),
            ("%REQ()%", false, "needs an argument"),
            ("%REQ(a?b?c)%", false, "two as `X?Y`"),
            ("%REQ(user agent)%", false, "header name"),
            ("%REQ(a", false, "no closing `)`"),
            ("%PROTOCOL(x)%", false, "takes no argument"),
            ("%REQ(a):%", false, "length limit"),
            ("%FILTER_STATE(k:BAD)%", false, "KEY:PLAIN"),
            ("%lower%", false, "starts a command operator"),
            ("%RESPONSE_CODE%", true, "describes HTTP requests"),
            ("%REQ(:PATH)%", true, "describes HTTP requests"),
        ];
        for (value, tcp, why) in cases {
            let err = check(value, tcp).expect_err(value);
            assert!(err.contains(why), "{value}: {err}");
        }
    }

    #[test]
    fn the_samples_pass_their_own_check() {
        for op in sample_operators() {
            assert_eq!(check(&op, false), Ok(()), "{op}");
        }
    }

    proptest::proptest! {
        /// Any text without `%` is a literal; checking never panics on any input.
        #[test]
        fn literals_pass_and_nothing_panics(text in "[^%]{0,40}", any in ".{0,40}") {
            proptest::prop_assert_eq!(check(&text, false), Ok(()));
            let _ = check(&any, true);
        }
    }
}
