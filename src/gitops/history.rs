//! `GET /api/v1/history` and `flotilla history`: the last [`CAPACITY`] applied configs, with
//! their revision, trigger, author, what changed and how each fleet took them.
//!
//! Kept across restarts behind [`HistoryStore`] (a JSON file beside the state file today;
//! the shared store can implement the same trait later). The file is bounded: at most
//! [`MAX_FILE_BYTES`] are read, and a file that cannot be read is a warning and an empty
//! history, never a refusal to start.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::revision::Revision;

/// Applied configs kept.
pub const CAPACITY: usize = 100;
/// The largest history file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Longest summary or rejection line kept, in characters.
pub const MAX_TEXT: usize = 1024;
/// Fleets with an outcome per entry.
pub const MAX_FLEETS: usize = 256;
/// Rejections kept per fleet and entry.
pub const MAX_REJECTIONS: usize = 5;

const VERSION: u32 = 1;

/// How one fleet took an applied config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// `Synced`, `Progressing` or `OutOfSync`.
    pub sync: String,
    /// The Envoys that rejected it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_by: Vec<String>,
    /// The rejections traced to the YAML (`rejected by edge-1: web.yaml:14:3 …`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejections: Vec<String>,
}

/// One applied config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Counts up across restarts.
    pub id: u64,
    pub revision: Option<Revision>,
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    /// `startup`, `file`, `SIGHUP`.
    pub trigger: String,
    /// The commit's author, when git knows it.
    pub who: Option<String>,
    pub summary: String,
    /// Per fleet; updated while this is the newest entry, frozen once another is applied.
    #[serde(default)]
    pub outcome: BTreeMap<String, Outcome>,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history file {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("history file: {0}")]
    Format(String),
}

/// Where history is kept between runs.
pub trait HistoryStore: Send + Sync {
    fn load(&self) -> Result<Vec<Entry>, HistoryError>;
    fn save(&self, entries: &[Entry]) -> Result<(), HistoryError>;
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    entries: Vec<Entry>,
}

/// Reads a history file's text: the newest [`CAPACITY`] entries, each cut to the bounds.
pub fn parse(text: &str) -> Result<Vec<Entry>, HistoryError> {
    let file: File = serde_json::from_str(text).map_err(|e| HistoryError::Format(e.to_string()))?;
    if file.version != VERSION {
        return Err(HistoryError::Format(format!(
            "version {} is not one this flotilla reads (it reads version {VERSION})",
            file.version
        )));
    }
    let skip = file.entries.len().saturating_sub(CAPACITY);
    Ok(file.entries.into_iter().skip(skip).map(bounded).collect())
}

/// An entry cut to the bounds (a file edited by hand cannot make flotilla hold more).
fn bounded(mut e: Entry) -> Entry {
    let cut = |s: &mut String| {
        if s.chars().count() > MAX_TEXT {
            *s = s.chars().take(MAX_TEXT).collect();
        }
    };
    cut(&mut e.summary);
    cut(&mut e.trigger);
    if let Some(w) = &mut e.who {
        cut(w);
    }
    if let Some(r) = &mut e.revision {
        let cut_revision = |s: &mut String| {
            let mut end = s.len().min(super::revision::MAX_REVISION);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
        };
        cut_revision(&mut r.commit);
        r.author.iter_mut().for_each(cut_revision);
        r.subject.iter_mut().for_each(cut_revision);
    }
    while e.outcome.len() > MAX_FLEETS {
        e.outcome.pop_last();
    }
    for o in e.outcome.values_mut() {
        o.rejected_by.truncate(MAX_REJECTIONS);
        o.rejections.truncate(MAX_REJECTIONS);
        o.rejections.iter_mut().for_each(cut);
    }
    e
}

/// History in a JSON file, written whole and renamed into place.
pub struct HistoryFile {
    path: PathBuf,
}

impl HistoryFile {
    pub fn new(path: PathBuf) -> HistoryFile {
        HistoryFile { path }
    }

    /// The history file that goes with a state file: `flotilla-state.json` →
    /// `flotilla-state.history.json`, in the same directory.
    pub fn beside(state_file: &Path) -> HistoryFile {
        let stem = state_file
            .file_stem()
            .map_or_else(|| "flotilla".into(), |s| s.to_string_lossy().into_owned());
        HistoryFile::new(state_file.with_file_name(format!("{stem}.history.json")))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, error: std::io::Error) -> HistoryError {
        HistoryError::Io {
            path: self.path.clone(),
            error,
        }
    }
}

