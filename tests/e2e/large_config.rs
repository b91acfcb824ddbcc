//! The bounds a large config meets that are choices (routes per host, hosts per listener):
//! past the default the error names the flag, and the flag (or its environment variable)
//! raises the bound for `validate` as for `serve`.

use std::process::{Command, Output};

use crate::support::flotilla_bin;

fn validate(config: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(flotilla_bin());
    cmd.arg("validate")
        .args(args)
        .arg(config)
        .env_remove("FLOTILLA_MAX_ROUTES_PER_HOST")
        .env_remove("FLOTILLA_MAX_HOSTS_PER_LISTENER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run flotilla validate")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn write(dir: &tempfile::TempDir, yaml: &str) -> std::path::PathBuf {
    let path = dir.path().join("big.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

#[test]
fn routes_past_the_default_name_the_flag_that_raises_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut yaml = String::from(
        "version: 1\nclusters:\n  web: { endpoints: [127.0.0.1:8081] }\nlisteners:\n  public:\n    address: 127.0.0.1:10000\n    routes:\n",
    );
    for i in 0..1001 {
        yaml.push_str(&format!(
            "      - {{ match: {{ prefix: /r{i} }}, to: web }}\n"
        ));
    }
    let config = write(&dir, &yaml);

    let refused = validate(&config, &[], &[]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains(
            "listeners.public.routes: 1001 routes: at most 1000 per host (spread them over `hosts`, or raise --max-routes-per-host)"
        ),
        "{}",
        stderr(&refused)
    );
    let raised = validate(&config, &["--max-routes-per-host", "1001"], &[]);
    assert!(raised.status.success(), "{}", stderr(&raised));
    let by_env = validate(&config, &[], &[("FLOTILLA_MAX_ROUTES_PER_HOST", "2000")]);
    assert!(by_env.status.success(), "{}", stderr(&by_env));
    let past_ceiling = validate(&config, &["--max-routes-per-host", "100001"], &[]);
    assert!(!past_ceiling.status.success());
    assert!(
        stderr(&past_ceiling).contains("100001"),
        "{}",
        stderr(&past_ceiling)
    );
}

#[test]
fn hosts_past_the_default_name_the_flag_that_raises_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut yaml = String::from(
        "version: 1\nclusters:\n  web: { endpoints: [127.0.0.1:8081] }\nlisteners:\n  public:\n    address: 127.0.0.1:10000\n    hosts:\n",
    );
    for i in 0..10_001 {
        yaml.push_str(&format!(
            "      h{i}: {{ domains: [h{i}.example.com], routes: [{{ to: web }}] }}\n"
        ));
    }
    let config = write(&dir, &yaml);

    let refused = validate(&config, &[], &[]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains(
            "listeners.public.hosts: 10001 hosts: at most 10000 per listener (raise --max-hosts-per-listener)"
        ),
        "{}",
        stderr(&refused)
    );
    let raised = validate(&config, &["--max-hosts-per-listener", "10001"], &[]);
    assert!(raised.status.success(), "{}", stderr(&raised));
}
