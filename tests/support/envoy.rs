//! Real Envoy 1.40: finding the binary, validating configs, running proxies.

use std::path::PathBuf;
use std::process::Command;

/// Envoy from `$ENVOY_BIN`, else from the project's tools folder (`scripts/install-envoy`).
/// Missing Envoy is a test failure, never a skip.
pub fn envoy_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        return PathBuf::from(bin);
    }
    let bin = super::repo_root().join("tools/envoy-1.40.0/envoy");
    assert!(
        bin.exists(),
        "Envoy not found at {} and ENVOY_BIN is not set: run scripts/install-envoy (scripts/test does)",
        bin.display()
    );
    bin
}

/// Runs `envoy --mode validate` on a bootstrap; `Err` carries Envoy's output.
pub fn validate(bootstrap_yaml: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bootstrap.yaml");
    std::fs::write(&path, bootstrap_yaml).expect("write bootstrap");
    let out = Command::new(envoy_bin())
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warn",
            "-c",
        ])
        .arg(&path)
        .output()
        .expect("run envoy");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "envoy --mode validate failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
