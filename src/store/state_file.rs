//! The state file: drains and weight overrides survive a restart.
//!
//! Written whole to a temporary file in the same directory, fsync'd, renamed over the old
//! file, and the directory fsync'd: after a crash the file holds the old state or the new one,
//! never a mix. Registrations are not stored: they are leases, renewed by heartbeats.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::overlay::EndpointKey;

/// The underlying error is part of the message rather than a `source`, so that an error chain
/// (`{:#}`, as the binary prints it) shows it once.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("state file {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("state file {}: {error}", path.display())]
    Format {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("state file {}: version {found} is not one this flotilla reads (it reads version {VERSION})", path.display())]
    Version { path: PathBuf, found: u32 },
}

/// The state file format this flotilla writes and reads.
const VERSION: u32 = 1;

/// What is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Persistent {
    pub drains: BTreeSet<EndpointKey>,
    pub weights: BTreeMap<EndpointKey, u32>,
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    drains: Vec<Entry>,
    weights: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    cluster: String,
    address: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight: Option<u32>,
}

pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: PathBuf) -> StateFile {
        StateFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the stored state; a missing file is an empty state.
    pub fn load(&self) -> Result<Persistent, StateFileError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Persistent::default()),
            Err(error) => {
                return Err(StateFileError::Io {
                    path: self.path.clone(),
                    error,
                });
            }
        };
        let file: File = serde_json::from_str(&text).map_err(|error| StateFileError::Format {
            path: self.path.clone(),
            error,
        })?;
        if file.version != VERSION {
            return Err(StateFileError::Version {
                path: self.path.clone(),
                found: file.version,
            });
        }
        Ok(Persistent {
            drains: file
                .drains
                .into_iter()
                .map(|e| EndpointKey::new(e.cluster, e.address))
                .collect(),
            weights: file
                .weights
                .into_iter()
                .filter_map(|e| Some((EndpointKey::new(e.cluster, e.address), e.weight?)))
                .collect(),
        })
    }

    pub fn save(&self, state: &Persistent) -> Result<(), StateFileError> {
        let io = |error| StateFileError::Io {
            path: self.path.clone(),
            error,
        };
        let file = File {
            version: VERSION,
            drains: state
                .drains
                .iter()
                .map(|k| Entry {
                    cluster: k.cluster.clone(),
                    address: k.address,
                    weight: None,
                })
                .collect(),
            weights: state
                .weights
                .iter()
                .map(|(k, w)| Entry {
                    cluster: k.cluster.clone(),
                    address: k.address,
                    weight: Some(*w),
                })
                .collect(),
        };
        let text = serde_json::to_vec_pretty(&file).map_err(|error| StateFileError::Format {
            path: self.path.clone(),
            error,
        })?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = dir.join(format!(
            ".{}.tmp",
            self.path
                .file_name()
                .map_or("state".into(), |n| n.to_string_lossy())
        ));
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&text).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_missing_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("state.json"));
        assert_eq!(file.load().unwrap(), Persistent::default());
        let mut state = Persistent::default();
        state
            .drains
            .insert(EndpointKey::new("web", "127.0.0.1:1".parse().unwrap()));
        state
            .weights
            .insert(EndpointKey::new("web", "[::1]:2".parse().unwrap()), 7);
        file.save(&state).unwrap();
        assert_eq!(file.load().unwrap(), state);
        assert!(
            !dir.path().join(".state.json.tmp").exists(),
            "no temp file left behind"
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{ not json").unwrap();
        assert!(matches!(
            StateFile::new(path).load(),
            Err(StateFileError::Format { .. })
        ));
    }

    #[test]
    fn a_file_from_another_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, r#"{"version": 99, "drains": [], "weights": []}"#).unwrap();
        let err = StateFile::new(path).load().unwrap_err();
        assert!(
            err.to_string().ends_with(
                "state.json: version 99 is not one this flotilla reads (it reads version 1)"
            ),
            "{err}"
        );
    }

    #[test]
    fn an_error_is_printed_once_in_an_error_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{ not json").unwrap();
        let err = StateFile::new(path).load().unwrap_err();
        let chain = format!("{:#}", anyhow::Error::from(err));
        assert_eq!(chain.matches("key must be a string").count(), 1, "{chain}");
    }
}
