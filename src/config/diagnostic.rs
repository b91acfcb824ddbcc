//! Configuration errors as operators read them: `path:line:col: field.path: message`.

use std::fmt;

use super::yaml::{Location, Node};

/// One thing wrong with the configuration, pointing at where it was written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub loc: Location,
    /// Dotted path of the offending field (`clusters.api.endpoints[1].address`); empty when the
    /// problem is with the file itself (syntax, I/O).
    pub field: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.loc)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a configuration, in file and position order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics while a configuration is decoded, so that one pass reports them all.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    found: Vec<Diagnostic>,
    /// What the config may name on the host (certificate files, access-log paths).
    policy: std::sync::Arc<super::policy::LoadPolicy>,
}

impl Sink {
    pub(crate) fn with_policy(policy: std::sync::Arc<super::policy::LoadPolicy>) -> Sink {
        Sink {
            found: Vec::new(),
            policy,
        }
    }

    pub(crate) fn policy(&self) -> std::sync::Arc<super::policy::LoadPolicy> {
        self.policy.clone()
    }

    pub(crate) fn at(&mut self, loc: &Location, field: &str, message: impl Into<String>) {
        self.found.push(Diagnostic {
            loc: loc.clone(),
            field: field.to_string(),
            message: message.into(),
        });
    }

    pub(crate) fn error(&mut self, node: &Node, field: &str, message: impl Into<String>) {
        self.at(&node.loc, field, message);
    }

    pub(crate) fn push(&mut self, diagnostic: Diagnostic) {
        self.found.push(diagnostic);
    }

    /// Whether a problem was already reported at `loc`.
    pub(crate) fn has_at(&self, loc: &Location) -> bool {
        self.found.iter().any(|d| d.loc == *loc)
    }

    pub(crate) fn into_found(self) -> Vec<Diagnostic> {
        self.found
    }

    pub(crate) fn into_result<T>(mut self, value: T) -> Result<T, Diagnostics> {
        if self.found.is_empty() {
            return Ok(value);
        }
        self.found.sort();
        self.found.dedup();
        Err(Diagnostics(self.found))
    }
}
