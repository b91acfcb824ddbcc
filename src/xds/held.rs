//! What a client holds of one type, without a copy per stream.
//!
//! Thousands of Envoys of a fleet hold the same thousand resources. A stream records what its
//! Envoy holds as a shared set from a snapshot (`base`, an `Arc` every stream on that snapshot
//! points to) plus the few names where it differs (`diff`). A stream that is in sync is one
//! pointer; one that is mid-update holds a handful of differences.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::iter::Peekable;
use std::sync::{Arc, LazyLock};

use crate::cache::{Resource, ResourceMap, TypeSet, version_of_held};

static EMPTY: LazyLock<Arc<TypeSet>> = LazyLock::new(|| Arc::new(TypeSet::new(ResourceMap::new())));

/// The version of a resource whose state on the client is unknown: no content hash is empty.
pub(crate) const UNKNOWN: &str = "";

/// A resource held where it differs from the base. The content is known when flotilla sent
/// it; a delta client reconnecting after a config change may report a version flotilla
/// never saw.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    pub(crate) version: String,
    pub(crate) resource: Option<Arc<Resource>>,
}

/// One held resource, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeldRef<'a> {
    pub(crate) version: &'a str,
    pub(crate) resource: Option<&'a Arc<Resource>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Held {
    base: Arc<TypeSet>,
    /// name → what is held instead of the base's entry (`None`: not held at all).
    diff: BTreeMap<String, Option<Known>>,
}

impl Default for Held {
    fn default() -> Held {
        Held {
            base: EMPTY.clone(),
            diff: BTreeMap::new(),
        }
    }
}

impl Held {
    pub(crate) fn get(&self, name: &str) -> Option<HeldRef<'_>> {
        match self.diff.get(name) {
            Some(Some(k)) => Some(HeldRef {
                version: &k.version,
                resource: k.resource.as_ref(),
            }),
            Some(None) => None,
            None => self.base.resources.get(name).map(|r| HeldRef {
                version: &r.version,
                resource: Some(r),
            }),
        }
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The client may or may not hold `name`, at any version (it rejected a response that
    /// changed it, and applies what it can of a rejected response). Matches no resource, so
    /// the next response that covers `name` carries it.
    pub(crate) fn forget_version(&mut self, name: &str) {
        self.diff.insert(
            name.to_string(),
            Some(Known {
                version: UNKNOWN.to_string(),
                resource: None,
            }),
        );
    }

    /// The client now holds `r`.
    pub(crate) fn hold(&mut self, r: &Arc<Resource>) {
        self.hold_version(&r.name, &r.version, Some(r.clone()));
    }

    /// The client now holds `name` at `version` (content known or not).
    pub(crate) fn hold_version(
        &mut self,
        name: &str,
        version: &str,
        resource: Option<Arc<Resource>>,
    ) {
        if self
            .base
            .resources
            .get(name)
            .is_some_and(|b| b.version == version)
        {
            self.diff.remove(name);
        } else {
            self.diff.insert(
                name.to_string(),
                Some(Known {
                    version: version.to_string(),
                    resource,
                }),
            );
        }
    }

    /// The client no longer holds `name`.
    pub(crate) fn remove(&mut self, name: &str) {
        if self.base.resources.contains_key(name) {
            self.diff.insert(name.to_string(), None);
        } else {
            self.diff.remove(name);
        }
    }

    pub(crate) fn clear(&mut self) {
        *self = Held::default();
    }

    /// The client holds exactly `set` now.
    pub(crate) fn rebase(&mut self, set: &Arc<TypeSet>) {
        self.base = set.clone();
        self.diff.clear();
    }

    /// The snapshot set this is recorded against.
    pub(crate) fn base(&self) -> &Arc<TypeSet> {
        &self.base
    }

    /// The names where what is held differs from [`Held::base`], in order.
    pub(crate) fn differences(&self) -> impl Iterator<Item = &str> {
        self.diff.keys().map(String::as_str)
    }

    /// Whether the client holds exactly `set` (by pointer: cheap, and exact for snapshots,
    /// which share unchanged sets).
    pub(crate) fn is(&self, set: &Arc<TypeSet>) -> bool {
        self.diff.is_empty() && Arc::ptr_eq(&self.base, set)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// An upper bound on how many resources are held (cheap).
    pub(crate) fn len_hint(&self) -> usize {
        self.base.resources.len() + self.diff.len()
    }

    /// Every held resource, in name order.
    pub(crate) fn iter(&self) -> Merged<'_> {
        Merged {
            base: (Box::new(self.base.resources.iter()) as Box<dyn Iterator<Item = _>>).peekable(),
            diff: self.diff.iter().peekable(),
        }
    }

    /// Version of what is held (the SotW `version_info` the client would report).
    pub(crate) fn version(&self) -> Cow<'_, str> {
        if self.diff.is_empty() {
            return Cow::Borrowed(&self.base.version);
        }
        Cow::Owned(version_of_held(
            self.iter().map(|(n, h)| (n, h.version, h.resource)),
        ))
    }
}

