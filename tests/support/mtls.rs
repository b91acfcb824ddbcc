//! Certificates for the xDS port's mTLS, made by `flotilla certs` (and by rcgen for what the
//! command refuses to make: expired certificates, foreign CAs), and gRPC channels over them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair, SanType};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tonic::transport::{Channel, Endpoint};

/// A directory with a CA, flotilla's server certificate for 127.0.0.1, and client
/// certificates issued on demand.
pub struct Pki {
    pub dir: PathBuf,
    _temp: tempfile::TempDir,
}

fn certs(args: &[&str]) {
    let out = Command::new(super::flotilla_bin())
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

impl Pki {
    pub fn new() -> Pki {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let d = dir.to_str().expect("utf-8 path");
        certs(&["ca", "--out", d]);
        certs(&["server", "--ca", d, "--san", "127.0.0.1", "--out", d]);
        Pki { dir, _temp: temp }
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

    /// Issues a client certificate for `fleet` (and `node`); its (cert, key) paths.
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
        let (cert, key) = self.issue(fleet, Some(node));
        vec![
            "--xds-ca".into(),
            self.path("ca.pem"),
            "--xds-cert".into(),
            cert,
            "--xds-key".into(),
            key,
        ]
    }

    /// The CA, ready to sign.
    fn ca(&self) -> (rcgen::Certificate, KeyPair) {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).expect("read CA");
        let key = KeyPair::from_pem(&read("ca.key")).expect("ca key");
        let params = CertificateParams::from_ca_cert_pem(&read("ca.pem")).expect("ca pem");
        (params.self_signed(&key).expect("ca"), key)
    }

    /// A client certificate for `fleet` signed by this CA but expired a year ago.
    pub fn issue_expired(&self, fleet: &str) -> (String, String) {
        let (ca, ca_key) = self.ca();
        let mut params = client_params(fleet);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &ca, &ca_key).expect("cert");
        write_pair(&self.dir, "expired", &cert.pem(), &key.serialize_pem())
    }

    /// A client certificate from this CA carrying no SPIFFE ID (a DNS name only).
    pub fn issue_without_identity(&self) -> (String, String) {
        let (ca, ca_key) = self.ca();
        let mut params =
            CertificateParams::new(vec!["instance.example".to_string()]).expect("params");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &ca, &ca_key).expect("cert");
        write_pair(&self.dir, "anonymous", &cert.pem(), &key.serialize_pem())
    }

    /// A client certificate for `fleet` from a CA flotilla does not trust.
    pub fn issue_foreign(&self, fleet: &str) -> (String, String) {
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let key = KeyPair::generate().expect("key");
        let cert = client_params(fleet)
            .signed_by(&key, &ca, &ca_key)
            .expect("cert");
        write_pair(&self.dir, "foreign", &cert.pem(), &key.serialize_pem())
    }

    /// A gRPC channel to flotilla over TLS, with `client` (cert, key) if given. Err: the
    /// connection failed (handshake refused).
    pub async fn channel(
        &self,
        xds: SocketAddr,
        client: Option<&(String, String)>,
    ) -> Result<Channel, String> {
        let tls = flotilla::tls::ClientTls {
            ca: self.dir.join("ca.pem"),
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

fn client_params(fleet: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = vec![SanType::URI(
        format!("spiffe://flotilla.local/fleet/{fleet}")
            .try_into()
            .expect("uri"),
    )];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

fn write_pair(dir: &Path, name: &str, cert: &str, key: &str) -> (String, String) {
    let c = dir.join(format!("{name}.pem"));
    let k = dir.join(format!("{name}.key"));
    std::fs::write(&c, cert).expect("write cert");
    std::fs::write(&k, key).expect("write key");
    (
        c.to_str().expect("utf-8").to_string(),
        k.to_str().expect("utf-8").to_string(),
    )
}

/// GET `path` over HTTPS (trusting `ca`), with a bearer `token` if given: status and body.
pub async fn https_get(
    addr: SocketAddr,
    ca: &str,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    use http_body_util::BodyExt;
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(c.expect("ca cert")).expect("root");
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let attempt = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from("127.0.0.1").expect("name");
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = http::Request::get(path).header("host", addr.to_string());
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = sender
            .send_request(
                req.body(http_body_util::Empty::<bytes::Bytes>::new())
                    .expect("request"),
            )
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok((
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        ))
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| "timed out".to_string())?
}
