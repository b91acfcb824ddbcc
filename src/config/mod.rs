//! The operator's YAML: reading, merging, validating, and (for `serve`) watching it.
//!
//! `load` reads a file or directory, `yaml` turns text into located nodes, `decode` checks them
//! against the schema and builds a [`Config`], collecting every error as a [`Diagnostic`].

mod decode;
mod diagnostic;
pub mod duration;
pub mod empty;
pub mod limits;
mod load;
pub mod model;
pub mod policy;
mod reader;
pub mod reference;
pub mod schema;
pub mod shape;
pub mod sources;
pub mod watch;
pub mod watch_files;
pub mod yaml;

pub use decode::{
    DEFAULT_AUTH_TIMEOUT, DEFAULT_JWKS_CACHE, MAX_AUTH_ITEMS, MAX_AUTH_STRING, MAX_FAULT_DELAY,
    MAX_JWKS_BYTES, MAX_JWKS_CACHE, MAX_JWKS_KEYS, MAX_JWKS_URL, MAX_SERVICE_NAME, check_jwks,
};
pub use decode::{
    GRPC_RETRY_ON, MAX_ACCESS_LOG_PATH, MAX_BODY_BYTES, MAX_CERTIFICATES, MAX_DOMAINS,
    MAX_FIELD_NAME, MAX_FORMAT_FIELDS, MAX_FORMAT_VALUE, MAX_HEADER_EDITS, MAX_HEADER_VALUE,
    MAX_HOSTNAMES, MAX_HOSTS, MAX_PEM_BYTES, MAX_RATE, MAX_REGEX_LEN, MAX_ROUTES, MAX_WEIGHT,
    RESERVED_PREFIX, RETRY_ON, check_access_log_value, format_timestamp, sample_operators,
};
pub use diagnostic::{Diagnostic, Diagnostics};
pub(crate) use load::open_regular;
pub use load::{
    LoadError, Loaded, MAX_CONFIG_BYTES, escape_controls, files_of, load, load_with, parse_sources,
    parse_sources_with, parse_str,
};
pub use model::Config;
pub use policy::LoadPolicy;
pub use reader::parse_socket_address;
pub use sources::Sources;
pub use yaml::{
    ALIAS_BYTE_BUDGET, ALIAS_BYTES_PER_WRITTEN, ALIAS_NODE_BUDGET, ALIAS_NODES_PER_WRITTEN,
    MAX_DEPTH,
};

#[cfg(test)]
mod hostname_tests;
#[cfg(test)]
mod tests;
