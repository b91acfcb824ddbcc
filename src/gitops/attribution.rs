//! A NACK traced to the YAML: which resources Envoy refused, where each was written, and
//! Envoy's own words, as one line an operator can act on:
//! `rejected by edge-1: web.yaml:14:3 listeners.elsewhere: <Envoy's message>`.
//!
//! Envoy applies a response resource by resource and names the ones it refuses in its
//! `error_detail` (`Error adding/updating listener(s) elsewhere: ...`). The resources named
//! there win; when the message names none, every resource of the rejected response is a
//! suspect.

use serde::Serialize;

use crate::translate::Sources;
use crate::xds::nodes::Nack;

/// The longest Envoy message kept in a rejection, in characters.
pub const MAX_MESSAGE: usize = 1024;

/// Suspects listed when the message names no resource.
const MAX_SUSPECTS: usize = 10;

/// One refused resource and where it was written (None: not from the YAML, or the config
/// that had it is no longer served).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    pub name: String,
    /// `file:line:col` of the item it comes from.
    pub location: Option<String>,
    /// `listeners.elsewhere`.
    pub field: Option<String>,
}

/// An Envoy's rejection, traced to the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub node: String,
    /// The resource type (`lds`, `cds`, …).
    #[serde(rename = "type")]
    pub type_name: &'static str,
    pub version: String,
    pub message: String,
    #[serde(with = "crate::util::unix_millis")]
    pub at: std::time::SystemTime,
    pub resources: Vec<Refused>,
    /// The one line: `rejected by edge-1: web.yaml:14:3 listeners.elsewhere: <message>`.
    pub summary: String,
}

/// Traces `nack` (of resource type `type_name`, `render` section `section`) by `node` to the
/// YAML `sources` of the config served.
pub fn attribute(
    node: &str,
    type_name: &'static str,
    section: &str,
    nack: &Nack,
    sources: &Sources,
) -> Rejection {
    let message: String = crate::config::escape_controls(&nack.message)
        .chars()
        .take(MAX_MESSAGE)
        .collect();
    let named: Vec<&str> = nack
        .resources
        .iter()
        .map(String::as_str)
        .filter(|n| names(&nack.message, n))
        .collect();
    let suspects: Vec<&str> = if named.is_empty() {
        nack.resources
            .iter()
            .map(String::as_str)
            .take(MAX_SUSPECTS)
            .collect()
    } else {
        named
    };
    let resources: Vec<Refused> = suspects
        .into_iter()
        .map(|name| {
            let source = sources.get(section, name);
            Refused {
                name: crate::config::escape_controls(name),
                location: source.map(|s| s.location.clone()),
                field: source.map(|s| s.field.clone()),
            }
        })
        .collect();
    let node = crate::config::escape_controls(node);
    let places: Vec<String> = resources
        .iter()
        .map(|r| match (&r.location, &r.field) {
            (Some(l), Some(f)) => format!("{l} {f}"),
            _ => format!("{type_name} {}", r.name),
        })
        .collect();
    let summary = if places.is_empty() {
        format!("rejected by {node}: {type_name}: {message}")
    } else {
        format!("rejected by {node}: {}: {message}", places.join(", "))
    };
    Rejection {
        node,
        type_name,
        version: nack.version.clone(),
        message,
        at: nack.at,
        resources,
        summary,
    }
}

/// Whether `message` names `name` as a word of its own (not inside a longer name).
fn names(message: &str, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let part = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    message.match_indices(name).any(|(i, _)| {
        let before = message[..i].chars().next_back();
        let after = message[i + name.len()..].chars().next();
        !before.is_some_and(part) && !after.is_some_and(|c| part(c) && c != '.')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "version: 1
clusters:
  web: { endpoints: [127.0.0.1:8080] }
listeners:
  public: { address: 127.0.0.1:10080, routes: [{ to: web }] }
  elsewhere: { address: 192.0.2.10:10080, routes: [{ to: web }] }
";

    fn sources() -> Sources {
        crate::translate::sources(&crate::config::parse_str("web.yaml", YAML).unwrap())
    }

    fn nack(message: &str, resources: &[&str]) -> Nack {
        Nack::new("v2".into(), message.into(), resources.iter().copied())
    }

    #[test]
    fn the_resource_envoy_names_is_traced_to_its_line() {
        let n = nack(
            "Error adding/updating listener(s) elsewhere: cannot bind '192.0.2.10:10080': Cannot assign requested address",
            &["elsewhere", "public"],
        );
        let r = attribute("edge-1", "lds", "listeners", &n, &sources());
        assert_eq!(r.resources.len(), 1);
        assert_eq!(
            r.summary,
            "rejected by edge-1: web.yaml:6:3 listeners.elsewhere: Error adding/updating listener(s) elsewhere: cannot bind '192.0.2.10:10080': Cannot assign requested address"
        );
    }

    #[test]
    fn without_a_name_in_the_message_every_resource_of_the_response_is_a_suspect() {
        let n = nack("something went wrong", &["public", "elsewhere"]);
        let r = attribute("edge-1", "lds", "listeners", &n, &sources());
        let fields: Vec<_> = r
            .resources
            .iter()
            .map(|x| x.field.clone().unwrap())
            .collect();
        assert_eq!(fields, ["listeners.public", "listeners.elsewhere"]);
    }

    #[test]
    fn a_name_inside_a_longer_name_does_not_count() {
        assert!(!names("listener(s) web-2: bad", "web"));
        assert!(names("listener(s) web: bad", "web"));
        assert!(names("cluster 'web'.", "web"));
        assert!(!names("anything", ""));
    }

    #[test]
    fn unknown_resources_and_hostile_messages_are_shown_safely() {
        let n = nack("bad\u{1b}[2J thing", &["gone"]);
        let r = attribute("edge\n1", "cds", "clusters", &n, &sources());
        assert_eq!(r.resources[0].location, None);
        assert!(!r.summary.contains('\u{1b}') && !r.summary.contains('\n'));
        assert!(r.summary.starts_with("rejected by edge\\n1: cds gone: bad"));
        let long = nack(&"x".repeat(5000), &[]);
        let r = attribute("e", "cds", "clusters", &long, &sources());
        assert_eq!(r.message.len(), MAX_MESSAGE);
        assert_eq!(
            r.summary,
            format!("rejected by e: cds: {}", "x".repeat(MAX_MESSAGE))
        );
    }
}
