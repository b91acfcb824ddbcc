//! Mesh workload certificates: how many flotilla mints per second (a P-256 key generated in
//! memory and a certificate signed by the mesh CA), one at a time as the issuer does. A mesh of
//! n services renews n certificates per half lifetime, so this bounds how short
//! `certificate_ttl` can be for a given mesh size.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use flotilla::identity::workload::MeshCa;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};

fn ca() -> MeshCa {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    MeshCa::from_pem(
        cert.pem().into_bytes(),
        key.serialize_pem().as_bytes(),
        Path::new("ca.pem"),
        Path::new("ca.key"),
    )
    .unwrap()
}

fn mint(c: &mut Criterion) {
    let ca = ca();
    let ttl = Duration::from_secs(24 * 3600);
    let mut g = c.benchmark_group("workload_certificate");
    g.bench_function("mint", |b| {
        b.iter(|| {
            black_box(
                ca.mint("flotilla.local", "payments", ttl, SystemTime::now())
                    .unwrap(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, mint);
criterion_main!(benches);
