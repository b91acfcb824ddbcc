//! Watching the files a configuration names (certificates, keys, CAs), which may live
//! anywhere, not just beside the YAML: their directories are watched, and a change to one of
//! the named files, or to a Kubernetes Secret mount's `..data` link, asks for a reload.
//!
//! A reload re-reads and re-checks every file, so a certificate written before its key fails
//! the key check and changes nothing; the reload after the key lands publishes the pair. The
//! set of files follows the configuration: [`FilesWatcher::follow`] after every reload.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, trace, warn};

/// Directory → the names in it that matter.
type Watched = BTreeMap<PathBuf, BTreeSet<OsString>>;

/// Keeps the watches alive; dropping it stops watching.
pub struct FilesWatcher {
    watcher: Mutex<RecommendedWatcher>,
    watched: Arc<Mutex<Watched>>,
    _debouncer: tokio::task::JoinHandle<()>,
}

impl FilesWatcher {
    /// A watcher over no files yet; each message on the channel is one debounced burst of
    /// changes to the files it follows.
    pub fn start(
        debounce: Duration,
        max_wait: Duration,
    ) -> notify::Result<(FilesWatcher, mpsc::Receiver<()>)> {
        let watched: Arc<Mutex<Watched>> = Arc::default();
        let changed = Arc::new(Notify::new());
        let (signal, seen) = (changed.clone(), watched.clone());
        let watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(e) if e.kind.is_access() => {}
                Ok(e) => {
                    let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                    if e.paths.iter().any(|p| relevant(&seen, p)) {
                        trace!(paths = ?e.paths, kind = ?e.kind, "certificate file changed");
                        signal.notify_one();
                    }
                }
                Err(e) => warn!(error = %e, "certificate watch error"),
            })?;
        let (tx, rx) = mpsc::channel(1);
        let debouncer = tokio::spawn(crate::config::watch::debounce_loop(
            changed,
            tx,
            debounce,
            max_wait,
            || {},
        ));
        Ok((
            FilesWatcher {
                watcher: Mutex::new(watcher),
                watched,
                _debouncer: debouncer,
            },
            rx,
        ))
    }

    /// Watches exactly the directories of `files` (absolute paths), dropping the others.
    pub fn follow<'a>(&self, files: impl IntoIterator<Item = &'a Path>) {
        let mut wanted: Watched = BTreeMap::new();
        for f in files {
            if let (Some(dir), Some(name)) = (f.parent(), f.file_name()) {
                wanted
                    .entry(dir.to_path_buf())
                    .or_default()
                    .insert(name.to_os_string());
            }
        }
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        if *watched == wanted {
            return;
        }
        let mut watcher = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        for dir in watched.keys().filter(|d| !wanted.contains_key(*d)) {
            let _ = watcher.unwatch(dir);
        }
        for dir in wanted.keys().filter(|d| !watched.contains_key(*d)) {
            match watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => debug!(dir = %dir.display(), "watching certificate directory"),
                Err(e) => warn!(dir = %dir.display(), error = %e,
                    "cannot watch a certificate directory; changes there need a SIGHUP"),
            }
        }
        *watched = wanted;
    }
}

/// A named file of a watched directory, or a `..data`-style entry a Kubernetes Secret mount
/// swaps to replace every file at once.
fn relevant(watched: &Watched, path: &Path) -> bool {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return false;
    };
    let Some(names) = watched.get(dir) else {
        return false;
    };
    names.contains(name) || name.to_string_lossy().starts_with("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_files_and_secret_mount_links_are_relevant() {
        let mut watched = Watched::new();
        watched.insert(
            PathBuf::from("/certs"),
            [OsString::from("tls.crt"), OsString::from("tls.key")].into(),
        );
        assert!(relevant(&watched, Path::new("/certs/tls.crt")));
        assert!(relevant(&watched, Path::new("/certs/tls.key")));
        assert!(relevant(&watched, Path::new("/certs/..data")));
        assert!(relevant(
            &watched,
            Path::new("/certs/..2026_11_27_18_00_00.1")
        ));
        assert!(!relevant(&watched, Path::new("/certs/notes.txt")));
        assert!(!relevant(&watched, Path::new("/other/tls.crt")));
    }
}
