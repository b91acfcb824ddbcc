//! The empty-config guard: a config that takes every listener or every cluster away from
//! Envoys that have them is far more often an accident (a truncated file, a bad merge, a
//! deploy tool that wrote `version: 1` alone) than a decision, and applying it cuts all traffic
//! at once. `serve` refuses such a reload unless the new config says `allow_empty: true`;
//! `validate` warns about a config that would be refused.

use super::model::Config;

/// Why `serve` refuses to replace `served` by `new`, or `None` when the change may apply.
pub fn refusal(served: &Config, new: &Config) -> Option<String> {
    if new.allow_empty {
        return None;
    }
    let why = if !served.listeners.is_empty() && new.listeners.is_empty() {
        format!(
            "it has no listeners; the served config has {}",
            served.listeners.len()
        )
    } else if !served.clusters.is_empty() && new.clusters.is_empty() {
        format!(
            "it has no clusters; the served config has {}",
            served.clusters.len()
        )
    } else if let Some(fleet) = emptied_fleet(served, new) {
        format!("fleet `{fleet}` would receive no listeners; the served config gives it some")
    } else {
        return None;
    };
    Some(format!(
        "refused as a probable accident: {why} (write `allow_empty: true` at the top of the config if this is intended)"
    ))
}

/// A fleet declared with listeners in `served` that `new` leaves with none: declared with an
/// empty list, or no longer declared while other fleets are (an undeclared fleet then
/// receives nothing).
fn emptied_fleet<'a>(served: &'a Config, new: &Config) -> Option<&'a str> {
    served
        .fleets
        .iter()
        .filter(|(_, fleet)| !fleet.listeners.is_empty())
        .find(|(name, _)| match new.fleets.get(*name) {
            Some(fleet) => fleet.listeners.is_empty(),
            None => !new.fleets.is_empty(),
        })
        .map(|(name, _)| name.as_str())
}

/// What `validate` says about a config `serve` would refuse over a non-empty one.
pub fn warning(config: &Config) -> Option<String> {
    if config.allow_empty {
        return None;
    }
    let missing = match (config.listeners.is_empty(), config.clusters.is_empty()) {
        (true, true) => "no listeners and no clusters",
        (true, false) => "no listeners",
        (false, true) => "no clusters",
        (false, false) => return None,
    };
    Some(format!(
        "warning: this config has {missing}: `serve` refuses to apply it over a config that has them, unless it says `allow_empty: true`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn config(text: &str) -> Config {
        parse_str("t.yaml", text).expect("valid")
    }

    const FULL: &str = "version: 1
clusters:
  web: { endpoints: [127.0.0.1:8080] }
listeners:
  public: { address: 127.0.0.1:10000, routes: [{ to: web }] }
fleets:
  edge: { listeners: [public] }
";

    #[test]
    fn removing_every_listener_is_refused() {
        let new = config("version: 1\nclusters:\n  web: { endpoints: [127.0.0.1:8080] }\n");
        let why = refusal(&config(FULL), &new).expect("refused");
        assert!(
            why.contains("no listeners; the served config has 1"),
            "{why}"
        );
        assert!(why.contains("allow_empty: true"), "{why}");
    }

    #[test]
    fn removing_every_cluster_is_refused() {
        let served = config("version: 1\nclusters:\n  web: { endpoints: [127.0.0.1:8080] }\n");
        let why = refusal(&served, &config("version: 1\n")).expect("refused");
        assert!(why.contains("no clusters"), "{why}");
    }

    #[test]
    fn emptying_a_declared_fleet_is_refused() {
        let new = config(&FULL.replace("listeners: [public]", "listeners: []"));
        let why = refusal(&config(FULL), &new).expect("refused");
        assert!(why.contains("fleet `edge`"), "{why}");
    }

    #[test]
    fn undeclaring_a_fleet_while_others_remain_is_refused() {
        let two = FULL.replace(
            "  edge: { listeners: [public] }\n",
            "  edge: { listeners: [public] }\n  core: { listeners: [public] }\n",
        );
        let without_edge = FULL.replace("  edge:", "  core:");
        let why = refusal(&config(&two), &config(&without_edge)).expect("refused");
        assert!(why.contains("fleet `edge`"), "{why}");
        // With no fleets declared any more, every Envoy receives every listener.
        let no_fleets = FULL.replace("fleets:\n  edge: { listeners: [public] }\n", "");
        assert_eq!(refusal(&config(FULL), &config(&no_fleets)), None);
    }

    #[test]
    fn allow_empty_lets_it_through() {
        let new = config("version: 1\nallow_empty: true\n");
        assert_eq!(refusal(&config(FULL), &new), None);
        assert_eq!(warning(&new), None);
    }

    #[test]
    fn nothing_is_refused_when_nothing_was_served_or_something_remains() {
        assert_eq!(refusal(&Config::default(), &config("version: 1\n")), None);
        let fewer = FULL.replace("  web: { endpoints: [127.0.0.1:8080] }\n", "  web: {}\n");
        assert_eq!(refusal(&config(FULL), &config(&fewer)), None);
    }

    #[test]
    fn validate_warns_about_an_empty_config() {
        let w = warning(&config("version: 1\n")).expect("warning");
        assert!(w.contains("no listeners and no clusters"), "{w}");
        assert_eq!(warning(&config(FULL)), None);
    }
}
