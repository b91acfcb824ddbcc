//! The two bounds a large configuration meets that are choices, not hard constraints: routes
//! per virtual host and virtual hosts per listener. Their defaults guard against accidents
//! (Envoy walks a host's routes in order for every request; a listener's hosts travel as one
//! RouteConfiguration, re-sent whole to every Envoy of the fleet when any route changes), and
//! an operator who accepts those costs raises them with `--max-routes-per-host` and
//! `--max-hosts-per-listener`. Process-wide, set once by the binary from its flags before any
//! configuration is read, so `validate`, `render` and `serve` judge a config alike.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Routes one host holds by default (and every route of a listener without `hosts`).
pub const DEFAULT_ROUTES_PER_HOST: usize = 1_000;
/// Hosts one listener holds by default: 10x the 1,000 the translation benchmark measures.
pub const DEFAULT_HOSTS_PER_LISTENER: usize = 10_000;
/// The most either flag accepts: past this, one RouteConfiguration of a single host or of
/// one-route hosts is tens of megabytes, re-encoded and re-sent whole on every route change.
pub const CEILING: usize = 100_000;

static ROUTES_PER_HOST: AtomicUsize = AtomicUsize::new(DEFAULT_ROUTES_PER_HOST);
static HOSTS_PER_LISTENER: AtomicUsize = AtomicUsize::new(DEFAULT_HOSTS_PER_LISTENER);

/// Sets both bounds for this process (clamped to `1..=CEILING`); call before loading a config.
pub fn set(routes_per_host: usize, hosts_per_listener: usize) {
    ROUTES_PER_HOST.store(routes_per_host.clamp(1, CEILING), Ordering::Relaxed);
    HOSTS_PER_LISTENER.store(hosts_per_listener.clamp(1, CEILING), Ordering::Relaxed);
}

pub fn routes_per_host() -> usize {
    ROUTES_PER_HOST.load(Ordering::Relaxed)
}

pub fn hosts_per_listener() -> usize {
    HOSTS_PER_LISTENER.load(Ordering::Relaxed)
}
