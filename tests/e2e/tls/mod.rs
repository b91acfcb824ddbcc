//! HTTPS through real Envoy with certificates served over SDS, checked by clients that verify
//! the chain against the test CA: listeners (SNI, client certificates, redirects, what
//! flotilla shows), rotation under load, and TLS to the backends (health probes included).

mod listener;
mod rotation;
mod upstream;

use std::path::PathBuf;

use crate::support::backend::Backend;
use crate::support::flotilla::Flotilla;
use crate::support::pki::Issued;

/// Serves `yaml` from `dir/flotilla.yaml` (certificate paths are relative to it).
pub(super) async fn serve(dir: tempfile::TempDir, yaml: &str) -> Flotilla {
    let config = dir.path().join("flotilla.yaml");
    std::fs::write(&config, yaml).expect("write config");
    let flotilla = Flotilla::start_with(dir, config, &[]).await;
    flotilla.wait_ready().await;
    flotilla
}

/// Serves `listeners` (YAML, indented as under `listeners:`) in front of cluster `web`.
pub(super) async fn serve_web(dir: tempfile::TempDir, web: &Backend, listeners: &str) -> Flotilla {
    let yaml = format!(
        "version: 1\nclusters:\n  web: {{ endpoints: [{}] }}\nlisteners:\n{listeners}",
        web.address()
    );
    serve(dir, &yaml).await
}

pub(super) fn certs_dir(dir: &tempfile::TempDir) -> PathBuf {
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    certs
}

/// The base64 body of a key's first line, as it would show if a key leaked.
pub(super) fn key_body(issued: &Issued) -> &str {
    issued.key.lines().nth(1).expect("key line")
}
