//! `auth`, `tracing` and `fault`: what decodes, and each bad value named with its place.

use std::path::Path;

use crate::config::model::{AbortStatus, Auth, AuthProtocol, Jwks, TrustedCa};
use crate::config::{Config, load};

const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"5LVdNosGCr2nZ6YTFa2OKEpuOjzGksUleAMRqCq_1rw","y":"K8POYyokVrRPaboJGobO8cPTuQscRAK3sjvDAO3Rdzs"}]}"#;

fn load_in(dir: &Path, listener_extra: &str, route_extra: &str) -> Result<Config, Vec<String>> {
    let yaml = format!(
        "version: 1
clusters:
  web: {{ endpoints: [127.0.0.1:1] }}
  authz: {{ endpoints: [127.0.0.1:3] }}
  otel: {{ endpoints: [127.0.0.1:4], upstream_protocol: http2 }}
listeners:
  public:
    address: 127.0.0.1:2
{listener_extra}
    routes:
      - {{ to: web{route_extra} }}
"
    );
    std::fs::write(dir.join("f.yaml"), yaml).unwrap();
    load(&dir.join("f.yaml"))
        .map(|l| l.config)
        .map_err(|e| e.lines())
}

fn one_error(r: Result<Config, Vec<String>>, wanted: &[&str]) {
    let errors = r.expect_err("refused");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    for w in wanted {
        assert!(errors[0].contains(w), "{w:?} not in {:?}", errors[0]);
    }
}

#[test]
fn jwt_with_a_jwks_file_decodes_and_a_route_can_be_exempt() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), JWKS).unwrap();
    let c = load_in(
        dir.path(),
        "    auth: { jwt: { issuer: https://i, audiences: [api], jwks: jwks.json, claims_to_headers: { sub: X-User } } }",
        ", auth: none",
    )
    .unwrap();
    let l = &c.listeners["public"];
    let Some(Auth::Jwt(j)) = &l.auth else {
        panic!("{:?}", l.auth)
    };
    assert!(matches!(&j.jwks, Jwks::File { json, .. } if json == JWKS));
    assert_eq!(j.claims_to_headers["sub"], "x-user");
    assert_eq!(l.hosts[0].routes[0].auth, Some(Auth::None));
    assert_eq!(l.jwks_files().count(), 1);
    assert_eq!(c.watched_files().count(), 1);
}

#[test]
fn a_jwks_file_that_is_not_json_or_has_no_keys_is_refused_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let auth = "    auth: { jwt: { issuer: https://i, jwks: jwks.json } }";
    std::fs::write(dir.path().join("jwks.json"), "{\n  \"keys\": [\n").unwrap();
    one_error(
        load_in(dir.path(), auth, ""),
        &[
            "f.yaml:9:",
            "auth.jwt.jwks",
            "jwks.json",
            "not JSON",
            "line 3",
        ],
    );
    std::fs::write(dir.path().join("jwks.json"), r#"{"keys":[]}"#).unwrap();
    one_error(load_in(dir.path(), auth, ""), &["no keys"]);
    let private = JWKS.replace(r#""kid":"k","#, r#""kid":"k","d":"secret","#);
    std::fs::write(dir.path().join("jwks.json"), private).unwrap();
    one_error(load_in(dir.path(), auth, ""), &["private key material"]);
}

#[test]
fn jwks_files_outside_the_config_directory_and_secrets_dirs_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let (conf, keys) = (root.path().join("conf"), root.path().join("keys"));
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("jwks.json"), JWKS).unwrap();
    std::os::unix::fs::symlink(keys.join("jwks.json"), conf.join("link.json")).unwrap();
    for file in [
        keys.join("jwks.json").display().to_string(),
        "../keys/jwks.json".to_string(),
        "link.json".to_string(),
    ] {
        let auth = format!("    auth: {{ jwt: {{ issuer: https://i, jwks: \"{file}\" }} }}");
        one_error(
            load_in(&conf, &auth, ""),
            &[
                "f.yaml:9:",
                "listeners.public.auth.jwt.jwks: ",
                "outside the config's directory and every --secrets-dir",
            ],
        );
    }
    // The same file through a --secrets-dir is served.
    let policy = crate::config::LoadPolicy {
        secrets_dirs: vec![keys.clone()],
        ..Default::default()
    };
    let auth = "    auth: { jwt: { issuer: https://i, jwks: link.json } }";
    load_in(&conf, auth, "").unwrap_err(); // writes f.yaml; refused without the flag
    let c = crate::config::load_with(&conf.join("f.yaml"), &policy).map(|l| l.config);
    assert!(c.is_ok(), "{:?}", c.err().map(|e| e.lines()));
}

