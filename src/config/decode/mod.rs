//! From YAML trees (one per file) to a validated [`Config`], reporting every mistake.
//!
//! Files are merged first (a name defined twice is an error naming both places), then each
//! cluster, listener and fleet is decoded with its inherited defaults, then references between
//! them are checked.

mod access_log;
mod access_log_format;
mod affinity;
mod auth;
mod cluster;
pub(crate) mod defaults;
#[cfg(test)]
mod edge_tests;
mod fault;
mod grpc;
mod health;
mod jwks;
mod listener;
mod mesh;
#[cfg(test)]
mod mesh_tests;
mod registrations;
mod resilience;
mod route;
mod route_action;
mod route_match;
mod route_policy;
#[cfg(test)]
mod route_tests;
mod tcp;
mod tls;
#[cfg(test)]
mod tls_tests;
mod tracing;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;

use super::diagnostic::{Diagnostics, Sink};
use super::model::{Config, Fleet};
use super::reader::{self, Fields};
use super::shape::{Kind, Object, object, optional, required};
use super::yaml::{Location, Node, Value};
use defaults::Defaults;
use listener::ClusterRef;

pub use access_log::MAX_PATH as MAX_ACCESS_LOG_PATH;
pub use access_log_format::{
    MAX_FIELD_NAME, MAX_FORMAT_FIELDS, MAX_FORMAT_VALUE, check as check_access_log_value,
    sample_operators,
};
pub use auth::{
    DEFAULT_AUTH_TIMEOUT, DEFAULT_JWKS_CACHE, MAX_AUTH_ITEMS, MAX_AUTH_STRING, MAX_JWKS_CACHE,
};
pub use cluster::{MAX_HOSTNAMES, MAX_WEIGHT};
pub use fault::MAX_FAULT_DELAY;
pub use jwks::{MAX_JWKS_BYTES, MAX_JWKS_KEYS, MAX_JWKS_URL, check as check_jwks};
pub use listener::{MAX_DOMAINS, MAX_HOSTS};
pub use resilience::{GRPC_RETRY_ON, RETRY_ON};
pub use route::MAX_ROUTES;
pub use route_action::MAX_BODY_BYTES;
pub use route_match::MAX_REGEX_LEN;
pub use route_policy::{MAX_HEADER_EDITS, MAX_HEADER_VALUE, MAX_RATE};
pub use tls::{MAX_CERTIFICATES, MAX_PEM_BYTES, timestamp as format_timestamp};
pub use tracing::MAX_SERVICE_NAME;

/// A file of flotilla's configuration: the root of the JSON Schema.
pub(crate) const ROOT: Object = object(
    "flotilla",
    "A flotilla configuration file (several files in a directory are merged).",
    &[
        required(
            "version",
            Kind::IntEnum(&[1]),
            "Schema version: the number 1.",
        ),
        optional(
            "allow_empty",
            Kind::Bool,
            "Accept a configuration with no listeners (a deliberate empty state).",
        )
        .defaults_to("false"),
        optional(
            "defaults",
            Kind::Object(&defaults::DEFAULTS),
            "Settings every cluster and route inherits.",
        ),
        optional(
            "clusters",
            Kind::Map(&Kind::Object(&cluster::CLUSTER)),
            "Clusters by name.",
        ),
        optional(
            "listeners",
            Kind::Map(&Kind::Object(&listener::LISTENER)),
            "Listeners by name (a proxyless gRPC listener's name may end in :port).",
        ),
        optional(
            "fleets",
            Kind::Map(&Kind::Object(&FLEET)),
            "Envoy node.cluster → the listeners that fleet receives.",
        ),
        optional(
            "mesh",
            Kind::Object(&mesh::MESH),
            "Services behind Envoy sidecars with identities flotilla issues.",
        ),
    ],
);

const FLEET: Object = object(
    "fleet",
    "The listeners one fleet of Envoys receives.",
    &[required(
        "listeners",
        Kind::List(&Kind::NonEmpty),
        "Listener names.",
    )],
);

/// Unknown names that get a "did you mean" suggestion; each one compares against every known
/// name, so a config with thousands of broken references stays linear past the first few.
const SUGGESTIONS: usize = 100;

/// Names flotilla gives its own clusters in the bootstrap it writes (`flotilla_xds`, …).
pub const RESERVED_PREFIX: &str = "flotilla_";

/// One named item as written: the key (for its location) and the value.
struct Named<'n> {
    name: String,
    key: &'n Node,
    value: &'n Node,
}

#[derive(Default)]
struct Sections<'n> {
    defaults: Option<&'n Node>,
    mesh: Option<&'n Node>,
    allow_empty: bool,
    clusters: Vec<Named<'n>>,
    listeners: Vec<Named<'n>>,
    fleets: Vec<Named<'n>>,
}

