//! `flotilla status`, `flotilla diff` and `flotilla history`: the commands a pipeline runs.
//! Exit codes follow `diff(1)` and `kubectl rollout status`: 0 yes/same, 1 no/differs, 2 error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use flotilla::config;
use flotilla::gitops::diff::{self, Served};
use flotilla::gitops::history::Entry;

/// The most read from one admin API response.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// How long one admin API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `status --wait` asks.
const POLL: Duration = Duration::from_millis(500);

#[derive(clap::Args, Debug)]
pub(crate) struct AdminArgs {
    /// The admin API of the running flotilla.
    #[arg(long, default_value = "http://127.0.0.1:18080")]
    admin: String,
    #[command(flatten)]
    access: Access,
}

/// How to reach an admin API that needs a token or speaks TLS.
#[derive(clap::Args, Debug)]
pub(crate) struct Access {
    /// Bearer token for reads beyond loopback (as serve's --admin-token).
    #[arg(long, env = "FLOTILLA_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// CA certificates (PEM, at most 1 MiB) that sign the admin API's certificate, for an
    /// https:// URL.
    #[arg(long, value_name = "FILE")]
    admin_ca: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[arg(long)]
    json: bool,
    /// Wait until every fleet is Synced at the current revision (exit 0), an Envoy rejects it
    /// or --timeout passes (exit 1).
    #[arg(long)]
    wait: bool,
    #[arg(long, default_value = "60s", value_parser = super::parse_duration, requires = "wait")]
    timeout: Duration,
    /// With --wait: first wait for flotilla to serve this revision (a commit hash or its
    /// prefix, e.g. the commit a pipeline just merged), then for every fleet to take it.
    #[arg(long, requires = "wait", value_parser = parse_revision)]
    revision: Option<String>,
}

fn parse_revision(text: &str) -> Result<String, String> {
    flotilla::gitops::revision::check_given(text)
}

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

#[derive(clap::Args, Debug)]
pub(crate) struct HistoryArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[arg(long)]
    json: bool,
}

/// Errors are exit code 2, after their message.
fn or_error(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        let _ = writeln!(std::io::stderr(), "error: {e:#}");
        ExitCode::from(2)
    })
}

