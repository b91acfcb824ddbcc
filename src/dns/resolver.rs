//! The task that keeps hostname endpoints resolved and feeds their addresses to the overlay
//! (`Overlay::resolved`), and the check a reload makes of the names it adds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::names::{Names, Outcome};
use super::{Answer, CONCURRENT_LOOKUPS, LOOKUP_TIMEOUT, Lookup, LookupError};
use crate::config::Config;
use crate::config::model::{Endpoint, Resolve};
use crate::control::Controller;
use crate::overlay::Overlay;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabel {
    name: String,
}

/// What resolution publishes as metrics.
#[derive(Clone, Debug, Default)]
pub struct DnsMetrics {
    failures: Family<NameLabel, Counter>,
    addresses: Family<NameLabel, Gauge>,
}

impl DnsMetrics {
    pub fn register(registry: &mut Registry) -> DnsMetrics {
        let m = DnsMetrics::default();
        registry.register(
            "dns_failures",
            "Failed lookups of hostname endpoints, by name (the last good addresses stay served)",
            m.failures.clone(),
        );
        registry.register(
            "dns_addresses",
            "Addresses served for each hostname endpoint (the last good answer)",
            m.addresses.clone(),
        );
        m
    }
}

/// Hostname resolution for the served config.
pub struct Dns {
    lookup: Arc<dyn Lookup>,
    names: Mutex<Names>,
    metrics: DnsMetrics,
}

/// Every name flotilla resolves in `config` (clusters with `resolve: flotilla`).
pub(crate) fn hostnames(config: &Config) -> BTreeSet<String> {
    config
        .clusters
        .values()
        .filter(|c| c.resolve == Resolve::Flotilla)
        .flat_map(|c| c.hostnames.iter().map(|h| h.host.clone()))
        .collect()
}

impl Dns {
    pub fn new(lookup: Arc<dyn Lookup>, metrics: DnsMetrics) -> Arc<Dns> {
        Arc::new(Dns {
            lookup,
            names: Mutex::new(Names::default()),
            metrics,
        })
    }

