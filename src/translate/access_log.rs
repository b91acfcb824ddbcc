//! A listener's `access_log` as Envoy access loggers: the stdout or file logger with a
//! `json_format`, one JSON object per line, on the HTTP connection manager (one line per
//! request) or the tcp_proxy (one line per connection).

use envoy_types::pb::envoy::config::accesslog::v3::{AccessLog, access_log};
use envoy_types::pb::envoy::config::core::v3::{
    SubstitutionFormatString, substitution_format_string,
};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::{
    FileAccessLog, file_access_log,
};
use envoy_types::pb::envoy::extensions::access_loggers::stream::v3::{
    StdoutAccessLog, stdout_access_log,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value};

use super::any;
use crate::config::model::{self, AccessLogSink};

const STDOUT_LOGGER: &str = "envoy.access_loggers.stdout";
const FILE_LOGGER: &str = "envoy.access_loggers.file";

/// One line per request: Envoy's default text format as JSON fields (names as in Envoy's own
/// JSON examples), plus what an operator filters on (cluster, client address, details). The
/// `listener` field is the listener's name, so several listeners can share stdout.
pub const HTTP_FORMAT: &[(&str, &str)] = &[
    ("authority", "%REQ(:AUTHORITY)%"),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("duration", "%DURATION%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("start_time", "%START_TIME%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
];

/// One line per connection: no HTTP fields (Envoy would log `-` for them), the TLS server
/// name for passthrough listeners, and why the connection ended.
pub const TCP_FORMAT: &[(&str, &str)] = &[
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("duration", "%DURATION%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("start_time", "%START_TIME%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
];

/// The listener's access loggers (none or one); `tcp` picks the default format.
pub(super) fn access_logs(l: &model::Listener, tcp: bool) -> Vec<AccessLog> {
    let Some(log) = &l.access_log else {
        return Vec::new();
    };
    let fields: Vec<(String, String)> = match &log.format {
        Some(custom) => custom.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        None => {
            let default = if tcp { TCP_FORMAT } else { HTTP_FORMAT };
            default
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .chain([("listener".to_string(), l.name.clone())])
                .collect()
        }
    };
    let format = SubstitutionFormatString {
        format: Some(substitution_format_string::Format::JsonFormat(Struct {
            fields: fields
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        Value {
                            kind: Some(value::Kind::StringValue(v)),
                        },
                    )
                })
                .collect(),
        })),
        ..Default::default()
    };
    let (name, config) = match &log.sink {
        AccessLogSink::Stdout => (
            STDOUT_LOGGER,
            any(&StdoutAccessLog {
                access_log_format: Some(stdout_access_log::AccessLogFormat::LogFormat(format)),
            }),
        ),
        AccessLogSink::File(path) => (
            FILE_LOGGER,
            any(&FileAccessLog {
                path: path.to_string_lossy().into_owned(),
                access_log_format: Some(file_access_log::AccessLogFormat::LogFormat(format)),
            }),
        ),
    };
    vec![AccessLog {
        name: name.to_string(),
        filter: None,
        config_type: Some(access_log::ConfigType::TypedConfig(config)),
    }]
}

#[cfg(test)]
#[path = "access_log_tests.rs"]
mod tests;
