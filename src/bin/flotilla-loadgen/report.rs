//! Summaries of latencies and traffic, printed as a table and kept as JSON.

use std::time::Duration;

use flotilla::cache::ResourceType;

use crate::procfs::Usage;
use crate::shared::TrafficCount;

/// Nearest-rank percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Percentiles {
    pub(crate) n: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Percentiles {
    pub(crate) fn of(values: &[Duration]) -> Percentiles {
        let mut v = values.to_vec();
        v.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Percentiles {
            n: v.len(),
            p50_ms: ms(percentile(&v, 50.0)),
            p99_ms: ms(percentile(&v, 99.0)),
            max_ms: ms(percentile(&v, 100.0)),
        }
    }
}

/// One measured phase: the initial config, or one change.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct PhaseReport {
    pub(crate) name: String,
    /// Streams that reached the phase's target (should be all of them).
    pub(crate) completed: usize,
    pub(crate) latency: Percentiles,
    pub(crate) traffic: TrafficCount,
    /// flotilla's CPU seconds during the phase.
    pub(crate) flotilla_cpu_s: f64,
    /// The load generator's own CPU seconds during the phase.
    pub(crate) loadgen_cpu_s: f64,
    pub(crate) flotilla_after: Usage,
    #[serde(skip)]
    pub(crate) latencies: Vec<Duration>,
}

/// The whole run.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Report {
    pub(crate) mode: crate::stream::Mode,
    pub(crate) streams: usize,
    pub(crate) connections: usize,
    pub(crate) clusters: usize,
    pub(crate) endpoints: usize,
    pub(crate) fleets: usize,
    pub(crate) debounce: String,
    pub(crate) failed_streams: u64,
    /// Over mTLS (`--tls`).
    pub(crate) tls: bool,
    /// Opening every connection (TLS handshakes included): wall time and flotilla's CPU.
    pub(crate) connect_s: f64,
    pub(crate) connect_cpu_s: f64,
    pub(crate) phases: Vec<PhaseReport>,
    /// Phases of the same kind pooled: every (stream, change) latency.
    pub(crate) by_kind: Vec<KindSummary>,
    pub(crate) flotilla_peak_rss_mib: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct KindSummary {
    pub(crate) kind: String,
    pub(crate) changes: usize,
    pub(crate) latency: Percentiles,
    /// Mean per change, over all streams.
    pub(crate) bytes_per_change: f64,
    pub(crate) bytes_per_stream: f64,
    /// Mean per change and stream, per type (CDS, EDS, LDS, RDS, SDS).
    pub(crate) responses_per_stream: [f64; ResourceType::COUNT],
    pub(crate) resources_per_stream: [f64; ResourceType::COUNT],
    pub(crate) flotilla_cpu_s_per_change: f64,
}

impl KindSummary {
    pub(crate) fn of(kind: &str, phases: &[&PhaseReport], streams: usize) -> KindSummary {
        let n = phases.len().max(1) as f64;
        let all: Vec<Duration> = phases.iter().flat_map(|p| p.latencies.clone()).collect();
        let per = |f: &dyn Fn(&TrafficCount) -> [u64; ResourceType::COUNT]| -> [f64; ResourceType::COUNT] {
            std::array::from_fn(|i| {
                phases.iter().map(|p| f(&p.traffic)[i] as f64).sum::<f64>()
                    / n
                    / streams.max(1) as f64
            })
        };
        let bytes = phases
            .iter()
            .map(|p| p.traffic.total_bytes() as f64)
            .sum::<f64>()
            / n;
        KindSummary {
            kind: kind.to_string(),
            changes: phases.len(),
            latency: Percentiles::of(&all),
            bytes_per_change: bytes,
            bytes_per_stream: bytes / streams.max(1) as f64,
            responses_per_stream: per(&|t| t.responses),
            resources_per_stream: per(&|t| t.resources),
            flotilla_cpu_s_per_change: phases.iter().map(|p| p.flotilla_cpu_s).sum::<f64>() / n,
        }
    }
}

fn human_bytes(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

impl Report {
    /// A Markdown table, as pasted into BENCHMARKS.md.
    pub(crate) fn table(&self) -> String {
        let mut out = format!(
            "flotilla-loadgen: {} streams ({:?}) over {} connections, {} clusters x {} endpoints, {} fleets, --debounce {}; failed streams: {}\n\n",
            self.streams,
            self.mode,
            self.connections,
            self.clusters,
            self.endpoints,
            self.fleets,
            self.debounce,
            self.failed_streams
        );
        out.push_str(&format!(
            "{}; {} connections opened in {:.2} s (flotilla CPU {:.2} s)\n\n",
            if self.tls { "mTLS" } else { "plaintext" },
            self.connections,
            self.connect_s,
            self.connect_cpu_s
        ));
        out.push_str("| phase | streams done | p50 | p99 | max | bytes sent | per stream: responses C/E/L/R/S | per stream: resources C/E/L/R/S | flotilla CPU s | loadgen CPU s | flotilla RSS / peak |\n");
        out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        let per_stream = |a: [u64; ResourceType::COUNT]| {
            a.map(|x| format!("{:.2}", x as f64 / self.streams.max(1) as f64))
                .join("/")
        };
        for p in &self.phases {
            out.push_str(&format!(
                "| {} | {}/{} | {:.0} ms | {:.0} ms | {:.0} ms | {} | {} | {} | {:.2} | {:.2} | {:.0} / {:.0} MiB |\n",
                p.name,
                p.completed,
                self.streams,
                p.latency.p50_ms,
                p.latency.p99_ms,
                p.latency.max_ms,
                human_bytes(p.traffic.total_bytes() as f64),
                per_stream(p.traffic.responses),
                per_stream(p.traffic.resources),
                p.flotilla_cpu_s,
                p.loadgen_cpu_s,
                p.flotilla_after.rss_mib,
                p.flotilla_after.peak_rss_mib,
            ));
        }
        out.push_str("\nPer kind of change (latencies pooled over every stream and change):\n\n");
        out.push_str("| change | changes | p50 | p99 | max | bytes per change | bytes per stream | EDS resources per stream | flotilla CPU s per change |\n");
        out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for k in &self.by_kind {
            out.push_str(&format!(
                "| {} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {} | {} | {:.2} | {:.2} |\n",
                k.kind,
                k.changes,
                k.latency.p50_ms,
                k.latency.p99_ms,
                k.latency.max_ms,
                human_bytes(k.bytes_per_change),
                human_bytes(k.bytes_per_stream),
                k.resources_per_stream[1],
                k.flotilla_cpu_s_per_change,
            ));
        }
        out.push_str(&format!(
            "\nflotilla peak RSS (VmHWM): {:.0} MiB\n",
            self.flotilla_peak_rss_mib
        ));
        out
    }
}
