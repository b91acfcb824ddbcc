//! Watching the config on disk: one signal per burst of changes.
//!
//! flotilla watches the *directory* holding the config (the file's parent, or the directory
//! itself), not the files: editors replace files by renaming a temp file over them, `git
//! checkout` deletes and recreates them, and a Kubernetes ConfigMap mount swaps a `..data`
//! symlink. Any change in that directory asks for a reload; reloading an unchanged config is
//! cheap and pushes nothing. Bursts are debounced: the reload happens once the directory has
//! been quiet for `debounce`, or after `max_wait` at the latest.
//!
//! A watch follows a directory's inode, not its path: after `rm -rf conf && mkdir conf`, or
//! `mv conf conf.old && mv conf.new conf`, it would keep following the old one. So the
//! directory *above* is watched too, for changes to the config directory's own name; when it
//! is replaced the watch is re-armed on the path before the reload. SIGHUP re-arms as well
//! (for replacements further up, which no watch sees).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, trace, warn};

#[derive(Debug, thiserror::Error)]
#[error("cannot watch {}: {error}", path.display())]
pub struct WatchError {
    path: PathBuf,
    error: notify::Error,
}

/// Keeps the watch alive; dropping it stops watching.
pub struct ConfigWatcher {
    armed: Arc<Armed>,
    _debouncer: tokio::task::JoinHandle<()>,
}

impl ConfigWatcher {
    /// Watches the config's directory (and the one above) anew, by path: what SIGHUP does.
    pub fn rearm(&self) {
        self.armed.rearm();
    }
}

/// The watcher and the paths it must follow.
struct Armed {
    watcher: Mutex<RecommendedWatcher>,
    dir: PathBuf,
    parent: Option<PathBuf>,
    /// Set when the config directory's name changed in its parent (replaced, moved, deleted).
    replaced: Arc<AtomicBool>,
}

impl Armed {
    fn rearm(&self) {
        let mut watcher = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        for path in self.parent.iter().chain([&self.dir]) {
            // The old watch may be gone already (the directory was deleted).
            let _ = watcher.unwatch(path);
            match watcher.watch(path, RecursiveMode::NonRecursive) {
                Ok(()) => debug!(path = %path.display(), "config watch re-armed"),
                Err(e) => warn!(path = %path.display(), error = %e,
                    "cannot watch; waiting for the directory to come back (or SIGHUP)"),
            }
        }
    }
}

/// Starts watching the config at `path`. Each message on the returned channel is one
/// debounced burst of changes.
pub fn watch(
    path: &Path,
    debounce: Duration,
    max_wait: Duration,
) -> Result<(ConfigWatcher, mpsc::Receiver<()>), WatchError> {
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    };
    let error = |error| WatchError {
        path: dir.clone(),
        error,
    };
    // Absolute but not canonical: a symlinked directory is followed by name, like the files.
    let dir = std::path::absolute(&dir).map_err(|e| error(notify::Error::io(e)))?;
    let parent = dir.parent().map(Path::to_path_buf);
    let changed = Arc::new(Notify::new());
    let signal = changed.clone();
    let file_name = (!path.is_dir())
        .then(|| path.file_name().map(|n| n.to_os_string()))
        .flatten();
    let replaced = Arc::new(AtomicBool::new(false));
    let (events_dir, events_replaced) = (dir.clone(), replaced.clone());
    let watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(e) if e.kind.is_access() => {}
            Ok(e) => {
                let mut relevant_change = false;
                for p in &e.paths {
                    if *p == events_dir {
                        events_replaced.store(true, Ordering::Release);
                        relevant_change = true;
                    } else if p.parent() == Some(&events_dir) {
                        relevant_change |= relevant(p, file_name.as_deref());
                    }
                }
                if relevant_change {
                    trace!(paths = ?e.paths, kind = ?e.kind, "config changed");
                    signal.notify_one();
                }
            }
            Err(e) => warn!(error = %e, "config watch error"),
        })
        .map_err(&error)?;
    let armed = Arc::new(Armed {
        watcher: Mutex::new(watcher),
        dir: dir.clone(),
        parent,
        replaced,
    });
    {
        let mut watcher = armed.watcher.lock().unwrap_or_else(|e| e.into_inner());
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(&error)?;
        if let Some(parent) = &armed.parent
            && let Err(e) = watcher.watch(parent, RecursiveMode::NonRecursive)
        {
            warn!(path = %parent.display(), error = %e,
                "cannot watch the directory above the config; replacing the config directory will need a SIGHUP");
        }
    }
    let (tx, rx) = mpsc::channel(1);
    let before_reload = armed.clone();
    let debouncer = tokio::spawn(debounce_loop(changed, tx, debounce, max_wait, move || {
        if before_reload.replaced.swap(false, Ordering::AcqRel) {
            before_reload.rearm();
        }
    }));
    Ok((
        ConfigWatcher {
            armed,
            _debouncer: debouncer,
        },
        rx,
    ))
}

