//! Headless Chromium driven over WebDriver (Debian's chromium + chromium-driver, through
//! fantoccini), for tests that look at the dashboard the way a person does.
//!
//! ChromeDriver runs in its own process group, so the Chromium it starts dies with it even
//! when a test panics. Waits poll the page with a deadline; on timeout the test fails with the
//! page's visible text and a screenshot in `target/artifacts/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::{free_addr, wait};

/// The laptop screen the dashboard is designed for.
pub const WIDTH: u32 = 1366;
pub const HEIGHT: u32 = 768;

/// Chromium as the Debian package installs it, or `$CHROMIUM_BIN`.
pub fn chromium_bin() -> PathBuf {
    tool("CHROMIUM_BIN", "/usr/bin/chromium", "Chromium")
}

/// ChromeDriver as the Debian package installs it, or `$CHROMEDRIVER_BIN`.
pub fn chromedriver_bin() -> PathBuf {
    tool("CHROMEDRIVER_BIN", "/usr/bin/chromedriver", "ChromeDriver")
}

/// Missing browser tooling is a test failure, never a skip.
fn tool(var: &str, default: &str, what: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{what} not found at {} (and {var} is not set): run scripts/install-browser (scripts/test does)",
        path.display()
    );
    path
}

/// Where tests leave screenshots: `target/artifacts/` (created on first use).
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::repo_root().join("target"));
    let dir = target.join("artifacts");
    std::fs::create_dir_all(&dir).expect("create target/artifacts");
    dir
}

pub struct Browser {
    /// Names this test's artifacts (`<name>-failure.png`).
    name: String,
    client: Option<Client>,
    driver: Child,
    driver_log: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver and a fresh headless Chromium with a 1366×768 viewport; `name`
    /// names the screenshot left behind if the test fails.
    pub async fn start(name: &str) -> Browser {
        let chromium = chromium_bin();
        let profile = tempfile::tempdir().expect("profile dir");
        let driver_log = profile.path().join("chromedriver.log");
        let port = free_addr().port();
        let driver = Command::new(chromedriver_bin())
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", driver_log.display()))
            .arg("--log-level=WARNING")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        wait::until(
            "ChromeDriver to listen",
            Duration::from_secs(20),
            || async {
                reqwest::get(format!("{url}/status"))
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            },
        )
        .await;

        // This machine's network is closed: Chromium must not try to phone home (its
        // background connections are refused, many at a time, and slow every start).
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &format!("--window-size={WIDTH},{HEIGHT}"),
            &format!(
                "--user-data-dir={}",
                profile.path().join("chromium").display()
            ),
        ];
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let mut browser = Browser {
            name: name.to_string(),
            client: None,
            driver,
            driver_log,
            _profile: profile,
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await;
        match client {
            Ok(c) => browser.client = Some(c),
            Err(e) => {
                browser.print_driver_log();
                panic!("could not start Chromium through ChromeDriver: {e}");
            }
        }
        browser
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("browser session")
    }

    pub async fn goto(&self, url: &str) {
        self.client()
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Runs `script` (a function body: `return …`) in the page.
    pub async fn js(&self, script: &str) -> Value {
        self.client()
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` until it returns something other than null, undefined or false, and
    /// returns that. On timeout, fails with the page's text and a screenshot.
    pub async fn wait_for(&self, what: &str, timeout: Duration, script: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.js(script).await;
            if !v.is_null() && v != Value::Bool(false) {
                return v;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("timed out after {timeout:?} waiting for {what}"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the first element matching `selector` (trimmed); fails if none does.
    pub async fn text(&self, selector: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e ? e.textContent.trim() : null;",
            js_string(selector)
        );
        match self.js(&script).await {
            Value::String(s) => s,
            _ => self.fail(&format!("nothing matches {selector}")).await,
        }
    }

    /// Waits until the element matching `selector` reads exactly `want`.
    pub async fn wait_text(&self, selector: &str, want: &str, timeout: Duration) {
        let script = format!(
            "const e = document.querySelector({}); return !!e && e.textContent.trim() === {};",
            js_string(selector),
            js_string(want)
        );
        self.wait_for(&format!("{selector} to read {want:?}"), timeout, &script)
            .await;
    }

    /// Waits until the element matching `selector` has `want` in its text.
    pub async fn wait_contains(&self, selector: &str, want: &str, timeout: Duration) {
        let script = format!(
            "const e = document.querySelector({}); return !!e && e.textContent.includes({});",
            js_string(selector),
            js_string(want)
        );
        self.wait_for(&format!("{selector} to contain {want:?}"), timeout, &script)
            .await;
    }

    /// Fails the test, showing what the page shows.
    pub async fn fail(&self, message: &str) -> ! {
        let text = self
            .js("return document.body ? document.body.innerText : ''")
            .await;
        let shot = artifacts_dir().join(format!("{}-failure.png", self.name));
        self.screenshot(&shot).await;
        panic!(
            "{message}\n----- page text -----\n{}\n----- end of page text (screenshot: {}) -----",
            text.as_str().unwrap_or_default(),
            shot.display()
        );
    }

    /// Saves a PNG of the whole page at the laptop's width: the window grows to the page's
    /// height for the shot and is put back after.
    pub async fn screenshot_page(&self, path: &Path) {
        let c = self.client();
        let (w, h) = c.get_window_size().await.expect("window size");
        let need = self
            .js("return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight")
            .await
            .as_u64()
            .expect("page height");
        c.set_window_size(w as u32, (need as u32).max(h as u32))
            .await
            .expect("resize");
        self.next_frame().await;
        self.screenshot(path).await;
        c.set_window_size(w as u32, h as u32).await.expect("resize");
    }

    /// Waits until the page has painted what the last change laid out.
    async fn next_frame(&self) {
        self.client()
            .execute_async(
                "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done()));",
                vec![],
            )
            .await
            .expect("animation frame");
    }

    /// Saves a PNG of the viewport.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client().screenshot().await.expect("screenshot");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Ends the session (Chromium exits); dropping the browser does the rest.
    pub async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }

    fn print_driver_log(&self) {
        super::print_log_tail("chromedriver", &self.driver_log, 40);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_driver_log();
        }
        // ChromeDriver and the Chromium it started share the process group we gave it.
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `s` as a JavaScript string literal.
pub fn js_string(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}
