use super::*;

/// The test suite's git fixture (a fixed identity and branch), shared with the e2e tests.
#[path = "../../../tests/support/git.rs"]
#[allow(unreachable_pub)]
mod fixture;
use fixture::commit_file;
use fixture::git;

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    commit_file(dir.path(), "conf/web.yaml", "version: 1\n", "first config");
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

#[test]
fn a_fifo_or_a_device_as_revision_file_is_a_warning_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("REVISION");
    crate::util::mkfifo(&fifo);
    for (file, kind) in [
        (fifo, "a FIFO"),
        (PathBuf::from("/dev/zero"), "a character device"),
    ] {
        let sources = RevisionSources {
            file: Some(file.clone()),
            env: None,
        };
        let (r, warnings) = resolve(dir.path(), &sources);
        assert_eq!(r, None);
        assert!(
            warnings[0].contains(&format!("not a regular file ({kind})")),
            "{warnings:?}"
        );
    }
}

#[test]
fn only_the_first_line_of_a_revision_file_must_be_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("REVISION");
    // Release notes after the revision, cut by the read limit inside a character.
    let mut text = b"v2.0.1\n".to_vec();
    text.extend("é".repeat(MAX_REVISION * 4).bytes());
    text.push(0xff);
    std::fs::write(&file, &text).unwrap();
    let sources = RevisionSources {
        file: Some(file.clone()),
        env: None,
    };
    let (r, warnings) = resolve(dir.path(), &sources);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(r.unwrap().commit, "v2.0.1");
    std::fs::write(&file, b"v\xff\n").unwrap();
    assert!(resolve(dir.path(), &sources).1[0].contains("not UTF-8"));
}

#[test]
fn a_config_path_with_pathspec_characters_is_taken_literally() {
    let dir = repo();
    let conf = dir.path().join("conf");
    std::fs::write(conf.join("web[1].yaml"), "version: 1\n").unwrap();
    std::fs::write(conf.join("web1.yaml"), "version: 1\n").unwrap();
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "two"]);
    // Only web1.yaml changes: `web[1].yaml` as a glob would match it and say dirty.
    std::fs::write(conf.join("web1.yaml"), "version: 1\n# edited\n").unwrap();
    let r = resolve(&conf.join("web[1].yaml"), &RevisionSources::default())
        .0
        .unwrap();
    assert!(!r.dirty, "web[1].yaml is clean");
}

#[test]
fn git_log_output_is_read_with_bounds() {
    let hash = "a".repeat(40);
    let line = parse_log(&format!(
        "{hash}\0Ada <a@x>\0fix\u{1b}[2J {}\n",
        "x".repeat(999)
    ))
    .unwrap();
    assert_eq!(line.commit, hash);
    assert_eq!(line.author.as_deref(), Some("Ada <a@x>"));
    let subject = line.subject.unwrap();
    assert!(
        !subject.contains('\u{1b}') && subject.len() < 300,
        "{subject}"
    );
    assert_eq!(parse_log("not a hash\0a\0b"), None);
    assert_eq!(parse_log(""), None);
}

#[test]
fn the_repositorys_filter_commands_never_run() {
    let dir = repo();
    let marker = dir.path().join("ran");
    std::fs::write(dir.path().join(".gitattributes"), "*.yaml filter=x\n").unwrap();
    git(
        dir.path(),
        &[
            "config",
            "filter.x.clean",
            &format!("touch {}; cat", marker.display()),
        ],
    );
    git(dir.path(), &["config", "filter.a.b.process", "false"]);
    // Same size, another timestamp: git compares the content through the clean filter.
    let yaml = dir.path().join("conf/web.yaml");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(&yaml, "version: 2\n").unwrap();
    let r = resolve(&yaml, &RevisionSources::default()).0.unwrap();
    assert!(r.dirty);
    assert!(!marker.exists(), "the repository's clean filter ran");
}
