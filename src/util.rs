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

/// Longest piece of client input an error message repeats: enough to recognise it, never
/// a megabyte echoed back (or into a log line) because a client sent one.
pub const MAX_ECHO: usize = 128;

/// `text` cut to [`MAX_ECHO`] bytes (at a character boundary), marked when cut.
pub fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_ECHO {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = MAX_ECHO;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}… ({} bytes in all)", &text[..end], text.len()))
}

/// Makes a FIFO at `path`, for tests of readers that must never block on one.
#[cfg(test)]
pub(crate) fn mkfifo(path: &std::path::Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}

#[cfg(test)]
mod clip_tests {
    #[test]
    fn long_input_is_cut_short_inputs_kept() {
        assert_eq!(super::clip("10.0.0.1:80"), "10.0.0.1:80");
        let long = "é".repeat(1_000_000);
        let clipped = super::clip(&long);
        assert!(clipped.len() < 200, "{}", clipped.len());
        assert!(clipped.ends_with("(2000000 bytes in all)"), "{clipped}");
    }
}
