//! Where a listener's Envoy writes one JSON line per request (HTTP) or per connection (TCP).

use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLog {
    pub sink: AccessLogSink,
    /// JSON field name → Envoy command operator string (`%RESPONSE_CODE%`), in name order.
    /// `None`: the default format for the listener's protocol (see `translate::access_log`).
    pub format: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogSink {
    /// Envoy's standard output: what container platforms collect.
    Stdout,
    /// An absolute path on the Envoy's host, opened (and created) by Envoy.
    File(PathBuf),
}
