//! `flotilla sidecar iptables`: the redirection a transparent sidecar needs, printed as
//! iptables-restore input, or applied (`--apply`) in one commit.

use std::io::Write as _;
use std::process::{ExitCode, Stdio};

use anyhow::{Context, bail};

use flotilla::envoy::iptables::{self, DEFAULT_INBOUND_PORT, Redirect};
use flotilla::envoy::transparent::DEFAULT_OUTBOUND_PORT;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum SidecarCommand {
    /// The nat rules that send the app's outbound TCP to the sidecar's outbound listener
    /// (every UID but --proxy-uid; not to 127.0.0.1) and inbound TCP to its inbound
    /// listener, as iptables-restore input; --apply applies them, --clean removes them.
    Iptables(IptablesArgs),
}

#[derive(clap::Args, Debug)]
pub(crate) struct IptablesArgs {
    /// The UID Envoy runs as: its own connections are never redirected.
    #[arg(long, value_name = "UID")]
    proxy_uid: u32,
    /// The transparent outbound listener's port (`flotilla bootstrap --transparent`).
    #[arg(long, default_value_t = DEFAULT_OUTBOUND_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    outbound_port: u16,
    /// The inbound listener's port (`flotilla bootstrap --inbound`).
    #[arg(long, default_value_t = DEFAULT_INBOUND_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    inbound_port: u16,
    /// Ports never redirected, comma-separated (ssh, a health probe's port, …; at most 64).
    #[arg(long, value_name = "P,…", default_value = "")]
    exclude_ports: String,
    /// Apply with `iptables-restore --noflush` (needs CAP_NET_ADMIN) instead of printing.
    #[arg(long)]
    apply: bool,
    /// The removal of the rules instead (printed, or applied with --apply).
    #[arg(long)]
    clean: bool,
    /// The iptables-restore program --apply runs.
    #[arg(long, default_value = "iptables-restore", value_name = "PROGRAM")]
    iptables_restore: String,
}

pub(crate) fn run(command: SidecarCommand) -> anyhow::Result<ExitCode> {
    let SidecarCommand::Iptables(a) = command;
    let redirect = Redirect {
        proxy_uid: a.proxy_uid,
        outbound_port: a.outbound_port,
        inbound_port: a.inbound_port,
        exclude_ports: iptables::parse_ports(&a.exclude_ports)?,
    };
    redirect.check()?;
    if let Some(w) = redirect.warning() {
        tracing::warn!("{w}");
    }
    let input = if a.clean {
        iptables::clean()
    } else {
        redirect.rules()
    };
    if !a.apply {
        std::io::stdout()
            .write_all(input.as_bytes())
            .context("write to stdout")?;
        return Ok(ExitCode::SUCCESS);
    }
    apply(&a.iptables_restore, &input)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs iptables-restore on `input`: it commits the table whole or not at all.
fn apply(program: &str, input: &str) -> anyhow::Result<()> {
    let mut child = std::process::Command::new(program)
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("--apply: cannot run {program} (is iptables installed?)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .with_context(|| format!("--apply: write to {program}"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("--apply: wait for {program}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("ermission denied") || stderr.contains("must be root") {
            " (applying needs root or CAP_NET_ADMIN)"
        } else {
            ""
        };
        bail!(
            "--apply: {program} failed{hint}; nothing was changed (the table is committed whole or not at all): {}",
            stderr.trim()
        );
    }
    Ok(())
}
