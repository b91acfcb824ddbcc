//! The deployment files in `deploy/` are checked, not just written: the systemd units by
//! `systemd-analyze verify`, the Kubernetes manifests by kubernetes-validate against the
//! bundled Kubernetes schemas (offline), and the Envoy bootstrap they carry by Envoy itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::envoy::envoy_bin;
use crate::support::{flotilla_bin, repo_root};

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo_root().join(dir))
        .expect("deploy directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no *.{ext} in {dir}");
    v
}

/// `systemd-analyze verify` on copies of `units` whose binaries point at the ones built and
/// installed here (verify refuses an ExecStart that does not exist). Returns its output.
fn verify_units(units: &[PathBuf]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut copies = Vec::new();
    for unit in units {
        let text = std::fs::read_to_string(unit)
            .expect("unit")
            .replace("/usr/bin/flotilla", &flotilla_bin().display().to_string())
            .replace("/usr/local/bin/envoy", &envoy_bin().display().to_string());
        let copy = dir.path().join(unit.file_name().expect("name"));
        std::fs::write(&copy, text).expect("write unit");
        copies.push(copy);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&copies)
        .output()
        .expect("systemd-analyze (Debian package systemd; scripts/test installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn systemd_units_pass_systemd_analyze_verify_without_a_warning() {
    let (ok, output) = verify_units(&files("deploy/systemd", "service"));
    assert!(ok && output.trim().is_empty(), "{output}");
}

#[test]
fn systemd_analyze_catches_a_typo_in_a_unit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = dir.path().join("flotilla.service");
    let text = std::fs::read_to_string(repo_root().join("deploy/systemd/flotilla.service"))
        .expect("unit")
        .replace("Restart=on-failure", "Restrat=on-failure");
    std::fs::write(&unit, text).expect("write");
    let (_, output) = verify_units(&[unit]);
    assert!(
        output.contains("Restrat"),
        "a typo went unnoticed: {output}"
    );
}

fn kubernetes_validate(files: &[PathBuf]) -> std::process::Output {
    let bin = std::env::var("KUBERNETES_VALIDATE").unwrap_or_else(|_| {
        repo_root()
            .join("tools/k8s-venv/bin/kubernetes-validate")
            .display()
            .to_string()
    });
    assert!(
        Path::new(&bin).exists(),
        "{bin} is missing: run scripts/install-kubernetes-validate (scripts/test does)"
    );
    Command::new(bin)
        .args(["--strict", "--kubernetes-version", "1.31.0"])
        .args(files)
        .output()
        .expect("kubernetes-validate")
}

#[test]
fn kubernetes_manifests_match_the_kubernetes_schemas() {
    let mut manifests = files("deploy/kubernetes", "yaml");
    manifests.extend(files("deploy/kubernetes/replicas", "yaml"));
    let out = kubernetes_validate(&manifests);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for kind in [
        "deployment/flotilla",
        "service/flotilla",
        "configmap/flotilla-config",
        "deployment/envoy",
        "poddisruptionbudget/flotilla",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}")),
            "{kind} not checked: {text}"
        );
    }
}

#[test]
fn kubernetes_validate_catches_a_misspelt_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(repo_root().join("deploy/kubernetes/flotilla.yaml"))
        .expect("manifest")
        .replace("readinessProbe:", "readynessProbe:");
    std::fs::write(&bad, text).expect("write");
    assert!(!kubernetes_validate(&[bad]).status.success());
}

/// The manifests' own content: flotilla accepts the ConfigMap's config, Envoy its bootstrap.
#[test]
fn the_manifests_config_and_bootstrap_are_accepted() {
    let docs = |file: &str| -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(repo_root().join("deploy/kubernetes").join(file))
            .expect("manifest");
        serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).expect("YAML document"))
            .collect()
    };
    let config_map = docs("flotilla.yaml")
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("flotilla ConfigMap");
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in config_map["data"].as_object().expect("data") {
        std::fs::write(dir.path().join(name), text.as_str().expect("text")).expect("write");
    }
    let out = Command::new(flotilla_bin())
        .arg("validate")
        .arg(dir.path())
        .output()
        .expect("flotilla validate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bootstrap = docs("envoy.yaml")
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("envoy ConfigMap")["data"]["bootstrap.yaml"]
        .as_str()
        .expect("bootstrap")
        .to_string();
    let path = dir.path().join("bootstrap.yaml");
    std::fs::write(&path, bootstrap).expect("write");
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--disable-hot-restart", "-l", "warn"])
        .args(["--service-node", "envoy-pod-1", "-c"])
        .arg(&path)
        .output()
        .expect("envoy");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `--flag` the flotilla manifests and unit pass to `flotilla serve` is one `serve`
/// has: a renamed flag would otherwise only show at a pod's first start.
#[test]
fn the_deployment_files_pass_only_flags_that_serve_has() {
    let help = Command::new(flotilla_bin())
        .args(["serve", "--help"])
        .output()
        .expect("flotilla serve --help");
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    let mut checked = Vec::new();
    for file in [
        "deploy/kubernetes/flotilla.yaml",
        "deploy/kubernetes/replicas/flotilla.yaml",
        "deploy/systemd/flotilla.service",
    ] {
        let text = std::fs::read_to_string(repo_root().join(file)).expect("deployment file");
        let flags = text
            .split_whitespace()
            .filter_map(|word| word.strip_prefix("--"))
            .filter(|flag| flag.starts_with(|c: char| c.is_ascii_lowercase()))
            .map(|flag| flag.split('=').next().unwrap_or(flag));
        for name in flags {
            assert!(
                help.contains(&format!("--{name}")),
                "{file}: `flotilla serve` has no --{name}"
            );
            checked.push(format!("{file}: --{name}"));
        }
    }
    assert!(
        checked.iter().any(|f| f.ends_with("--store")),
        "the replicas manifest passes no --store: {checked:?}"
    );
}
