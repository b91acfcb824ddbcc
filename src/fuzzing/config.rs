//! The YAML reader and decoder, and the translation of whatever they accept.

use std::path::PathBuf;

use crate::overlay::Overlay;
use crate::translate::{Transport, translate};

/// Bytes split at NUL into up to four files of one config directory (the merge of several
/// files is its own code path). A config that decodes is translated for every transport:
/// what validation lets through must not crash the translation either.
pub fn config_files(data: &[u8]) {
    let sources: Vec<(PathBuf, String)> = data
        .split(|b| *b == 0)
        .take(4)
        .enumerate()
        .map(|(i, part)| {
            (
                PathBuf::from(format!("f{i}.yaml")),
                String::from_utf8_lossy(part).into_owned(),
            )
        })
        .collect();
    match crate::config::parse_sources(&sources) {
        Ok(config) => {
            for transport in Transport::ALL {
                translate(&config, &Overlay::default(), transport);
            }
        }
        Err(diagnostics) => {
            assert!(!diagnostics.0.is_empty(), "an error without a diagnostic");
            for d in &diagnostics.0 {
                assert!(!d.to_string().is_empty());
            }
        }
    }
}
