//! `scripts/example-certs`: a local CA and the certificates `examples/tls.yaml` names, written
//! to the directory given. rcgen (a dev-dependency) makes them; no OpenSSL.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// Server certificates: file stem and the names each covers.
const SERVERS: &[(&str, &[&str])] = &[
    ("example.com", &["example.com", "www.example.com"]),
    ("api.example.com", &["api.example.com"]),
    ("partners.example.com", &["partners.example.com"]),
    ("api.internal", &["api.internal"]),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args().nth(1).ok_or("usage: example-certs DIR")?;
    let out = Path::new(&out);
    std::fs::create_dir_all(out)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "flotilla example CA");
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    std::fs::write(out.join("ca.pem"), ca.pem())?;
    let mut issued = vec![("client", vec!["client.example.com"])];
    issued.extend(SERVERS.iter().map(|(stem, names)| (*stem, names.to_vec())));
    for (stem, names) in issued {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        std::fs::write(out.join(format!("{stem}.pem")), cert.pem() + &ca.pem())?;
        std::fs::write(out.join(format!("{stem}.key")), key.serialize_pem())?;
    }
    eprintln!("wrote the example CA and certificates to {}", out.display());
    Ok(())
}
