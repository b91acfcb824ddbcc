//! The real Envoy accepts what flotilla renders and the bootstraps it writes.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{envoy, flotilla_bin, repo_root};

/// Every example config: single files and directories.
pub fn examples() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo_root().join("examples"))
        .expect("examples/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "yaml"))
        // Its certificates are generated, not committed: the TLS tests render a copy with
        // fresh ones (`tls::upstream::envoy_accepts_the_rendered_tls_example`).
        .filter(|p| !p.ends_with("tls.yaml"))
        .collect();
    out.sort();
    assert!(out.len() >= 6, "examples/ holds the documented examples");
    out
}

pub fn flotilla(args: &[&str]) -> String {
    let out = Command::new(flotilla_bin())
        .args(args)
        .output()
        .expect("run flotilla");
    assert!(
        out.status.success(),
        "flotilla {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

pub fn render(path: &Path, fleet: Option<&str>) -> Value {
    match fleet {
        Some(f) => render_with(path, &["--fleet", f]),
        None => render_with(path, &[]),
    }
}

/// `flotilla render PATH --format json` with `extra` arguments.
pub fn render_with(path: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "render",
        path.to_str().expect("utf-8 path"),
        "--format",
        "json",
    ];
    args.extend(extra);
    serde_json::from_str(&flotilla(&args)).expect("render prints JSON")
}

/// The fleets an example declares (read from rendering everything is not possible, so from
/// the files: any `fleets:` key names).
fn fleets_of(path: &Path) -> Vec<String> {
    let loaded = flotilla::config::load(path).expect("example is valid");
    loaded.config.fleets.keys().cloned().collect()
}

fn without_type(v: &Value) -> Value {
    let mut v = v.clone();
    v.as_object_mut().expect("resource object").remove("@type");
    v
}

/// A static bootstrap holding the rendered resources, with EDS and RDS inlined (a static
/// bootstrap cannot fetch them): clusters become STATIC with their load assignment, HTTP
/// connection managers carry their route configuration (TCP proxies need nothing inlined).
/// Clusters whose names Envoy resolves carry their endpoints already and stay as they are.
pub fn static_bootstrap(rendered: &Value) -> String {
    let endpoints = rendered["endpoints"].as_array().expect("endpoints");
    let routes = rendered["routes"].as_array().expect("routes");
    let clusters: Vec<Value> = rendered["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .map(|c| {
            let mut c = without_type(c);
            // A static cluster (a mesh sidecar's app) carries its endpoints already; Envoy
            // resolves the names of others (`resolve: envoy`, a JWKS URL's host): as sent.
            if c.get("load_assignment").is_some() {
                return c;
            }
            let name = c["name"].clone();
            let cla = endpoints
                .iter()
                .find(|e| e["cluster_name"] == name)
                .expect("every cluster has endpoints");
            let obj = c.as_object_mut().expect("object");
            obj.remove("eds_cluster_config");
            obj.insert("type".into(), json!("STATIC"));
            obj.insert("load_assignment".into(), without_type(cla));
            c
        })
        .collect();
    let listeners: Vec<Value> = rendered["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .map(|l| {
            let mut l = without_type(l);
            let inline = |hcm: &mut Value| {
                let hcm = hcm.as_object_mut().expect("hcm");
                // Mesh listeners carry their one route inline.
                if hcm.contains_key("route_config") {
                    return;
                }
                let rds = hcm.remove("rds").expect("hcm uses rds");
                let route = routes
                    .iter()
                    .find(|r| r["name"] == rds["route_config_name"])
                    .expect("route config exists");
                hcm.insert("route_config".into(), without_type(route));
            };
            // A proxyless gRPC listener: Envoy's server build has no api_listener extension
            // (it ignores one sent over LDS), so its connection manager and routes are checked
            // on a regular listener instead.
            if let Some(mut api) = l.as_object_mut().and_then(|o| o.remove("api_listener")) {
                let mut hcm = api["api_listener"].take();
                inline(&mut hcm);
                l["address"] =
                    json!({ "socket_address": { "address": "127.0.0.1", "port_value": 0 } });
                l["filter_chains"] = json!([{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm,
                }] }]);
                return l;
            }
            for chain in l["filter_chains"].as_array_mut().expect("filter chains") {
                for filter in chain["filters"].as_array_mut().expect("filters") {
                    // tcp_proxy filters name their cluster directly: nothing to inline.
                    if filter["name"] != "envoy.filters.network.http_connection_manager" {
                        continue;
                    }
                    inline(&mut filter["typed_config"]);
                }
            }
            l
        })
        .collect();
    let mut listeners = Value::Array(listeners);
    local_log_files(&mut listeners);
    serde_json::to_string_pretty(&json!({
        "static_resources": { "clusters": clusters, "listeners": listeners }
    }))
    .expect("json")
}

/// [`static_bootstrap`] with the rendered Secrets as static secrets (named, not fetched over
/// SDS), each private key read from the `.key` file beside its certificate: render shows a
/// placeholder instead of the key.
pub fn static_bootstrap_with_secrets(rendered: &Value, certs: &Path) -> String {
    let mut bootstrap: Value =
        serde_json::from_str(&static_bootstrap(rendered)).expect("bootstrap json");
    let secrets: Vec<Value> = rendered["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .map(|s| {
            let mut s = without_type(s);
            let name = s["name"].as_str().expect("name").to_string();
            if let Some(key) = s.pointer_mut("/tls_certificate/private_key") {
                let cert = Path::new(name.trim_start_matches("cert:"));
                let stem = cert.file_stem().expect("stem").to_str().expect("utf-8");
                *key = json!({ "filename": certs.join(format!("{stem}.key")) });
            }
            s
        })
        .collect();
    strip_sds_config(&mut bootstrap);
    bootstrap["static_resources"]["secrets"] = Value::Array(secrets);
    serde_json::to_string_pretty(&bootstrap).expect("json")
}

