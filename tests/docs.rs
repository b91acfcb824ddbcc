//! The documentation stays true: every flotilla config shown in README.md and docs/ validates,
//! every intra-repository link resolves (files and `#anchors`), every `flotilla_*` metric named
//! exists, and the generated references (YAML, metrics) are what the code says.
//! (The command lines shown are parsed by the real CLI in the binary's own tests,
//! src/cli/docs_tests.rs, where its clap `Command` lives.) A failing snippet names its file
//! and line. `UPDATE_GOLDEN=1` rewrites the generated references.

#![allow(unreachable_pub, dead_code)]

#[path = "support/markdown.rs"]
mod markdown;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use markdown::{Block, anchors, blocks, doc_files, links, read, root};

/// Compares a generated file with what the code generates (`UPDATE_GOLDEN=1` rewrites it).
fn golden(path: &str, generated: &str) {
    let file = root().join(path);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&file, generated).unwrap_or_else(|e| panic!("{path}: {e}"));
        return;
    }
    let current = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        current == generated,
        "{path} is not what the code generates: run `UPDATE_GOLDEN=1 cargo test --test docs` and commit it"
    );
}

#[test]
fn the_yaml_reference_is_generated_from_the_schema_tables() {
    golden(
        "docs/reference/yaml.md",
        &flotilla::config::reference::markdown(),
    );
}

#[test]
fn the_metrics_reference_is_generated_from_the_registry() {
    golden("docs/reference/metrics.md", &metrics_reference());
}

/// A flotilla config: `version: 1`, or a top-level `clusters:` or `listeners:`.
fn is_flotilla_config(block: &Block) -> bool {
    matches!(block.lang.as_str(), "yaml" | "yml")
        && block.text.lines().any(|l| {
            l.starts_with("version: 1") || l.starts_with("clusters:") || l.starts_with("listeners:")
        })
}

#[test]
fn every_yaml_config_in_the_docs_validates() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in doc_files() {
        for block in blocks(&read(&file)) {
            if !is_flotilla_config(&block) || block.not_validated.is_some() {
                continue;
            }
            checked += 1;
            if let Err(e) = validate(&block) {
                failures.push(format!(
                    "{}:{}: this config does not validate (mark a deliberate fragment with `<!-- not-validated: reason -->` above it):\n{e}",
                    file.display(),
                    block.line
                ));
            }
        }
    }
    assert!(checked >= 5, "only {checked} configs found in the docs");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Validates `block` in a directory of its own, with generated certificates and keys at the
/// paths it names; errors come back with their line in the Markdown file.
fn validate(block: &Block) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, &block.text).expect("write config");
    write_fixtures(dir.path(), &block.text);
    match flotilla::config::load(&config) {
        Ok(_) => Ok(()),
        Err(e) => {
            let prefix = format!("{}:", config.display());
            Err(e
                .lines()
                .into_iter()
                .map(|line| match line.strip_prefix(&prefix) {
                    Some(rest) => {
                        let (n, rest) = rest.split_once(':').unwrap_or(("0", rest));
                        let n: usize = n.parse().unwrap_or(0);
                        format!("  line {}:{rest}", block.line + n.saturating_sub(1))
                    }
                    None => format!("  {line}"),
                })
                .collect::<Vec<_>>()
                .join("\n"))
        }
    }
}

/// Files named by `yaml`: a JWKS for each `jwks:`, and for the PEM files named by `cert:`,
/// `key:`, `ca:`, `client_ca:` and `jwks_ca:` one throwaway CA;
/// each certificate (paired with the next key named) is issued by it for every DNS name the
/// config mentions, so it covers the listener's hosts.
fn write_fixtures(dir: &Path, yaml: &str) {
    let mut certs = Vec::new();
    let mut keys = Vec::new();
    let mut cas = Vec::new();
    for (key, value) in key_values(yaml) {
        if value == "system" || value.starts_with('/') {
            continue;
        }
        match key.as_str() {
            "cert" => certs.push(value),
            "key" => keys.push(value),
            "ca" | "client_ca" | "jwks_ca" => cas.push(value),
            _ => {}
        }
    }
    for (key, value) in key_values(yaml) {
        if key == "jwks" && !value.contains("://") && !value.starts_with('/') {
            let path = dir.join(&value);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, jwks()).expect("write jwks");
        }
    }
    if certs.is_empty() && cas.is_empty() {
        return;
    }
    let names = dns_names(yaml);
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let write = |path: &str, text: &str| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write pem");
    };
    for path in &cas {
        write(path, &ca.pem());
    }
    for (i, cert_path) in certs.iter().enumerate() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(names.clone())
            .expect("params")
            .signed_by(&key, &ca, &ca_key)
            .expect("leaf");
        write(cert_path, &format!("{}{}", cert.pem(), ca.pem()));
        if let Some(key_path) = keys.get(i) {
            write(key_path, &key.serialize_pem());
        }
    }
}

