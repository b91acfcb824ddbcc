//! Membership tests for names asked in ascending order.
//!
//! Planning asks "is this name held / subscribed / in the view?" for hundreds of names per
//! stream per change, and the sets asked are sorted by name too. Looked up one by one, each
//! question is a tree descent of about ten string comparisons; at 2,000 streams that was
//! half of flotilla's CPU during a new-cluster push (BENCHMARKS.md §1, "Where the time
//! goes"). Walking the set alongside the names answers each with one comparison per step.

use std::iter::Peekable;

/// `find(name)` for names asked in ascending order (each at least the one asked before):
/// walks `entries` (sorted by name, no duplicates) alongside when the names to ask are many
/// next to the set's `size`, and looks each one up with `get` when they are few (a walk would
/// cost the whole set for a handful of answers).
pub(crate) fn finder<'a, V: Copy + 'a>(
    asked: usize,
    size: usize,
    entries: impl Iterator<Item = (&'a str, V)> + 'a,
    get: impl Fn(&str) -> Option<V> + 'a,
) -> impl FnMut(&str) -> Option<V> + 'a {
    let mut walk: Option<Peekable<_>> =
        (asked.saturating_mul(8) >= size).then(|| entries.peekable());
    move |name: &str| match &mut walk {
        Some(it) => {
            while it.next_if(|(k, _)| *k < name).is_some() {}
            it.peek().filter(|(k, _)| *k == name).map(|(_, v)| *v)
        }
        None => get(name),
    }
}

#[cfg(test)]
mod tests {
    use super::finder;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn map(names: &[&str]) -> BTreeMap<String, usize> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), i))
            .collect()
    }

    #[test]
    fn a_walk_answers_like_lookups() {
        let m = map(&["a", "c", "e"]);
        let mut find = finder(3, m.len(), m.iter().map(|(k, v)| (k.as_str(), *v)), |n| {
            m.get(n).copied()
        });
        assert_eq!(find("a"), Some(0));
        assert_eq!(find("b"), None);
        assert_eq!(find("c"), Some(1));
        assert_eq!(find("c"), Some(1), "the same name asked twice");
        assert_eq!(find("z"), None);
    }

    #[test]
    fn few_names_in_a_large_set_are_looked_up() {
        let names: Vec<String> = (0..100).map(|i| format!("n{i:03}")).collect();
        let m: BTreeMap<String, usize> = names.iter().cloned().zip(0..).collect();
        let walked = std::cell::Cell::new(0);
        let mut find = finder(
            2,
            m.len(),
            m.iter().map(|(k, v)| {
                walked.set(walked.get() + 1);
                (k.as_str(), *v)
            }),
            |n| m.get(n).copied(),
        );
        assert_eq!(find("n050"), Some(50));
        assert_eq!(find("n099"), Some(99));
        assert_eq!(walked.get(), 0, "two names in a hundred: no walk");
    }

    proptest! {
        #[test]
        fn answers_equal_lookups_whatever_the_sizes(
            set in proptest::collection::btree_set("[a-e]{1,3}", 0..40),
            asked in proptest::collection::btree_set("[a-e]{1,3}", 0..40),
            skip in proptest::collection::vec(any::<bool>(), 40),
        ) {
            let m: BTreeMap<String, usize> = set.iter().cloned().zip(0..).collect();
            let mut find = finder(asked.len(), m.len(), m.iter().map(|(k, v)| (k.as_str(), *v)), |n| m.get(n).copied());
            // Names may be skipped (a predicate that short-circuits asks only some).
            for (name, skipped) in asked.iter().zip(skip.iter().chain(std::iter::repeat(&false))) {
                if *skipped {
                    continue;
                }
                prop_assert_eq!(find(name), m.get(name).copied());
            }
        }
    }
}
