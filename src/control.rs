//! The one place that decides what Envoys run: the newest valid config plus the overlay
//! (health verdicts, drains, overrides, registrations) go in, snapshots come out.
//!
//! Updates are serialised here, so the cache always sees inputs in the order they happened.
//! Translating and encoding a large config takes seconds; it runs off the async runtime's
//! workers and outside the lock the admin API reads through, so xDS keepalives, ACKs and the
//! admin API stay responsive during any reload.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{debug, error, info};

use crate::cache::applied::Applied;
use crate::cache::{Inputs, SnapshotCache, UpdateSummary};
use crate::config::Config;
use crate::gitops::revision::Revision;
use crate::overlay::{EndpointKey, EndpointState, Overlay};
use crate::translate;

pub struct Controller {
    cache: Arc<SnapshotCache>,
    metrics: ControlMetrics,
    state: Mutex<State>,
    /// The inputs of every published snapshot, for those that follow them (the checker).
    inputs: watch::Sender<Option<Inputs>>,
    /// Held by whoever publishes, for as long as translating and encoding take; `state` is
    /// only ever held for moments.
    publishing: Mutex<()>,
    /// Every applied config, for history.
    applied: watch::Sender<Option<AppliedConfig>>,
}

#[derive(Default)]
struct State {
    config: Option<Arc<Config>>,
    overlay: Arc<Overlay>,
    version: Option<String>,
    last_reload: Option<Reload>,
    /// The revision of the config served, and the applied config it is part of.
    revision: Option<Revision>,
    applied: Option<AppliedConfig>,
}

/// A config (or a revision of it) that was applied: what history records and what status
/// measures Envoys against.
#[derive(Debug, Clone)]
pub struct AppliedConfig {
    /// Moves on every new config or revision.
    pub generation: u64,
    pub revision: Option<Revision>,
    pub at: SystemTime,
    /// `startup`, `watch`, `SIGHUP`, `files` (certificates, git).
    pub trigger: &'static str,
    /// What changed from the config served before, per section (`+1 listeners, ~2 clusters`).
    pub summary: String,
    /// The fleets declared by the config (empty: every Envoy receives everything).
    pub fleets: Vec<String>,
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
    /// The revision of the files loaded (see [`crate::gitops::revision`]).
    pub revision: Option<Revision>,
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
    /// The files could not be read (an I/O error: out of file descriptors, a link dangling
    /// mid-swap): the last good config is still served and the reload is retried with
    /// back-off until it reads (`serve`'s reload loop), since no file event may come again.
    Unreadable,
}

impl ReloadResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Applied => "applied",
            ReloadResult::Unchanged => "unchanged",
            ReloadResult::Invalid => "invalid",
            ReloadResult::Unreadable => "unreadable",
        }
    }
}