fn out(text: &str) -> anyhow::Result<()> {
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("write to stdout")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

/// GETs `path` from the admin API at `base` as JSON, refusing anything that is not.
async fn get_json(base: &str, path: &str, access: &Access) -> anyhow::Result<Value> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT);
    if let Some(ca) = &access.admin_ca {
        let pem = flotilla::tls::read_pem_file(ca)
            .map_err(|e| anyhow::anyhow!("--admin-ca {}: {e}", ca.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("--admin-ca {}", ca.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    let client = builder.build().context("HTTP client")?;
    let mut req = client.get(&url);
    if let Some(t) = &access.admin_token {
        req = req.bearer_auth(t);
    }
    let mut resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach the flotilla admin API at {base}"))?;
    let status = resp.status();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.with_context(|| format!("GET {url}"))? {
        if body.len() + chunk.len() > MAX_BODY {
            bail!("GET {url}: the response is larger than {MAX_BODY} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let hint = if status == reqwest::StatusCode::NOT_FOUND {
            " (is this a flotilla admin API, and a flotilla new enough to serve it?)"
        } else {
            ""
        };
        let text = String::from_utf8_lossy(&body);
        let first: String = text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        bail!(
            "GET {url}: {status}{hint}: {}",
            config::escape_controls(&first)
        );
    }
    serde_json::from_slice(&body)
        .with_context(|| format!("GET {url}: not JSON; {base} is not a flotilla admin API"))
}

/// The status document as the command reads it back.
#[derive(serde::Deserialize)]
struct Status {
    synced: bool,
    revision: Option<Revision>,
    fleets: Vec<FleetRow>,
}

#[derive(serde::Deserialize)]
struct Revision {
    commit: String,
    dirty: bool,
    source: String,
    author: Option<String>,
    subject: Option<String>,
}

#[derive(serde::Deserialize)]
struct FleetRow {
    fleet: String,
    revision: Option<String>,
    sync: String,
    health: String,
    #[serde(default)]
    nodes: Vec<Value>,
    #[serde(default)]
    rejections: Vec<RejectionRow>,
}

#[derive(serde::Deserialize)]
struct RejectionRow {
    summary: String,
}

async fn get_status(a: &AdminArgs) -> anyhow::Result<(Status, Value)> {
    let value = get_json(&a.admin, "/api/v1/status", &a.access).await?;
    let status: Status = serde_json::from_value(value.clone()).with_context(|| {
        format!(
            "GET {}/api/v1/status: not a flotilla status document; is {} a flotilla admin API?",
            a.admin.trim_end_matches('/'),
            a.admin
        )
    })?;
    Ok((status, value))
}

/// Every line with its control characters escaped (names come from YAML and Envoys).
fn escape_lines(text: &str) -> String {
    text.lines()
        .map(|l| config::escape_controls(l) + "\n")
        .collect()
}

fn short(revision: &str) -> String {
    let (commit, dirty) = match revision.strip_suffix("-dirty") {
        Some(c) => (c, "-dirty"),
        None => (revision, ""),
    };
    let c: String = commit.chars().take(12).collect();
    format!("{c}{dirty}")
}

fn status_table(s: &Status) -> String {
    let mut text = String::new();
    match &s.revision {
        Some(r) => {
            let mut line = format!(
                "revision {}{} ({})",
                r.commit,
                if r.dirty { " (dirty)" } else { "" },
                r.source
            );
            if let Some(a) = &r.author {
                line.push_str(&format!(" by {a}"));
            }
            if let Some(subject) = &r.subject {
                line.push_str(&format!(": {subject}"));
            }
            text.push_str(&line);
        }
        None => {
            text.push_str("revision: none (no git work tree, --revision-file or FLOTILLA_REVISION)")
        }
    }
    text.push('\n');
    let rows: Vec<[String; 5]> = s
        .fleets
        .iter()
        .map(|f| {
            [
                f.fleet.clone(),
                f.revision.as_deref().map_or_else(|| "-".to_string(), short),
                f.sync.clone(),
                f.health.clone(),
                f.nodes.len().to_string(),
            ]
        })
        .collect();
    let header = ["FLEET", "REVISION", "SYNC", "HEALTH", "ENVOYS"].map(str::to_string);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    for (i, row) in std::iter::once(&header).chain(&rows).enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
        if i > 0 {
            for r in &s.fleets[i - 1].rejections {
                text.push_str(&format!("  {}\n", r.summary));
            }
        }
    }
    if s.fleets.is_empty() {
        text.push_str("(no fleets declared and no Envoy connected)\n");
    }
    escape_lines(&text)
}

pub(crate) fn status(a: StatusArgs) -> ExitCode {
    or_error(runtime().and_then(|rt| rt.block_on(status_async(a))))
}

async fn status_async(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    loop {
        let (s, json) = get_status(&a.admin).await?;
        let serving = s.revision.as_ref().map(|r| r.commit.as_str());
        let arrived = a
            .revision
            .as_deref()
            .is_none_or(|want| serving.is_some_and(|have| have.starts_with(want)));
        let rejected = arrived && s.fleets.iter().any(|f| !f.rejections.is_empty());
        let synced = arrived && s.synced;
        let done = !a.wait || synced || rejected || started.elapsed() >= a.timeout;
        if done {
            if a.json {
                out(&(serde_json::to_string_pretty(&json)? + "\n"))?;
            } else {
                out(&status_table(&s))?;
            }
            if a.wait && !synced {
                let why = match (&a.revision, arrived, rejected) {
                    (_, _, true) => "rejected by an Envoy".to_string(),
                    (Some(want), false, _) => format!(
                        "timed out: flotilla serves revision {}, not {want}",
                        serving.unwrap_or("none")
                    ),
                    _ => "timed out".to_string(),
                };
                let _ = writeln!(
                    std::io::stderr(),
                    "not every fleet is Synced: {why} (after {:.1}s)",
                    started.elapsed().as_secs_f64()
                );
            }
            return Ok(if synced {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        tokio::time::sleep(POLL.min(a.timeout.saturating_sub(started.elapsed()))).await;
    }
}

pub(crate) fn history(a: HistoryArgs) -> ExitCode {
    or_error(runtime().and_then(|rt| {
        rt.block_on(async {
            let value = get_json(&a.admin.admin, "/api/v1/history", &a.admin.access).await?;
            #[derive(serde::Deserialize)]
            struct View {
                entries: Vec<Entry>,
            }
            let view: View = serde_json::from_value(value.clone()).with_context(|| {
                format!(
                    "GET /api/v1/history: not a flotilla history; is {} a flotilla admin API?",
                    a.admin.admin
                )
            })?;
            if a.json {
                out(&(serde_json::to_string_pretty(&value)? + "\n"))?;
            } else {
                out(&history_table(&view.entries))?;
            }
            Ok(ExitCode::SUCCESS)
        })
    }))
}

fn history_table(entries: &[Entry]) -> String {
    let mut text = String::new();
    for e in entries {
        let when = e.at / 1000;
        let revision = e
            .revision
            .as_ref()
            .map_or_else(|| "-".to_string(), |r| r.short());
        text.push_str(&format!(
            "#{} {} revision {} ({}{})\n    {}\n",
            e.id,
            flotilla::config::format_timestamp(when as i64),
            revision,
            e.trigger,
            e.who
                .as_ref()
                .map_or_else(String::new, |w| format!(", by {w}")),
            e.summary
        ));
        for (fleet, o) in &e.outcome {
            let by = if o.rejected_by.is_empty() {
                String::new()
            } else {
                format!(", rejected by {}", o.rejected_by.join(", "))
            };
            text.push_str(&format!("    {fleet}: {}{by}\n", o.sync));
            for r in &o.rejections {
                text.push_str(&format!("      {r}\n"));
            }
        }
    }
    if entries.is_empty() {
        text.push_str("(no config applied yet)\n");
    }
    escape_lines(&text)
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