/// Whether a change to `path` can change the config: the config file itself (when one file
/// is watched), any YAML file (when a directory is), and the `..data`-style entries that a
/// Kubernetes ConfigMap mount swaps. Anything else in the directory (a log file, an editor's
/// swap file) is ignored.
fn relevant(path: &Path, file_name: Option<&std::ffi::OsStr>) -> bool {
    let Some(name) = path.file_name() else {
        return false;
    };
    if name.to_string_lossy().starts_with("..") {
        return true;
    }
    match file_name {
        Some(f) => name == f,
        None => {
            let n = name.to_string_lossy();
            !n.starts_with('.') && (n.ends_with(".yaml") || n.ends_with(".yml"))
        }
    }
}

/// Signals `tx` once per burst on `changed`, after calling `before_reload` (which re-arms a
/// replaced directory's watch, so the reload and every later edit see the new directory).
pub(crate) async fn debounce_loop(
    changed: Arc<Notify>,
    tx: mpsc::Sender<()>,
    quiet: Duration,
    max_wait: Duration,
    before_reload: impl Fn(),
) {
    loop {
        changed.notified().await;
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let quiet_until = (tokio::time::Instant::now() + quiet).min(deadline);
            tokio::select! {
                () = changed.notified() => {
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                }
                () = tokio::time::sleep_until(quiet_until) => break,
            }
        }
        before_reload();
        // A full channel already holds a pending reload, which will read the newest files.
        if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_config_changes_are_relevant() {
        let f = Some(std::ffi::OsStr::new("flotilla.yaml"));
        assert!(relevant(Path::new("/c/flotilla.yaml"), f));
        assert!(relevant(Path::new("/c/..data"), f));
        assert!(!relevant(Path::new("/c/flotilla.log"), f));
        assert!(!relevant(Path::new("/c/other.yaml"), f));
        assert!(relevant(Path::new("/c/other.yaml"), None));
        assert!(relevant(Path::new("/c/..2024_01_01"), None));
        assert!(!relevant(Path::new("/c/.other.yaml.swp"), None));
        assert!(!relevant(Path::new("/c/notes.txt"), None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_gives_one_signal_after_the_quiet_period() {
        let changed = Arc::new(Notify::new());
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(debounce_loop(
            changed.clone(),
            tx,
            Duration::from_millis(100),
            Duration::from_secs(2),
            || {},
        ));
        for _ in 0..50 {
            changed.notify_one();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(rx.try_recv().is_err(), "nothing while the burst goes on");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(rx.try_recv().is_ok(), "one signal after the burst");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(rx.try_recv().is_err(), "and only one");
    }

    #[tokio::test(start_paused = true)]
    async fn an_endless_stream_of_changes_still_reloads_by_max_wait() {
        let changed = Arc::new(Notify::new());
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(debounce_loop(
            changed.clone(),
            tx,
            Duration::from_millis(100),
            Duration::from_millis(500),
            || {},
        ));
        let start = tokio::time::Instant::now();
        while rx.try_recv().is_err() {
            changed.notify_one();
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "no reload within max_wait"
            );
        }
    }
}