/// Decodes the parsed files of one configuration. `None` roots are empty files.
pub(crate) fn decode(
    files: &[(Location, Option<Node>)],
    policy: std::sync::Arc<crate::config::policy::LoadPolicy>,
) -> Result<Config, Diagnostics> {
    let envoy_dns_servers = policy.dns_servers.clone();
    let mut sink = Sink::with_policy(policy);
    let mut sections = Sections::default();
    for (file_loc, root) in files {
        match root {
            Some(root) => collect(&mut sink, root, &mut sections),
            None => sink.at(file_loc, "", "empty file: expected at least `version: 1`"),
        }
    }

    let defaults = Defaults::new(sections.defaults.map(|d| {
        Fields::read(&mut sink, d, "defaults", &defaults::DEFAULTS);
        d.clone()
    }));

    let mut config = Config {
        allow_empty: sections.allow_empty,
        envoy_dns_servers,
        ..Config::default()
    };
    let mut refs: Vec<ClusterRef> = Vec::new();
    let mut cluster_nodes: BTreeMap<&str, &Node> = BTreeMap::new();
    for item in unique(&mut sink, "clusters", &sections.clusters) {
        if let Some(c) = cluster::cluster(
            &mut sink,
            &item.name,
            item.value,
            &defaults,
            &mut config.secrets,
        ) {
            config.clusters.insert(item.name.clone(), c);
            config
                .sources
                .clusters
                .insert(item.name.clone(), item.key.loc.clone());
            cluster_nodes.insert(&item.name, item.value);
        }
    }
    let mut addresses: BTreeMap<SocketAddr, &Named<'_>> = BTreeMap::new();
    for item in unique(&mut sink, "listeners", &sections.listeners) {
        let Some(l) = listener::listener(
            &mut sink,
            &item.name,
            item.value,
            &defaults,
            &mut refs,
            &mut config.secrets,
        ) else {
            continue;
        };
        if let Some(address) = l.address() {
            if let Some(first) = addresses.get(&address) {
                sink.error(
                    item.key,
                    &format!("listeners.{}.address", item.name),
                    format!(
                        "{address} is already used by listener `{}` ({})",
                        first.name, first.key.loc
                    ),
                );
            } else {
                addresses.insert(address, item);
            }
        }
        config.listeners.insert(item.name.clone(), l);
        config
            .sources
            .listeners
            .insert(item.name.clone(), item.key.loc.clone());
    }
    if let Some(n) = sections.mesh {
        config.mesh = mesh::mesh(&mut sink, n, &mut config.clusters, &config.listeners);
    }
    let mut suggester = Suggester::default();
    let declared_listeners = Declared::new(&sections.listeners);
    for item in unique(&mut sink, "fleets", &sections.fleets) {
        if config
            .mesh
            .as_ref()
            .is_some_and(|m| m.services.contains_key(&item.name))
        {
            sink.error(
                item.key,
                &format!("fleets.{}", item.name),
                "is a mesh service: its sidecars' fleet is made by `mesh:`",
            );
            continue;
        }
        if let Some(f) = fleet(&mut sink, item, &declared_listeners, &mut suggester) {
            config.fleets.insert(item.name.clone(), f);
            config
                .sources
                .fleets
                .insert(item.name.clone(), item.key.loc.clone());
        }
    }

    let declared_clusters = Declared::new(&sections.clusters);
    grpc::check_clusters(&mut sink, &refs, &config.clusters, &cluster_nodes);
    tcp::check_clusters(&mut sink, &config, &cluster_nodes);
    for r in refs {
        if let (Some(needs), Some(c)) = (r.needs_http2, config.clusters.get(&r.cluster))
            && c.upstream_protocol != crate::config::model::UpstreamProtocol::Http2
        {
            sink.at(
                &r.loc,
                &r.field,
                format!(
                    "cluster `{}` is {needs}, which speaks gRPC: give it `upstream_protocol: http2`",
                    r.cluster
                ),
            );
        }
        if !declared_clusters.contains(&r.cluster) {
            let hint = suggester.suggest(&r.cluster, &declared_clusters);
            sink.at(
                &r.loc,
                &r.field,
                format!("unknown cluster `{}`{hint}", r.cluster),
            );
        }
    }
    defaults::check_unused(&mut sink, &defaults);
    sink.into_result(config)
}

/// The names of one section, for lookups by name and for suggestions in the order written.
struct Declared<'a> {
    names: Vec<&'a str>,
    set: HashSet<&'a str>,
}

impl<'a> Declared<'a> {
    fn new(items: &'a [Named<'_>]) -> Declared<'a> {
        let names: Vec<&str> = items.iter().map(|i| i.name.as_str()).collect();
        let set = names.iter().copied().collect();
        Declared { names, set }
    }

    fn contains(&self, name: &str) -> bool {
        self.set.contains(name)
    }
}

/// "Did you mean" hints, for the first [`SUGGESTIONS`] unknown names.
#[derive(Default)]
struct Suggester {
    given: usize,
}