fn strip_sds_config(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.remove("sds_config");
            o.values_mut().for_each(strip_sds_config);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_sds_config),
        _ => {}
    }
}

/// Access log files are paths on the Envoy's host, which Envoy opens while validating: here
/// they become /dev/null, so examples can name /var/log/envoy/... without it existing.
fn local_log_files(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if o.get("@type").and_then(Value::as_str)
                == Some("type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog")
            {
                o.insert("path".into(), json!("/dev/null"));
            }
            o.values_mut().for_each(local_log_files);
        }
        Value::Array(a) => a.iter_mut().for_each(local_log_files),
        _ => {}
    }
}

#[test]
fn envoy_accepts_every_rendered_example() {
    // The mesh's listeners and clusters take their certificates from SDS over ADS, which a
    // static bootstrap cannot carry (Envoy's validate mode crashes on it): real sidecars
    // accept them in `mesh::` (e2e), which serves this very shape.
    for example in examples().into_iter().filter(|e| !e.ends_with("mesh.yaml")) {
        let mut fleets: Vec<Option<String>> = vec![None];
        fleets.extend(fleets_of(&example).into_iter().map(Some));
        for fleet in fleets {
            let rendered = render(&example, fleet.as_deref());
            assert!(
                !rendered["clusters"]
                    .as_array()
                    .expect("clusters")
                    .is_empty(),
                "{} renders clusters",
                example.display()
            );
            if let Err(e) = envoy::validate(&static_bootstrap(&rendered)) {
                panic!("{} (fleet {fleet:?}): {e}", example.display());
            }
        }
    }
}

#[test]
fn envoy_accepts_the_bootstraps_flotilla_writes() {
    for (delta, no_ads) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut args = vec![
            "bootstrap",
            "--node-id",
            "edge-1",
            "--fleet",
            "edge",
            "--admin-port",
            "0",
        ];
        if delta {
            args.push("--delta");
        }
        if no_ads {
            args.push("--no-ads");
        }
        let yaml = flotilla(&args);
        let parsed: Value = serde_yaml_ng::from_str(&yaml).expect("bootstrap is YAML");
        let api_type = if delta { "DELTA_GRPC" } else { "GRPC" };
        if no_ads {
            assert!(parsed["dynamic_resources"].get("ads_config").is_none());
            assert_eq!(
                parsed["dynamic_resources"]["cds_config"]["api_config_source"]["api_type"],
                api_type
            );
        } else {
            assert_eq!(
                parsed["dynamic_resources"]["ads_config"]["api_type"],
                api_type
            );
            assert!(parsed["dynamic_resources"]["lds_config"]["ads"].is_object());
        }
        assert_eq!(parsed["node"]["cluster"], "edge");
        if let Err(e) = envoy::validate(&yaml) {
            panic!("bootstrap (delta={delta}, no_ads={no_ads}):\n{yaml}\n{e}");
        }
    }
    // A DNS name for flotilla makes the xDS cluster STRICT_DNS.
    let yaml = flotilla(&[
        "bootstrap",
        "--node-id",
        "n",
        "--xds",
        "flotilla.internal:18000",
    ]);
    assert!(yaml.contains("STRICT_DNS"), "{yaml}");
    envoy::validate(&yaml).expect("envoy accepts a DNS xDS address");
}

/// `validate` with the same confinement flags as `serve`: a key outside the config directory
/// and an access log outside /var/log/envoy/ fail, and pass once the flags name their
/// directories.
#[test]
fn validate_confines_keys_and_access_logs_to_the_directories_the_flags_name() {
    let root = tempfile::tempdir().expect("dir");
    let (conf, keys, logs) = (
        root.path().join("conf"),
        root.path().join("keys"),
        root.path().join("logs"),
    );
    for d in [&conf, &keys, &logs] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let pki = crate::support::pki::certs_dir::CertsDir::new();
    std::fs::copy(pki.path("server.pem"), conf.join("a.pem")).expect("cert");
    std::fs::copy(pki.path("server.key"), keys.join("a.key")).expect("key");
    let config = conf.join("flotilla.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1
clusters:
  web: {{ endpoints: [127.0.0.1:1] }}
listeners:
  public:
    address: 127.0.0.1:8443
    tls: {{ certificates: [{{ cert: a.pem, key: {key} }}] }}
    access_log: {{ path: {log} }}
    hosts: {{ site: {{ domains: [\"*\"], routes: [{{ to: web }}] }} }}
",
            key = keys.join("a.key").display(),
            log = logs.join("public.json").display(),
        ),
    )
    .expect("write");
    let run = |extra: &[&str]| {
        std::process::Command::new(crate::support::flotilla_bin())
            .arg("validate")
            .arg(&config)
            .args(extra)
            .output()
            .expect("flotilla validate")
    };
    let refused = run(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("outside the config's directory and every --secrets-dir"),
        "{stderr}"
    );
    assert!(
        stderr.contains("access logs are written under /var/log/envoy/"),
        "{stderr}"
    );
    let accepted = run(&[
        "--secrets-dir",
        keys.to_str().expect("utf-8"),
        "--access-log-dir",
        logs.to_str().expect("utf-8"),
    ]);
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
}
