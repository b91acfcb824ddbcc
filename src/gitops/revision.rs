//! Which revision of the configuration is being applied, and where that is known from.
//!
//! In order: `--revision-file` (a CD system writes what it deployed), the git commit of the
//! work tree holding the config path (with `dirty` when the config files differ from it), a
//! git-sync style link naming a commit (`current -> .worktrees/<hash>`, `..data -> <hash>`),
//! then `$FLOTILLA_REVISION`. No source is fine: the config applies without a revision. A
//! source that exists but cannot be read (a corrupt `.git`) is a warning, never a refusal.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::git;

/// The longest revision accepted from a file or the environment, in bytes.
pub const MAX_REVISION: usize = 256;

/// How many directories above the config path are searched for `.git` and commit links.
const MAX_ANCESTORS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevisionSource {
    /// `--revision-file`.
    File,
    /// The git work tree the config path is in.
    Git,
    /// A symbolic link whose target is named by a commit (git-sync).
    Link,
    /// `$FLOTILLA_REVISION`.
    Env,
}

/// The revision a config was applied at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// The full commit hash (git, link), or the text given (file, environment).
    pub commit: String,
    /// The config files differ from the commit (git only).
    pub dirty: bool,
    pub source: RevisionSource,
    /// The commit's author, `Name <email>` (git only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// The commit's subject line (git only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl Revision {
    /// The revision as one word: the commit, with `-dirty` when the files differ from it.
    pub fn label(&self) -> String {
        if self.dirty {
            format!("{}-dirty", self.commit)
        } else {
            self.commit.clone()
        }
    }

    /// The first 12 characters (and `-dirty`): what tables print.
    pub fn short(&self) -> String {
        let commit: String = self.commit.chars().take(12).collect();
        if self.dirty {
            format!("{commit}-dirty")
        } else {
            commit
        }
    }
}

/// Where to look for the revision.
#[derive(Debug, Clone, Default)]
pub struct RevisionSources {
    pub file: Option<PathBuf>,
    pub env: Option<String>,
}

/// The revision of the config at `config`, and warnings for sources that exist but could not
/// be read.
pub fn resolve(config: &Path, sources: &RevisionSources) -> (Option<Revision>, Vec<String>) {
    let mut warnings = Vec::new();
    if let Some(file) = &sources.file {
        match read_file(file) {
            Ok(commit) => return (Some(given(commit, RevisionSource::File)), warnings),
            Err(e) => warnings.push(e),
        }
    }
    match from_git(config) {
        Ok(Some(r)) => return (Some(r), warnings),
        Ok(None) => {}
        Err(e) => warnings.push(e),
    }
    if let Some(commit) = from_link(config) {
        return (
            Some(Revision {
                commit,
                dirty: false,
                source: RevisionSource::Link,
                author: None,
                subject: None,
            }),
            warnings,
        );
    }
    if let Some(env) = &sources.env {
        match check_given(env.trim()) {
            Ok(commit) => return (Some(given(commit, RevisionSource::Env)), warnings),
            Err(e) => warnings.push(format!("$FLOTILLA_REVISION: {e}")),
        }
    }
    (None, warnings)
}

fn given(commit: String, source: RevisionSource) -> Revision {
    Revision {
        commit,
        dirty: false,
        source,
        author: None,
        subject: None,
    }
}

/// A revision given as text: non-empty, at most [`MAX_REVISION`] bytes, printable.
pub fn check_given(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("empty".into());
    }
    if text.len() > MAX_REVISION {
        return Err(format!("longer than {MAX_REVISION} bytes"));
    }
    if text.chars().any(|c| c.is_control()) {
        return Err("contains control characters".into());
    }
    Ok(text.to_string())
}

fn read_file(file: &Path) -> Result<String, String> {
    use std::io::Read;
    let shown = file.display();
    // A FIFO would block every reload; `/dev/zero` would never end.
    let f = crate::config::open_regular(file).map_err(|e| match e {
        crate::config::LoadError::NotRegular { kind, .. } => {
            format!("--revision-file {shown}: not a regular file ({kind})")
        }
        other => format!("--revision-file {other}"),
    })?;
    let mut bytes = Vec::new();
    f.take(MAX_REVISION as u64 * 4)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("--revision-file {shown}: {e}"))?;
    check_given(first_line(&bytes).map_err(|e| format!("--revision-file {shown}: {e}"))?)
        .map_err(|e| format!("--revision-file {shown}: {e}"))
}

