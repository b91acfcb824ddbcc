//! The resources of one type in a snapshot, by name: a persistent (copy-on-write) ordered map.
//!
//! An endpoint change replaces a few ClusterLoadAssignments in every fleet's snapshot. With a
//! plain `BTreeMap` each new snapshot would copy all of its fleet's names (10,000 clusters:
//! 10,000 string copies per fleet per health verdict); a persistent map shares every untouched
//! node with the snapshot before it, so replacing k entries costs O(k log n), whatever n is.
//! `immutable-chunkmap` (MIT/Apache-2.0) provides it; `im`/`imbl`/`rpds` are MPL-licensed.

use std::fmt;
use std::sync::Arc;

use immutable_chunkmap::map::MapM;

use super::resource::Resource;

/// name → encoded resource, in name order. Cloning is O(1).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ResourceMap(MapM<String, Arc<Resource>>);

impl ResourceMap {
    pub fn new() -> ResourceMap {
        ResourceMap::default()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Resource>> {
        self.0.get(name)
    }

    pub fn get_key_value(&self, name: &str) -> Option<(&String, &Arc<Resource>)> {
        self.0.get_full(name)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.0.get(name).is_some()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// Every (name, resource), in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<Resource>)> + '_ {
        (&self.0).into_iter()
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> + '_ {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &Arc<Resource>> + '_ {
        self.iter().map(|(_, v)| v)
    }

    /// Puts `resource` under its name, copying only the path to it; returns what it replaced.
    pub fn insert(&mut self, resource: Arc<Resource>) -> Option<Arc<Resource>> {
        self.0.insert_cow(resource.name.clone(), resource)
    }
}

impl FromIterator<(String, Arc<Resource>)> for ResourceMap {
    fn from_iter<I: IntoIterator<Item = (String, Arc<Resource>)>>(iter: I) -> ResourceMap {
        ResourceMap(iter.into_iter().collect())
    }
}

impl std::ops::Index<&str> for ResourceMap {
    type Output = Arc<Resource>;

    /// Like a `BTreeMap`'s: panics when the name is missing (tests).
    fn index(&self, name: &str) -> &Arc<Resource> {
        self.get(name).expect("no resource of that name")
    }
}

impl fmt::Debug for ResourceMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterates_in_name_order_and_replaces_by_name() {
        let mut map: ResourceMap = ["b", "a", "c"]
            .into_iter()
            .map(|n| (n.to_string(), Resource::test(n, 1)))
            .collect();
        let before = map.clone();
        let old = map.insert(Resource::test("b", 2));
        assert_eq!(old.map(|r| r.body.value.clone()), Some(vec![1]));
        assert_eq!(map.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(map.get("b").unwrap().body.value, [2]);
        assert_eq!(
            before.get("b").unwrap().body.value,
            [1],
            "the copy is untouched"
        );
        assert!(Arc::ptr_eq(map.get("a").unwrap(), before.get("a").unwrap()));
        assert_eq!(map.len(), 3);
        assert!(!map.contains_key("d"));
    }
}
