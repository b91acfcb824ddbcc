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
mod reader;
pub mod reference;
pub mod schema;
pub mod shape;
pub mod watch;
pub mod watch_files;
pub mod yaml;

pub use decode::{
    GRPC_RETRY_ON, MAX_ACCESS_LOG_PATH, MAX_BODY_BYTES, MAX_CERTIFICATES, MAX_DOMAINS,
    MAX_FIELD_NAME, MAX_FORMAT_FIELDS, MAX_FORMAT_VALUE, MAX_HEADER_EDITS, MAX_HEADER_VALUE,
    MAX_HOSTS, MAX_PEM_BYTES, MAX_RATE, MAX_REGEX_LEN, MAX_ROUTES, MAX_WEIGHT, RESERVED_PREFIX,
    RETRY_ON, check_access_log_value, format_timestamp, sample_operators,
};
pub use diagnostic::{Diagnostic, Diagnostics};
pub use load::{
    LoadError, Loaded, MAX_CONFIG_BYTES, escape_controls, files_of, load, parse_sources, parse_str,
};
pub use model::Config;
pub use reader::parse_socket_address;
pub use yaml::{ALIAS_NODE_BUDGET, ALIAS_NODES_PER_WRITTEN, MAX_DEPTH};

#[cfg(test)]
mod tests;
