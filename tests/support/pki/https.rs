//! HTTPS clients that trust only a test CA.

use std::net::SocketAddr;
use std::time::Duration;

use super::Issued;

/// An HTTPS client that trusts only `ca_pem`, reaches each name at its address, opens a new
/// connection per request (so every request sees the certificate presented right now) and
/// reports the peer's certificate.
pub fn https_client(
    ca_pem: &str,
    resolve: &[(&str, SocketAddr)],
    identity: Option<&Issued>,
) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca"))
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(5));
    for (name, addr) in resolve {
        b = b.resolve(name, *addr);
    }
    if let Some(id) = identity {
        let pem = format!("{}{}", id.chain, id.key);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    b.build().expect("https client")
}

/// The DER of the certificate the server presented for `resp`.
pub fn peer_certificate(resp: &reqwest::Response) -> Option<Vec<u8>> {
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()?
        .peer_certificate()
        .map(<[u8]>::to_vec)
}

/// GET `path` from `https://addr` (trusting the CA in the file `ca`), with a bearer `token`
/// if given: status and body.
pub async fn https_get(
    addr: SocketAddr,
    ca: &str,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let ca_pem = std::fs::read_to_string(ca).expect("read CA");
    let mut req = https_client(&ca_pem, &[], None).get(format!("https://{addr}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(|e| e.to_string())?;
    Ok((status, body))
}