impl Controller {
    pub fn new(cache: Arc<SnapshotCache>, metrics: ControlMetrics) -> Arc<Controller> {
        Arc::new(Controller {
            cache,
            metrics,
            state: Mutex::new(State::default()),
            inputs: watch::Sender::new(None),
            publishing: Mutex::new(()),
            applied: watch::Sender::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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

    /// The revision of the config served (None: no revision source, or nothing served).
    pub fn revision(&self) -> Option<Revision> {
        self.lock().revision.clone()
    }

    /// The config being served, as applied (None before the first valid config).
    pub fn applied(&self) -> Option<AppliedConfig> {
        self.lock().applied.clone()
    }

    /// Follows every applied config (and every new revision of an unchanged one).
    pub fn watch_applied(&self) -> watch::Receiver<Option<AppliedConfig>> {
        self.applied.subscribe()
    }

    /// The snapshot cache this controller publishes to (read-only use: versions, renders).
    pub fn cache(&self) -> &Arc<SnapshotCache> {
        &self.cache
    }

    /// Follows every published (config, overlay).
    pub fn watch_inputs(&self) -> watch::Receiver<Option<Inputs>> {
        self.inputs.subscribe()
    }

    fn publish(&self, inputs: Inputs) -> UpdateSummary {
        let summary = self.cache.update(inputs.clone());
        self.metrics.endpoints(&inputs.config, &inputs.overlay);
        self.inputs.send_replace(Some(inputs));
        summary
    }

    /// Publishes an overlay change that only touches the endpoints of `clusters`: the
    /// endpoint fast path (see [`SnapshotCache::update_endpoints`]).
    fn publish_endpoints(&self, inputs: Inputs, clusters: &BTreeSet<String>) -> UpdateSummary {
        let summary = self.cache.update_endpoints(inputs.clone(), clusters);
        self.metrics
            .endpoints_of(&inputs.config, &inputs.overlay, clusters);
        self.inputs.send_replace(Some(inputs));
        summary
    }

    /// Records the version now served: the version and its metric change together, so that
    /// `/metrics`, the API and the dashboard never disagree on what is served.
    fn served(&self, state: &mut State, summary: &UpdateSummary) {
        if state.version.as_deref() != Some(&summary.version) {
            self.metrics.config_version(&summary.version);
            state.version = Some(summary.version.clone());
        }
    }

    /// Serves a new (valid) config.
    pub fn set_config(&self, config: Arc<Config>) -> UpdateSummary {
        self.set_config_with(config, |_, _| {})
    }

    /// Serves a new (valid) config, with `prepare`'s changes to the overlay for it (the
    /// addresses its hostnames resolved to) in the same publish.
    pub fn set_config_with(
        &self,
        config: Arc<Config>,
        prepare: impl FnOnce(&Config, &mut Overlay),
    ) -> UpdateSummary {
        off_runtime(|| {
            let _publishing = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
            let summary = self.publish_config(&config, prepare);
            self.record_config(config, &summary);
            summary
        })
    }

    /// The first half of [`Controller::set_config_with`]: the new inputs go out to the cache
    /// and to every watcher of [`Controller::watch_inputs`]. Those watchers may run before
    /// [`Controller::record_config`] does (on another thread), so they must take the config
    /// from the inputs they receive, not from [`Controller::config`].
    fn publish_config(
        &self,
        config: &Arc<Config>,
        prepare: impl FnOnce(&Config, &mut Overlay),
    ) -> UpdateSummary {
        // Verdicts and measured weights of endpoints the new config no longer probes go
        // with it, in the same publish: the checker would drop them right after, and
        // publish a second time for nothing.
        let overlay = {
            let mut state = self.lock();
            let mut overlay = (*state.overlay).clone();
            prepare(config, &mut overlay);
            if let Some(pruned) = overlay.without_unprobed(config) {
                overlay = pruned;
            }
            if overlay != *state.overlay {
                state.overlay = Arc::new(overlay);
            }
            state.overlay.clone()
        };
        self.publish(Inputs {
            config: config.clone(),
            overlay,
        })
    }

    /// The second half of [`Controller::set_config_with`]: the config served as
    /// [`Controller::config`] reads it.
    fn record_config(&self, config: Arc<Config>, summary: &UpdateSummary) {
        self.metrics.certificates.observe(&config);
        let mut state = self.lock();
        state.config = Some(config);
        self.served(&mut state, summary);
    }

    /// [`Controller::set_config_with`] with `between` awaited between its two halves: the
    /// interleaving a multi-threaded runtime allows, made certain for tests of what watches
    /// the inputs.
    #[cfg(test)]
    pub(crate) async fn set_config_interleaved(
        &self,
        config: Arc<Config>,
        prepare: impl FnOnce(&Config, &mut Overlay),
        between: impl std::future::Future<Output = ()>,
    ) -> UpdateSummary {
        let summary = self.publish_config(&config, prepare);
        between.await;
        self.record_config(config, &summary);
        summary
    }

    /// Applies the outcome of loading the config files: a valid config that differs from the
    /// one served replaces it; an equal one changes nothing but its revision; errors change
    /// nothing either.
    pub fn reload(
        &self,
        trigger: &'static str,
        source: &str,
        loaded: Result<Config, Vec<String>>,
        revision: Option<Revision>,
    ) -> Reload {
        self.reload_with(
            trigger,
            source,
            loaded.map_err(|e| (ReloadResult::Invalid, e)),
            revision,
            |_, _| {},
        )
    }

    /// The files the served config reads besides itself (certificates, keys, JWKS): what a
    /// reload must follow. `None` before a config is served.
    pub fn watched_files(&self) -> Option<Vec<std::path::PathBuf>> {
        self.config().map(|c| {
            c.watched_files()
                .map(std::path::Path::to_path_buf)
                .collect()
        })
    }

    /// [`Controller::reload`] for a load that may also have failed to read the files
    /// (`Unreadable`). A valid config (read from `source`) that would empty a fleet by probable
    /// accident is refused here (see [`crate::config::empty`]): the controller holds the served
    /// config, so it decides. `prepare`'s changes to the overlay for a new config are part of
    /// the same publish (see [`Controller::set_config_with`]).
    pub fn reload_with(
        &self,
        trigger: &'static str,
        source: &str,
        loaded: Result<Config, (ReloadResult, Vec<String>)>,
        revision: Option<Revision>,
        prepare: impl FnOnce(&Config, &mut Overlay),
    ) -> Reload {
        let loaded = loaded.and_then(|config| {
            match self
                .config()
                .and_then(|served| crate::config::empty::refusal(&served, &config))
            {
                Some(why) => Err((
                    ReloadResult::Invalid,
                    vec![format!("{}: {why}", crate::config::escape_controls(source))],
                )),
                None => Ok(config),
            }
        });
        let mut moved = false;
        let (result, errors) = match loaded {
            Ok(config) => {
                let served = self.config();
                if served.as_deref().is_some_and(|c| *c == config) {
                    if self.revision() != revision {
                        moved = true;
                        self.mark_applied(
                            trigger,
                            &config,
                            served.as_deref(),
                            revision.clone(),
                            true,
                        );
                    }
                    (ReloadResult::Unchanged, Vec::new())
                } else {
                    let config = Arc::new(config);
                    self.mark_applied(trigger, &config, served.as_deref(), revision.clone(), false);
                    self.set_config_with(config, prepare);
                    (ReloadResult::Applied, Vec::new())
                }
            }
            Err(failed) => failed,
        };
        let record = Reload {
            at: SystemTime::now(),
            trigger,
            result,
            errors,
            revision,
        };
        let version = {
            let mut state = self.lock();
            state.last_reload = Some(record.clone());
            state.version.clone().unwrap_or_else(|| "none".to_string())
        };
        self.report(&record, &version, moved);
        record
    }

    /// Names the config about to be served (or, `relabel`, the one served at a new revision):
    /// the cache files its snapshots under it, history and status follow it.
    fn mark_applied(
        &self,
        trigger: &'static str,
        config: &Config,
        served: Option<&Config>,
        revision: Option<Revision>,
        relabel: bool,
    ) {
        let applied = {
            let mut state = self.lock();
            let generation = state.applied.as_ref().map_or(1, |a| a.generation + 1);
            let applied = AppliedConfig {
                generation,
                revision: revision.clone(),
                at: SystemTime::now(),
                trigger,
                summary: crate::gitops::summary::summary(served, config),
                fleets: config.fleets.keys().cloned().collect(),
            };
            state.revision = revision.clone();
            state.applied = Some(applied.clone());
            applied
        };
        self.metrics.config_info(revision.as_ref());
        self.cache.set_applied(
            Applied {
                generation: applied.generation,
                revision: revision.map(|r| r.label().into()),
            },
            relabel,
        );
        self.applied.send_replace(Some(applied));
    }

    /// Tells everyone how a reload went, in one place: the log, the event history and the
    /// metrics.
    fn report(&self, record: &Reload, version: &str, revision_moved: bool) {
        let trigger = record.trigger;
        self.metrics.config_reloads(record.result);
        let revision = record
            .revision
            .as_ref()
            .map_or_else(|| "none".to_string(), Revision::label);
        let message = match record.result {
            ReloadResult::Applied => {
                info!(trigger, %version, %revision, "config applied");
                format!("config applied ({trigger}): version {version}, revision {revision}")
            }
            ReloadResult::Unchanged if revision_moved => {
                info!(trigger, %version, %revision, "new revision, same config; nothing to push");
                format!("revision {revision} applied ({trigger}): same config, nothing to push")
            }
            ReloadResult::Unchanged => {
                debug!(trigger, %version, "config unchanged; nothing to push");
                return;
            }
            ReloadResult::Invalid | ReloadResult::Unreadable => {
                for line in &record.errors {
                    error!(trigger, "{line}");
                }
                let what = match record.result {
                    ReloadResult::Unreadable => "unreadable (retrying)",
                    _ => "rejected",
                };
                error!(trigger, live_version = %version, %revision,
                    "config {what}; still serving the last good config");
                format!(
                    "config {what} ({trigger}, revision {revision}): {} error(s), first: {}; still serving {version}",
                    record.errors.len(),
                    record.errors.first().map(String::as_str).unwrap_or("?")
                )
            }
        };
        crate::events::record(crate::events::NewEvent::new(
            crate::events::Kind::Reload,
            message,
        ));
    }

    /// Changes the overlay; publishes only if it changed and a config is loaded.
    pub fn update_overlay(&self, change: impl FnOnce(&mut Overlay)) -> Option<UpdateSummary> {
        self.update_overlay_with(|_, overlay| change(overlay))
    }

    /// [`Controller::update_overlay`] for a change computed from the config served (`None`
    /// before the first), read under the same lock as the overlay: a change computed from a
    /// config read earlier could undo what a reload published in between (the addresses a
    /// new cluster's hostnames resolved to).
    pub fn update_overlay_with(
        &self,
        change: impl FnOnce(Option<&Config>, &mut Overlay),
    ) -> Option<UpdateSummary> {
        off_runtime(|| {
            let _publishing = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
            let (inputs, clusters) = {
                let mut state = self.lock();
                let mut overlay = (*state.overlay).clone();
                change(state.config.as_deref(), &mut overlay);
                let clusters = state.overlay.changed_clusters(&overlay);
                let beyond = state.overlay.differs_beyond_endpoints(&overlay);
                if clusters.is_empty() && !beyond {
                    return None;
                }
                state.overlay = Arc::new(overlay);
                let inputs = Inputs {
                    config: state.config.clone()?,
                    overlay: state.overlay.clone(),
                };
                let fast = !beyond
                    && !clusters
                        .iter()
                        .any(|c| translate::mesh::endpoints_shape_listeners(&inputs.config, c));
                (inputs, fast.then_some(clusters))
            };
            let summary = match clusters {
                // Only endpoints changed: translation reads the overlay for nothing else.
                Some(clusters) => self.publish_endpoints(inputs, &clusters),
                // Secrets (the mesh's workload certificates) changed too: translate it all.
                None => self.publish(inputs),
            };
            self.served(&mut self.lock(), &summary);
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevisionLabel {
    revision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    cluster: String,
    /// healthy, unhealthy, unknown (not probed or no verdict yet: served), draining.
    state: &'static str,
}

/// What the controller publishes, as metrics: reloads, the live version, endpoints by state.
#[derive(Clone, Debug, Default)]
pub struct ControlMetrics {
    config_reloads: Family<ResultLabel, Counter>,
    config_version: Family<VersionLabel, Gauge>,
    config_info: Family<RevisionLabel, Gauge>,
    last_reload_ok: Gauge,
    reload_retrying: Gauge,
    endpoints: Family<EndpointLabels, Gauge>,
    certificates: crate::tls::CertificateMetrics,
}

impl ControlMetrics {
    pub fn register(registry: &mut Registry) -> ControlMetrics {
        let m = ControlMetrics {
            certificates: crate::tls::CertificateMetrics::register(registry),
            ..ControlMetrics::default()
        };
        registry.register(
            "config_reloads",
            "Attempts to load the configuration, by result (applied, unchanged, invalid, unreadable)",
            m.config_reloads.clone(),
        );
        registry.register(
            "config_version_info",
            "The live config version (content hash of every resource), as a label",
            m.config_version.clone(),
        );
        registry.register(
            "config_info",
            "The revision of the config served (git commit, `-dirty` when the files differ from it; empty: no revision source), as a label",
            m.config_info.clone(),
        );
        registry.register(
            "config_last_reload_successful",
            "1 if the last attempt to load the config succeeded (applied or unchanged), else 0",
            m.last_reload_ok.clone(),
        );
        registry.register(
            "config_reload_retrying",
            "1 while the config files cannot be read (an I/O error such as EMFILE) and the reload is retried with back-off; the last good config is served",
            m.reload_retrying.clone(),
        );
        registry.register(
            "endpoints",
            "Endpoints by cluster and state (healthy, unhealthy, unknown, draining)",
            m.endpoints.clone(),
        );
        m
    }

    fn config_reloads(&self, result: ReloadResult) {
        let failed = matches!(result, ReloadResult::Invalid | ReloadResult::Unreadable);
        self.last_reload_ok.set(i64::from(!failed));
        self.reload_retrying
            .set(i64::from(result == ReloadResult::Unreadable));
        self.config_reloads
            .get_or_create(&ResultLabel {
                result: result.as_str(),
            })
            .inc();
    }

    fn config_info(&self, revision: Option<&Revision>) {
        self.config_info.clear();
        self.config_info
            .get_or_create(&RevisionLabel {
                revision: revision.map(Revision::label).unwrap_or_default(),
            })
            .set(1);
    }

    fn config_version(&self, version: &str) {
        self.config_version.clear();
        self.config_version
            .get_or_create(&VersionLabel {
                version: version.to_string(),
            })
            .set(1);
    }

    /// Recomputes the endpoint gauges from what is being served.
    fn endpoints(&self, config: &Config, overlay: &Overlay) {
        self.endpoints.clear();
        self.endpoints_of(config, overlay, config.clusters.keys());
    }

    /// Recomputes the endpoint gauges of `clusters` alone.
    fn endpoints_of<'a>(
        &self,
        config: &Config,
        overlay: &Overlay,
        clusters: impl IntoIterator<Item = &'a String>,
    ) {
        for c in clusters.into_iter().filter_map(|n| config.clusters.get(n)) {
            let mut counts = [0i64; EndpointState::ALL.len()];
            for (e, _) in overlay.endpoints(c) {
                let key = EndpointKey::new(c.name.clone(), e.address);
                counts[overlay.state(&key) as usize] += 1;
            }
            for (state, n) in EndpointState::ALL.into_iter().zip(counts) {
                self.endpoints
                    .get_or_create(&EndpointLabels {
                        cluster: c.name.clone(),
                        state: state.name(),
                    })
                    .set(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Endpoint;
    use crate::metrics::Exposition;

    fn controller() -> (Arc<Controller>, Exposition) {
        let mut registry = crate::metrics::registry();
        let metrics = ControlMetrics::register(&mut registry);
        let controller = Controller::new(Arc::new(SnapshotCache::new()), metrics);
        (controller, Exposition::new(registry))
    }

    fn config(endpoints: &str) -> Arc<Config> {
        let yaml = format!("version: 1\nclusters:\n  web: {{ endpoints: [{endpoints}] }}\n");
        Arc::new(crate::config::parse_str("t.yaml", &yaml).unwrap())
    }

    fn version_series(metrics: &Exposition) -> Vec<String> {
        metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with("flotilla_config_version_info{"))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_version_metric_follows_an_overlay_change() {
        let (controller, metrics) = controller();
        controller.set_config(config("127.0.0.1:8081"));
        let before = controller.version().unwrap();
        controller.update_overlay(|o| {
            o.draining
                .insert(EndpointKey::new("web", "127.0.0.1:8081".parse().unwrap()));
        });
        let after = controller.version().unwrap();
        assert_ne!(before, after, "a drain changes the served version");
        assert_eq!(
            version_series(&metrics),
            [format!(
                "flotilla_config_version_info{{version=\"{after}\"}} 1"
            )]
        );
    }

    #[test]
    fn a_change_of_the_mesh_certificates_is_kept_and_published() {
        let (controller, _) = controller();
        controller.set_config(config("127.0.0.1:8081"));
        let mesh = Arc::new(crate::identity::workload::MeshIdentities {
            trust_domain: "example.org".into(),
            bundle_pem: b"bundle".to_vec(),
            workloads: Default::default(),
        });
        let published = controller.update_overlay(|o| o.mesh = Some(mesh.clone()));
        assert!(
            published.is_some(),
            "no endpoint changed, yet it is published"
        );
        assert_eq!(controller.overlay().mesh, Some(mesh.clone()));
        assert_eq!(controller.update_overlay(|o| o.mesh = Some(mesh)), None);
    }

    #[test]
    fn an_edit_that_removes_a_probed_endpoint_drops_its_verdict_in_the_same_publish() {
        let (controller, _) = controller();
        let checked = |endpoints: &str| {
            let yaml = format!(
                "version: 1\nclusters:\n  web: {{ endpoints: [{endpoints}], health_check: {{ tcp: }} }}\n"
            );
            Arc::new(crate::config::parse_str("t.yaml", &yaml).unwrap())
        };
        controller.set_config(checked("127.0.0.1:8081, 127.0.0.1:8082"));
        let gone = EndpointKey::new("web", "127.0.0.1:8082".parse().unwrap());
        let kept = EndpointKey::new("web", "127.0.0.1:8081".parse().unwrap());
        controller.update_overlay(|o| {
            o.verdicts
                .insert(gone.clone(), crate::overlay::Verdict::Unhealthy);
            o.verdicts
                .insert(kept.clone(), crate::overlay::Verdict::Healthy);
        });
        controller.set_config(checked("127.0.0.1:8081"));
        let overlay = controller.overlay();
        assert!(!overlay.verdicts.contains_key(&gone));
        assert!(overlay.verdicts.contains_key(&kept));
        // What the checker then does to forget the endpoint changes nothing: no second publish.
        assert_eq!(
            controller.update_overlay(|o| {
                o.verdicts.remove(&gone);
            }),
            None
        );
    }

    #[test]
    fn a_registration_git_adds_to_the_cluster_is_counted_once() {
        let (controller, metrics) = controller();
        controller.set_config(config("127.0.0.1:8081"));
        controller.update_overlay(|o| {
            o.registered.insert(
                "web".into(),
                vec![Endpoint::registered("127.0.0.1:9000".parse().unwrap(), 1)],
            );
        });
        controller.set_config(config("127.0.0.1:8081, 127.0.0.1:9000"));
        let text = metrics.encode();
        assert!(
            text.contains("flotilla_endpoints{cluster=\"web\",state=\"unknown\"} 2\n"),
            "{text}"
        );
    }
}
