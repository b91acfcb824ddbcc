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
    fn a_set_nobody_holds_is_made_anew() {
        let first = Arc::as_ptr(&intern(set(&["only-once-1", "only-once-2"])));
        let again = intern(set(&["only-once-1", "only-once-2"]));
        assert_eq!(again.len(), 2);
        let _ = first; // the first copy was dropped: the table kept no strong reference
        assert_eq!(Arc::strong_count(&again), 1);
    }
}
