use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{json_schema, objects};
use crate::config::reader::seen;
use crate::config::{load, parse_str};

/// Uses every table of the schema at least once, and is valid for the decoder.
const EVERY_TABLE: &str = r#"
version: 1
allow_empty: false
defaults:
  connect_timeout: 2s
  timeout: 15s
  health_check: { interval: 2s, timeout: 1s }
  outlier_detection: { consecutive_5xx: off, base_ejection_time: 5s }
  circuit_breakers: { max_retries: 10 }
  retries: { attempts: 2, on: [connect-failure, reset], previous_hosts: true, per_try_timeout: 1s }
clusters:
  api:
    policy: least_request
    endpoints: [127.0.0.1:8081, { address: "[::1]:8082", weight: 3, zone: a, priority: 0 }]
    upstream_protocol: http2
    health_check:
      http: { path: /healthz, host: api.local, expected_statuses: [200, "300-399"], body_contains: ok, headers: { x-probe: 1 } }
      jitter: 100ms
      healthy_threshold: 3
      unhealthy_threshold: 2
    circuit_breakers: { max_connections: 100, max_pending_requests: 10, max_requests: 100 }
    panic_threshold: 20
    registrations: { max: 50, allow_addresses: [169.254.0.0/16], from: [workers] }
  hashed:
    endpoints: [127.0.0.1:8083]
    health_check: { tcp: { send: PING, expect: PONG } }
    affinity: { cookie: { name: fl, ttl: 1h, path: / } }
  sticky:
    endpoints: [127.0.0.1:8084]
    health_check: { grpc: { service: "", authority: api } }
    affinity: { sticky_cookie: { name: st, strict: true } }
    outlier_detection: false
listeners:
  public:
    address: 127.0.0.1:10000
    access_log: { path: /var/log/envoy/public.json, format: { status: "%RESPONSE_CODE%" } }
    hosts:
      site:
        domains: [example.com]
        headers: { response: { remove: [server] } }
        routes:
          - match: { prefix: /old/ }
            redirect: { scheme: https, host: example.org, port: 8443, prefix: /new/, code: 308 }
          - match: { path: /down }
            direct_response: { status: 503, body: back soon }
          - match:
              regex: "^/r/.*"
              headers: { x-user: { prefix: a }, x-env: prod }
              query: { debug: { present: true } }
              methods: [GET, head]
            to: api
            timeout: 5s
            retries: false
            rewrite: { regex: { pattern: "^/r/(.*)", substitution: "/\\1" }, auto_host: true }
            headers: { request: { add: { x-a: "1" }, set: { x-b: two } } }
            rate_limit: { requests_per_second: 100, burst: 200 }
            mirror: { to: hashed, percent: 10 }
            websocket: true
            cors: { allow_origins: ["*"], allow_methods: [GET], allow_headers: [x-a], expose_headers: [x-b], max_age: 1h, allow_credentials: false }
          - split: { api: 90, sticky: 10 }
            rewrite: { prefix: /, host: web.internal }
            auth: { external: { cluster: api, protocol: http, timeout: 200ms, failure: deny, headers: [x-tenant] } }
            fault: { delay: { duration: 10ms, percent: 1 }, abort: { status: 503, percent: 1 } }
  tcp:
    address: 127.0.0.1:15432
    protocol: tcp
    to: api
    access_log: stdout
fleets:
  edge: { listeners: [public, tcp] }
mesh:
  trust_domain: flotilla.local
  certificate_ttl: 24h
  default: deny
  services:
    payments: { port: 9090, protocol: http }
    orders: { port: 8080, calls: { payments: 15101 } }
  allow:
    - { from: orders, to: payments, methods: [POST], paths: [/charge] }
"#;

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&json_schema()).expect("a valid JSON Schema")
}

fn yaml_to_json(text: &str) -> Value {
    serde_yaml_ng::from_str(text).expect("YAML")
}

fn schema_errors(text: &str) -> Vec<String> {
    validator()
        .iter_errors(&yaml_to_json(text))
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files = Vec::new();
    let mut dirs = vec![dir];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).expect("examples/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_schema_is_valid_draft_2020_12() {
    let schema = json_schema();
    assert!(jsonschema::meta::is_valid(&schema));
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["required"], serde_json::json!(["version"]));
}

