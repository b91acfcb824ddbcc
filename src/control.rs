//! The one place that decides what Envoys run: the newest valid config plus the overlay
//! (health verdicts, drains, overrides, registrations) go in, snapshots come out.
//!
//! Updates are serialised here, so the cache always sees inputs in the order they happened.
//! Translating and encoding a large config takes seconds; it runs off the async runtime's
//! workers and outside the lock the admin API reads through, so xDS keepalives, ACKs and the
//! admin API stay responsive during any reload.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::cache::{Inputs, SnapshotCache, UpdateSummary};
use crate::config::Config;
use crate::translate::Overlay;

pub struct Controller {
    cache: Arc<SnapshotCache>,
    state: Mutex<State>,
    /// The inputs of every published snapshot, for those that follow them (the checker).
    inputs: watch::Sender<Option<Inputs>>,
    /// Held by whoever publishes, for as long as translating and encoding take; `state` is
    /// only ever held for moments.
    publishing: Mutex<()>,
}

#[derive(Default)]
struct State {
    config: Option<Arc<Config>>,
    overlay: Arc<Overlay>,
    version: Option<String>,
    last_reload: Option<Reload>,
}

/// How the last attempt to load the config went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reload {
    #[serde(with = "crate::util::unix_millis")]
    pub at: SystemTime,
    /// What asked for it: `startup`, `watch`, `SIGHUP`.
    pub trigger: &'static str,
    pub result: ReloadResult,
    /// Every problem found, as `path:line:col: field: message`.
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadResult {
    /// A new config is being served.
    Applied,
    /// The files changed but mean the same config: nothing was pushed.
    Unchanged,
    /// The config was rejected; the last good one is still served.
    Invalid,
}

impl ReloadResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Applied => "applied",
            ReloadResult::Unchanged => "unchanged",
            ReloadResult::Invalid => "invalid",
        }
    }
}

impl Controller {
    pub fn new(cache: Arc<SnapshotCache>) -> Arc<Controller> {
        Arc::new(Controller {
            cache,
            state: Mutex::new(State::default()),
            inputs: watch::Sender::new(None),
            publishing: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn cache(&self) -> &Arc<SnapshotCache> {
        &self.cache
    }

    /// The config being served, if one was ever loaded.
    pub fn config(&self) -> Option<Arc<Config>> {
        self.lock().config.clone()
    }

    pub fn overlay(&self) -> Arc<Overlay> {
        self.lock().overlay.clone()
    }

    /// Version of the full resource set being served (None before the first valid config).
    pub fn version(&self) -> Option<String> {
        self.lock().version.clone()
    }

    pub fn last_reload(&self) -> Option<Reload> {
        self.lock().last_reload.clone()
    }

    /// Follows every published (config, overlay).
    pub fn watch_inputs(&self) -> watch::Receiver<Option<Inputs>> {
        self.inputs.subscribe()
    }

    fn publish(&self, inputs: Inputs) -> UpdateSummary {
        let summary = self.cache.update(inputs.clone());
        crate::metrics::get().endpoints(&inputs.config, &inputs.overlay);
        self.inputs.send_replace(Some(inputs));
        summary
    }

    /// Serves a new (valid) config.
    pub fn set_config(&self, config: Arc<Config>) -> UpdateSummary {
        off_runtime(|| {
            let _publishing = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
            let overlay = self.lock().overlay.clone();
            let summary = self.publish(Inputs {
                config: config.clone(),
                overlay,
            });
            let mut state = self.lock();
            state.config = Some(config);
            if state.version.as_deref() != Some(&summary.version) {
                crate::metrics::get().config_version(&summary.version);
            }
            state.version = Some(summary.version.clone());
            summary
        })
    }

    /// Applies the outcome of loading the config files: a valid config that differs from the
    /// one served replaces it; an equal one changes nothing; errors change nothing either.
    pub fn reload(&self, trigger: &'static str, loaded: Result<Config, Vec<String>>) -> Reload {
        let (result, errors) = match loaded {
            Ok(config) => {
                if self.config().is_some_and(|c| *c == config) {
                    (ReloadResult::Unchanged, Vec::new())
                } else {
                    self.set_config(Arc::new(config));
                    (ReloadResult::Applied, Vec::new())
                }
            }
            Err(errors) => (ReloadResult::Invalid, errors),
        };
        let record = Reload {
            at: SystemTime::now(),
            trigger,
            result,
            errors,
        };
        crate::metrics::get().config_reloads(result);
        let version = {
            let mut state = self.lock();
            state.last_reload = Some(record.clone());
            state.version.clone().unwrap_or_else(|| "none".to_string())
        };
        let message = match result {
            ReloadResult::Applied => format!("config applied ({trigger}): version {version}"),
            ReloadResult::Unchanged => {
                format!("config reloaded ({trigger}): unchanged, nothing pushed")
            }
            ReloadResult::Invalid => format!(
                "config rejected ({trigger}): {} error(s), first: {}; still serving {version}",
                record.errors.len(),
                record.errors.first().map(String::as_str).unwrap_or("?")
            ),
        };
        if result != ReloadResult::Unchanged {
            crate::events::record(crate::events::NewEvent::new(
                crate::events::Kind::Reload,
                message,
            ));
        }
        record
    }

    /// Changes the overlay; publishes only if it changed and a config is loaded.
    pub fn update_overlay(&self, change: impl FnOnce(&mut Overlay)) -> Option<UpdateSummary> {
        off_runtime(|| {
            let _publishing = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
            let inputs = {
                let mut state = self.lock();
                let mut overlay = (*state.overlay).clone();
                change(&mut overlay);
                if overlay == *state.overlay {
                    return None;
                }
                state.overlay = Arc::new(overlay);
                Inputs {
                    config: state.config.clone()?,
                    overlay: state.overlay.clone(),
                }
            };
            let summary = self.publish(inputs);
            self.lock().version = Some(summary.version.clone());
            Some(summary)
        })
    }
}

/// Runs `work`, which may translate a whole config or wait for another publisher to, without
/// stalling the async runtime: called on a worker of a multi-threaded runtime, the worker's
/// other tasks move to another thread first (elsewhere it simply runs).
fn off_runtime<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}