#[test]
fn a_remote_jwks_must_be_https() {
    let dir = tempfile::tempdir().unwrap();
    let c = load_in(
        dir.path(),
        "    auth: { jwt: { issuer: https://i, jwks: \"https://login.example.com/keys\" } }",
        "",
    )
    .unwrap();
    assert_eq!(
        c.listeners["public"].jwks_clusters().collect::<Vec<_>>(),
        ["jwks:login.example.com:443"]
    );
    one_error(
        load_in(
            dir.path(),
            "    auth: { jwt: { issuer: https://i, jwks: \"http://login.example.com/keys\" } }",
            "",
        ),
        &["https only"],
    );
    for (url, want) in [
        ("https://user:secret@login.example.com/keys", "credentials"),
        ("https://login.example.com:0/keys", "port 0"),
        ("https://0.0.0.0/keys", "unspecified"),
        ("https://169.254.169.254/latest", "link-local"),
        ("https://[fd00:ec2::254]/keys", "metadata service"),
    ] {
        one_error(
            load_in(
                dir.path(),
                &format!("    auth: {{ jwt: {{ issuer: https://i, jwks: \"{url}\" }} }}"),
                "",
            ),
            &[want],
        );
    }
}

#[test]
fn a_remote_jwks_takes_its_ca_and_cache_duration() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, ca) = crate::tls::tests::issued(&["jwks.test"]);
    std::fs::write(dir.path().join("idp-ca.pem"), &ca).unwrap();
    std::fs::write(dir.path().join("jwks.json"), JWKS).unwrap();
    let c = load_in(
        dir.path(),
        "    auth: { jwt: { issuer: https://i, jwks: \"https://jwks.test:8443/keys\", jwks_ca: idp-ca.pem, jwks_cache: 30s } }",
        "",
    )
    .unwrap();
    let l = &c.listeners["public"];
    let Some(Auth::Jwt(j)) = &l.auth else {
        panic!("{:?}", l.auth)
    };
    let Jwks::Remote(r) = &j.jwks else {
        panic!("{:?}", j.jwks)
    };
    assert_eq!(r.cache, std::time::Duration::from_secs(30));
    let TrustedCa::Secret(name) = &r.ca else {
        panic!("{:?}", r.ca)
    };
    // The CA is a Secret like a cluster's, sent to the fleets whose listener fetches through it.
    assert_eq!(c.secrets[name].cert_pem, ca.as_bytes());
    assert_eq!(l.secrets().collect::<Vec<_>>(), [name.as_str()]);
    assert!(
        l.jwks_clusters()
            .next()
            .unwrap()
            .starts_with("jwks:jwks.test:8443:ca-")
    );

    for (auth, wanted) in [
        (
            "    auth: { jwt: { issuer: https://i, jwks: jwks.json, jwks_ca: idp-ca.pem } }",
            &[
                "f.yaml:9:",
                "auth.jwt.jwks_ca: `jwks_ca` applies to a JWKS URL",
            ][..],
        ),
        (
            "    auth: { jwt: { issuer: https://i, jwks: \"https://jwks.test/keys\", jwks_cache: 100ms } }",
            &["f.yaml:9:", "auth.jwt.jwks_cache"][..],
        ),
        (
            "    auth: { jwt: { issuer: https://i, jwks: \"https://jwks.test/keys\", jwks_ca: missing.pem } }",
            &["f.yaml:9:", "auth.jwt.jwks_ca", "missing.pem"][..],
        ),
    ] {
        one_error(load_in(dir.path(), auth, ""), wanted);
    }
}

#[test]
fn external_auth_decodes_and_an_unknown_cluster_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = load_in(
        dir.path(),
        "    auth: { external: { cluster: authz, timeout: 250ms, failure: allow, headers: [X-Tenant] } }",
        "",
    )
    .unwrap();
    let Some(Auth::External(e)) = &c.listeners["public"].auth else {
        panic!()
    };
    assert_eq!(e.protocol, AuthProtocol::Http);
    assert!(e.failure_allow);
    assert_eq!(e.headers, ["x-tenant"]);
    assert!(c.listeners["public"].clusters().any(|c| c == "authz"));
    one_error(
        load_in(dir.path(), "    auth: { external: { cluster: authx } }", ""),
        &["auth.external.cluster", "unknown cluster `authx`"],
    );
    one_error(
        load_in(
            dir.path(),
            "    auth: { external: { cluster: authz, protocol: grpc } }",
            "",
        ),
        &["upstream_protocol: http2"],
    );
    one_error(
        load_in(dir.path(), "    auth: none", ""),
        &["exempts a host or route"],
    );
}