    fn names(&self) -> MutexGuard<'_, Names> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks a config about to be served: names it adds are looked up now (all at once, for
    /// [`super::ADMIT_TIMEOUT`] at most). A name that does not exist refuses the config, with
    /// its place; one that cannot be looked up right now does not (the task keeps trying).
    /// Names already followed cost nothing: a reload never waits on them.
    pub async fn admit(&self, config: &Config) -> Result<(), Vec<String>> {
        let new: BTreeSet<String> = {
            let names = self.names();
            hostnames(config)
                .into_iter()
                .filter(|n| names.addresses(n).is_none())
                .collect()
        };
        if new.is_empty() {
            return Ok(());
        }
        let results = tokio::time::timeout(super::ADMIT_TIMEOUT, self.resolve_all(new.clone()))
            .await
            .unwrap_or_default();
        let mut missing = BTreeSet::new();
        {
            let now = clock();
            let mut names = self.names();
            let mut wanted = names.followed();
            wanted.extend(new.iter().cloned());
            names.follow(&wanted, now);
            for (name, result) in &results {
                if result == &Err(LookupError::NoSuchName) {
                    missing.insert(name.clone());
                } else {
                    self.record(&mut names, name, result, now);
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let errors = config
            .clusters
            .values()
            .filter(|c| c.resolve == Resolve::Flotilla)
            .flat_map(|c| &c.hostnames)
            .filter(|h| missing.contains(&h.host))
            .map(|h| {
                format!(
                    "{}: {}: `{}` does not resolve (NXDOMAIN, or no A/AAAA records)",
                    h.loc, h.field, h.host
                )
            })
            .collect();
        Err(errors)
    }

    /// The endpoints each cluster's hostnames stand for now, as the overlay holds them: one
    /// per address, with the hostname's weight, zone and priority. Addresses the config also
    /// lists as IPs, or that an earlier hostname of the cluster gave, count once.
    pub fn endpoints(&self, config: &Config) -> BTreeMap<String, Vec<Endpoint>> {
        let names = self.names();
        let mut out = BTreeMap::new();
        for c in config
            .clusters
            .values()
            .filter(|c| c.resolve == Resolve::Flotilla && !c.hostnames.is_empty())
        {
            let mut seen: BTreeSet<std::net::SocketAddr> =
                c.endpoints.iter().map(|e| e.address).collect();
            let resolved: Vec<Endpoint> = c
                .hostnames
                .iter()
                .flat_map(|h| {
                    names
                        .addresses(&h.host)
                        .unwrap_or_default()
                        .iter()
                        .map(|ip| h.at(*ip))
                })
                .filter(|e| seen.insert(e.address))
                .collect();
            if !resolved.is_empty() {
                out.insert(c.name.clone(), resolved);
            }
        }
        out
    }

    /// Puts [`Dns::endpoints`] into `overlay` (what a reload does in the same publish).
    pub fn fill(&self, config: &Config, overlay: &mut Overlay) {
        overlay.resolved = self.endpoints(config);
    }

    fn record(
        &self,
        names: &mut Names,
        name: &str,
        result: &Result<Answer, LookupError>,
        now: Instant,
    ) -> Outcome {
        let outcome = names.record(name, result, now);
        // One line per lookup: whether the schedule keeps going can be read from a log.
        debug!(
            name,
            outcome = ?outcome,
            ttl_ms = result.as_ref().ok().map(|a| millis(a.ttl)),
            next_due_ms = names.due_at(name).map(|d| millis(d.saturating_duration_since(now))),
            "DNS lookup done"
        );
        let label = NameLabel {
            name: name.to_string(),
        };
        match (&outcome, result) {
            (Outcome::Failed { first }, Err(e)) => {
                self.metrics.failures.get_or_create(&label).inc();
                let kept = names.addresses(name).map_or(0, <[_]>::len);
                if *first {
                    warn!(name, error = %e, kept, "DNS lookup failed; keeping the last good addresses");
                    crate::events::record(crate::events::NewEvent::new(
                        crate::events::Kind::Dns,
                        format!(
                            "DNS lookup of {name} failed ({e}); serving its last good addresses ({kept})"
                        ),
                    ));
                } else {
                    debug!(name, error = %e, "DNS lookup failed again");
                }
            }
            (Outcome::Changed, Ok(a)) => {
                info!(name, addresses = ?a.addresses, ttl = ?a.ttl, "DNS answer changed");
                self.metrics
                    .addresses
                    .get_or_create(&label)
                    .set(a.addresses.len() as i64);
            }
            _ => {}
        }
        outcome
    }

    async fn resolve_all(
        &self,
        names: BTreeSet<String>,
    ) -> Vec<(String, Result<Answer, LookupError>)> {
        let mut out = Vec::with_capacity(names.len());
        let mut pending = names.into_iter();
        let mut running = JoinSet::new();
        loop {
            while running.len() < CONCURRENT_LOOKUPS {
                let Some(name) = pending.next() else { break };
                let lookup = self.lookup.clone();
                running.spawn(async move {
                    let result = tokio::time::timeout(LOOKUP_TIMEOUT, lookup.lookup(&name))
                        .await
                        .unwrap_or_else(|_| Err(LookupError::Failed("timed out".into())));
                    (name, result)
                });
            }
            match running.join_next().await {
                Some(Ok(done)) => out.push(done),
                Some(Err(e)) => warn!(error = %e, "a DNS lookup task failed"),
                None => return out,
            }
        }
    }

    /// Keeps the served config's names resolved until `shutdown`, publishing address changes
    /// through the controller (the endpoint fast path).
    ///
    /// The names followed are those of the config carried by the inputs that woke the loop,
    /// never a read of [`Controller::config`]: the controller publishes a new config's inputs
    /// before it records the config (see [`Controller::set_config_with`]), so a read right
    /// after waking could still see the config before. The first config's names, read that
    /// way as "none", were forgotten, and nothing woke the loop again: flotilla asked once
    /// (while checking the reload) and never again.
    pub async fn run(self: Arc<Self>, controller: Arc<Controller>, shutdown: CancellationToken) {
        let mut inputs = controller.watch_inputs();
        let mut config = served_config(&mut inputs);
        loop {
            let now = clock();
            let due = {
                let mut names = self.names();
                let before = names.followed();
                names.follow(&config.as_deref().map(hostnames).unwrap_or_default(), now);
                for gone in before.difference(&names.followed()) {
                    let label = NameLabel { name: gone.clone() };
                    self.metrics.addresses.remove(&label);
                }
                names.due(now)
            };
            if !due.is_empty() {
                let results = self.resolve_all(due.into_iter().collect()).await;
                let changed = {
                    let now = clock();
                    let mut names = self.names();
                    results.iter().fold(false, |changed, (name, result)| {
                        self.record(&mut names, name, result, now) == Outcome::Changed || changed
                    })
                };
                if changed {
                    // The config the controller serves when the overlay changes, under its
                    // lock: a reload may have published another since this loop woke.
                    controller.update_overlay_with(|served, o| {
                        if let Some(served) = served {
                            self.fill(served, o);
                        }
                    });
                }
                continue;
            }
            let wake = self.names().next_due();
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = inputs.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    config = served_config(&mut inputs);
                }
                () = sleep => {}
            }
        }
    }
}

/// The config in the inputs last published (marking them seen).
fn served_config(
    inputs: &mut tokio::sync::watch::Receiver<Option<crate::cache::Inputs>>,
) -> Option<Arc<Config>> {
    inputs
        .borrow_and_update()
        .as_ref()
        .map(|i| i.config.clone())
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Now, on tokio's clock: the same as [`Instant::now`] when the server runs, and the paused
/// clock in tests (so that a test can let TTLs run out without waiting for them).
fn clock() -> Instant {
    tokio::time::Instant::now().into_std()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::dns::lookup::FakeLookup;

    fn config(endpoints: &str) -> Config {
        let yaml = format!("version: 1\nclusters:\n  db: {{ endpoints: [{endpoints}] }}\n");
        crate::config::parse_str("t.yaml", &yaml).unwrap()
    }

    fn dns(lookup: FakeLookup) -> Arc<Dns> {
        Dns::new(Arc::new(lookup), DnsMetrics::default())
    }

    fn answer(ips: &[&str]) -> Result<Answer, LookupError> {
        answer_for(ips, 30)
    }

    fn answer_for(ips: &[&str], ttl: u64) -> Result<Answer, LookupError> {
        Ok(Answer {
            addresses: ips.iter().map(|i| i.parse().unwrap()).collect(),
            ttl: Duration::from_secs(ttl),
        })
    }

    fn resolved(controller: &Controller, cluster: &str) -> Vec<String> {
        controller
            .overlay()
            .resolved
            .get(cluster)
            .into_iter()
            .flatten()
            .map(|e| e.address.to_string())
            .collect()
    }

    /// The loop may wake between the controller publishing a config's inputs and recording
    /// the config (another thread, in the server): it must follow the names of the inputs it
    /// was woken by. It used to read `Controller::config` instead, saw no config, forgot the
    /// name the reload had just looked up and waited for inputs that never came: one lookup
    /// at start, none after (the stall of issue 25's address-change e2e).
    #[tokio::test(start_paused = true)]
    async fn the_first_configs_names_are_followed_whenever_the_loop_wakes() {
        let lookup = Arc::new(FakeLookup::default());
        lookup.set("db.internal", answer_for(&["10.0.0.1"], 1));
        let d = Dns::new(lookup.clone(), DnsMetrics::default());
        let controller = Controller::new(
            Arc::new(crate::cache::SnapshotCache::new()),
            Default::default(),
        );
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(d.clone().run(controller.clone(), shutdown.clone()));
        tokio::task::yield_now().await;

        // What a reload does: check the config (the first lookup), then serve it.
        let c = Arc::new(config("db.internal:5432"));
        d.admit(&c).await.unwrap();
        assert_eq!(lookup.asked("db.internal"), 1);
        controller
            .set_config_interleaved(
                c,
                |c, o| d.fill(c, o),
                tokio::time::sleep(Duration::from_millis(10)),
            )
            .await;
        assert_eq!(resolved(&controller, "db"), ["10.0.0.1:5432"]);

        lookup.set("db.internal", answer_for(&["10.0.0.2"], 1));
        // A 1 s TTL: asked again at 1 s and 2 s (paused time runs to each timer).
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(lookup.asked("db.internal"), 3, "one lookup per TTL");
        assert_eq!(resolved(&controller, "db"), ["10.0.0.2:5432"]);
        shutdown.cancel();
        task.await.unwrap();
    }

    /// A config served while the loop sleeps until a TTL runs out: the new name is looked up
    /// at once, and the addresses of both configs' names follow their TTLs.
    #[tokio::test(start_paused = true)]
    async fn a_reload_adds_names_and_each_follows_its_ttl() {
        let lookup = Arc::new(FakeLookup::default());
        lookup.set("a.internal", answer_for(&["10.0.0.1"], 1));
        lookup.set("b.internal", answer_for(&["10.0.1.1"], 5));
        let d = Dns::new(lookup.clone(), DnsMetrics::default());
        let controller = Controller::new(
            Arc::new(crate::cache::SnapshotCache::new()),
            Default::default(),
        );
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(d.clone().run(controller.clone(), shutdown.clone()));
        let first = Arc::new(config("a.internal:80"));
        d.admit(&first).await.unwrap();
        controller.set_config_with(first, |c, o| d.fill(c, o));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(lookup.asked("a.internal"), 2);

        let second = Arc::new(config("a.internal:80, b.internal:80"));
        d.admit(&second).await.unwrap();
        controller.set_config_with(second, |c, o| d.fill(c, o));
        lookup.set("b.internal", answer_for(&["10.0.1.2"], 5));
        tokio::time::sleep(Duration::from_millis(5200)).await;
        assert_eq!(lookup.asked("a.internal"), 7, "every second, up to 6.7 s");
        assert_eq!(
            lookup.asked("b.internal"),
            2,
            "at admission, then after its 5 s TTL"
        );
        assert_eq!(resolved(&controller, "db"), ["10.0.0.1:80", "10.0.1.2:80"]);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_name_that_does_not_exist_refuses_the_config_with_its_place() {
        let d = dns(FakeLookup::default());
        let errors = d
            .admit(&config("10.0.0.9:1, nope.internal:5432"))
            .await
            .unwrap_err();
        assert_eq!(
            errors,
            [
                "t.yaml:3:33: clusters.db.endpoints[1]: `nope.internal` does not resolve (NXDOMAIN, or no A/AAAA records)"
            ]
        );
    }

    #[tokio::test]
    async fn a_failing_server_does_not_refuse_the_config() {
        let lookup = FakeLookup::default();
        lookup.set("db.internal", Err(LookupError::Failed("timed out".into())));
        let d = dns(lookup);
        let c = config("db.internal:5432");
        assert_eq!(d.admit(&c).await, Ok(()));
        assert!(d.endpoints(&c).is_empty(), "no address yet");
    }

    #[tokio::test]
    async fn every_address_is_an_endpoint_once() {
        let lookup = FakeLookup::default();
        lookup.set("a.internal", answer(&["10.0.0.1", "10.0.0.2"]));
        lookup.set("b.internal", answer(&["10.0.0.2", "10.0.0.3"]));
        let d = dns(lookup);
        let c = config("10.0.0.3:80, a.internal:80, { address: b.internal:80, weight: 5 }");
        d.admit(&c).await.unwrap();
        let got: Vec<(String, u32)> = d.endpoints(&c)["db"]
            .iter()
            .map(|e| (e.address.to_string(), e.weight))
            .collect();
        assert_eq!(
            got,
            [
                ("10.0.0.1:80".to_string(), 1),
                ("10.0.0.2:80".to_string(), 1)
            ],
            "10.0.0.3 is configured, 10.0.0.2 came first from a.internal"
        );
        let mut overlay = Overlay::default();
        d.fill(&c, &mut overlay);
        let listed: Vec<String> = overlay
            .endpoints(&c.clusters["db"])
            .map(|(e, s)| format!("{} {}", e.address, s.name()))
            .collect();
        assert_eq!(
            listed,
            ["10.0.0.3:80 config", "10.0.0.1:80 dns", "10.0.0.2:80 dns"]
        );
    }
}
