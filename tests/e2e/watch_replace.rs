//! The config directory replaced wholesale, as deploy tools do (`rm -rf conf` and recreate it,
//! or `mv conf conf.old && mv conf.new conf`): flotilla follows the path, not the directory it
//! first saw, and SIGHUP re-arms the watch when a replacement happened further up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::configs::web;
use crate::support::flotilla::Flotilla;
use crate::support::{free_addr, wait};

const RELOADS: [&str; 3] = [
    "flotilla_config_reloads_total{result=\"applied\"}",
    "flotilla_config_reloads_total{result=\"unchanged\"}",
    "flotilla_config_reloads_total{result=\"invalid\"}",
];

async fn reloads(f: &Flotilla) -> u64 {
    let text = f.get("/metrics").await.text().await.expect("metrics");
    RELOADS
        .iter()
        .filter_map(|series| {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        })
        .sum::<f64>() as u64
}

/// The endpoint flotilla serves for `web`, as its state API shows it.
async fn served_endpoint(f: &Flotilla) -> String {
    let state = f.json("/api/v1/state").await;
    state["clusters"][0]["endpoints"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn wait_endpoint(f: &Flotilla, address: &str) {
    wait::until(
        &format!("flotilla to serve {address}"),
        Duration::from_secs(10),
        || async { (served_endpoint(f).await == address).then_some(()) },
    )
    .await;
}

/// A flotilla serving `<tmp>/<parent>/conf/flotilla.yaml`, and that file's directory.
async fn serving(parent: &str, extra: &[&str]) -> (Flotilla, PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let conf = dir.path().join(parent).join("conf");
    std::fs::create_dir_all(&conf).expect("conf dir");
    let config = conf.join("flotilla.yaml");
    std::fs::write(&config, web(free_addr(), "127.0.0.1:1001")).expect("write");
    let f = Flotilla::start_with(dir, config, extra).await;
    wait_endpoint(&f, "127.0.0.1:1001").await;
    (f, conf)
}

fn write(dir: &Path, endpoint: &str) {
    std::fs::write(dir.join("flotilla.yaml"), web(free_addr(), endpoint)).expect("write");
}

/// Edits the moved-away directory: nothing may reload.
async fn edits_to_the_old_directory_are_ignored(f: &Flotilla, old: &Path) {
    let before = reloads(f).await;
    write(old, "127.0.0.1:1999");
    wait::holds_for(
        "an edit to the old directory reloads nothing",
        Duration::from_millis(500),
        || async { reloads(f).await == before },
    )
    .await;
}

#[tokio::test]
async fn a_directory_deleted_and_recreated_is_followed() {
    let (f, conf) = serving("etc", &[]).await;
    std::fs::remove_dir_all(&conf).expect("rm -rf");
    std::fs::create_dir(&conf).expect("mkdir");
    write(&conf, "127.0.0.1:1002");
    wait_endpoint(&f, "127.0.0.1:1002").await;
    // Later edits in the new directory are seen too.
    write(&conf, "127.0.0.1:1003");
    wait_endpoint(&f, "127.0.0.1:1003").await;
}

#[tokio::test]
async fn a_directory_swapped_by_renames_is_followed() {
    let (f, conf) = serving("etc", &[]).await;
    let (old, new) = (
        conf.with_file_name("conf.old"),
        conf.with_file_name("conf.new"),
    );
    std::fs::create_dir(&new).expect("mkdir new");
    write(&new, "127.0.0.1:1002");
    std::fs::rename(&conf, &old).expect("mv conf conf.old");
    std::fs::rename(&new, &conf).expect("mv conf.new conf");
    wait_endpoint(&f, "127.0.0.1:1002").await;
    write(&conf, "127.0.0.1:1003");
    wait_endpoint(&f, "127.0.0.1:1003").await;
    edits_to_the_old_directory_are_ignored(&f, &old).await;
    assert_eq!(served_endpoint(&f).await, "127.0.0.1:1003");
}

#[tokio::test]
async fn sighup_rearms_the_watch_after_a_replacement_no_watch_sees() {
    // The directory above the config directory is replaced: neither watch sees the name change.
    let (f, conf) = serving("site", &[]).await;
    let site = conf.parent().expect("site").to_path_buf();
    let (old, new) = (
        site.with_file_name("site.old"),
        site.with_file_name("site.new"),
    );
    std::fs::create_dir_all(new.join("conf")).expect("mkdir new");
    write(&new.join("conf"), "127.0.0.1:1002");
    std::fs::rename(&site, &old).expect("mv site site.old");
    std::fs::rename(&new, &site).expect("mv site.new site");
    f.signal("HUP");
    wait_endpoint(&f, "127.0.0.1:1002").await;
    write(&conf, "127.0.0.1:1003");
    wait_endpoint(&f, "127.0.0.1:1003").await;
    edits_to_the_old_directory_are_ignored(&f, &old.join("conf")).await;
}

/// A reload that cannot read the files (an I/O error: here a link dangling, in production
/// EMFILE) is retried with back-off, without waiting for another file event: the fix to the
/// link's target happens outside the watched directory, and only the retry can see it.
#[tokio::test]
async fn a_reload_that_cannot_read_the_files_is_retried_until_it_can() {
    let (f, conf) = serving("etc", &[]).await;
    let outside = f.dir().join("elsewhere");
    std::fs::create_dir(&outside).expect("mkdir");
    std::fs::remove_file(conf.join("flotilla.yaml")).expect("rm");
    std::os::unix::fs::symlink(outside.join("flotilla.yaml"), conf.join("flotilla.yaml"))
        .expect("ln -s");
    wait::until(
        "the reload to fail and retry",
        Duration::from_secs(10),
        || async {
            let ready = f.get("/readyz").await;
            let ok = ready.status().is_success();
            let body = ready.text().await.ok()?;
            (ok && body.contains("reload: unreadable, retrying") && body.contains("flotilla.yaml"))
                .then_some(())
        },
    )
    .await;
    let metrics = f.text("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "flotilla_config_reload_retrying 1"),
        "{metrics}"
    );
    assert_eq!(
        served_endpoint(&f).await,
        "127.0.0.1:1001",
        "the last good config is served"
    );
    write(&outside, "127.0.0.1:1003");
    wait_endpoint(&f, "127.0.0.1:1003").await;
    assert_eq!(f.text("/readyz").await, "ready\n");
    let metrics = f.text("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "flotilla_config_reload_retrying 0"),
        "{metrics}"
    );
}
