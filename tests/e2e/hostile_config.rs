//! `flotilla validate` and `serve` facing hostile or broken files: every one is refused with a
//! clear, positioned, escaped message, promptly, and reported once.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::flotilla_bin;

/// Runs flotilla; a run that outlives the deadline (a hang) fails the test.
fn run(args: &[&str]) -> Output {
    let mut child = Command::new(flotilla_bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run flotilla");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("flotilla {args:?} did not finish within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn validate(path: &Path) -> (bool, String, String) {
    let out = run(&["validate", path.to_str().expect("utf-8")]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn billion_laughs(levels: u8) -> String {
    let mut text = "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n".to_string();
    for level in 1..levels {
        let (name, below) = ((b'a' + level) as char, (b'a' + level - 1) as char);
        let aliases = vec![format!("*{below}"); 9].join(",");
        text.push_str(&format!("{name}: &{name} [{aliases}]\n"));
    }
    text
}

#[test]
fn alias_bombs_are_refused_with_a_position() {
    let dir = tempfile::tempdir().expect("dir");
    for levels in [7, 8] {
        let file = dir.path().join(format!("bomb{levels}.yaml"));
        std::fs::write(&file, billion_laughs(levels)).expect("write");
        let (ok, _, stderr) = validate(&file);
        assert!(!ok);
        let line = stderr.lines().next().expect("an error");
        assert!(
            line.contains(&format!(
                "bomb{levels}.yaml:6:8: invalid YAML: aliases expand this file past 1000"
            )) && line.contains("probable alias bomb"),
            "{stderr}"
        );
    }
}

/// One 16 KiB string, anchored once and multiplied through nested lists of aliases: 90,000
/// copies under the node budget, 1.4 GB expanded. `validate` refuses it at once, naming the
/// alias, without allocating it (issue 27.1).
#[test]
fn a_string_alias_bomb_is_refused_before_it_expands() {
    let dir = tempfile::tempdir().expect("dir");
    let mut bomb = format!("version: 1\ns: &s \"{}\"\n", "x".repeat(16 * 1024));
    for (name, below) in [("a", "s"), ("b", "a"), ("c", "b"), ("d", "c")] {
        let aliases = vec![format!("*{below}"); 10].join(",");
        bomb.push_str(&format!("{name}: &{name} [{aliases}]\n"));
    }
    bomb.push_str(&format!("e: [{}]\n", ["*d"; 9].join(",")));
    assert!(bomb.len() < 22_000, "{} bytes", bomb.len());
    let file = dir.path().join("strings.yaml");
    std::fs::write(&file, &bomb).expect("write");
    let started = std::time::Instant::now();
    let (ok, _, stderr) = validate(&file);
    assert!(!ok);
    assert!(
        stderr.contains("strings.yaml:4:23: invalid YAML: aliases expand this file past")
            && stderr.contains("bytes of text"),
        "{stderr}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn fifos_and_devices_are_refused_without_hanging() {
    let dir = tempfile::tempdir().expect("dir");
    let fifo = dir.path().join("flotilla.yaml");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    let (ok, _, stderr) = validate(&fifo);
    assert!(
        !ok && stderr.contains("not a regular file (a FIFO)"),
        "{stderr}"
    );
    let (ok, _, stderr) = validate(Path::new("/dev/zero"));
    assert!(
        !ok && stderr.contains("not a regular file (a character device)"),
        "{stderr}"
    );
}

#[test]
fn control_characters_in_names_are_escaped() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("ansi.yaml");
    std::fs::write(&file, "version: 1\nclusters:\n  \"\\e[2J\\e[31mok\": {}\n").expect("write");
    let (ok, _, stderr) = validate(&file);
    assert!(!ok);
    assert!(!stderr.contains('\u{1b}'), "raw escape printed: {stderr:?}");
    assert!(stderr.contains("\\u{1b}[2J\\u{1b}[31mok"), "{stderr}");
}

#[test]
fn an_empty_config_validates_with_a_warning() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("empty.yaml");
    std::fs::write(&file, "version: 1\n").expect("write");
    let (ok, stdout, stderr) = validate(&file);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("ok (0 clusters, 0 listeners, 0 fleets)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("warning: this config has no listeners and no clusters: `serve` refuses"),
        "{stderr}"
    );
    std::fs::write(&file, "version: 1\nallow_empty: true\n").expect("write");
    let (ok, _, stderr) = validate(&file);
    assert!(ok && stderr.is_empty(), "{stderr}");
}

#[test]
fn a_state_file_of_another_version_stops_serve_with_one_message() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("flotilla.yaml");
    std::fs::write(&config, "version: 1\n").expect("write");
    let state = dir.path().join("state.json");
    std::fs::write(&state, r#"{"version": 99, "drains": [], "weights": []}"#).expect("write");
    let out = run(&[
        "serve",
        "--config",
        config.to_str().expect("utf-8"),
        "--xds-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--state-file",
        state.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr
            .matches("version 99 is not one this flotilla reads")
            .count(),
        1,
        "{stderr}"
    );
}
