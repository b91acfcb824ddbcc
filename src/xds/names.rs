//! Subscriptions by name, stored once for every stream that has the same one.
//!
//! Every Envoy of a fleet subscribes to the endpoints of the same thousand clusters; ten
//! thousand copies of those names would take hundreds of megabytes. Sets are interned: a
//! stream holds an `Arc` to the one copy of its set, found by hash.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex, Weak};

/// A set of subscribed names, shared by every stream with the same set.
pub(crate) type Names = Arc<BTreeSet<String>>;

/// The live sets by hash (colliding sets share a bucket); dead ones are pruned as found.
type Table = HashMap<u64, Vec<Weak<BTreeSet<String>>>>;

static INTERNED: LazyLock<Mutex<Table>> = LazyLock::new(Mutex::default);

static EMPTY: LazyLock<Names> = LazyLock::new(|| Arc::new(BTreeSet::new()));

pub(crate) fn empty() -> Names {
    EMPTY.clone()
}

/// The shared copy of `set`.
pub(crate) fn intern(set: BTreeSet<String>) -> Names {
    if set.is_empty() {
        return empty();
    }
    let mut hasher = DefaultHasher::new();
    set.hash(&mut hasher);
    let key = hasher.finish();
    let mut table = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
    let bucket = table.entry(key).or_default();
    bucket.retain(|w| w.strong_count() > 0);
    if let Some(found) = bucket.iter().filter_map(Weak::upgrade).find(|s| **s == set) {
        return found;
    }
    let names = Arc::new(set);
    bucket.push(Arc::downgrade(&names));
    // Buckets of sets nobody holds any more go when a lookup lands on them; an occasional
    // sweep keeps the table from growing with hashes that are never looked up again.
    if table.len() > 1024 && table.len().is_power_of_two() {
        table.retain(|_, b| b.iter().any(|w| w.strong_count() > 0));
    }
    names
}

/// A change to one set: the key of [`changed`]'s memo.
struct Change {
    from: Weak<BTreeSet<String>>,
    added: Vec<String>,
    removed: Vec<String>,
    to: Weak<BTreeSet<String>>,
}

/// Changes by (address of the set changed, hash of the change).
static CHANGES: LazyLock<Mutex<HashMap<(usize, u64), Change>>> = LazyLock::new(Mutex::default);

/// How many changes are remembered before the dead ones are swept (and, if that is not
/// enough, all).
const CHANGES_KEPT: usize = 1024;

/// The shared copy of `from` with `added` and without `removed` (both sorted, disjoint).
/// When a cluster is added every stream of a fleet subscribes to its endpoints, the same
/// change to the same set: the first stream copies the set and interns it, the next ones
/// find the result here instead of copying a thousand names each.
pub(crate) fn changed(from: &Names, added: &[String], removed: &[String]) -> Names {
    let mut hasher = DefaultHasher::new();
    (added, removed).hash(&mut hasher);
    let key = (Arc::as_ptr(from) as usize, hasher.finish());
    let memo = CHANGES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = memo.get(&key)
        && c.from.upgrade().is_some_and(|f| Arc::ptr_eq(&f, from))
        && c.added == added
        && c.removed == removed
        && let Some(to) = c.to.upgrade()
    {
        return to;
    }
    drop(memo);
    let mut set = (**from).clone();
    set.extend(added.iter().cloned());
    for r in removed {
        set.remove(r);
    }
    let to = intern(set);
    let mut memo = CHANGES.lock().unwrap_or_else(|e| e.into_inner());
    if memo.len() >= CHANGES_KEPT {
        memo.retain(|_, c| c.from.strong_count() > 0 && c.to.strong_count() > 0);
        if memo.len() >= CHANGES_KEPT {
            memo.clear();
        }
    }
    memo.insert(
        key,
        Change {
            from: Arc::downgrade(from),
            added: added.to_vec(),
            removed: removed.to_vec(),
            to: Arc::downgrade(&to),
        },
    );
    to
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn equal_sets_share_one_copy() {
        let a = intern(set(&["x", "y"]));
        let b = intern(set(&["y", "x"]));
        assert!(Arc::ptr_eq(&a, &b));
        let c = intern(set(&["x"]));
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(Arc::ptr_eq(&intern(BTreeSet::new()), &empty()));
    }

    #[test]
    fn the_same_change_to_the_same_set_is_made_once() {
        let from = intern(set(&["change-a", "change-b"]));
        let added = vec!["change-c".to_string()];
        let removed = vec!["change-a".to_string()];
        let first = changed(&from, &added, &removed);
        assert_eq!(*first, set(&["change-b", "change-c"]));
        assert!(Arc::ptr_eq(&first, &changed(&from, &added, &removed)));
        // Another change, or the same change to another set, is its own.
        assert_eq!(
            *changed(&from, &added, &[]),
            set(&["change-a", "change-b", "change-c"])
        );
        let other = intern(set(&["change-a", "change-d"]));
        assert_eq!(
            *changed(&other, &added, &removed),
            set(&["change-c", "change-d"])
        );
        // The result is the interned set: equal to one made from scratch, shared.
        assert!(Arc::ptr_eq(&first, &intern(set(&["change-b", "change-c"]))));
    }

    #[test]
    fn a_set_nobody_holds_is_made_anew() {
        let first = Arc::as_ptr(&intern(set(&["only-once-1", "only-once-2"])));
        let again = intern(set(&["only-once-1", "only-once-2"]));
        assert_eq!(again.len(), 2);
        let _ = first; // the first copy was dropped: the table kept no strong reference
        assert_eq!(Arc::strong_count(&again), 1);
    }
}
