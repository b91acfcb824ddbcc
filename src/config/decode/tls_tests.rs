//! `tls` on listeners and clusters: what decodes, and every bad certificate named with the
//! YAML field and the file.

use std::path::Path;

use crate::config::model::{RouteAction, TlsVersion, TrustedCa};
use crate::config::{Config, load};
use crate::tls::tests::{expired, issued};

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// Loads `yaml` from `dir/f.yaml`.
fn load_in(dir: &Path, yaml: &str) -> Result<Config, Vec<String>> {
    write(dir, "f.yaml", yaml);
    load(&dir.join("f.yaml"))
        .map(|l| l.config)
        .map_err(|e| e.lines())
}

fn listener(tls: &str, domains: &str) -> String {
    format!(
        "version: 1
clusters: {{ web: {{ endpoints: [127.0.0.1:1] }} }}
listeners:
  public:
    address: 127.0.0.1:2
    tls: {tls}
    hosts: {{ site: {{ domains: {domains}, routes: [{{ to: web }}] }} }}
"
    )
}

fn single(files: &str) -> String {
    listener(&format!("{{ certificates: [{files}] }}"), "[a.example.com]")
}

/// One error, whose text must hold every piece of `wanted`.
fn assert_error(errors: &[String], wanted: &[&str]) {
    assert_eq!(errors.len(), 1, "{errors:#?}");
    for w in wanted {
        assert!(errors[0].contains(w), "{w:?} not in {:?}", errors[0]);
    }
}

#[test]
fn a_tls_listener_decodes_with_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, key, ca) = issued(&["a.example.com"]);
    write(dir.path(), "a.pem", &chain);
    write(dir.path(), "a.key", &key);
    write(dir.path(), "ca.pem", &ca);
    let c = load_in(
        dir.path(),
        &listener(
            "{ certificates: [{ cert: a.pem, key: a.key }], min_version: \"1.3\", client_ca: ca.pem }",
            "[a.example.com, \"*\"]",
        ),
    )
    .unwrap();
    let tls = c.listeners["public"].tls.as_ref().unwrap();
    assert_eq!(tls.min_version, TlsVersion::V1_3);
    assert!(
        tls.require_client_cert,
        "a client CA requires certificates by default"
    );
    let cert = &c.secrets[&tls.certificates[0]];
    assert_eq!(cert.cert_path, dir.path().join("a.pem"));
    assert_eq!(cert.certificates.len(), 2, "leaf and CA");
    assert!(c.secrets[tls.client_ca.as_ref().unwrap()].is_ca());
}

#[test]
fn bad_files_are_named_with_the_field_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, key, _) = issued(&["a.example.com"]);
    let (_, other_key, _) = issued(&["a.example.com"]);
    let (old_chain, old_key, _) = expired(&["a.example.com"]);
    write(dir.path(), "a.pem", &chain);
    write(dir.path(), "a.key", &key);
    write(dir.path(), "other.key", &other_key);
    write(dir.path(), "old.pem", &old_chain);
    write(dir.path(), "old.key", &old_key);
    write(dir.path(), "garbage.pem", "hello\n");
    let field = "listeners.public.tls.certificates[0]";
    let cases: &[(&str, &[&str])] = &[
        (
            "{ cert: missing.pem, key: a.key }",
            &[
                ":6:35: ",
                &format!("{field}.cert: "),
                "missing.pem: No such file",
            ],
        ),
        (
            "{ cert: garbage.pem, key: a.key }",
            &[
                &format!("{field}.cert: "),
                "garbage.pem",
                "no PEM certificate",
            ],
        ),
        (
            "{ cert: a.pem, key: a.pem }",
            &[&format!("{field}.key: "), "a.pem: no PEM private key"],
        ),
        (
            "{ cert: a.pem, key: other.key }",
            &[
                &format!("{field}.cert: "),
                "a.pem (key ",
                "other.key): the private key does not match",
            ],
        ),
        (
            "{ cert: old.pem, key: old.key }",
            &[
                &format!("{field}.cert: "),
                "old.pem: the certificate",
                "expired on",
            ],
        ),
    ];
    for (files, wanted) in cases {
        let errors = load_in(dir.path(), &single(files)).unwrap_err();
        assert_error(&errors, wanted);
        assert!(errors[0].starts_with(&dir.path().join("f.yaml").display().to_string()));
    }
}

