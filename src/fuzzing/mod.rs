//! Entry points for the fuzz targets in `fuzz/` and for the replay of their corpora
//! (`tests/fuzz_corpus.rs`): one function per input flotilla reads from outside, taking raw
//! bytes. Each one panics only on a real finding (a crash, or a broken invariant it checks);
//! resource blow-ups are found by the fuzzer's RSS and time limits.
//!
//! Not an API: public only so that the fuzz crate, built apart from this one, can reach
//! what it needs.

mod admin;
mod config;
mod dns;
mod etcd;
mod gitops;
mod iptables;
mod jwks;
mod seeds;
mod state;
mod traffic;

pub use crate::xds::fuzz::stream as xds_stream;
pub use admin::admin_request;
pub use config::config_files;
pub use dns::dns_answer;
pub use etcd::etcd_value;
pub use gitops::{diff_input, history_file, revision_source};
pub use iptables::sidecar_iptables;
pub use jwks::jwks;
pub use seeds::seeds;
pub use state::state_file;
pub use traffic::{load_report, stats_flush};

/// What a fuzz target runs on one input.
pub type Entry = fn(&[u8]);

/// Targets by name, as `fuzz/fuzz_targets/` and `fuzz/corpus/` name them.
pub const TARGETS: [(&str, Entry); 13] = [
    ("config", config_files),
    ("xds_request", xds_stream),
    ("stats_sink", stats_flush),
    ("load_report", load_report),
    ("admin_api", admin_request),
    ("state_file", state_file),
    ("history_file", history_file),
    ("diff_input", diff_input),
    ("jwks", jwks),
    ("etcd_value", etcd_value),
    ("dns_answer", dns_answer),
    ("revision_source", revision_source),
    ("sidecar_iptables", sidecar_iptables),
];
