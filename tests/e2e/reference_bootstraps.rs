//! `envoy/` holds the reference bootstraps for the examples: each is exactly what
//! `flotilla bootstrap` writes for its arguments (`UPDATE_GOLDEN=1` rewrites them), and the
//! real Envoy accepts each one.

use crate::support::{envoy, repo_root};
use crate::validate::flotilla;

/// File in `envoy/` and the `flotilla bootstrap` arguments that produce it.
pub const REFERENCE_BOOTSTRAPS: &[(&str, &[&str])] = &[
    ("ads-sotw.yaml", &["--node-id", "edge-1", "--fleet", "edge"]),
    (
        "ads-delta.yaml",
        &["--node-id", "edge-1", "--fleet", "edge", "--delta"],
    ),
    (
        "per-type-sotw.yaml",
        &["--node-id", "edge-1", "--fleet", "edge", "--no-ads"],
    ),
    (
        "per-type-delta.yaml",
        &[
            "--node-id",
            "edge-1",
            "--fleet",
            "edge",
            "--delta",
            "--no-ads",
        ],
    ),
    (
        "mesh-delta.yaml",
        &[
            "--node-id",
            "mesh-1",
            "--fleet",
            "mesh",
            "--delta",
            "--admin-port",
            "9902",
        ],
    ),
    (
        "ads-mtls.yaml",
        &[
            "--node-id",
            "edge-1",
            "--fleet",
            "edge",
            "--xds-ca",
            "/etc/flotilla/tls/ca.pem",
            "--xds-cert",
            "/etc/flotilla/tls/edge-edge-1.pem",
            "--xds-key",
            "/etc/flotilla/tls/edge-edge-1.key",
        ],
    ),
];

/// Where the mTLS reference bootstrap expects `flotilla certs` output on an Envoy host.
const CERT_DIR: &str = "/etc/flotilla/tls/";

fn produced(args: &[&str]) -> String {
    let mut all = vec!["bootstrap"];
    all.extend_from_slice(args);
    flotilla(&all)
}

#[test]
fn reference_bootstraps_are_what_flotilla_bootstrap_writes() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatched = Vec::new();
    for (file, args) in REFERENCE_BOOTSTRAPS {
        let path = repo_root().join("envoy").join(file);
        let yaml = produced(args);
        if update {
            std::fs::write(&path, &yaml).expect("write reference bootstrap");
            continue;
        }
        let kept = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
        if kept != yaml {
            mismatched.push(format!("{file} (flotilla bootstrap {})", args.join(" ")));
        }
    }
    assert!(
        mismatched.is_empty(),
        "envoy/ differs from what flotilla bootstrap writes: {mismatched:?}; UPDATE_GOLDEN=1 rewrites them"
    );
}

/// Envoy opens the xDS channel's certificate files even in `--mode validate`: the mTLS
/// bootstrap is checked against files that `flotilla certs` made, as an operator would.
fn with_generated_certificates(yaml: &str, dir: &std::path::Path) -> String {
    let dir_str = dir.to_str().expect("utf-8 temp dir");
    flotilla(&["certs", "ca", "--out", dir_str]);
    flotilla(&[
        "certs", "issue", "--ca", dir_str, "--fleet", "edge", "--node", "edge-1", "--out", dir_str,
    ]);
    yaml.replace(CERT_DIR, &format!("{dir_str}/"))
}

#[test]
fn envoy_accepts_every_reference_bootstrap() {
    let certs = tempfile::tempdir().expect("temp dir");
    for (file, _) in REFERENCE_BOOTSTRAPS {
        let path = repo_root().join("envoy").join(file);
        let mut yaml = std::fs::read_to_string(&path).expect("reference bootstrap");
        if yaml.contains(CERT_DIR) {
            yaml = with_generated_certificates(&yaml, certs.path());
        }
        if let Err(e) = envoy::validate(&yaml) {
            panic!("envoy/{file}:\n{e}");
        }
    }
}

#[test]
fn every_reference_bootstrap_is_listed_in_the_readme() {
    let readme = std::fs::read_to_string(repo_root().join("envoy/README.md")).expect("README");
    for (file, args) in REFERENCE_BOOTSTRAPS {
        let line = format!(
            "| [{file}]({file}) | `flotilla bootstrap {}` |",
            args.join(" ")
        );
        assert!(readme.contains(&line), "envoy/README.md lacks: {line}");
    }
}
