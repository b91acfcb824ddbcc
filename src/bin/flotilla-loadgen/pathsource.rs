//! The peer figure of the propagation benchmark: the same edits applied by Envoy's own
//! filesystem subscription (`path_config_source`), CDS from one file and each cluster's EDS
//! from its own file, rewritten by atomic rename as Envoy requires.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use envoy_types::pb::envoy::config::core::v3::{
    ApiVersion, ConfigSource, PathConfigSource, config_source::ConfigSourceSpecifier,
};
use flotilla::envoy::json::any_to_json;
use flotilla::overlay::Overlay;
use flotilla::translate::{Transport, translate};
use serde_json::json;

use crate::envoy::{self, Envoy};
use crate::http;
use crate::propagation::{PropagationArgs, Timings, applied, edited_cluster, states};
use crate::scenario::Shape;
use crate::server;

/// A `path_config_source` config source for `path`.
fn path_source(path: &Path) -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::PathConfigSource(PathConfigSource {
            path: path.display().to_string(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The files of one state that differ from what is on disk: `cds.json` and
/// `eds/<cluster>.json`, DiscoveryResponses in JSON. Prepared before the clock starts; only
/// writing them is timed, as only writing the YAML is for flotilla.
fn changed_files(dir: &Path, yaml: &str, version: usize) -> Result<Vec<(PathBuf, String)>> {
    let config = flotilla::config::parse_str("files.yaml", yaml)
        .map_err(|d| anyhow::anyhow!("generated config is invalid:\n{d}"))?;
    let translation = translate(&config, &Overlay::default(), Transport::Ads);
    let mut clusters = Vec::new();
    for (name, cluster) in &translation.clusters {
        let mut cluster = cluster.clone();
        if let Some(eds) = cluster.eds_cluster_config.as_mut() {
            eds.eds_config = Some(path_source(&dir.join(format!("eds/{name}.json"))));
        }
        clusters.push(any_to_json(&flotilla::envoy::pack(&cluster))?);
    }
    std::fs::create_dir_all(dir.join("eds"))?;
    let mut out = Vec::new();
    for (name, cla) in &translation.endpoints {
        let file = dir.join(format!("eds/{name}.json"));
        let body = json!({
            "version_info": version.to_string(),
            "resources": [any_to_json(&flotilla::envoy::pack(cla))?],
        });
        let text = serde_json::to_string(&body)?;
        // Only files whose content changes are rewritten, as an operator's tool would.
        if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
            out.push((file, text));
        }
    }
    let cds = dir.join("cds.json");
    if !cds.exists() {
        let body = json!({ "version_info": "1", "resources": clusters });
        out.push((cds, serde_json::to_string(&body)?));
    }
    Ok(out)
}

fn write_files(files: &[(PathBuf, String)]) -> Result<()> {
    for (path, text) in files {
        server::write_atomically(path, text)?;
    }
    Ok(())
}

pub(crate) async fn via_files(args: &PropagationArgs, shape: Shape, n: usize) -> Result<Timings> {
    let yamls = states(shape, args.edits);
    let dir = tempfile::tempdir()?;
    let files = dir.path().join("xds");
    write_files(&changed_files(&files, &yamls[0], 0)?)?;
    let mut envoys = Vec::new();
    for i in 0..n {
        let admin = http::free_addr()?;
        let bootstrap = json!({
            "node": { "id": format!("files-{i}"), "cluster": "files" },
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin.port() } } },
            "dynamic_resources": {
                "cds_config": {
                    "resource_api_version": "V3",
                    "path_config_source": { "path": files.join("cds.json").display().to_string() }
                }
            }
        });
        let path = dir.path().join(format!("envoy-{i}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&bootstrap)?)?;
        let log = dir.path().join(format!("envoy-{i}.log"));
        envoys.push(Envoy::start(&args.envoy, &path, admin, &log).await?);
    }
    let poll = Duration::from_millis(args.envoy_poll_ms);
    // Ready when every Envoy has every cluster warm (initialised with its endpoints).
    let deadline = Instant::now() + Duration::from_secs(60);
    for envoy in &envoys {
        while envoy.stat("cluster_manager.active_clusters").await? < args.clusters as u64
            || envoy.stat("cluster_manager.warming_clusters").await? > 0
        {
            if Instant::now() > deadline {
                bail!("Envoy at {} did not load the files", envoy.admin);
            }
            tokio::time::sleep(poll).await;
        }
    }
    let admins: Vec<SocketAddr> = envoys.iter().map(|e| e.admin).collect();
    let mut timings: Timings = Default::default();
    for (k, yaml) in yamls.iter().enumerate().skip(1) {
        let cluster = edited_cluster(k - 1, args.clusters);
        let counter = format!("cluster.{cluster}.update_success");
        let before = envoy::stats(&admins, &counter).await?;
        let changed = changed_files(&files, yaml, k)?;
        let (start, start_ms) = (Instant::now(), envoy::unix_ms());
        write_files(&changed)?;
        let deadline = start + Duration::from_secs(10);
        loop {
            let now = envoy::stats(&admins, &counter).await?;
            if now.iter().zip(&before).all(|(now, before)| now > before) {
                break;
            }
            if Instant::now() > deadline {
                bail!("not every Envoy applied edit {k} ({counter})");
            }
            tokio::time::sleep(poll).await;
        }
        timings.0.push(start.elapsed());
        timings.1.push(applied(&admins, &cluster, start_ms).await?);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(envoys);
    Ok(timings)
}