#[test]
fn tracing_decodes_and_sampling_outside_0_to_100_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = load_in(
        dir.path(),
        "    tracing: { collector: otel, sampling: 0.5 }",
        "",
    )
    .unwrap();
    let t = c.listeners["public"].tracing.as_ref().unwrap();
    assert_eq!((t.sampling, t.service_name.as_str()), (0.5, "public"));
    one_error(
        load_in(
            dir.path(),
            "    tracing: { collector: otel, sampling: 101 }",
            "",
        ),
        &["f.yaml:9:", "tracing.sampling", "0 to 100"],
    );
    one_error(
        load_in(dir.path(), "    tracing: { collector: web }", ""),
        &["upstream_protocol: http2"],
    );
}

#[test]
fn faults_decode_and_need_a_delay_or_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    let c = load_in(
        dir.path(),
        "",
        ", fault: { delay: { duration: 100ms, percent: 5 }, abort: { status: 503 } }",
    )
    .unwrap();
    let f = c.listeners["public"].hosts[0].routes[0]
        .fault
        .clone()
        .unwrap();
    assert_eq!(f.delay.unwrap().percent, 5);
    assert_eq!(f.abort.unwrap().percent, 100);
    one_error(
        load_in(dir.path(), "", ", fault: {}"),
        &["`delay`, `abort` or both"],
    );
    one_error(
        load_in(dir.path(), "", ", fault: { abort: { status: 700 } }"),
        &["fault.abort.status"],
    );
    let c = load_in(dir.path(), "", ", fault: { abort: { grpc_status: 14 } }").unwrap();
    let abort = c.listeners["public"].hosts[0].routes[0]
        .fault
        .clone()
        .and_then(|f| f.abort)
        .unwrap();
    assert_eq!(abort.status, AbortStatus::Grpc(14));
    for (fault, wanted) in [
        ("{ abort: { grpc_status: 0 } }", "fault.abort.grpc_status"),
        ("{ abort: { grpc_status: 17 } }", "fault.abort.grpc_status"),
        (
            "{ abort: { status: 503, grpc_status: 14 } }",
            "fault.abort.grpc_status: give either `status` (HTTP) or `grpc_status`",
        ),
        (
            "{ abort: { percent: 5 } }",
            "missing field `status` (or `grpc_status`)",
        ),
    ] {
        one_error(
            load_in(dir.path(), "", &format!(", fault: {fault}")),
            &["f.yaml:11:", wanted],
        );
    }
}

#[test]
fn proxyless_grpc_routes_take_faults() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "version: 1
clusters: { web: { endpoints: [127.0.0.1:1] } }
listeners:
  svc:
    proxyless_grpc: true
    routes: [{ to: web, fault: { delay: { duration: 50ms }, abort: { grpc_status: 14, percent: 50 } } }]
";
    std::fs::write(dir.path().join("f.yaml"), yaml).unwrap();
    let c = load(&dir.path().join("f.yaml"))
        .map_err(|e| e.lines())
        .unwrap()
        .config;
    let fault = c.listeners["svc"].hosts[0].routes[0].fault.clone().unwrap();
    assert_eq!(fault.abort.unwrap().status, AbortStatus::Grpc(14));
}

#[test]
fn proxyless_grpc_listeners_refuse_auth_and_tracing() {
    let dir = tempfile::tempdir().unwrap();
    for (key, value) in [
        ("auth", "{ external: { cluster: authz } }"),
        ("tracing", "{ collector: otel }"),
    ] {
        let yaml = format!(
            "version: 1
clusters: {{ web: {{ endpoints: [127.0.0.1:1] }}, authz: {{ endpoints: [127.0.0.1:3] }}, otel: {{ endpoints: [127.0.0.1:4], upstream_protocol: http2 }} }}
listeners:
  svc:
    proxyless_grpc: true
    {key}: {value}
    routes: [{{ to: web, fault: {{ abort: {{ status: 503 }} }} }}]
"
        );
        std::fs::write(dir.path().join("f.yaml"), yaml).unwrap();
        let errors = load(&dir.path().join("f.yaml"))
            .map(|_| ())
            .unwrap_err()
            .lines();
        assert!(
            errors.iter().any(|e| e.contains(&format!("svc.{key}"))),
            "{errors:#?}"
        );
        assert!(!errors.iter().any(|e| e.contains("fault")), "{errors:#?}");
    }
}
