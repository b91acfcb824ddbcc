//! The resolution schedule, as a pure state machine: which names are due, what each one's
//! last good addresses are, and when to ask again. Time comes in as an argument.
//!
//! Rules: a new name is due at once; an answer is kept for its TTL (already clamped to
//! 1 s–5 min by [`super::Answer`]); a failure keeps the last good addresses and retries after
//! 1 s, 2 s, 4 s ... up to [`MAX_RETRY`]; a name the config no longer has is forgotten.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{Answer, LookupError, MAX_RETRY};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// The last good addresses (`None`: never resolved).
    addresses: Option<Vec<IpAddr>>,
    due: Instant,
    /// Failed lookups in a row.
    failures: u32,
}

/// What recording a lookup's outcome changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// New addresses (first answer, or different from the last).
    Changed,
    /// The same addresses as before.
    Same,
    /// The lookup failed; `first` if the name was fine until now (worth one event).
    Failed { first: bool },
    /// The name is no longer followed.
    Ignored,
}

#[derive(Debug, Clone, Default)]
pub struct Names {
    entries: BTreeMap<String, Entry>,
}

impl Names {
    /// Follows exactly `wanted`: new names become due at `now`, others are forgotten.
    pub fn follow(&mut self, wanted: &BTreeSet<String>, now: Instant) {
        self.entries.retain(|name, _| wanted.contains(name));
        for name in wanted {
            self.entries.entry(name.clone()).or_insert(Entry {
                addresses: None,
                due: now,
                failures: 0,
            });
        }
    }

    /// Every name followed.
    pub fn followed(&self) -> BTreeSet<String> {
        self.entries.keys().cloned().collect()
    }

    /// The names whose lookup is due at `now`.
    pub fn due(&self, now: Instant) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, e)| e.due <= now)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// When the next lookup is due (`None`: no names).
    pub fn next_due(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.due).min()
    }

    /// When `name`'s next lookup is due (`None`: not followed).
    pub fn due_at(&self, name: &str) -> Option<Instant> {
        Some(self.entries.get(name)?.due)
    }

    /// The last good addresses of `name`.
    pub fn addresses(&self, name: &str) -> Option<&[IpAddr]> {
        self.entries.get(name)?.addresses.as_deref()
    }

    /// Records the outcome of looking `name` up at `now`.
    pub fn record(
        &mut self,
        name: &str,
        result: &Result<Answer, LookupError>,
        now: Instant,
    ) -> Outcome {
        let Some(entry) = self.entries.get_mut(name) else {
            return Outcome::Ignored;
        };
        match result {
            Ok(answer) => {
                entry.failures = 0;
                entry.due = now + answer.ttl;
                if entry.addresses.as_ref() == Some(&answer.addresses) {
                    return Outcome::Same;
                }
                entry.addresses = Some(answer.addresses.clone());
                Outcome::Changed
            }
            Err(_) => {
                entry.failures = entry.failures.saturating_add(1);
                entry.due = now + retry_after(entry.failures);
                Outcome::Failed {
                    first: entry.failures == 1,
                }
            }
        }
    }
}

/// 1 s after the first failure, doubling, at most [`MAX_RETRY`].
fn retry_after(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exponent).min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn answer(addresses: &[&str], ttl: u64) -> Result<Answer, LookupError> {
        Ok(Answer {
            addresses: addresses.iter().map(|a| ip(a)).collect(),
            ttl: Duration::from_secs(ttl),
        })
    }

    fn one(name: &str, now: Instant) -> Names {
        let mut n = Names::default();
        n.follow(&[name.to_string()].into(), now);
        n
    }

    #[test]
    fn a_new_name_is_due_at_once() {
        let now = Instant::now();
        assert_eq!(one("db", now).due(now), ["db"]);
    }

    #[test]
    fn an_answer_is_kept_for_its_ttl() {
        let now = Instant::now();
        let mut n = one("db", now);
        assert_eq!(
            n.record("db", &answer(&["10.0.0.1"], 30), now),
            Outcome::Changed
        );
        assert!(n.due(now + Duration::from_secs(29)).is_empty());
        assert_eq!(n.due(now + Duration::from_secs(30)), ["db"]);
        assert_eq!(n.addresses("db"), Some(&[ip("10.0.0.1")][..]));
    }

    #[test]
    fn the_same_addresses_again_change_nothing() {
        let now = Instant::now();
        let mut n = one("db", now);
        n.record("db", &answer(&["10.0.0.1"], 30), now);
        assert_eq!(
            n.record("db", &answer(&["10.0.0.1"], 30), now),
            Outcome::Same
        );
        assert_eq!(
            n.record("db", &answer(&["10.0.0.2"], 30), now),
            Outcome::Changed
        );
    }

    #[test]
    fn a_failure_keeps_the_last_good_addresses_and_retries_sooner_then_later() {
        let now = Instant::now();
        let mut n = one("db", now);
        n.record("db", &answer(&["10.0.0.1"], 300), now);
        let failed = Err(LookupError::Failed("timeout".into()));
        assert_eq!(
            n.record("db", &failed, now),
            Outcome::Failed { first: true }
        );
        assert_eq!(n.addresses("db"), Some(&[ip("10.0.0.1")][..]));
        assert_eq!(n.next_due(), Some(now + Duration::from_secs(1)));
        assert_eq!(
            n.record("db", &failed, now),
            Outcome::Failed { first: false }
        );
        assert_eq!(n.next_due(), Some(now + Duration::from_secs(2)));
        for _ in 0..40 {
            n.record("db", &failed, now);
        }
        assert_eq!(n.next_due(), Some(now + MAX_RETRY));
    }

    #[test]
    fn a_name_gone_from_the_config_is_forgotten() {
        let now = Instant::now();
        let mut n = one("db", now);
        n.follow(&BTreeSet::new(), now);
        assert_eq!(n.next_due(), None);
        assert_eq!(
            n.record("db", &answer(&["10.0.0.1"], 5), now),
            Outcome::Ignored
        );
    }

    proptest! {
        /// Whatever happens, a name that once resolved keeps addresses until it is forgotten,
        /// and is always due again within the longest of TTL and retry bounds.
        #[test]
        fn last_good_addresses_survive_any_failures(
            steps in proptest::collection::vec(proptest::option::of(0u8..4), 1..40)
        ) {
            let now = Instant::now();
            let mut n = one("db", now);
            let mut ever = false;
            for step in steps {
                let result = match step {
                    Some(i) => answer(&[&format!("10.0.0.{i}")], u64::from(i) + 1),
                    None => Err(LookupError::NoSuchName),
                };
                n.record("db", &result, now);
                ever |= result.is_ok();
                prop_assert_eq!(n.addresses("db").is_some(), ever);
                let due = n.next_due().unwrap();
                prop_assert!(due > now && due <= now + MAX_RETRY.max(super::super::MAX_TTL));
            }
        }
    }
}
