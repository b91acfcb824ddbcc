//! Access loggers on HTTP connection managers and tcp_proxies: sink, format, and bytes that
//! stay the same however the format's map iterates.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::accesslog::v3::{AccessLog, access_log};
use envoy_types::pb::envoy::config::core::v3::substitution_format_string::Format;
use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::{
    FileAccessLog, file_access_log,
};
use envoy_types::pb::envoy::extensions::access_loggers::stream::v3::{
    StdoutAccessLog, stdout_access_log,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use envoy_types::pb::google::protobuf::{Struct, value};
use prost::Message;

use super::{HTTP_FORMAT, TCP_FORMAT};
use crate::config::parse_str;
use crate::envoy::pack_resource;
use crate::translate::{Overlay, Transport, translate};

const CONFIG: &str = r#"
version: 1
clusters:
  a: { endpoints: [127.0.0.1:9001] }
listeners:
  web: { address: 127.0.0.1:8080, access_log: stdout, routes: [ { to: a } ] }
  api:
    address: 127.0.0.1:8081
    access_log: { path: /var/log/envoy/api.json, format: { code: "%RESPONSE_CODE%", who: "%REQ(USER-AGENT):32%" } }
    routes: [ { to: a } ]
  db: { address: 127.0.0.1:5432, protocol: tcp, to: a, access_log: { path: /var/log/envoy/db.json } }
  quiet: { address: 127.0.0.1:8082, routes: [ { to: a } ] }
"#;

fn listeners() -> BTreeMap<String, Listener> {
    let config = parse_str("t.yaml", CONFIG).unwrap();
    translate(&config, &Overlay::default(), Transport::Ads).listeners
}

fn filter_config<M: Message + Default>(l: &Listener) -> M {
    let Some(filter::ConfigType::TypedConfig(any)) = &l.filter_chains[0].filters[0].config_type
    else {
        panic!("typed config expected");
    };
    M::decode(any.value.as_slice()).unwrap()
}

fn fields(format: &Struct) -> BTreeMap<String, String> {
    format
        .fields
        .iter()
        .map(|(k, v)| match &v.kind {
            Some(value::Kind::StringValue(s)) => (k.clone(), s.clone()),
            other => panic!("{k}: string expected, got {other:?}"),
        })
        .collect()
}

fn typed<M: Message + Default>(log: &AccessLog) -> M {
    let Some(access_log::ConfigType::TypedConfig(any)) = &log.config_type else {
        panic!("typed config expected");
    };
    M::decode(any.value.as_slice()).unwrap()
}

fn expected(default: &[(&str, &str)], listener: &str) -> BTreeMap<String, String> {
    default
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("listener".to_string(), listener.to_string())])
        .collect()
}

#[test]
fn stdout_gets_the_default_http_format_with_the_listener_name() {
    let hcm: HttpConnectionManager = filter_config(&listeners()["web"]);
    let [log] = hcm.access_log.as_slice() else {
        panic!("one access log: {:?}", hcm.access_log);
    };
    assert_eq!(log.name, "envoy.access_loggers.stdout");
    let stdout: StdoutAccessLog = typed(log);
    let Some(stdout_access_log::AccessLogFormat::LogFormat(f)) = stdout.access_log_format else {
        panic!("log_format expected");
    };
    let Some(Format::JsonFormat(json)) = f.format else {
        panic!("json_format expected");
    };
    assert_eq!(fields(&json), expected(HTTP_FORMAT, "web"));
}

#[test]
fn a_file_with_a_custom_format_logs_exactly_those_fields() {
    let hcm: HttpConnectionManager = filter_config(&listeners()["api"]);
    let [log] = hcm.access_log.as_slice() else {
        panic!("one access log");
    };
    assert_eq!(log.name, "envoy.access_loggers.file");
    let file: FileAccessLog = typed(log);
    assert_eq!(file.path, "/var/log/envoy/api.json");
    let Some(file_access_log::AccessLogFormat::LogFormat(f)) = file.access_log_format else {
        panic!("log_format expected");
    };
    let Some(Format::JsonFormat(json)) = f.format else {
        panic!("json_format expected");
    };
    assert_eq!(
        fields(&json),
        BTreeMap::from([
            ("code".to_string(), "%RESPONSE_CODE%".to_string()),
            ("who".to_string(), "%REQ(USER-AGENT):32%".to_string()),
        ])
    );
}

#[test]
fn tcp_listeners_log_connections_with_the_tcp_format() {
    let proxy: TcpProxy = filter_config(&listeners()["db"]);
    let [log] = proxy.access_log.as_slice() else {
        panic!("one access log");
    };
    let file: FileAccessLog = typed(log);
    assert_eq!(file.path, "/var/log/envoy/db.json");
    let Some(file_access_log::AccessLogFormat::LogFormat(f)) = file.access_log_format else {
        panic!("log_format expected");
    };
    let Some(Format::JsonFormat(json)) = f.format else {
        panic!("json_format expected");
    };
    assert_eq!(fields(&json), expected(TCP_FORMAT, "db"));
}

#[test]
fn no_access_log_unless_asked() {
    let hcm: HttpConnectionManager = filter_config(&listeners()["quiet"]);
    assert!(hcm.access_log.is_empty());
}

/// The default formats are held to the rules custom ones are.
#[test]
fn default_formats_pass_the_format_check() {
    for (format, tcp) in [(HTTP_FORMAT, false), (TCP_FORMAT, true)] {
        for (k, v) in format {
            assert_eq!(crate::config::check_access_log_value(v, tcp), Ok(()), "{k}");
        }
    }
}

/// A format is a protobuf map (a HashMap, iterated in a random order per instance): the
/// served bytes, hence the version, must not depend on it.
#[test]
fn listener_bytes_do_not_depend_on_map_order() {
    for name in ["web", "api", "db"] {
        let first = pack_resource(&listeners()[name]).value;
        for _ in 0..10 {
            assert_eq!(pack_resource(&listeners()[name]).value, first, "{name}");
        }
    }
}