/// A JWKS (RFC 7517) holding one fresh P-256 public key, for snippets that name a `jwks:` file.
fn jwks() -> String {
    use base64::Engine;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ec key");
    // The uncompressed point: 0x04, then X and Y (32 bytes each).
    let point = key.public_key_raw();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    serde_json::json!({ "keys": [ {
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "docs",
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    } ] })
    .to_string()
}

/// `key: value` pairs anywhere in `yaml`, flow maps included (`{ cert: a.pem, key: a.key }`).
fn key_values(yaml: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in yaml.lines() {
        let line = line.split(" #").next().unwrap_or("");
        for part in line.split([',', '{', '}']) {
            if let Some((k, v)) = part.split_once(": ") {
                let k = k.trim().trim_start_matches("- ").trim();
                let v = v.trim().trim_matches('"');
                if !v.is_empty() {
                    out.push((k.to_string(), v.to_string()));
                }
            }
        }
    }
    out
}

/// Words of `yaml` that look like DNS names (`example.com`, `*.b.example.com`), not files.
fn dns_names(yaml: &str) -> Vec<String> {
    let mut names = BTreeSet::from(["localhost".to_string()]);
    for word in yaml.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*'))) {
        let file = [".pem", ".key", ".yaml", ".json", ".crt"]
            .iter()
            .any(|ext| word.ends_with(ext));
        let labels: Vec<&str> = word.split('.').collect();
        let tld = labels
            .last()
            .is_some_and(|l| l.len() >= 2 && l.chars().all(|c| c.is_ascii_lowercase()));
        if labels.len() >= 2 && tld && !file && !word.ends_with(".*") && !word.starts_with('.') {
            names.insert(word.to_string());
        }
    }
    names.into_iter().collect()
}

