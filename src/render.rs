//! `flotilla render`: the resources a fleet would receive, in Envoy's proto3 JSON.

use serde_json::{Map, Value};

use crate::cache::{EncodedSet, ResourceType, Snapshot};
use crate::config::Config;
use crate::config::model::{SecretMaterial, Secrets};
use crate::envoy::json::{self, JsonError};
use crate::overlay::Overlay;
use crate::translate::{self, Transport};

/// The key each resource type is listed under in `render` output.
pub fn section(t: ResourceType) -> &'static str {
    match t {
        ResourceType::Cluster => "clusters",
        ResourceType::Endpoint => "endpoints",
        ResourceType::Listener => "listeners",
        ResourceType::Route => "routes",
        ResourceType::Secret => "secrets",
    }
}

/// The snapshot `serve` would hand Envoys of `fleet` (every resource when `None` or when no
/// fleets are declared; nothing for an undeclared fleet among declared ones), with no health
/// verdicts yet. Listeners of both kinds are shown (see `ClientKind`).
pub fn snapshot(config: &Config, fleet: Option<&str>, transport: Transport) -> Snapshot {
    let translation = translate::translate(config, &Overlay::default(), transport);
    let selection = fleet.and_then(|f| translate::select_fleet(config, f));
    EncodedSet::encode(&translation, None)
        .snapshot(selection.as_ref(), crate::cache::ClientKind::Other)
}

/// A snapshot as one JSON document: its version, then each type's resources with `@type`.
/// Private keys are replaced by a placeholder naming the key file and the certificate's
/// SHA-256 fingerprint: render output is shared, pasted and committed.
pub fn to_json(
    snapshot: &Snapshot,
    fleet: Option<&str>,
    secrets: &Secrets,
) -> Result<Value, JsonError> {
    let mut out = Map::new();
    out.insert("version_info".into(), snapshot.version.clone().into());
    out.insert(
        "fleet".into(),
        fleet.map_or(Value::Null, |f| Value::String(f.to_string())),
    );
    for t in ResourceType::ALL {
        let resources = snapshot
            .get(t)
            .resources
            .values()
            .map(|r| {
                let mut value = json::any_to_json(&r.body)?;
                if t == ResourceType::Secret {
                    redact_key(&mut value, secrets.get(&r.name));
                }
                Ok(value)
            })
            .collect::<Result<Vec<_>, JsonError>>()?;
        out.insert(section(t).into(), Value::Array(resources));
    }
    Ok(Value::Object(out))
}

/// The placeholder that stands for a private key wherever flotilla shows a Secret.
pub fn key_placeholder(material: &SecretMaterial) -> String {
    let path = material
        .key
        .as_ref()
        .map_or_else(String::new, |(p, _)| p.display().to_string());
    let fingerprint = material
        .certificates
        .first()
        .map_or("", |c| c.sha256.as_str());
    format!("<private key from {path}, certificate sha256:{fingerprint}; not shown>")
}

fn redact_key(secret: &mut Value, material: Option<&SecretMaterial>) {
    let Some(key) = secret
        .get_mut("tls_certificate")
        .and_then(|c| c.get_mut("private_key"))
    else {
        return;
    };
    let placeholder =
        material.map_or_else(|| "<private key; not shown>".to_string(), key_placeholder);
    *key = serde_json::json!({ "inline_string": placeholder });
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "version: 1
clusters: { web: { endpoints: [127.0.0.1:8080] } }
listeners:
  public:
    address: 127.0.0.1:10443
    tls: { certificates: [{ cert: a.pem, key: a.key }] }
    hosts: { site: { domains: [a.example.com], routes: [{ match: { prefix: / }, to: web }] } }
  internal: { address: 127.0.0.1:10080, routes: [{ to: web }] }
fleets: { edge: { listeners: [public] }, inside: { listeners: [internal] } }
";

    /// Writes a fresh certificate and key for a.example.com, and the config, into `dir`.
    fn write(dir: &std::path::Path) -> (Config, String) {
        let (chain, key, _) = crate::tls::tests::issued(&["a.example.com"]);
        std::fs::write(dir.join("a.pem"), &chain).unwrap();
        std::fs::write(dir.join("a.key"), &key).unwrap();
        let file = dir.join("flotilla.yaml");
        std::fs::write(&file, YAML).unwrap();
        (crate::config::load(&file).unwrap().config, key)
    }

    #[test]
    fn render_never_shows_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let (config, key) = write(dir.path());
        let snapshot = snapshot(&config, None, Transport::Ads);
        let json = to_json(&snapshot, None, &config.secrets).unwrap();
        let private_key = &json["secrets"][0]["tls_certificate"]["private_key"];
        assert_eq!(private_key.as_object().map(|o| o.len()), Some(1), "{json}");
        let placeholder = private_key["inline_string"].as_str().unwrap();
        assert!(
            placeholder.contains("a.key, certificate sha256:"),
            "{placeholder}"
        );
        assert!(json["secrets"][0]["tls_certificate"]["certificate_chain"].is_object());
        let body = key.lines().nth(1).unwrap();
        assert!(!json.to_string().contains(body));
    }

    #[test]
    fn secrets_go_only_to_fleets_that_use_them() {
        let dir = tempfile::tempdir().unwrap();
        let (config, _) = write(dir.path());
        let secrets = |fleet| {
            snapshot(&config, Some(fleet), Transport::Ads)
                .get(ResourceType::Secret)
                .resources
                .len()
        };
        assert_eq!(secrets("edge"), 1);
        assert_eq!(secrets("inside"), 0);
        assert_eq!(secrets("undeclared"), 0);
    }

    #[test]
    fn a_rotation_changes_the_secret_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let before = snapshot(&write(dir.path()).0, None, Transport::Ads);
        let after = snapshot(&write(dir.path()).0, None, Transport::Ads);
        for t in ResourceType::ALL {
            let changed = before.get(t).version != after.get(t).version;
            assert_eq!(changed, t == ResourceType::Secret, "{t}");
        }
    }
}
