//! `flotilla diff`: what a config change does to each fleet; exit 0 no change, 1 changes, 2
//! error (as `diff(1)` and `flux diff`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::admin_client::{Access, get_json, or_error, out, runtime};
use flotilla::config;
use flotilla::gitops::diff::{self, Served};

#[derive(clap::Args, Debug)]
pub(crate) struct DiffArgs {
    /// NEW, or OLD NEW: config files or directories.
    #[arg(required = true, num_args = 1..=2)]
    paths: Vec<PathBuf>,
    /// Compare NEW with what the flotilla at this admin URL serves.
    #[arg(long, value_name = "URL")]
    against: Option<String>,
    #[command(flatten)]
    access: Access,
    /// Only this fleet (`*` when the config declares none).
    #[arg(long)]
    fleet: Option<String>,
    #[arg(long)]
    json: bool,
}

pub(crate) fn diff(a: DiffArgs) -> ExitCode {
    or_error(diff_inner(a))
}

/// Loads a config path into what each fleet receives; invalid: its errors, then exit 2.
fn load_served(path: &std::path::Path) -> anyhow::Result<Result<Served, ExitCode>> {
    match config::load(path) {
        Ok(l) => Ok(Ok(diff::served(&l.config, None)?)),
        Err(e) => {
            let mut stderr = std::io::stderr().lock();
            for line in e.lines() {
                let _ = writeln!(stderr, "{line}");
            }
            Ok(Err(ExitCode::from(2)))
        }
    }
}

fn diff_inner(a: DiffArgs) -> anyhow::Result<ExitCode> {
    let (old, new) = match (&a.against, a.paths.as_slice()) {
        (Some(url), [new]) => {
            let new = match load_served(new)? {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            let rt = runtime()?;
            let value = rt.block_on(get_json(url, "/api/v1/resources", &a.access))?;
            let old = diff::parse_served(value.to_string().as_bytes())
                .with_context(|| format!("GET {url}/api/v1/resources"))?;
            (old, new)
        }
        (Some(_), _) => bail!("with --against, give one path: the NEW config"),
        (None, [old, new]) => {
            let old = match load_served(old)? {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            let new = match load_served(new)? {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            (old, new)
        }
        (None, _) => bail!("give OLD NEW, or NEW --against URL"),
    };
    let diffs = diff::diff(&old, &new, a.fleet.as_deref());
    if let Some(f) = &a.fleet
        && diffs.is_empty()
    {
        bail!("fleet {}: in neither config", config::escape_controls(f));
    }
    let changed = diffs.iter().any(|d| !d.changes.is_empty());
    if a.json {
        let doc = serde_json::json!({ "changed": changed, "fleets": diffs });
        out(&(serde_json::to_string_pretty(&doc)? + "\n"))?;
    } else {
        out(&diff::to_text(&diffs))?;
    }
    Ok(if changed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
