//! The rules of a plaintext xDS port that listens beyond loopback, where any process that
//! reaches the port could register an address or read a key: registration streams need the
//! admin token, and private keys are refused at start unless `--allow-plaintext-secrets`.
//! flotilla, its clients and the backends run in a network namespace the test creates, with
//! the xDS port on 192.0.2.1 (TEST-NET-1, on that namespace's `lo`).

use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;
use std::time::Duration;

use crate::support::backend::Backend;
use crate::support::flotilla::Flotilla;
use crate::support::netns::{Netns, free_addr_on};
use crate::support::pki::Pki;
use crate::support::xds_client::{SotwClient, node};
use crate::support::{registration, wait};

const BEYOND_LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const TOKEN: &str = "s3cret-admin-token";
const SDS: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// A namespace with 192.0.2.1 on its `lo`, checked from outside with `ip` run inside.
fn namespace() -> Netns {
    let ns = Netns::new(&["192.0.2.1/32"]);
    let out = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            ns.command("ip")
                .args(["-o", "addr", "show", "dev", "lo"])
                .output()
                .await
        })
        .expect("ip addr");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("inet 192.0.2.1/32"), "{text}");
    ns
}

/// Serves `yaml` (written with `files`, paths relative to the config directory) with the
/// xDS port on 192.0.2.1, plaintext.
async fn serve(yaml: &str, files: &[(&str, &str)], extra: &[&str]) -> Flotilla {
    let dir = tempfile::tempdir().expect("temp dir");
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).expect("config dir");
    for (name, text) in files {
        std::fs::write(config_dir.join(name), text).expect("write file");
    }
    let config = config_dir.join("flotilla.yaml");
    std::fs::write(&config, yaml).expect("write config");
    Flotilla::start_xds_on(dir, config, free_addr_on(BEYOND_LOOPBACK), extra).await
}

/// `flotilla register` of `address` into `pool`, with `token` if given; its exit status and
/// stderr when it ends within `within`, None while it still runs (registered).
async fn register(
    flotilla: &Flotilla,
    address: &str,
    token: Option<&str>,
    within: Duration,
) -> (Option<std::process::ExitStatus>, tokio::process::Child) {
    let mut c = registration::command(flotilla.xds, "pool", address);
    if let Some(t) = token {
        c.args(["--registry-token", t]);
    }
    let mut child = c
        .args(["--", "sleep", "60"])
        .env_remove("FLOTILLA_REGISTRY_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flotilla register");
    let ended = tokio::time::timeout(within, child.wait())
        .await
        .ok()
        .map(|s| s.expect("wait"));
    (ended, child)
}

async fn stderr_of(child: &mut tokio::process::Child) -> String {
    use tokio::io::AsyncReadExt;
    let mut text = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut text).await;
    }
    text
}

