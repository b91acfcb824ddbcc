//! `flotilla status` and `flotilla history`: what a pipeline asks a running flotilla. Exit
//! codes follow `kubectl rollout status`: 0 yes, 1 no, 2 error.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use flotilla::gitops::history::Entry;

use super::admin_client::{AdminArgs, escape_lines, get_json, or_error, out, runtime};

/// How often `status --wait` asks.
const POLL: Duration = Duration::from_millis(500);

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
pub(crate) struct HistoryArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[arg(long)]
    json: bool,
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
