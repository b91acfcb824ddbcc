//! Access logs written by real Envoy: requests and connections go through, and the JSON lines
//! Envoy writes to the configured files are read back and checked field by field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::backend::Backend;
use crate::support::envoy::{self, Envoy, Xds};
use crate::support::flotilla::Flotilla;
use crate::support::tcp::{TcpEcho, exchange};
use crate::support::{free_addr, wait};
use crate::validate::{render_with, static_bootstrap};

/// The JSON lines in `path` once there are at least `n` of them.
async fn lines(path: &Path, n: usize) -> Vec<Value> {
    wait::until(
        &format!("{n} access log lines in {}", path.display()),
        Duration::from_secs(15),
        || async {
            let text = std::fs::read_to_string(path).ok()?;
            let lines: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
                .collect();
            (lines.len() >= n).then_some(lines)
        },
    )
    .await
}

/// A line's field names, sorted (serde_json keeps objects sorted).
fn keys(line: &Value) -> Vec<String> {
    line.as_object()
        .expect("a JSON object per line")
        .keys()
        .cloned()
        .collect()
}

/// A default format's field names plus the `listener` it adds, sorted.
fn default_keys(format: &[(&str, &str)]) -> Vec<String> {
    let mut k: Vec<String> = format.iter().map(|(k, _)| k.to_string()).collect();
    k.push("listener".to_string());
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_writes_json_lines_for_requests_and_connections() {
    let web = Backend::start("web").await;
    let db = TcpEcho::start("db").await;
    let logs = tempfile::tempdir().expect("log dir");
    let file = |n: &str| -> PathBuf { logs.path().join(n) };
    let (http, custom, tcp) = (free_addr(), free_addr(), free_addr());
    let yaml = format!(
        "version: 1
clusters:
  web: {{ endpoints: [{web}] }}
  db: {{ endpoints: [{db}] }}
listeners:
  public:
    address: {http}
    access_log: {{ path: {public_log} }}
    routes: [ {{ match: {{ prefix: /hello }}, to: web }} ]
  custom:
    address: {custom}
    access_log:
      path: {custom_log}
      format: {{ code: \"%RESPONSE_CODE%\", agent: \"%REQ(USER-AGENT):8%\", site: shop, took: \"%DURATION%ms\" }}
    routes: [ {{ to: web }} ]
  postgres:
    address: {tcp}
    protocol: tcp
    to: db
    access_log: {{ path: {tcp_log} }}
",
        web = web.address(),
        db = db.address(),
        public_log = file("public.json").display(),
        custom_log = file("custom.json").display(),
        tcp_log = file("postgres.json").display(),
    );
    let log_dir = logs.path().to_str().expect("utf-8");
    let flotilla = Flotilla::start_args(&yaml, &["--access-log-dir", log_dir]).await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Delta).await;
    for addr in [http, custom, tcp] {
        envoy.wait_listener(addr).await;
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    // HTTP: a routed request, then one no route matches.
    let r = client
        .post(format!("http://{http}/hello/world?x=1"))
        .body("ping=1")
        .header("host", "shop.example.com")
        .header("user-agent", "flotilla-e2e/1.0")
        .header("x-request-id", "req-0001")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    // An edge Envoy replaces a client's x-request-id with its own: the one the backend saw.
    let request_id = r
        .headers()
        .get("seen-x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_ne!(request_id, "req-0001");
    let body_len = r.bytes().await.expect("body").len() as u64;
    let r = client
        .get(format!("http://{http}/nowhere"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    let public = lines(&file("public.json"), 2).await;
    let defaults = default_keys(flotilla::translate::DEFAULT_HTTP_ACCESS_LOG);
    let hit = &public[0];
    assert_eq!(keys(hit), defaults, "{hit}");
    assert_eq!(hit["method"], "POST");
    assert_eq!(hit["path"], "/hello/world?x=1");
    assert_eq!(hit["authority"], "shop.example.com");
    assert_eq!(hit["protocol"], "HTTP/1.1");
    assert_eq!(hit["response_code"], 200, "typed JSON: a number");
    assert_eq!(hit["response_flags"], "-");
    assert_eq!(hit["response_code_details"], "via_upstream");
    assert_eq!(hit["bytes_received"], 6);
    assert_eq!(hit["bytes_sent"], body_len);
    assert!(hit["duration"].is_u64(), "{hit}");
    assert_eq!(hit["upstream_cluster"], "web");
    assert_eq!(hit["upstream_host"], web.address());
    assert_eq!(hit["request_id"], request_id.as_str());
    assert_eq!(hit["user_agent"], "flotilla-e2e/1.0");
    assert_eq!(hit["listener"], "public");
    assert!(
        hit["downstream_remote_address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{hit}"
    );
    assert!(
        hit["start_time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{hit}"
    );
    let miss = &public[1];
    assert_eq!(miss["method"], "GET");
    assert_eq!(miss["response_code"], 404);
    assert_eq!(miss["response_flags"], "NR", "no route: {miss}");
    assert!(
        miss["upstream_cluster"].is_null(),
        "unset values are null: {miss}"
    );

    // A custom format: exactly its fields, operators and literal text.
    let r = client
        .get(format!("http://{custom}/"))
        .header("user-agent", "curl/8.5.0-long")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let line = &lines(&file("custom.json"), 1).await[0];
    assert_eq!(keys(line), ["agent", "code", "site", "took"], "{line}");
    assert_eq!(line["code"], 200);
    assert_eq!(line["agent"], "curl/8.5", "truncated to 8 characters");
    assert_eq!(line["site"], "shop");
    assert!(
        line["took"].as_str().is_some_and(|t| t.ends_with("ms")),
        "{line}"
    );

    // TCP: one line per connection, written when it closes; no HTTP fields.
    let reply = exchange(tcp, "SELECT 1;\n")
        .await
        .expect("echo through Envoy");
    assert_eq!(reply, "db:SELECT 1;\n");
    // Envoy also logged the connections `wait_listener` opened and closed without a byte.
    let line = wait::until(
        "the connection that carried bytes in the log",
        Duration::from_secs(15),
        || async {
            let text = std::fs::read_to_string(file("postgres.json")).ok()?;
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
                .find(|l| l["bytes_received"] != 0)
        },
    )
    .await;
    let defaults = default_keys(flotilla::translate::DEFAULT_TCP_ACCESS_LOG);
    assert_eq!(keys(&line), defaults, "{line}");
    assert_eq!(line["upstream_cluster"], "db");
    assert_eq!(line["upstream_host"], db.address());
    assert_eq!(line["bytes_received"], 10);
    assert_eq!(line["bytes_sent"], reply.len());
    assert_eq!(line["listener"], "postgres");
    assert_eq!(line["response_flags"], "-");
}

/// Every command operator flotilla accepts is one Envoy 1.40 accepts: a listener logging all
/// of them passes `envoy --mode validate`.
#[test]
fn envoy_accepts_every_operator_flotilla_accepts() {
    let operators = flotilla::config::sample_operators();
    let chunks: Vec<String> = operators
        .chunks(flotilla::config::MAX_FORMAT_FIELDS)
        .enumerate()
        .map(|(i, ops)| {
            let fields: Vec<String> = ops
                .iter()
                .enumerate()
                .map(|(j, op)| format!("f{j}: {}", json!(op)))
                .collect();
            format!(
                "  l{i}:\n    address: 127.0.0.1:{}\n    access_log: {{ path: /dev/null, format: {{ {} }} }}\n    routes: [ {{ to: a }} ]\n",
                20000 + i,
                fields.join(", ")
            )
        })
        .collect();
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("all.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nclusters:\n  a: {{ endpoints: [127.0.0.1:1] }}\nlisteners:\n{}",
            chunks.concat()
        ),
    )
    .expect("write config");
    let rendered = render_with(&config, &["--access-log-dir", "/dev"]);
    if let Err(e) = envoy::validate(&static_bootstrap(&rendered)) {
        panic!("{} operators: {e}", operators.len());
    }
}

/// A format with a mistake is refused with its place and Envoy keeps logging with the last good
/// one; a corrected format reaches Envoy and changes the lines it writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_format_keeps_the_last_good_one() {
    let web = Backend::start("web").await;
    let logs = tempfile::tempdir().expect("log dir");
    let log = logs.path().join("l.json");
    let addr = free_addr();
    let config = |format: &str| {
        format!(
            "version: 1
clusters:
  web: {{ endpoints: [{}] }}
listeners:
  l:
    address: {addr}
    access_log: {{ path: {}, format: {{ {format} }} }}
    routes: [ {{ to: web }} ]
",
            web.address(),
            log.display()
        )
    };
    let log_dir = logs.path().to_str().expect("utf-8");
    let flotilla = Flotilla::start_args(
        &config("code: \"%RESPONSE_CODE%\""),
        &["--access-log-dir", log_dir],
    )
    .await;
    let envoy = Envoy::start(&flotilla, "edge-1", "edge", Xds::Sotw).await;
    envoy.wait_listener(addr).await;
    // A fresh connection per request: a listener update drains the old ones.
    let get = || async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let r = client
            .get(format!("http://{addr}/"))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
    };
    get().await;
    assert_eq!(keys(&lines(&log, 1).await[0]), ["code"]);

    flotilla.write_config(&config("code: \"%RESPONSE_COD%\""));
    let error = wait::until("the refusal", Duration::from_secs(10), || async {
        let state = flotilla.json("/api/v1/state").await;
        let errors = &state["config"]["last_reload"]["errors"];
        errors.get(0).map(ToString::to_string)
    })
    .await;
    assert!(
        error.contains("flotilla.yaml:7:65: listeners.l.access_log.format.code:"),
        "{error}"
    );
    assert!(error.contains("did you mean `%RESPONSE_CODE%`"), "{error}");
    get().await;
    let written = lines(&log, 2).await;
    assert_eq!(keys(&written[1]), ["code"], "the last good format");
    assert_eq!(written[1]["code"], 200);

    flotilla.write_config(&config("status: \"%RESPONSE_CODE%\", via: edge"));
    let line = wait::until(
        "a line in the new format",
        Duration::from_secs(15),
        || async {
            get().await;
            let text = std::fs::read_to_string(&log).ok()?;
            let last: Value = serde_json::from_str(text.lines().last()?).ok()?;
            last.get("status").is_some().then_some(last)
        },
    )
    .await;
    assert_eq!(keys(&line), ["status", "via"]);
    assert_eq!(line["via"], "edge");
}
