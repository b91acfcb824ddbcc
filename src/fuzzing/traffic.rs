//! The stats sink and the load reports: protobuf from any Envoy (or anything claiming to be
//! one), decoded and aggregated into the traffic view.

use envoy_types::pb::envoy::service::load_stats::v3::LoadStatsRequest;
use envoy_types::pb::envoy::service::metrics::v3::StreamMetricsMessage;
use prost::Message;

use crate::traffic::{TrafficAggregate, cluster_reports, endpoint_reports};

/// One stats flush, read as the sink reads it and aggregated twice (counters become deltas
/// against the first).
pub fn stats_flush(data: &[u8]) {
    let Ok(message) = StreamMetricsMessage::decode(data) else {
        return;
    };
    let traffic = TrafficAggregate::new(Default::default());
    let reporter = traffic.reporter("fuzz", "fuzz", true);
    for _ in 0..2 {
        for report in cluster_reports(&message.envoy_metrics) {
            let _ = traffic.cluster_report(reporter, report);
        }
    }
    view(&traffic);
    traffic.reporter_gone(reporter);
}

/// One load report, read as the LRS service reads it and aggregated.
pub fn load_report(data: &[u8]) {
    let Ok(request) = LoadStatsRequest::decode(data) else {
        return;
    };
    let traffic = TrafficAggregate::new(Default::default());
    let reporter = traffic.reporter("fuzz", "fuzz", false);
    let _ = traffic.endpoint_reports(
        reporter,
        endpoint_reports(&request, crate::traffic::window::MAX_COUNT),
    );
    view(&traffic);
}

fn view(traffic: &TrafficAggregate) {
    let view = traffic.view(10);
    serde_json::to_vec(&view).expect("the traffic view serialises");
}
