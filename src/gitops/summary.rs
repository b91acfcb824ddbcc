//! One line saying what an applied config changed, by name: `listeners +elsewhere; clusters
//! ~web`. History shows it; computing it compares decoded items, never Envoy protos.

use std::collections::BTreeMap;

use crate::config::Config;

/// Names listed per section before the rest is counted (`+3 more`).
const NAMES_SHOWN: usize = 5;

/// What `new` changes from `old` (None: nothing was served before).
pub fn summary(old: Option<&Config>, new: &Config) -> String {
    let Some(old) = old else {
        return format!(
            "first config: {} clusters, {} listeners, {} fleets",
            new.clusters.len(),
            new.listeners.len(),
            new.fleets.len()
        );
    };
    let parts: Vec<String> = [
        section("clusters", &old.clusters, &new.clusters),
        section("listeners", &old.listeners, &new.listeners),
        section("fleets", &old.fleets, &new.fleets),
        (old.secrets != new.secrets).then(|| "certificates changed".to_string()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        "no change to what Envoys run".to_string()
    } else {
        crate::config::escape_controls(&parts.join("; "))
    }
}

fn section<T: PartialEq>(
    name: &str,
    old: &BTreeMap<String, T>,
    new: &BTreeMap<String, T>,
) -> Option<String> {
    let mut marks: Vec<String> = Vec::new();
    for (k, v) in new {
        match old.get(k) {
            None => marks.push(format!("+{k}")),
            Some(o) if o != v => marks.push(format!("~{k}")),
            Some(_) => {}
        }
    }
    marks.extend(
        old.keys()
            .filter(|k| !new.contains_key(*k))
            .map(|k| format!("-{k}")),
    );
    if marks.is_empty() {
        return None;
    }
    let more = marks.len().saturating_sub(NAMES_SHOWN);
    marks.truncate(NAMES_SHOWN);
    let mut line = format!("{name} {}", marks.join(" "));
    if more > 0 {
        line.push_str(&format!(" +{more} more"));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listeners: &str) -> Config {
        let yaml = format!(
            "version: 1\nclusters:\n  web: {{ endpoints: [127.0.0.1:8080] }}\nlisteners:\n{listeners}"
        );
        crate::config::parse_str("t.yaml", &yaml).unwrap()
    }

    #[test]
    fn names_what_was_added_changed_and_removed() {
        let a = config(
            "  a: { address: 127.0.0.1:10001, routes: [{ to: web }] }\n  b: { address: 127.0.0.1:10002, routes: [{ to: web }] }\n",
        );
        let b = config(
            "  a: { address: 127.0.0.1:10011, routes: [{ to: web }] }\n  c: { address: 127.0.0.1:10003, routes: [{ to: web }] }\n",
        );
        assert_eq!(summary(Some(&a), &b), "listeners ~a +c -b");
        assert_eq!(summary(Some(&a), &a), "no change to what Envoys run");
        assert_eq!(
            summary(None, &a),
            "first config: 1 clusters, 2 listeners, 0 fleets"
        );
    }

    #[test]
    fn long_lists_are_cut() {
        let many: String = (0..8)
            .map(|i| {
                format!(
                    "  l{i}: {{ address: 127.0.0.1:{}, routes: [{{ to: web }}] }}\n",
                    10000 + i
                )
            })
            .collect();
        let s = summary(Some(&config("")), &config(&many));
        assert_eq!(s, "listeners +l0 +l1 +l2 +l3 +l4 +3 more");
    }
}
