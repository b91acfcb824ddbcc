//! `RouteMatch`: path, headers, query parameters and methods.

use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, RouteMatch, header_matcher::HeaderMatchSpecifier,
    query_parameter_matcher::QueryParameterMatchSpecifier, route_match::PathSpecifier,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    RegexMatcher, StringMatcher, string_matcher::MatchPattern,
};

use crate::config::model::{self, HeaderRule, PathMatch};

pub(super) fn route_match(m: &model::RouteMatch) -> RouteMatch {
    let mut headers: Vec<HeaderMatcher> =
        m.headers.iter().map(|h| header(&h.name, &h.rule)).collect();
    // Envoy matches methods as the `:method` pseudo-header.
    match m.methods.as_slice() {
        [] => {}
        [one] => headers.push(header(":method", &HeaderRule::Exact(one.clone()))),
        many => headers.push(header(
            ":method",
            &HeaderRule::Regex(format!("^({})$", many.join("|"))),
        )),
    }
    RouteMatch {
        path_specifier: Some(match &m.path {
            PathMatch::Prefix(p) => PathSpecifier::Prefix(p.clone()),
            PathMatch::Exact(p) => PathSpecifier::Path(p.clone()),
            PathMatch::Regex(r) => PathSpecifier::SafeRegex(regex(r)),
        }),
        headers,
        query_parameters: m
            .query
            .iter()
            .map(|q| QueryParameterMatcher {
                name: q.name.clone(),
                query_parameter_match_specifier: Some(match &q.rule {
                    // decode only lets `present: true` through for query parameters.
                    HeaderRule::Present(p) => QueryParameterMatchSpecifier::PresentMatch(*p),
                    rule => QueryParameterMatchSpecifier::StringMatch(string_matcher(rule)),
                }),
            })
            .collect(),
        ..Default::default()
    }
}

fn header(name: &str, rule: &HeaderRule) -> HeaderMatcher {
    // `present_match: false` matches when the header is absent.
    let specifier = match rule {
        HeaderRule::Present(present) => HeaderMatchSpecifier::PresentMatch(*present),
        rule => HeaderMatchSpecifier::StringMatch(string_matcher(rule)),
    };
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(specifier),
        ..Default::default()
    }
}

fn string_matcher(rule: &HeaderRule) -> StringMatcher {
    let pattern = match rule {
        HeaderRule::Exact(v) => MatchPattern::Exact(v.clone()),
        HeaderRule::Prefix(v) => MatchPattern::Prefix(v.clone()),
        HeaderRule::Suffix(v) => MatchPattern::Suffix(v.clone()),
        HeaderRule::Contains(v) => MatchPattern::Contains(v.clone()),
        HeaderRule::Regex(r) => MatchPattern::SafeRegex(regex(r)),
        HeaderRule::Present(_) => MatchPattern::Prefix(String::new()),
    };
    StringMatcher {
        match_pattern: Some(pattern),
        ignore_case: false,
    }
}

pub(super) fn regex(r: &str) -> RegexMatcher {
    RegexMatcher {
        regex: r.to_string(),
        ..Default::default()
    }
}
