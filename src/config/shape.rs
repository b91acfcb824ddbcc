//! The YAML's shape as data: for each map of the schema, the keys it accepts and what each
//! holds (type, enum values, numeric bounds, whether it is required).
//!
//! The decoder reads its accepted keys and integer/duration bounds from these tables
//! ([`crate::config::reader::Fields`] takes an [`Object`], not a list of names), and
//! `flotilla schema` turns the same tables into a JSON Schema, so the two cannot drift apart:
//! a key added to a decoder is a key added to the schema.

use std::time::Duration;

/// One kind of YAML map: its name in the JSON Schema's `$defs` and the keys it accepts.
#[derive(Debug)]
pub struct Object {
    pub name: &'static str,
    pub description: &'static str,
    pub fields: &'static [Field],
    /// Exactly one of the keys must be given (an affinity kind, a header rule).
    pub choose_one: bool,
}

/// One key of an [`Object`].
#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub description: &'static str,
    /// What an omitted key means, as the YAML would write it (`round_robin`, `1s`), for the
    /// generated reference (docs/reference/yaml.md); `None` when leaving it out means "none"
    /// or the key is required.
    pub default: Option<&'static str>,
}

impl Field {
    /// The same field, documented with the value an omitted key stands for.
    pub const fn defaults_to(self, value: &'static str) -> Field {
        Field {
            default: Some(value),
            ..self
        }
    }
}

/// What a value may be.
#[derive(Debug)]
pub enum Kind {
    Bool,
    /// A plain (unquoted) whole number within `min..=max`.
    Integer {
        min: u64,
        max: u64,
    },
    /// A number (decimals allowed) from 0 to 100.
    Percent,
    /// Any string.
    String,
    /// A string that is not empty.
    NonEmpty,
    /// Any scalar, read as its text (header values: `x-version: 2`).
    Scalar,
    /// `500ms`, `1s`, `2m30s`, `1h`, within `min..=max`.
    Duration {
        min: Duration,
        max: Duration,
    },
    /// `ip:port` (IPv6 in brackets).
    Address,
    /// `ip:port` or `host:port` (a DNS name: an endpoint whose addresses are resolved).
    HostAddress,
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// One of these numbers.
    IntEnum(&'static [u64]),
    /// `false`/`off` switches an inherited block off, `true`/`on` takes the inherited one.
    Switch,
    /// No value at all (`tcp:` means "a TCP probe with no options").
    Null,
    /// A list (an empty value is an empty list).
    List(&'static Kind),
    /// A map whose keys the operator chooses (cluster names, header names).
    Map(&'static Kind),
    Object(&'static Object),
    AnyOf(&'static [Kind]),
}

impl Object {
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.fields.iter().map(|f| f.name)
    }

    /// The `Integer` bounds of `key` (looking inside `AnyOf`). A key without them is a mistake
    /// in the tables, which every test decoding that key catches; past a debug build it is
    /// read unbounded rather than crash on a user's config.
    pub(crate) fn integer_bounds(&self, key: &str) -> (u64, u64) {
        let found = self.field(key).and_then(|f| f.kind.integer());
        debug_assert!(found.is_some(), "{}.{key} has no integer bounds", self.name);
        found.unwrap_or((0, u64::MAX))
    }

    /// The `Duration` bounds of `key` (looking inside `AnyOf`); see [`Object::integer_bounds`].
    pub(crate) fn duration_bounds(&self, key: &str) -> (Duration, Duration) {
        let found = self.field(key).and_then(|f| f.kind.duration());
        debug_assert!(
            found.is_some(),
            "{}.{key} has no duration bounds",
            self.name
        );
        found.unwrap_or((Duration::ZERO, Duration::MAX))
    }
}

impl Kind {
    fn integer(&self) -> Option<(u64, u64)> {
        match self {
            Kind::Integer { min, max } => Some((*min, *max)),
            Kind::AnyOf(kinds) => kinds.iter().find_map(Kind::integer),
            _ => None,
        }
    }

    fn duration(&self) -> Option<(Duration, Duration)> {
        match self {
            Kind::Duration { min, max } => Some((*min, *max)),
            Kind::AnyOf(kinds) => kinds.iter().find_map(Kind::duration),
            _ => None,
        }
    }
}

/// A field that may be left out.
pub const fn optional(name: &'static str, kind: Kind, description: &'static str) -> Field {
    Field {
        name,
        kind,
        required: false,
        description,
        default: None,
    }
}

/// A field that must be given.
pub const fn required(name: &'static str, kind: Kind, description: &'static str) -> Field {
    Field {
        name,
        kind,
        required: true,
        description,
        default: None,
    }
}

/// A map of the schema whose keys are all optional alternatives or settings.
pub const fn object(
    name: &'static str,
    description: &'static str,
    fields: &'static [Field],
) -> Object {
    Object {
        name,
        description,
        fields,
        choose_one: false,
    }
}

pub const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
