use std::path::{Path, PathBuf};

use super::*;

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";
const STORE: ClientTlsFlags = ClientTlsFlags {
    ca: "--store-cacert",
    cert: "--store-cert",
    key: "--store-key",
};

fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn no_file_is_no_tls() {
    assert_eq!(ClientPem::load_flags(STORE, None, None, None), Ok(None));
}

#[test]
fn a_ca_alone_or_a_pair_turns_tls_on() {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = (file(dir.path(), "c", CERT), file(dir.path(), "k", KEY));
    assert!(
        ClientPem::load_flags(STORE, Some(&c), None, None)
            .unwrap()
            .is_some()
    );
    let both = ClientPem::load_flags(STORE, None, Some(&c), Some(&k))
        .unwrap()
        .unwrap();
    assert!(both.ca.is_none() && both.identity.is_some());
    assert_eq!(
        format!("{both:?}"),
        "ClientPem { ca: false, client_certificate: true }"
    );
}

#[test]
fn bad_files_name_the_flag_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = (file(dir.path(), "c", CERT), file(dir.path(), "k", KEY));
    let junk = file(dir.path(), "junk", "hello");
    let missing = dir.path().join("missing");
    for (ca, cert, key, message) in [
        (
            None,
            Some(&c),
            None,
            "--store-cert and --store-key go together",
        ),
        (
            None,
            None,
            Some(&k),
            "--store-cert and --store-key go together",
        ),
        (Some(&junk), None, None, "--store-cacert"),
        (Some(&k), None, None, "holds no PEM certificate"),
        (None, Some(&c), Some(&c), "--store-key"),
        (None, Some(&c), Some(&c), "holds no PEM private key"),
        (Some(&missing), None, None, "No such file"),
    ] {
        let e = ClientPem::load_flags(
            STORE,
            ca.map(|p| p.as_path()),
            cert.map(|p| p.as_path()),
            key.map(|p| p.as_path()),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(message), "{e}");
    }
    let big = file(
        dir.path(),
        "big",
        &"x".repeat(crate::tls::MAX_PEM_BYTES as usize + 1),
    );
    let e = ClientPem::load_flags(STORE, Some(&big), None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("larger than the 1048576 bytes allowed"), "{e}");
}

#[test]
fn files_named_by_path_report_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let junk = file(dir.path(), "junk", "hello");
    let tls = ClientTls {
        ca: Some(junk.clone()),
        cert_and_key: None,
    };
    let e = tls.load().unwrap_err().to_string();
    assert!(e.contains(&junk.display().to_string()), "{e}");
    assert!(e.contains("holds no PEM certificate"), "{e}");
}