impl Suggester {
    fn suggest(&mut self, name: &str, known: &Declared<'_>) -> String {
        if self.given >= SUGGESTIONS {
            return String::new();
        }
        self.given += 1;
        known
            .names
            .iter()
            .map(|k| (strsim::levenshtein(name, k), *k))
            .filter(|(d, k)| *d <= 2.max(k.len() / 3))
            .min()
            .map(|(_, k)| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default()
    }
}

fn collect<'n>(sink: &mut Sink, root: &'n Node, sections: &mut Sections<'n>) {
    let Some(f) = Fields::read(sink, root, "", &ROOT) else {
        return;
    };
    match f.get("version").map(|n| (n, &n.value)) {
        Some((
            _,
            Value::Scalar {
                text,
                quoted: false,
            },
        )) if text == "1" => {}
        Some((n, Value::Scalar { text, quoted: true })) if text == "1" => sink.error(
            n,
            "version",
            "the schema version is the number 1, not the string \"1\" (remove the quotes)",
        ),
        Some((n, _)) => sink.error(
            n,
            "version",
            "unsupported schema version (this flotilla reads version 1)",
        ),
        None => sink.error(
            root,
            "version",
            "missing `version: 1` at the top of the file",
        ),
    }
    if let Some(n) = f.get("allow_empty") {
        sections.allow_empty |= reader::boolean(sink, n, "allow_empty").unwrap_or(false);
    }
    for (section, slot) in [
        ("defaults", &mut sections.defaults),
        ("mesh", &mut sections.mesh),
    ] {
        let Some(d) = f.get(section) else { continue };
        match slot {
            Some(first) => sink.error(
                f.key_node(section).unwrap_or(d),
                section,
                format!("defined twice: here and at {}", first.loc),
            ),
            None => *slot = Some(d),
        }
    }
    for (section, out) in [
        ("clusters", &mut sections.clusters),
        ("listeners", &mut sections.listeners),
        ("fleets", &mut sections.fleets),
    ] {
        let Some(node) = f.get(section) else { continue };
        let Some(entries) = reader::named_entries(sink, node, section) else {
            continue;
        };
        for (key, value) in entries {
            let Some(name) = reader::non_empty_string(sink, key, section) else {
                continue;
            };
            out.push(Named { name, key, value });
        }
    }
}

/// Items with valid names that are defined once; duplicates are reported at the later place.
fn unique<'a, 'n>(sink: &mut Sink, section: &str, items: &'a [Named<'n>]) -> Vec<&'a Named<'n>> {
    let mut seen: BTreeMap<&str, &Named<'n>> = BTreeMap::new();
    let mut out = Vec::new();
    for item in items {
        let path = format!("{section}.{}", item.name);
        if let Some(first) = seen.get(item.name.as_str()) {
            sink.error(
                item.key,
                &path,
                format!("defined twice: here and at {}", first.key.loc),
            );
            continue;
        }
        seen.insert(&item.name, item);
        // gRPC clients name a listener by the target they dial, which may end in `:port`.
        let name = match item.name.rsplit_once(':') {
            Some((host, port)) if section == "listeners" => match port.parse::<u16>() {
                Ok(p) if p > 0 => host,
                _ => {
                    sink.error(
                        item.key,
                        &path,
                        format!(
                            "`{}`: the part after `:` must be a port (1-65535)",
                            item.name
                        ),
                    );
                    continue;
                }
            },
            _ => &item.name,
        };
        if let Err(e) = check_name(name) {
            sink.error(item.key, &path, e);
            continue;
        }
        out.push(item);
    }
    out
}

/// Names become Envoy resource names and stat prefixes, so they keep to a safe alphabet.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !valid {
        return Err(format!(
            "`{name}` is not a valid name: use letters, digits, - _ . (starting with a letter or digit, at most 128)"
        ));
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(format!(
            "names starting with `{RESERVED_PREFIX}` are reserved for flotilla's own"
        ));
    }
    Ok(())
}

fn fleet(
    sink: &mut Sink,
    item: &Named<'_>,
    declared_listeners: &Declared<'_>,
    suggester: &mut Suggester,
) -> Option<Fleet> {
    let path = format!("fleets.{}", item.name);
    let f = Fields::read(sink, item.value, &path, &FLEET)?;
    let Some(list_node) = f.get("listeners") else {
        sink.error(item.value, &path, "missing field `listeners`");
        return None;
    };
    let items = reader::list(sink, list_node, &f.path("listeners"))?;
    let mut listeners = Vec::new();
    let mut listed = HashSet::new();
    let mut ok = true;
    for (i, n) in items.iter().enumerate() {
        let ipath = format!("{}[{i}]", f.path("listeners"));
        let Some(name) = reader::non_empty_string(sink, n, &ipath) else {
            ok = false;
            continue;
        };
        if !declared_listeners.contains(&name) {
            let hint = suggester.suggest(&name, declared_listeners);
            sink.error(n, &ipath, format!("unknown listener `{name}`{hint}"));
            ok = false;
        } else if listed.insert(name.clone()) {
            listeners.push(name);
        }
    }
    ok.then_some(Fleet { listeners })
}
