//! git repositories for tests of the GitOps inputs: `git` with a fixed identity, default
//! branch and no signing, whatever the machine's git configuration says. Self-contained (no
//! other harness module), so the library's unit tests include it too
//! (`src/gitops/revision/tests.rs`).

use std::path::Path;
use std::process::Command;

/// Runs `git -C dir <args>` as Ada <ada@example.com>; its standard output. Fails the test
/// when git fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Ada", "-c", "user.email=ada@example.com"])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Writes `text` as `file` (relative to `repo`), commits it with `message`; the commit hash.
pub fn commit_file(repo: &Path, file: &str, text: &str, message: &str) -> String {
    std::fs::write(repo.join(file), text).expect("write");
    git(repo, &["add", file]);
    git(repo, &["commit", "-q", "-m", message]);
    git(repo, &["rev-parse", "HEAD"]).trim().to_string()
}
