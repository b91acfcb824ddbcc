//! Asking the `git` binary about a work tree, bounded in time and output.
//!
//! The `git` binary rather than a library: it is on every machine that has a work tree to
//! read, reads every repository format git itself writes (packed refs, worktrees, sha256,
//! reftable), and costs flotilla no build time; gix with the features needed here adds well
//! over a hundred crates. A git that hangs (a lock, a network file system) is killed after
//! [`TIMEOUT`]: a reload must never wait on it for long.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest one git command may run.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The most output read from one git command; the rest is ignored.
pub const MAX_OUTPUT: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GitError {
    #[error("git is not installed (or not on PATH)")]
    NotInstalled,
    #[error("git {args}: {message}")]
    Failed { args: String, message: String },
    #[error("git {args} took longer than {TIMEOUT:?} and was stopped")]
    TimedOut { args: String },
}

/// Like [`run`], with every filter driver the repository configures turned off: `git status`
/// runs a driver's `clean` command to compare a file whose timestamp changed, and with
/// `safe.directory=*` whoever owns the repository would choose a command flotilla runs.
/// Reading the configuration runs nothing.
pub fn run_without_filters(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    let drivers = match run(
        dir,
        &[
            "config",
            "--get-regexp",
            r"^filter\..*\.(clean|smudge|process)$",
        ],
    ) {
        Ok(out) => out,
        // Exit status 1: no such key.
        Err(GitError::Failed { .. }) => String::new(),
        Err(e) => return Err(e),
    };
    let mut off: Vec<String> = Vec::new();
    for line in drivers.lines() {
        let key = line.split_whitespace().next().unwrap_or_default();
        if let Some(name) = key
            .strip_prefix("filter.")
            .and_then(|k| k.rsplit_once('.'))
            .map(|(name, _)| name)
        {
            for part in ["clean", "smudge", "process"] {
                off.push("-c".into());
                off.push(format!("filter.{name}.{part}="));
            }
        }
    }
    let mut all: Vec<&str> = off.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    run(dir, &all)
}

/// Runs `git <args>` in `dir` and returns its standard output. Repository hooks and
/// file-system monitors are off, and no optional locks are taken, so that flotilla reading a
/// work tree never runs the repository's code and never gets in the way of an operator's git.
pub fn run(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    let shown = args.join(" ");
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "core.fsmonitor=false", "-c", "safe.directory=*"])
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        // A config path is a path, not a pattern: `web[1].yaml` or `:(top)` taken as pathspec
        // magic would tell the wrong files' state.
        .env("GIT_LITERAL_PATHSPECS", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => GitError::NotInstalled,
            _ => GitError::Failed {
                args: shown.clone(),
                message: e.to_string(),
            },
        })?;
    let stdout = child.stdout.take().map(|s| read_capped(s, MAX_OUTPUT));
    let stderr = child.stderr.take().map(|s| read_capped(s, 4096));
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(GitError::TimedOut { args: shown });
            }
            Err(e) => {
                return Err(GitError::Failed {
                    args: shown,
                    message: e.to_string(),
                });
            }
        }
    };
    let out = stdout.map(join).unwrap_or_default();
    if status.success() {
        return Ok(out);
    }
    let err = stderr.map(join).unwrap_or_default();
    let message = err
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("failed")
        .trim()
        .to_string();
    Err(GitError::Failed {
        args: shown,
        message: crate::config::escape_controls(&message),
    })
}

/// Reads at most `cap` bytes on a thread of its own, so that a full pipe never blocks git.
fn read_capped(stream: impl Read + Send + 'static, cap: u64) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut limited = stream.take(cap);
        let _ = limited.read_to_end(&mut buf);
        // Drain the rest so git can finish writing.
        let _ = std::io::copy(&mut limited.into_inner(), &mut std::io::sink());
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn join(handle: std::thread::JoinHandle<String>) -> String {
    handle.join().unwrap_or_default()
}
