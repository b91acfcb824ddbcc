//! The flags every run that starts its own flotilla takes (`xds`, `replicas`).

use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// The flotilla binary (default: next to this one).
    #[arg(long)]
    pub(crate) flotilla: Option<PathBuf>,
    /// flotilla's `--debounce`: part of every change's latency.
    #[arg(long, default_value = "10ms")]
    pub(crate) debounce: String,
    /// Longest wait for every stream to reach one phase's target.
    #[arg(long, default_value_t = 300)]
    pub(crate) timeout_secs: u64,
    /// Quiet time after each phase (a change, a drain), counted in its traffic and CPU.
    #[arg(long, default_value_t = 500)]
    pub(crate) settle_ms: u64,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
}