/// A base set's entries in name order (the persistent map's iterator type is not nameable).
type BaseIter<'a> = Box<dyn Iterator<Item = (&'a String, &'a Arc<Resource>)> + 'a>;

/// The merge of a held set's base and differences.
pub(crate) struct Merged<'a> {
    base: Peekable<BaseIter<'a>>,
    diff: Peekable<std::collections::btree_map::Iter<'a, String, Option<Known>>>,
}

impl<'a> Iterator for Merged<'a> {
    type Item = (&'a str, HeldRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let from_base = match (self.base.peek(), self.diff.peek()) {
                (None, None) => return None,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((b, _)), Some((d, _))) => b < d,
            };
            if from_base {
                let (name, r) = self.base.next()?;
                return Some((
                    name,
                    HeldRef {
                        version: &r.version,
                        resource: Some(r),
                    },
                ));
            }
            let (name, entry) = self.diff.next()?;
            if self.base.peek().is_some_and(|(b, _)| *b == name) {
                self.base.next(); // replaced or removed by the difference
            }
            if let Some(k) = entry {
                return Some((
                    name,
                    HeldRef {
                        version: &k.version,
                        resource: k.resource.as_ref(),
                    },
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(name: &str, body: u8) -> Arc<Resource> {
        Resource::test(name, body)
    }

    fn set(resources: &[Arc<Resource>]) -> Arc<TypeSet> {
        let map: ResourceMap = resources
            .iter()
            .map(|r| (r.name.clone(), r.clone()))
            .collect();
        Arc::new(TypeSet::new(map))
    }

    fn listing(h: &Held) -> Vec<(String, String)> {
        h.iter()
            .map(|(n, r)| (n.to_string(), r.version.to_string()))
            .collect()
    }

    #[test]
    fn differences_over_a_shared_base_read_as_one_set() {
        let (a, b, c) = (res("a", 1), res("b", 1), res("c", 1));
        let base = set(&[a.clone(), b.clone(), c.clone()]);
        let mut h = Held::default();
        assert!(h.is_empty());
        h.rebase(&base);
        assert!(h.is(&base));
        assert_eq!(h.version(), base.version);
        let b2 = res("b", 2);
        h.hold(&b2);
        h.remove("c");
        h.hold(&res("d", 1));
        assert!(!h.is(&base));
        assert_eq!(
            listing(&h),
            vec![
                ("a".into(), a.version.clone()),
                ("b".into(), b2.version.clone()),
                ("d".into(), res("d", 1).version.clone())
            ]
        );
        assert!(h.get("c").is_none() && !h.contains("c"));
        // Holding the base's own version again cancels the difference.
        h.hold(&b);
        h.hold(&c);
        h.remove("d");
        assert!(h.is(&base), "back to exactly the base: {:?}", listing(&h));
    }

    #[test]
    fn the_version_of_differences_is_computed() {
        let (a, b) = (res("a", 1), res("b", 1));
        let mut h = Held::default();
        h.hold(&a);
        h.hold(&b);
        assert_eq!(h.version(), set(&[a, b]).version);
    }
}