#[test]
fn a_certificate_must_cover_every_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, key, _) = issued(&["a.example.com", "*.w.example.com"]);
    write(dir.path(), "a.pem", &chain);
    write(dir.path(), "a.key", &key);
    let tls = "{ certificates: [{ cert: a.pem, key: a.key }] }";
    assert!(
        load_in(
            dir.path(),
            &listener(
                tls,
                "[a.example.com, x.w.example.com, \"*.w.example.com\", \"*\"]"
            )
        )
        .is_ok()
    );
    let errors = load_in(dir.path(), &listener(tls, "[a.example.com, b.example.com]")).unwrap_err();
    assert_error(
        &errors,
        &[
            "listeners.public.tls.certificates: no certificate covers `b.example.com` (host `site`)",
            "a.pem",
        ],
    );
}

#[test]
fn tls_options_that_cannot_work_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, key, _) = issued(&["a.example.com"]);
    write(dir.path(), "a.pem", &chain);
    write(dir.path(), "a.key", &key);
    let cert = "{ cert: a.pem, key: a.key }";
    let cases: &[(String, &str)] = &[
        (
            listener(&format!("{{ certificates: [{cert}], require_client_cert: true }}"), "[a.example.com]"),
            "listeners.public.tls.require_client_cert: needs `client_ca`",
        ),
        (
            listener(&format!("{{ certificates: [{cert}], min_version: \"1.1\" }}"), "[a.example.com]"),
            "listeners.public.tls.min_version: expected \"1.2\" or \"1.3\"",
        ),
        (
            listener("{ certificates: [] }", "[a.example.com]"),
            "a TLS listener needs 1 to 64 certificates",
        ),
        (
            listener(&format!("{{ certificates: [{cert}, {cert}] }}"), "[a.example.com]"),
            "this certificate is listed twice",
        ),
        (
            format!("version: 1\nclusters: {{ pg: {{ endpoints: [127.0.0.1:1] }} }}\nlisteners:\n  db: {{ address: 127.0.0.1:2, protocol: tcp, to: pg, tls: {{ certificates: [{cert}] }} }}\n"),
            "listeners.db.tls: TLS is terminated on HTTP listeners",
        ),
        (
            "version: 1\nclusters: { web: { endpoints: [127.0.0.1:1] } }\nlisteners:\n  plain: { address: 127.0.0.1:2, https_redirect: true, routes: [{ to: web }] }\n".to_string(),
            "`https_redirect: true` redirects every request",
        ),
        (
            "version: 1\nclusters: { web: { endpoints: [127.0.0.1:1], tls: { cert: a.pem } } }\n".to_string(),
            "clusters.web.tls: give both `cert` and `key`",
        ),
    ];
    for (yaml, wanted) in cases {
        let errors = load_in(dir.path(), yaml).unwrap_err();
        assert_error(&errors, &[wanted]);
    }
}

#[test]
fn https_redirect_answers_every_request_with_a_301_to_https() {
    let dir = tempfile::tempdir().unwrap();
    let c = load_in(
        dir.path(),
        "version: 1\nlisteners:\n  plain: { address: 127.0.0.1:2, https_redirect: true }\n",
    )
    .unwrap();
    let hosts = &c.listeners["plain"].hosts;
    assert_eq!(hosts[0].domains, ["*"]);
    let RouteAction::Redirect(r) = &hosts[0].routes[0].action else {
        panic!("{hosts:?}");
    };
    assert_eq!((r.scheme.as_deref(), r.code), (Some("https"), 301));
}

#[test]
fn upstream_tls_decodes_with_system_roots_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, key, ca) = issued(&["client"]);
    write(dir.path(), "c.pem", &chain);
    write(dir.path(), "c.key", &key);
    write(dir.path(), "ca.pem", &ca);
    let c = load_in(
        dir.path(),
        "version: 1
clusters:
  a: { endpoints: [127.0.0.1:1], tls: { sni: api.internal } }
  b:
    endpoints: [127.0.0.1:2]
    tls: { ca: ca.pem, cert: c.pem, key: c.key }
    health_check: { http: { path: /healthz } }
",
    )
    .unwrap();
    let a = c.clusters["a"].tls.as_ref().unwrap();
    assert_eq!(
        (a.sni.as_deref(), &a.ca),
        (Some("api.internal"), &TrustedCa::System)
    );
    let b = &c.clusters["b"];
    assert!(matches!(b.tls.as_ref().unwrap().ca, TrustedCa::Secret(_)));
    let probe = b.health_check.as_ref().unwrap().tls.as_ref().unwrap();
    assert_eq!(probe.roots.as_deref(), Some(ca.as_bytes()));
    assert!(probe.client.is_some());
    assert_eq!(c.secrets.len(), 2);
}

