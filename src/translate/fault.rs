//! `fault` on a route: Envoy's fault filter, present but inactive on the listener, switched on
//! by each route with its own delay and abort (`typed_per_filter_config`). Proxyless gRPC
//! clients run the same filter (gRFC A33): on their `api_listener` and per route, reading the
//! fixed delay, the HTTP or gRPC abort status and the percentages set here.

use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{
    FaultDelay, fault_delay::FaultDelaySecifier,
};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort::ErrorType,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};

use super::{any, duration};
use crate::config::model::{self, AbortStatus, Fault};

pub(super) const FAULT_FILTER: &str = "envoy.filters.http.fault";

/// The listener's fault filter, or `None` when no route injects faults. Its own config is
/// empty (no fault): only routes with `fault` inject any.
pub(super) fn filter(l: &model::Listener) -> Option<HttpFilter> {
    l.routes().any(|r| r.fault.is_some()).then(|| HttpFilter {
        name: FAULT_FILTER.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(
            &HttpFault::default(),
        ))),
        ..Default::default()
    })
}

/// A route's faults.
pub(super) fn per_route(f: &Fault) -> HttpFault {
    HttpFault {
        delay: f.delay.map(|d| FaultDelay {
            percentage: Some(percent(d.percent)),
            fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(duration(d.duration))),
        }),
        abort: f.abort.map(|a| FaultAbort {
            percentage: Some(percent(a.percent)),
            error_type: Some(match a.status {
                AbortStatus::Http(status) => ErrorType::HttpStatus(u32::from(status)),
                AbortStatus::Grpc(code) => ErrorType::GrpcStatus(code),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn percent(p: u32) -> FractionalPercent {
    FractionalPercent {
        numerator: p,
        denominator: DenominatorType::Hundred as i32,
    }
}
