//! Watching the config on disk: one signal per burst of changes.
//!
//! flotilla watches the *directory* holding the config (the file's parent, or the directory
//! itself), not the files: editors replace files by renaming a temp file over them, `git
//! checkout` deletes and recreates them, and a Kubernetes ConfigMap mount swaps a `..data`
//! symlink. Any change in that directory asks for a reload; reloading an unchanged config is
//! cheap and pushes nothing. Bursts are debounced: the reload happens once the directory has
//! been quiet for `debounce`, or after `max_wait` at the latest.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::{Notify, mpsc};
use tracing::{trace, warn};

#[derive(Debug, thiserror::Error)]
#[error("cannot watch {}: {source}", path.display())]
pub struct WatchError {
    path: PathBuf,
    #[source]
    source: notify::Error,
}

/// Keeps the watch alive; dropping it stops watching.
pub struct ConfigWatcher {
    _watcher: RecommendedWatcher,
    _debouncer: tokio::task::JoinHandle<()>,
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
    let changed = Arc::new(Notify::new());
    let signal = changed.clone();
    let file_name = (!path.is_dir())
        .then(|| path.file_name().map(|n| n.to_os_string()))
        .flatten();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(e) if e.kind.is_access() => {}
            Ok(e) => {
                if e.paths.iter().any(|p| relevant(p, file_name.as_deref())) {
                    trace!(paths = ?e.paths, kind = ?e.kind, "config changed");
                    signal.notify_one();
                }
            }
            Err(e) => warn!(error = %e, "config watch error"),
        })
        .map_err(|source| WatchError {
            path: dir.clone(),
            source,
        })?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError {
            path: dir.clone(),
            source,
        })?;
    let (tx, rx) = mpsc::channel(1);
    let debouncer = tokio::spawn(debounce_loop(changed, tx, debounce, max_wait));
    Ok((
        ConfigWatcher {
            _watcher: watcher,
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

async fn debounce_loop(
    changed: Arc<Notify>,
    tx: mpsc::Sender<()>,
    quiet: Duration,
    max_wait: Duration,
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