/// Loads `yaml` from `dir/f.yaml` under `policy`.
fn load_under(
    dir: &Path,
    yaml: &str,
    policy: &crate::config::LoadPolicy,
) -> Result<Config, Vec<String>> {
    write(dir, "f.yaml", yaml);
    crate::config::load_with(&dir.join("f.yaml"), policy)
        .map(|l| l.config)
        .map_err(|e| e.lines())
}

#[test]
fn key_files_outside_the_config_directory_and_secrets_dirs_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let (conf, keys) = (root.path().join("conf"), root.path().join("keys"));
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&keys).unwrap();
    let (chain, key, _) = issued(&["a.example.com"]);
    write(&conf, "a.pem", &chain);
    write(&keys, "a.key", &key);
    std::os::unix::fs::symlink(keys.join("a.key"), conf.join("link.key")).unwrap();
    let policy = crate::config::LoadPolicy::default();
    for key_ref in [
        format!("{}", keys.join("a.key").display()),
        "../keys/a.key".to_string(),
        "link.key".to_string(),
    ] {
        let yaml = single(&format!("{{ cert: a.pem, key: {key_ref} }}"));
        let errors = load_under(&conf, &yaml, &policy).unwrap_err();
        assert_error(
            &errors,
            &[
                "listeners.public.tls.certificates[0].key: ",
                "outside the config's directory and every --secrets-dir",
            ],
        );
    }
    let with_dir = crate::config::LoadPolicy {
        secrets_dirs: vec![keys.clone()],
        ..Default::default()
    };
    let yaml = single("{ cert: a.pem, key: link.key }");
    assert!(load_under(&conf, &yaml, &with_dir).is_ok());
    // flotilla's own key (say --xds-tls-key) is never served, even from a secrets dir.
    let own = crate::config::LoadPolicy {
        own_keys: vec![keys.join("a.key")],
        ..with_dir
    };
    let errors = load_under(&conf, &yaml, &own).unwrap_err();
    assert_error(
        &errors,
        &["link.key: this is one of flotilla's own private keys"],
    );
}

#[test]
fn a_certificate_or_ca_file_holding_a_private_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, key, ca) = issued(&["a.example.com"]);
    write(dir.path(), "a.key", &key);
    write(dir.path(), "both.pem", &format!("{chain}{key}"));
    write(dir.path(), "ca-and-key.pem", &format!("{ca}{key}"));
    let errors = load_in(dir.path(), &single("{ cert: both.pem, key: a.key }")).unwrap_err();
    assert_error(
        &errors,
        &[
            "listeners.public.tls.certificates[0].cert: ",
            "both.pem: holds a PRIVATE KEY block",
        ],
    );
    write(dir.path(), "a.pem", &chain);
    let yaml = listener(
        "{ certificates: [{ cert: a.pem, key: a.key }], client_ca: ca-and-key.pem }",
        "[a.example.com]",
    );
    let errors = load_in(dir.path(), &yaml).unwrap_err();
    assert_error(
        &errors,
        &[
            "listeners.public.tls.client_ca: ",
            "ca-and-key.pem: holds a PRIVATE KEY block",
        ],
    );
}

#[test]
fn no_private_key_is_served_when_the_policy_forbids_them() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, key, _) = issued(&["a.example.com"]);
    write(dir.path(), "a.pem", &chain);
    write(dir.path(), "a.key", &key);
    let policy = crate::config::LoadPolicy {
        no_private_keys: Some("plaintext xDS beyond loopback".to_string()),
        ..Default::default()
    };
    let yaml = single("{ cert: a.pem, key: a.key }");
    let errors = load_under(dir.path(), &yaml, &policy).unwrap_err();
    assert_error(&errors, &["a.key: plaintext xDS beyond loopback"]);
}