#[test]
fn every_example_validates_against_the_schema() {
    let files = example_files();
    assert!(files.len() >= 9, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read example");
        let errors = schema_errors(&text);
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
    }
}

#[test]
fn a_typo_and_a_wrong_enum_value_fail_both_the_schema_and_the_decoder() {
    let good = "version: 1\nclusters:\n  api:\n    policy: least_request\n    endpoints: [127.0.0.1:8081]\n";
    assert!(schema_errors(good).is_empty());
    assert!(parse_str("t.yaml", good).is_ok());
    for (bad, why) in [
        (good.replace("policy:", "polcy:"), "polcy"),
        (
            good.replace("least_request", "least_requests"),
            "least_requests",
        ),
        (good.replace("version: 1", "version: 2"), "version"),
        (
            format!("{good}    panic_threshold: 101\n"),
            "panic_threshold",
        ),
        (
            format!("{good}    upstream_protocol: http3\n"),
            "upstream_protocol",
        ),
        (format!("{good}    connect_timeout: 5\n"), "connect_timeout"),
    ] {
        let errors = schema_errors(&bad);
        assert!(!errors.is_empty(), "the schema accepts {why}:\n{bad}");
        let decoded = parse_str("t.yaml", &bad).expect_err(why);
        assert!(decoded.to_string().contains(why), "{why}: {decoded}");
    }
}

#[test]
fn the_decoder_reads_exactly_the_tables_the_schema_is_made_of() {
    seen::take();
    parse_str("every.yaml", EVERY_TABLE).expect("the kitchen-sink config is valid");
    for file in example_files() {
        let _ = load(&file);
    }
    let read: BTreeSet<&str> = seen::take().into_keys().collect();
    let schema: BTreeSet<&str> = objects().into_keys().collect();
    assert_eq!(
        read, schema,
        "tables the decoder reads (left) and tables in the schema (right) differ"
    );
    let errors = schema_errors(EVERY_TABLE);
    assert!(errors.is_empty(), "{errors:#?}");
}

/// A table defined in a decoder but reachable from neither the schema nor the kitchen-sink
/// config would escape the test above; counting the definitions closes that gap.
#[test]
fn every_table_defined_in_the_decoder_is_in_the_schema() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/decode");
    let mut defined = 0;
    for entry in std::fs::read_dir(dir).expect("src/config/decode") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
        defined += text.matches(": Object = ").count();
    }
    assert_eq!(defined, objects().len());
}

#[test]
fn enums_and_bounds_come_from_the_decoder_s_tables() {
    let schema = json_schema();
    let cluster = &schema["$defs"]["cluster"]["properties"];
    let policies: Vec<&str> = cluster["policy"]["enum"]
        .as_array()
        .expect("policy enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(policies, crate::config::model::Policy::NAMES);
    let weight = &schema["$defs"]["endpoint"]["properties"]["weight"];
    assert_eq!(weight["maximum"], crate::config::MAX_WEIGHT);
    assert_eq!(weight["minimum"], 1);
    let retry_on = &schema["$defs"]["retries"]["properties"]["on"]["items"]["enum"];
    assert_eq!(
        retry_on.as_array().expect("retry conditions").len(),
        crate::config::RETRY_ON.len()
    );
}

/// `schema/flotilla.schema.json` is what the examples' modelines point editors at; it must be
/// what `flotilla schema` prints (`UPDATE_GOLDEN=1` rewrites it).
#[test]
fn the_committed_schema_is_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/flotilla.schema.json");
    let generated = serde_json::to_string_pretty(&json_schema()).expect("JSON") + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("schema/")).expect("mkdir schema/");
        std::fs::write(&path, &generated).expect("write schema");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} differs from `flotilla schema`: run with UPDATE_GOLDEN=1",
        path.display()
    );
}

#[test]
fn every_example_points_its_editor_at_the_committed_schema() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for file in example_files() {
        let text = std::fs::read_to_string(&file).expect("read example");
        let first = text.lines().next().unwrap_or_default();
        let target = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{}: no modeline on line 1", file.display()));
        let schema = file.parent().expect("dir").join(target);
        assert!(
            schema.canonicalize().ok()
                == examples
                    .join("../schema/flotilla.schema.json")
                    .canonicalize()
                    .ok(),
            "{}: {target} is not schema/flotilla.schema.json",
            file.display()
        );
    }
}