impl HistoryStore for HistoryFile {
    /// A file that is not a regular file (a FIFO would block the start) is an error; one
    /// that cannot be parsed (truncated, edited by hand) is kept beside as
    /// `….history.json.unreadable` before the next save replaces it, and is an error.
    fn load(&self) -> Result<Vec<Entry>, HistoryError> {
        let file = match crate::config::open_regular(&self.path) {
            Ok(f) => f,
            Err(crate::config::LoadError::Io { error, .. })
                if error.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(Vec::new());
            }
            Err(crate::config::LoadError::Io { error, .. }) => return Err(self.io(error)),
            Err(crate::config::LoadError::NotRegular { kind, .. }) => {
                return Err(HistoryError::Format(format!(
                    "{}: not a regular file ({kind})",
                    self.path.display()
                )));
            }
            Err(other) => return Err(HistoryError::Format(other.to_string())),
        };
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io(e))?;
        let parsed = if bytes.len() as u64 > MAX_FILE_BYTES {
            Err(format!("larger than {MAX_FILE_BYTES} bytes"))
        } else {
            std::str::from_utf8(&bytes)
                .map_err(|e| format!("not UTF-8: {e}"))
                .and_then(|text| {
                    parse(text).map_err(|e| match e {
                        HistoryError::Format(m) => m,
                        other => other.to_string(),
                    })
                })
        };
        parsed.map_err(|m| {
            let aside = self.path.with_extension("json.unreadable");
            let kept = match std::fs::rename(&self.path, &aside) {
                Ok(()) => format!("; kept as {}", aside.display()),
                Err(e) => format!("; cannot keep it aside ({e}): the next save replaces it"),
            };
            HistoryError::Format(format!("{}: {m}{kept}", self.path.display()))
        })
    }

    fn save(&self, entries: &[Entry]) -> Result<(), HistoryError> {
        let text = serde_json::to_vec_pretty(&FileRef {
            version: VERSION,
            entries,
        })
        .map_err(|e| HistoryError::Format(e.to_string()))?;
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| self.io(e))?;
        tmp.write_all(&text).map_err(|e| self.io(e))?;
        tmp.as_file().sync_all().map_err(|e| self.io(e))?;
        tmp.persist(&self.path).map_err(|e| self.io(e.error))?;
        Ok(())
    }
}

#[derive(Serialize)]
struct FileRef<'a> {
    version: u32,
    entries: &'a [Entry],
}

/// History kept in memory only (tests, and a replica whose store keeps none).
#[derive(Default)]
pub struct MemoryHistory(Mutex<Vec<Entry>>);

impl HistoryStore for MemoryHistory {
    fn load(&self) -> Result<Vec<Entry>, HistoryError> {
        Ok(self.0.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    fn save(&self, entries: &[Entry]) -> Result<(), HistoryError> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = entries.to_vec();
        Ok(())
    }
}

impl Default for History {
    /// A history kept in memory only.
    fn default() -> History {
        History::open(Box::new(MemoryHistory::default()))
    }
}

/// The history log: newest last, at most [`CAPACITY`], saved on every change.
pub struct History {
    entries: Mutex<VecDeque<Entry>>,
    store: Box<dyn HistoryStore>,
}

impl History {
    /// Loads what `store` kept; an unreadable history is logged and starts empty.
    pub fn open(store: Box<dyn HistoryStore>) -> History {
        let entries = match store.load() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the history of applied configs; starting an empty one");
                Vec::new()
            }
        };
        History {
            entries: Mutex::new(entries.into()),
            store,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every entry, newest first.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().iter().rev().cloned().collect()
    }

    /// Appends an applied config (its id follows the newest kept) and returns its id.
    pub fn push(&self, mut entry: Entry) -> u64 {
        let (id, snapshot) = {
            let mut entries = self.lock();
            // Saturating: a file edited by hand may hold any id.
            entry.id = entries.back().map_or(1, |e| e.id.saturating_add(1));
            let id = entry.id;
            if entries.len() == CAPACITY {
                entries.pop_front();
            }
            entries.push_back(bounded(entry));
            (id, entries.iter().cloned().collect::<Vec<_>>())
        };
        self.save(&snapshot);
        id
    }

    /// Sets the outcome of entry `id` while it is the newest (an older entry's outcome is
    /// final, and one loaded from the file belongs to a config an earlier run served); saves
    /// only when it changed.
    pub fn set_outcome(&self, id: u64, outcome: BTreeMap<String, Outcome>) {
        let snapshot = {
            let mut entries = self.lock();
            let Some(newest) = entries.back_mut().filter(|e| e.id == id) else {
                return;
            };
            let outcome = bounded(Entry {
                outcome,
                ..newest.clone()
            })
            .outcome;
            if newest.outcome == outcome {
                return;
            }
            newest.outcome = outcome;
            entries.iter().cloned().collect::<Vec<_>>()
        };
        self.save(&snapshot);
    }

    fn save(&self, entries: &[Entry]) {
        if let Err(e) = self.store.save(entries) {
            tracing::warn!(error = %e, "cannot save the history of applied configs");
        }
    }
}

#[cfg(test)]
mod tests;
