//! Makes Envoy's protobuf descriptors available to the crate.
//!
//! `envoy-types` generates its Rust types from a FileDescriptorSet that it ships in its source
//! package (`src/generated/types.bin`) but does not export. flotilla needs those descriptors to
//! print resources in Envoy's own proto3 JSON form (the form of `/config_dump`) and to read JSON
//! back, so this script copies that exact file into OUT_DIR: the descriptors can never drift from
//! the Rust types they describe.
//!
//! It also compiles flotilla's own gRPC API and etcd's v3 API (`proto/`) with protox, a protobuf compiler in
//! Rust, so that a fresh machine needs no `protoc` binary.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    compile_own_protos();
    println!("cargo:rerun-if-changed=Cargo.lock");
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    // Offline first: everything a build needs is already downloaded. `cargo metadata` also wants
    // the dev-dependencies, which a plain `cargo build` on a fresh machine has not fetched yet, so
    // fall back to letting cargo fetch them.
    let metadata = [true, false]
        .into_iter()
        .find_map(|offline| {
            let mut options = vec!["--filter-platform".to_string(), target.clone()];
            if offline {
                options.push("--offline".to_string());
            }
            cargo_metadata::MetadataCommand::new()
                .other_options(options)
                .exec()
                .ok()
        })
        .expect("cargo metadata (needed to locate envoy-types' descriptor set)");
    let package = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "envoy-types")
        .expect("envoy-types is a dependency");
    let source: PathBuf = package
        .manifest_path
        .parent()
        .expect("manifest has a parent directory")
        .join("src/generated/types.bin")
        .into();
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("envoy_descriptors.bin");
    std::fs::copy(&source, &out)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", source.display(), out.display()));
    println!("cargo:rerun-if-changed={}", source.display());
}

fn compile_own_protos() {
    println!("cargo:rerun-if-changed=proto");
    let files = ["proto/flotilla/registry/v1/registry.proto"];
    let descriptors = protox::compile(files, ["proto"]).unwrap_or_else(|e| panic!("{e}"));
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("generate code for proto/: {e}"));
    // etcd's v3 API, client side only: replicas share their runtime state through etcd.
    let etcd = protox::compile(["proto/etcd/api/etcdserverpb/rpc.proto"], ["proto"])
        .unwrap_or_else(|e| panic!("{e}"));
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(etcd)
        .unwrap_or_else(|e| panic!("generate code for proto/etcd: {e}"));
}
