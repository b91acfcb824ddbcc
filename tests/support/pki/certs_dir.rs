//! The directory `flotilla certs` makes for the xDS port's mTLS (a CA, flotilla's certificate
//! for 127.0.0.1, client certificates issued on demand), the certificates the command refuses
//! to make (expired, a foreign CA's, DNS names only), and gRPC channels over them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, SanType};
use tonic::transport::{Channel, Endpoint};

use super::{Issued, Pki};

pub struct CertsDir {
    pub dir: PathBuf,
    _temp: tempfile::TempDir,
}

fn certs(args: &[&str]) {
    let out = Command::new(crate::support::flotilla_bin())
        .arg("certs")
        .args(args)
        .output()
        .expect("flotilla certs");
    assert!(
        out.status.success(),
        "flotilla certs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Client-certificate parameters with the SANs `sans`.
fn client_params(sans: Vec<SanType>) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = sans;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

fn spiffe(fleet: &str) -> SanType {
    SanType::URI(
        format!("spiffe://flotilla.local/fleet/{fleet}")
            .try_into()
            .expect("uri"),
    )
}

impl CertsDir {
    pub fn new() -> CertsDir {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let d = dir.to_str().expect("utf-8 path");
        certs(&["ca", "--out", d]);
        certs(&["server", "--ca", d, "--san", "127.0.0.1", "--out", d]);
        CertsDir { dir, _temp: temp }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().expect("utf-8").to_string()
    }

    /// `serve` flags for mTLS with this CA.
    pub fn serve_flags(&self) -> Vec<String> {
        vec![
            "--xds-tls-cert".into(),
            self.path("server.pem"),
            "--xds-tls-key".into(),
            self.path("server.key"),
            "--xds-client-ca".into(),
            self.path("ca.pem"),
        ]
    }

    /// Issues a client certificate for `fleet` (and `node`) with `flotilla certs issue`; its
    /// (cert, key) paths.
    pub fn issue(&self, fleet: &str, node: Option<&str>) -> (String, String) {
        let d = self.dir.to_str().expect("utf-8");
        let mut args = vec!["issue", "--ca", d, "--fleet", fleet, "--out", d];
        if let Some(n) = node {
            args.extend(["--node", n]);
        }
        certs(&args);
        let name = match node {
            Some(n) => format!("{fleet}-{n}"),
            None => fleet.to_string(),
        };
        (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        )
    }

    /// `bootstrap` flags for an Envoy of `fleet`/`node`, with a certificate for it.
    pub fn bootstrap_flags(&self, fleet: &str, node: &str) -> Vec<String> {
        self.bootstrap_flags_with(&self.issue(fleet, Some(node)))
    }

    /// `bootstrap` flags for an Envoy presenting the client certificate `pair`.
    pub fn bootstrap_flags_with(&self, pair: &(String, String)) -> Vec<String> {
        vec![
            "--xds-ca".into(),
            self.path("ca.pem"),
            "--xds-cert".into(),
            pair.0.clone(),
            "--xds-key".into(),
            pair.1.clone(),
        ]
    }

    /// The CA `flotilla certs ca` made, ready to sign.
    fn ca(&self) -> Pki {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).expect("read CA");
        Pki::from_pem(&read("ca.pem"), &read("ca.key"))
    }

    fn write(&self, issued: Issued, stem: &str) -> (String, String) {
        issued.write(&self.dir, stem)
    }

    /// A client certificate for `fleet` signed by this CA but expired years ago.
    pub fn issue_expired(&self, fleet: &str) -> (String, String) {
        let mut params = client_params(vec![spiffe(fleet)]);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        self.write(self.ca().sign(params), "expired")
    }

    /// A client certificate from this CA carrying no SPIFFE ID (a DNS name only).
    pub fn issue_without_identity(&self) -> (String, String) {
        self.issue_dns("instance.example")
    }

    /// A client certificate from this CA whose only SAN is the DNS name `name` (for
    /// `--identity-dns-pattern`).
    pub fn issue_dns(&self, name: &str) -> (String, String) {
        let dns = SanType::DnsName(name.try_into().expect("dns name"));
        self.write(self.ca().sign(client_params(vec![dns])), name)
    }

    /// A client certificate for `fleet` from a CA flotilla does not trust.
    pub fn issue_foreign(&self, fleet: &str) -> (String, String) {
        let issued = Pki::new().sign(client_params(vec![spiffe(fleet)]));
        self.write(issued, "foreign")
    }

    /// A gRPC channel to flotilla over TLS, with `client` (cert, key) if given. Err: the
    /// connection failed (handshake refused).
    pub async fn channel(
        &self,
        xds: SocketAddr,
        client: Option<&(String, String)>,
    ) -> Result<Channel, String> {
        let tls = flotilla::tls::ClientTls {
            ca: Some(self.dir.join("ca.pem")),
            cert_and_key: client.map(|(c, k)| (c.into(), k.into())),
        };
        let connector = tls
            .connector(&xds.ip().to_string(), xds.port())
            .map_err(|e| e.to_string())?;
        Endpoint::from_shared(format!("http://{xds}"))
            .expect("endpoint")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector(connector)
            .await
            .map_err(|e| format!("{e:?}"))
    }
}
