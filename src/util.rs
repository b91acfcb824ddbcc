//! Small helpers shared across modules.

/// Serialises a `SystemTime` as milliseconds since the Unix epoch (what the admin API and the
/// dashboard's JavaScript expect).
pub mod unix_millis {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        s.serialize_u64(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

/// Like [`unix_millis`], for an optional time (`null` when absent).
pub mod unix_millis_opt {
    use std::time::SystemTime;

    pub fn serialize<S: serde::Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::unix_millis::serialize(t, s),
            None => s.serialize_none(),
        }
    }
}
