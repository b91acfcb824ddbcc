//! Per-route and per-host extras: header edits, the local rate limit, CORS and sticky
//! sessions, the last three as `typed_per_filter_config` for filters the listener carries.

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, RuntimeFractionalPercent, TypedExtensionConfig,
    header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use envoy_types::pb::envoy::extensions::filters::http::stateful_session::v3::{
    StatefulSession, StatefulSessionPerRoute, stateful_session_per_route,
};
use envoy_types::pb::envoy::extensions::http::stateful_session::cookie::v3::CookieBasedSessionState;
use envoy_types::pb::envoy::r#type::http::v3::Cookie;
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use envoy_types::pb::envoy::r#type::v3::{
    FractionalPercent, TokenBucket, fractional_percent::DenominatorType,
};
use envoy_types::pb::google::protobuf::BoolValue;

use super::super::{any, duration, u32_value};
use crate::config::model::{CookieSpec, Cors, HeaderEdit, RateLimit};

const COOKIE_SESSION_STATE: &str = "envoy.http.stateful_session.cookie";
/// The stat prefix of the local rate limit: `<listener>.http_local_rate_limit.rate_limited`.
pub(crate) const RATE_LIMIT_STAT_PREFIX: &str = "http_local_rate_limit";

/// (headers to add or set, headers to remove), in Envoy's shape.
pub(super) fn header_options(edit: &HeaderEdit) -> (Vec<HeaderValueOption>, Vec<String>) {
    let option = |(k, v): (&String, &String), action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.clone(),
            value: v.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    let add = edit
        .add
        .iter()
        .map(|h| option(h, HeaderAppendAction::AppendIfExistsOrAdd));
    let set = edit
        .set
        .iter()
        .map(|h| option(h, HeaderAppendAction::OverwriteIfExistsOrAdd));
    (add.chain(set).collect(), edit.remove.clone())
}

fn all_requests() -> RuntimeFractionalPercent {
    RuntimeFractionalPercent {
        default_value: Some(percent(100)),
        runtime_key: String::new(),
    }
}

pub(super) fn percent(p: u32) -> FractionalPercent {
    FractionalPercent {
        numerator: p,
        denominator: DenominatorType::Hundred as i32,
    }
}

/// A token bucket of `burst` tokens refilled with `requests_per_second` each second. Envoy
/// answers a request that finds the bucket empty with 429; `retry-after: 1` says when the next
/// refill comes.
pub(super) fn rate_limit(r: &RateLimit) -> LocalRateLimit {
    LocalRateLimit {
        stat_prefix: RATE_LIMIT_STAT_PREFIX.to_string(),
        token_bucket: Some(TokenBucket {
            max_tokens: r.burst,
            tokens_per_fill: Some(u32_value(r.requests_per_second)),
            fill_interval: Some(duration(std::time::Duration::from_secs(1))),
        }),
        filter_enabled: Some(all_requests()),
        filter_enforced: Some(all_requests()),
        response_headers_to_add: vec![HeaderValueOption {
            header: Some(HeaderValue {
                key: "retry-after".to_string(),
                value: "1".to_string(),
                ..Default::default()
            }),
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(super) fn cors(c: &Cors) -> CorsPolicy {
    CorsPolicy {
        allow_origin_string_match: c
            .allow_origins
            .iter()
            .map(|o| StringMatcher {
                match_pattern: Some(if o == "*" {
                    MatchPattern::Prefix(String::new())
                } else {
                    MatchPattern::Exact(o.clone())
                }),
                ignore_case: true,
            })
            .collect(),
        allow_methods: c.allow_methods.join(","),
        allow_headers: c.allow_headers.join(","),
        expose_headers: c.expose_headers.join(","),
        max_age: c
            .max_age
            .map(|d| d.as_secs().to_string())
            .unwrap_or_default(),
        allow_credentials: c.allow_credentials.then_some(BoolValue { value: true }),
        ..Default::default()
    }
}

pub(super) fn sticky_session(cookie: &CookieSpec, strict: bool) -> StatefulSessionPerRoute {
    let state = CookieBasedSessionState {
        cookie: Some(Cookie {
            name: cookie.name.clone(),
            ttl: Some(duration(cookie.ttl)),
            path: cookie.path.clone(),
            ..Default::default()
        }),
    };
    StatefulSessionPerRoute {
        r#override: Some(stateful_session_per_route::Override::StatefulSession(
            StatefulSession {
                session_state: Some(TypedExtensionConfig {
                    name: COOKIE_SESSION_STATE.to_string(),
                    typed_config: Some(any(&state)),
                }),
                strict,
                ..Default::default()
            },
        )),
    }
}