/// The first line of a revision file, trimmed. Only that line must be UTF-8: what follows
/// (release notes a CD system appends) may be cut anywhere by the read limit.
pub fn first_line(bytes: &[u8]) -> Result<&str, String> {
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    std::str::from_utf8(line)
        .map(str::trim)
        .map_err(|_| "the first line is not UTF-8".to_string())
}

/// The directory to ask git in: the config directory, or a config file's directory.
fn dir_of(config: &Path) -> PathBuf {
    if config.is_dir() {
        config.to_path_buf()
    } else {
        match config.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

/// Whether a `.git` entry exists at `dir` or above: then git failing is worth a warning.
fn has_dot_git(dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    dir.ancestors()
        .take(MAX_ANCESTORS)
        .any(|d| d.join(".git").symlink_metadata().is_ok())
}

fn from_git(config: &Path) -> Result<Option<Revision>, String> {
    let dir = dir_of(config);
    if !has_dot_git(&dir) {
        return Ok(None);
    }
    let log = git::run(
        &dir,
        &["log", "-1", "--format=%H%x00%an <%ae>%x00%s", "HEAD"],
    )
    .map_err(|e| format!("{}: cannot read the git revision: {e}", dir.display()))?;
    let Some(LogLine {
        commit,
        author,
        subject,
    }) = parse_log(&log)
    else {
        return Err(format!(
            "{}: cannot read the git revision: git log printed no commit hash",
            dir.display()
        ));
    };
    let target = config.to_string_lossy();
    let status = git::run_without_filters(
        &dir,
        &[
            "status",
            "--porcelain",
            "--untracked-files=normal",
            "--",
            &target,
        ],
    )
    .map_err(|e| {
        format!(
            "{}: cannot tell whether the work tree is clean: {e}",
            dir.display()
        )
    })?;
    Ok(Some(Revision {
        commit,
        dirty: !status.trim().is_empty(),
        source: RevisionSource::Git,
        author,
        subject,
    }))
}

/// What `git log -1 --format=%H%x00%an <%ae>%x00%s` printed.
#[derive(Debug, PartialEq, Eq)]
pub struct LogLine {
    pub commit: String,
    /// Cut to [`MAX_REVISION`] characters, control characters escaped.
    pub author: Option<String>,
    pub subject: Option<String>,
}

/// Reads `git log`'s output; None without a full commit hash first.
pub fn parse_log(log: &str) -> Option<LogLine> {
    let mut parts = log.trim_end_matches('\n').splitn(3, '\0');
    let commit = parts.next().unwrap_or("").trim().to_string();
    if !is_hash(&commit) {
        return None;
    }
    let author = parts.next().map(clean).filter(|a| !a.is_empty());
    let subject = parts.next().map(clean).filter(|s| !s.is_empty());
    Some(LogLine {
        commit,
        author,
        subject,
    })
}

fn clean(text: &str) -> String {
    let t: String = text.trim().chars().take(MAX_REVISION).collect();
    crate::config::escape_controls(&t)
}

/// The files of the config's git repository that change with every commit, checkout, reset
/// or `git add` (`HEAD`, its reflog, the index): watched beside the config, so that a commit
/// that lands after its files were written still renames the config served. None outside git.
pub fn git_files(config: &Path) -> Vec<PathBuf> {
    let dir = dir_of(config);
    if !has_dot_git(&dir) {
        return Vec::new();
    }
    match git::run(&dir, &["rev-parse", "--absolute-git-dir"]) {
        Ok(out) => {
            let git_dir = PathBuf::from(out.trim());
            ["HEAD", "logs/HEAD", "index"]
                .into_iter()
                .map(|f| git_dir.join(f))
                .collect()
        }
        Err(_) => Vec::new(),
    }
}

/// A full commit hash: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
pub fn is_hash(text: &str) -> bool {
    (text.len() == 40 || text.len() == 64)
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The commit a git-sync style link names: the config path or a directory above it is a
/// symbolic link whose target ends in a commit hash (git-sync's `current ->
/// .worktrees/<hash>`), or the config directory holds `..data` pointing at one.
fn from_link(config: &Path) -> Option<String> {
    let data = config.join("..data");
    let candidates = std::iter::once(data).chain(
        config
            .ancestors()
            .take(MAX_ANCESTORS)
            .map(Path::to_path_buf),
    );
    for path in candidates {
        let Ok(target) = std::fs::read_link(&path) else {
            continue;
        };
        let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let name = name.strip_prefix("rev-").unwrap_or(name);
        if is_hash(name) {
            return Some(name.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests;