async fn registered(flotilla: &Flotilla) -> Vec<String> {
    registration::listed(flotilla)
        .await
        .iter()
        .filter_map(|r| r["address"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn registrations_over_plaintext_xds_beyond_loopback_need_the_admin_token() {
    let ns = namespace();
    ns.run(|| async {
        let backend = Backend::start("instance").await;
        let address = backend.address();
        let flotilla = serve(
            "version: 1\nclusters:\n  pool: { endpoints: [], registrations: {} }\n",
            &[],
            &["--admin-token", TOKEN],
        )
        .await;
        flotilla.wait_ready().await;
        assert!(!flotilla.xds.ip().is_loopback(), "{}", flotilla.xds);

        for token in [None, Some("not-the-token")] {
            let (ended, mut child) =
                register(&flotilla, &address, token, Duration::from_secs(10)).await;
            let status = ended.unwrap_or_else(|| panic!("token {token:?}: register still runs"));
            let stderr = stderr_of(&mut child).await;
            assert!(!status.success(), "token {token:?}: {stderr}");
            assert!(
                stderr.contains("needs the admin token")
                    && stderr.contains("does not have valid authentication credentials"),
                "token {token:?}: {stderr}"
            );
            assert!(!stderr.contains(TOKEN), "the token echoed: {stderr}");
        }
        assert!(registered(&flotilla).await.is_empty());

        let (ended, _running) =
            register(&flotilla, &address, Some(TOKEN), Duration::from_secs(1)).await;
        assert!(ended.is_none(), "register with the token ended: {ended:?}");
        wait::until("the registration", Duration::from_secs(10), || async {
            registered(&flotilla).await.contains(&address).then_some(())
        })
        .await;
    });
}

/// Without a configured admin token nothing can register over such a port.
#[test]
fn without_an_admin_token_a_plaintext_port_beyond_loopback_takes_no_registration() {
    let ns = namespace();
    ns.run(|| async {
        let backend = Backend::start("instance").await;
        let flotilla = serve(
            "version: 1\nclusters:\n  pool: { endpoints: [], registrations: {} }\n",
            &[],
            &[],
        )
        .await;
        flotilla.wait_ready().await;
        let (ended, mut child) = register(
            &flotilla,
            &backend.address(),
            Some("a-guess"),
            Duration::from_secs(10),
        )
        .await;
        let stderr = stderr_of(&mut child).await;
        assert!(ended.is_some_and(|s| !s.success()), "{stderr}");
        assert!(
            stderr.contains("does not have permission") && stderr.contains("none is configured"),
            "{stderr}"
        );
        assert!(registered(&flotilla).await.is_empty());
    });
}

#[test]
fn private_keys_over_plaintext_xds_beyond_loopback_are_refused_unless_allowed() {
    let ns = namespace();
    let pki = Pki::new();
    let issued = pki.issue(&["a.example.com"]);
    ns.run(|| async {
        let web = Backend::start("web").await;
        let https = free_addr_on(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let yaml = format!(
            "version: 1
clusters:
  web: {{ endpoints: [{}] }}
listeners:
  public:
    address: {https}
    tls: {{ certificates: [{{ cert: a.pem, key: a.key }}] }}
    hosts: {{ a: {{ domains: [a.example.com], routes: [{{ to: web }}] }} }}
",
            web.address()
        );
        let files = [
            ("a.pem", issued.chain.as_str()),
            ("a.key", issued.key.as_str()),
        ];

        let refused = serve(&yaml, &files, &[]).await;
        wait::until("the key to be refused", Duration::from_secs(10), || async {
            refused
                .log()
                .contains("private keys are not served over plaintext xDS")
                .then_some(())
        })
        .await;
        let ready = refused.get("/readyz").await;
        assert_eq!(ready.status(), 503, "no config may be served");
        let log = refused.log();
        assert!(
            log.contains("a.key") && log.contains("--allow-plaintext-secrets"),
            "{log}"
        );
        let mut edge = SotwClient::open(refused.xds, Some(node("edge-1", "edge"))).await;
        let secret = format!("cert:{}", refused.config.with_file_name("a.pem").display());
        edge.request(SDS, &[&secret], None).await;
        match edge.recv_within(Duration::from_secs(2)).await {
            None | Some(Err(_)) => {}
            Some(Ok(r)) => assert!(r.resources.is_empty(), "a key was served: {r:?}"),
        }
        drop(refused);

        let allowed = serve(&yaml, &files, &["--allow-plaintext-secrets"]).await;
        allowed.wait_ready().await;
        let mut edge = SotwClient::open(allowed.xds, Some(node("edge-1", "edge"))).await;
        let secret = format!("cert:{}", allowed.config.with_file_name("a.pem").display());
        edge.request(SDS, &[&secret], None).await;
        let got = edge.recv().await.expect("the secret, allowed");
        assert_eq!(got.resources.len(), 1, "{got:?}");
        assert_eq!(got.resources[0].type_url, SDS);
    });
}