#[test]
fn every_link_in_the_docs_resolves() {
    let mut broken = Vec::new();
    for file in doc_files() {
        let text = read(&file);
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            if let Err(why) = resolve(&file, &target) {
                broken.push(format!("{}:{line}: ({target}): {why}", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

fn resolve(from: &Path, target: &str) -> Result<(), String> {
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let file: PathBuf = if path.is_empty() {
        from.to_path_buf()
    } else {
        normalize(&from.parent().unwrap_or(Path::new("")).join(path))?
    };
    let full = root().join(&file);
    if !full.exists() {
        return Err(format!("{} does not exist", file.display()));
    }
    if let Some(anchor) = anchor
        && file.extension().is_some_and(|e| e == "md")
    {
        let known = anchors(&read(&file));
        if !known.iter().any(|a| a == anchor) {
            return Err(format!("{} has no heading #{anchor}", file.display()));
        }
    }
    Ok(())
}

/// `docs/guides/../../README.md` → `README.md`; a path leaving the repository is an error.
fn normalize(path: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                if !out.pop() {
                    return Err("leaves the repository".into());
                }
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Families of the registry `serve` exposes: (name, help), prefix included, in order of
/// registration. prometheus-client encodes no `# HELP` for a family without series, so the
/// descriptors are read from the registry's `Debug` form (`Descriptor { name, help, unit }`);
/// a prometheus-client whose form differs fails `families_are_read_from_the_registry`.
fn families() -> Vec<(String, String)> {
    let text = format!("{:?}", flotilla::serve::metric_families());
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("Descriptor { name: \"") {
        rest = &rest[at + "Descriptor { name: \"".len()..];
        let (name, after) = debug_string(rest);
        let after = after.strip_prefix(", help: \"").expect("help after name");
        let (help, after) = debug_string(after);
        let after = after.strip_prefix(", unit: ").expect("unit after help");
        let unit = match after.strip_prefix("Some(") {
            Some(u) => format!("_{}", u[..u.find(')').expect("unit")].to_lowercase()),
            None => String::new(),
        };
        out.push((format!("flotilla_{name}{unit}"), help));
        rest = after;
    }
    out
}

/// A Rust `Debug` string body up to its closing quote, unescaped; and what follows the quote.
fn debug_string(text: &str) -> (String, &str) {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, next)) = chars.next() {
                    out.push(next);
                }
            }
            '"' => return (out, &text[i + 1..]),
            c => out.push(c),
        }
    }
    (out, "")
}

#[test]
fn families_are_read_from_the_registry() {
    let families = families();
    assert!(families.len() >= 20, "{families:?}");
    assert!(
        families
            .iter()
            .any(|(n, h)| n == "flotilla_config_reloads" && !h.is_empty()),
        "{families:?}"
    );
}

fn metrics_reference() -> String {
    let mut out = String::from(
        "# Metrics reference\n\n\
         <!-- Generated from the Prometheus registry of `flotilla serve` (flotilla::serve::metric_families). \
         Do not edit: run `UPDATE_GOLDEN=1 cargo test --test docs`. -->\n\n\
         Every family `GET /metrics` exposes (OpenMetrics text), with its help text, in the order \
         the subsystems register them. A counter is scraped with `_total` appended \
         (`flotilla_config_reloads_total`), a histogram as `<name>_bucket`, `<name>_sum` and \
         `<name>_count`. Labels, and the alerts and dashboards built on these: \
         [monitoring](../guides/monitoring.md#metrics).\n\n\
         | metric | help |\n| --- | --- |\n",
    );
    for (name, help) in families() {
        out.push_str(&format!("| `{name}` | {} |\n", help.replace('|', "\\|")));
    }
    out
}

/// `flotilla_` words of the docs that are not metrics: reserved names of things flotilla
/// puts into Envoy's config.
const NOT_METRICS: &[&str] = &["flotilla_"];

#[test]
fn every_metric_named_in_the_docs_exists() {
    let families = families();
    let known = |name: &str| {
        families.iter().any(|(family, _)| {
            name == family
                || ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(family.as_str()))
        })
    };
    let mut unknown = Vec::new();
    for file in doc_files() {
        for (n, line) in read(&file).lines().enumerate() {
            for name in metric_words(line) {
                if !known(&name) && !NOT_METRICS.contains(&name.as_str()) && !reserved(&name) {
                    unknown.push(format!("{}:{}: {name}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics named in the docs that flotilla does not export:\n{}",
        unknown.join("\n")
    );
}

/// Names flotilla gives Envoy resources of its own (the xDS cluster in a bootstrap).
fn reserved(name: &str) -> bool {
    name == "flotilla_xds"
}

/// Every `flotilla_…` word of `line`; a `_` ending a word (`flotilla_upstream_*`) marks a
/// family prefix, not a metric.
fn metric_words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let mut from = 0;
    while let Some(at) = line[from..].find("flotilla_") {
        let start = from + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let word_start = start == 0
            || !(bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b'-');
        let name = &line[start..end];
        if word_start && !name.ends_with('_') {
            out.push(name.to_string());
        }
        from = end;
    }
    out
}

#[test]
fn markdown_helpers_read_what_github_renders() {
    assert_eq!(
        anchors(
            "# A\n## How it serves Envoy\n```\n# not a heading\n```\n## TLS: HTTPS, SDS\n## A\n"
        ),
        ["a", "how-it-serves-envoy", "tls-https-sds", "a-1"]
    );
    let block = &blocks("<!-- not-validated: a fragment -->\n```yaml\nlisteners: {}\n```\n")[0];
    assert_eq!(block.not_validated.as_deref(), Some("a fragment"));
    assert_eq!(block.line, 3);
    assert_eq!(
        markdown::words("flotilla serve --replica-id \"$(hostname)\" --x 'a b' > out.yaml"),
        [
            "flotilla",
            "serve",
            "--replica-id",
            "$(hostname)",
            "--x",
            "a b"
        ]
    );
    assert_eq!(
        metric_words("`flotilla_xds_streams` and flotilla_upstream_* and x-flotilla_no"),
        ["flotilla_xds_streams"]
    );
}

#[test]
fn a_config_that_stops_validating_is_reported_at_its_line_in_the_markdown() {
    let page = "# A guide\n\n```yaml\nversion: 1\nclusters:\n  api: { endpoints: [10.0.0.1:99999] }\n```\n";
    let block = &blocks(page)[0];
    assert!(is_flotilla_config(block));
    let error = validate(block).expect_err("port 99999 is refused");
    assert!(
        error.contains("line 6:") && error.contains("out of range"),
        "the error names the Markdown line of the bad port: {error}"
    );
}

#[test]
fn a_certificate_named_by_a_snippet_gets_a_fixture_that_validates() {
    let page = "```yaml\nversion: 1\nclusters:\n  web: { endpoints: [10.0.0.1:80] }\nlisteners:\n  https:\n    address: 127.0.0.1:10443\n    tls:\n      certificates: [ { cert: certs/a.example.com.pem, key: certs/a.example.com.key } ]\n    hosts:\n      a: { domains: [a.example.com], routes: [ { to: web } ] }\n```\n";
    validate(&blocks(page)[0]).expect("the generated certificate covers a.example.com");
}

#[test]
fn a_jwks_named_by_a_snippet_gets_a_fixture() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fixtures(
        dir.path(),
        "auth:\n  jwt: { issuer: https://issuer.example.com, jwks: keys/jwks.json }\n",
    );
    let written: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("keys/jwks.json")).expect("jwks"),
    )
    .expect("JSON");
    assert_eq!(written["keys"][0]["kty"], "EC");
    assert_eq!(written["keys"][0]["x"].as_str().map(str::len), Some(43));
}

/// docs/SUMMARY.md (the mdBook table of contents) lists every page under docs/, so a new
/// guide cannot be left out of the book.
#[test]
fn the_book_summary_lists_every_page() {
    let summary = read(Path::new("docs/SUMMARY.md"));
    let listed: BTreeSet<String> = links(&summary).into_iter().map(|(_, t)| t).collect();
    let missing: Vec<String> = doc_files()
        .into_iter()
        .filter_map(|f| {
            let rel = f.strip_prefix("docs").ok()?.to_str()?.to_string();
            (rel != "SUMMARY.md" && !listed.contains(&rel)).then_some(rel)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/SUMMARY.md does not list: {missing:?}"
    );
}
