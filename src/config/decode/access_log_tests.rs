//! `access_log` on listeners: what decodes, and every mistake at once with its place.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::model::{AccessLog, AccessLogSink};
use crate::config::{Diagnostics, parse_str};

fn errors(yaml: &str) -> Vec<String> {
    match parse_str("t.yaml", yaml) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(Diagnostics(d)) => d.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn stdout_files_and_custom_formats_decode() {
    let c = parse_str(
        "t.yaml",
        "version: 1
clusters:
  a: { endpoints: [127.0.0.1:1] }
listeners:
  web: { address: 127.0.0.1:5, access_log: stdout, routes: [ { to: a } ] }
  api:
    address: 127.0.0.1:6
    access_log: { path: /var/log/envoy/api.json, format: { code: \"%RESPONSE_CODE%\", t: \"%START_TIME(%s)%\" } }
    routes: [ { to: a } ]
  db: { address: 127.0.0.1:7, protocol: tcp, to: a, access_log: { path: stdout } }
  quiet: { address: 127.0.0.1:8, routes: [ { to: a } ] }
",
    )
    .unwrap();
    assert_eq!(
        c.listeners["web"].access_log,
        Some(AccessLog {
            sink: AccessLogSink::Stdout,
            format: None
        })
    );
    let format = BTreeMap::from([
        ("code".to_string(), "%RESPONSE_CODE%".to_string()),
        ("t".to_string(), "%START_TIME(%s)%".to_string()),
    ]);
    assert_eq!(
        c.listeners["api"].access_log,
        Some(AccessLog {
            sink: AccessLogSink::File(PathBuf::from("/var/log/envoy/api.json")),
            format: Some(format)
        })
    );
    assert_eq!(
        c.listeners["db"].access_log.as_ref().map(|l| &l.sink),
        Some(&AccessLogSink::Stdout)
    );
    assert_eq!(c.listeners["quiet"].access_log, None);
}

#[test]
fn access_log_mistakes_are_all_reported_with_their_place() {
    let many: Vec<String> = (0..65).map(|i| format!("f{i}: \"%DURATION%\"")).collect();
    let e = errors(&format!(
        "version: 1
clusters:
  a: {{ endpoints: [127.0.0.1:1] }}
listeners:
  l1: {{ address: 127.0.0.1:5, access_log: stderr, routes: [ {{ to: a }} ] }}
  l2: {{ address: 127.0.0.1:6, access_log: {{ path: logs/a.json }}, routes: [ {{ to: a }} ] }}
  l3: {{ address: 127.0.0.1:7, access_log: {{ format: {{ a: \"%DURATION%\" }} }}, routes: [ {{ to: a }} ] }}
  l4:
    address: 127.0.0.1:8
    access_log: {{ path: stdout, format: {{ a: \"%RESPONSE_COD%\", b: \"\", c: \"50%\" }}, colour: red }}
    routes: [ {{ to: a }} ]
  l5: {{ address: 127.0.0.1:9, protocol: tcp, to: a, access_log: {{ path: stdout, format: {{ m: \"%REQ(:METHOD)%\" }} }} }}
  l6: {{ proxyless_grpc: true, access_log: stdout, routes: [ {{ to: a }} ] }}
  l7: {{ address: 127.0.0.1:10, access_log: {{ path: stdout, format: {{ {} }} }}, routes: [ {{ to: a }} ] }}
  l8: {{ address: 127.0.0.1:11, access_log: {{ path: stdout, format: {{}} }}, routes: [ {{ to: a }} ] }}
",
        many.join(", ")
    ));
    let expected = [
        "t.yaml:5:43: listeners.l1.access_log: `stderr`: expected `stdout` or an absolute file path",
        "t.yaml:6:51: listeners.l2.access_log.path: `logs/a.json`: expected `stdout` or an absolute file path",
        "t.yaml:7:43: listeners.l3.access_log: missing field `path`",
        "t.yaml:10:46: listeners.l4.access_log.format.a: unknown command operator `%RESPONSE_COD%` (did you mean `%RESPONSE_CODE%`?)",
        "t.yaml:10:67: listeners.l4.access_log.format.b: must not be empty",
        "t.yaml:10:74: listeners.l4.access_log.format.c: `%` starts a command operator",
        "t.yaml:10:83: listeners.l4.access_log.colour: unknown field `colour`",
        "t.yaml:12:94: listeners.l5.access_log.format.m: `%REQ%` describes HTTP requests",
        "t.yaml:13:43: listeners.l6.access_log: gRPC clients have no Envoy to write an access log",
        "t.yaml:14:68: listeners.l7.access_log.format: 65 fields: a format has 1 to 64",
        "t.yaml:15:68: listeners.l8.access_log.format: 0 fields: a format has 1 to 64",
    ];
    for want in expected {
        assert!(
            e.iter()
                .any(|got| got.starts_with(want) || got.contains(want)),
            "missing {want:?} in {e:#?}"
        );
    }
    assert_eq!(e.len(), expected.len(), "{e:#?}");
}

fn with_path(path: &str) -> String {
    format!(
        "version: 1
clusters:
  a: {{ endpoints: [127.0.0.1:1] }}
listeners:
  l: {{ address: 127.0.0.1:5, access_log: {{ path: {path} }}, routes: [ {{ to: a }} ] }}
"
    )
}

#[test]
fn access_log_paths_outside_the_allowed_directories_are_refused() {
    for path in [
        "/etc/passwd",
        "/dev/sda",
        "/proc/sysrq-trigger",
        "/var/log/envoy/../../../etc/shadow",
        "\"/var/log/envoy/a\\nforged line\"",
    ] {
        let e = errors(&with_path(path));
        assert_eq!(e.len(), 1, "{path}: {e:#?}");
        assert!(
            e[0].starts_with("t.yaml:5:50: listeners.l.access_log.path: `"),
            "{path}: {e:#?}"
        );
        assert!(
            !e[0].contains('\n'),
            "control characters are escaped: {e:?}"
        );
    }
    let e = errors(&with_path("/etc/passwd"));
    assert!(
        e[0].contains("access logs are written under /var/log/envoy/, /dev/stdout, /dev/stderr"),
        "{e:?}"
    );
    for path in ["/var/log/envoy/a.json", "/dev/stdout", "/dev/stderr"] {
        assert!(parse_str("t.yaml", &with_path(path)).is_ok(), "{path}");
    }
    let policy = crate::config::LoadPolicy {
        access_log_dirs: vec![PathBuf::from("/srv/envoy-logs")],
        ..Default::default()
    };
    let sources = |path: &str| vec![(PathBuf::from("t.yaml"), with_path(path))];
    assert!(crate::config::parse_sources_with(&sources("/srv/envoy-logs/a.json"), &policy).is_ok());
    assert!(
        crate::config::parse_sources_with(&sources("/var/log/envoy/a.json"), &policy).is_err(),
        "--access-log-dir replaces the default directory"
    );
}
