//! Reading a configuration from disk: one YAML file, or a directory of them merged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::decode;
use super::diagnostic::{Diagnostic, Diagnostics};
use super::model::Config;
use super::yaml::{self, Location};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no *.yaml or *.yml files in this directory", .0.display())]
    NoFiles(PathBuf),
    #[error("{0}")]
    Invalid(#[from] Diagnostics),
}

impl LoadError {
    /// The individual problems, one per line, as `validate` prints them.
    pub fn lines(&self) -> Vec<String> {
        match self {
            LoadError::Invalid(d) => d.0.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

/// A configuration and the files it was read from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub files: Vec<PathBuf>,
}

/// Loads `path`: a YAML file, or a directory whose `*.yaml`/`*.yml` files are merged. Hidden
/// entries are skipped, which is what makes a Kubernetes ConfigMap mount (`..data` and
/// timestamped directories beside symlinks) read as just its files.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let files = files_of(path)?;
    let mut sources = Vec::with_capacity(files.len());
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|source| LoadError::Io {
            path: file.clone(),
            source,
        })?;
        sources.push((file.clone(), text));
    }
    let config = parse_sources(&sources)?;
    Ok(Loaded { config, files })
}

/// The files `load` reads for `path`, in the order it reads them.
pub fn files_of(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let io = |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        let file = entry.path();
        // Follows symlinks: ConfigMap files are links into `..data`. A dangling link is skipped
        // rather than fatal, since mid-swap it can dangle for an instant.
        if std::fs::metadata(&file).is_ok_and(|m| m.is_file()) {
            files.push(file);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(LoadError::NoFiles(path.to_path_buf()));
    }
    Ok(files)
}

/// Parses and validates in-memory sources, each named by the path shown in diagnostics.
pub fn parse_sources(sources: &[(PathBuf, String)]) -> Result<Config, Diagnostics> {
    let mut parsed = Vec::with_capacity(sources.len());
    let mut syntax = Vec::new();
    for (path, text) in sources {
        let file = Arc::new(path.clone());
        match yaml::parse(text, file.clone()) {
            Ok(root) => parsed.push((Location::new(file, 1, 1), root)),
            Err(e) => syntax.push(Diagnostic {
                loc: e.loc,
                field: String::new(),
                message: format!("invalid YAML: {}", e.message),
            }),
        }
    }
    // Decoding the readable files alone would report references into the unreadable ones as
    // unknown; the syntax errors are what the operator needs to fix first.
    if !syntax.is_empty() {
        syntax.sort();
        return Err(Diagnostics(syntax));
    }
    decode::decode(&parsed)
}

/// Parses one in-memory YAML document (tests, the embedded quickstart).
pub fn parse_str(name: &str, text: &str) -> Result<Config, Diagnostics> {
    parse_sources(&[(PathBuf::from(name), text.to_string())])
}
