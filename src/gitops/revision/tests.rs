use super::*;

/// `git` in `dir` for the tests (identity and default branch fixed).
pub(crate) fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
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
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    std::fs::write(dir.path().join("conf/web.yaml"), "version: 1\n").unwrap();
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "first config"]);
    dir
}

fn head(dir: &Path) -> String {
    super::git::run(dir, &["rev-parse", "HEAD"])
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn a_config_in_a_work_tree_carries_its_commit_and_author() {
    let dir = repo();
    let (r, warnings) = resolve(&dir.path().join("conf"), &RevisionSources::default());
    let r = r.unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(r.commit, head(dir.path()));
    assert!(!r.dirty);
    assert_eq!(r.source, RevisionSource::Git);
    assert_eq!(r.author.as_deref(), Some("Ada <ada@example.com>"));
    assert_eq!(r.subject.as_deref(), Some("first config"));
    assert_eq!(r.short().len(), 12);
}

#[test]
fn an_edited_config_file_is_dirty_and_other_files_do_not_count() {
    let dir = repo();
    std::fs::write(dir.path().join("notes.txt"), "unrelated").unwrap();
    let conf = dir.path().join("conf");
    assert!(!resolve(&conf, &RevisionSources::default()).0.unwrap().dirty);
    std::fs::write(conf.join("web.yaml"), "version: 1\n# edited\n").unwrap();
    let r = resolve(&conf.join("web.yaml"), &RevisionSources::default())
        .0
        .unwrap();
    assert!(r.dirty);
    assert!(r.label().ends_with("-dirty"));
}

#[test]
fn a_config_outside_git_has_no_revision_and_no_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (r, warnings) = resolve(dir.path(), &RevisionSources::default());
    assert_eq!((r, warnings), (None, vec![]));
}

#[test]
fn a_corrupt_git_directory_is_a_warning_and_the_environment_still_counts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    std::fs::write(dir.path().join(".git/HEAD"), "garbage\n").unwrap();
    let sources = RevisionSources {
        file: None,
        env: Some("build-42".into()),
    };
    let (r, warnings) = resolve(dir.path(), &sources);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("cannot read the git revision"),
        "{warnings:?}"
    );
    let r = r.unwrap();
    assert_eq!(
        (r.commit.as_str(), r.source),
        ("build-42", RevisionSource::Env)
    );
}

#[test]
fn a_git_sync_link_names_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let hash = "0123456789abcdef0123456789abcdef01234567";
    let worktree = dir.path().join(".worktrees").join(hash);
    std::fs::create_dir_all(&worktree).unwrap();
    std::os::unix::fs::symlink(&worktree, dir.path().join("current")).unwrap();
    let r = resolve(&dir.path().join("current"), &RevisionSources::default())
        .0
        .unwrap();
    assert_eq!((r.commit.as_str(), r.source), (hash, RevisionSource::Link));
    // A ConfigMap-style `..data` link to a timestamped directory names no commit.
    let cm = tempfile::tempdir().unwrap();
    std::fs::create_dir(cm.path().join("..2026_01_01")).unwrap();
    std::os::unix::fs::symlink("..2026_01_01", cm.path().join("..data")).unwrap();
    assert_eq!(resolve(cm.path(), &RevisionSources::default()).0, None);
}

#[test]
fn the_revision_file_comes_first_and_is_bounded() {
    let dir = repo();
    let file = dir.path().join("REVISION");
    std::fs::write(&file, "v1.2.3\nmore\n").unwrap();
    let sources = RevisionSources {
        file: Some(file.clone()),
        env: Some("ignored".into()),
    };
    let r = resolve(dir.path(), &sources).0.unwrap();
    assert_eq!(
        (r.commit.as_str(), r.source),
        ("v1.2.3", RevisionSource::File)
    );
    std::fs::write(&file, "x".repeat(MAX_REVISION + 1)).unwrap();
    let (r, warnings) = resolve(dir.path(), &sources);
    assert!(
        warnings[0].contains("longer than 256 bytes"),
        "{warnings:?}"
    );
    assert_eq!(r.unwrap().source, RevisionSource::Git, "falls back to git");
    std::fs::write(&file, "a\u{1b}[2Jb").unwrap();
    assert!(resolve(dir.path(), &sources).1[0].contains("control"));
}

#[test]
fn hashes_are_full_lowercase_hex() {
    assert!(is_hash(&"a".repeat(40)));
    assert!(is_hash(&"0".repeat(64)));
    assert!(!is_hash(&"A".repeat(40)));
    assert!(!is_hash(&"a".repeat(39)));
    assert!(!is_hash("..2026_01_01"));
}
