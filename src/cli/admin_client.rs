//! Reading a running flotilla's admin API from the command line: the URL, token and CA, a
//! bounded GET of JSON, and the exit code 2 that every error of these commands gets.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use flotilla::config;

/// The most read from one admin API response.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// How long one admin API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub(crate) struct AdminArgs {
    /// The admin API of the running flotilla.
    #[arg(long, default_value = "http://127.0.0.1:18080")]
    pub(crate) admin: String,
    #[command(flatten)]
    pub(crate) access: Access,
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

/// Errors are exit code 2, after their message.
pub(crate) fn or_error(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        let _ = writeln!(std::io::stderr(), "error: {e:#}");
        ExitCode::from(2)
    })
}

pub(crate) fn out(text: &str) -> anyhow::Result<()> {
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("write to stdout")
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

/// GETs `path` from the admin API at `base` as JSON, refusing anything that is not.
pub(crate) async fn get_json(base: &str, path: &str, access: &Access) -> anyhow::Result<Value> {
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

/// Every line with its control characters escaped (names come from YAML and Envoys).
pub(crate) fn escape_lines(text: &str) -> String {
    text.lines()
        .map(|l| config::escape_controls(l) + "\n")
        .collect()
}
