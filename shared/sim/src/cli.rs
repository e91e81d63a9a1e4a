//! `spotfit simulate TRACE.csv [--json] [--plot FILE.svg] [--region R]`: the arguments and the
//! command, shared by the `spotfit` CLI (shared/cli/src/simulate_cmd.rs) and `spotfit-sim`.

use crate::engine::{simulate, SimConfig};
use crate::report::Report;
use crate::trace::{check_fits, read_trace, TraceError, MAX_TRACE_BYTES};
use spotfit_core::catalog::{Catalog, CatalogError};
use std::io::Read;
use std::io::Write;
use std::path::PathBuf;

/// Replay a job trace and price it under the batch baselines, spotfit, the Spare Cores rule
/// and the floor.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Trace in the normalized CSV format (see data/traces/README.md); `.csv.gz` is read too.
    pub trace: PathBuf,
    /// Print the report with a per-job breakdown as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also write a bar chart of the cost per policy as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Region whose catalog prices the run.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Billed start-up overhead of every new instance, seconds. An empty shared host is kept
    /// warm for max(start-up, 60 s) (the ski-rental break-even).
    #[arg(long, default_value_t = 60.0)]
    pub startup_s: f64,
    /// Also keep finished dedicated runs' instances warm for the next dedicated run (spotfit
    /// and the Spare Cores rule); off by default, see docs/simulator.md.
    #[arg(long)]
    pub warm_dedicated: bool,
    /// Make shared-host slots hard memory limits (cgroup memory.max) instead of reservations.
    #[arg(long)]
    pub hard_slot_memory: bool,
    /// Open a new shared host with the type ranking picks for the job that opens it, instead of
    /// the lowest price per slot over the shared class's current load.
    #[arg(long)]
    pub job_sized_shared_hosts: bool,
    /// Make shared-host slots hard CPU caps (cgroup cpu.max) instead of cpu.weight shares.
    #[arg(long)]
    pub hard_slot_cpu: bool,
    /// Ablation: size memory at the fixed 99% bound instead of pricing the OOM risk per type.
    #[arg(long)]
    pub fixed_headroom: bool,
    /// Ablation: the recorder does not say how many cores a run could use (no CPU censoring).
    #[arg(long)]
    pub no_censoring: bool,
    /// Ablation: no time price (max_slowdown unbounded).
    #[arg(long)]
    pub no_max_slowdown: bool,
    /// Ablation: once a job has history its request is forgotten (not taken as safe memory).
    #[arg(long)]
    pub forget_request: bool,
    /// Ablation: runs carry no input size (item 5, input-aware sizing, off).
    #[arg(long)]
    pub no_input_size: bool,
    /// Print spotfit's sizing decisions for one job name, run by run.
    #[arg(long, value_name = "JOB")]
    pub explain: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Trace { path: String, source: TraceError },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("--region: `{0}` is not in the catalog")]
    UnknownRegion(String),
    #[error("--startup-s: must be a number of seconds >= 0, got {0}")]
    BadStartup(f64),
    #[error("--plot {path}: {source}")]
    Plot { path: String, source: std::io::Error },
    #[error("writing the report: {0}")]
    Output(#[from] std::io::Error),
    #[error("encoding the report: {0}")]
    Json(#[from] serde_json::Error),
}

/// Runs the simulation and writes the report to `out`.
pub fn run(args: &SimulateArgs, out: &mut dyn Write) -> Result<Report, SimulateError> {
    if !(args.startup_s.is_finite() && args.startup_s >= 0.0) {
        return Err(SimulateError::BadStartup(args.startup_s));
    }
    let path = args.trace.display().to_string();
    let bytes = read_bounded(&args.trace).map_err(|source| SimulateError::Read {
        path: path.clone(),
        source,
    })?;
    let name = args
        .trace
        .file_name()
        .map_or(path.clone(), |n| n.to_string_lossy().into_owned());
    let trace = read_trace(&name, &bytes).map_err(|source| SimulateError::Trace {
        path: path.clone(),
        source,
    })?;
    let catalog = Catalog::embedded()?;
    if catalog.region(&args.region).is_empty() {
        return Err(SimulateError::UnknownRegion(args.region.clone()));
    }
    check_fits(&trace, catalog, &args.region).map_err(|source| SimulateError::Trace { path, source })?;
    let cfg = SimConfig {
        region: args.region.clone(),
        startup_s: args.startup_s,
        keepalive_s: crate::engine::keepalive_for(args.startup_s),
        warm_dedicated: args.warm_dedicated,
        soft_shared_memory: !args.hard_slot_memory,
        packed_shared_hosts: !args.job_sized_shared_hosts,
        soft_shared_cpu: !args.hard_slot_cpu,
        ablate_fixed_headroom: args.fixed_headroom,
        ablate_no_censoring: args.no_censoring,
        ablate_no_max_slowdown: args.no_max_slowdown,
        ablate_forget_request: args.forget_request,
        ablate_no_input: args.no_input_size,
        explain: args.explain.clone(),
    };
    let mut policies = simulate(&trace, catalog, &cfg);
    if !args.json {
        for p in &mut policies {
            p.per_job.clear();
        }
    }
    let report = Report::new(&trace, &cfg, policies);
    if let Some(plot) = &args.plot {
        std::fs::write(plot, crate::svg::render(&report)).map_err(|source| SimulateError::Plot {
            path: plot.display().to_string(),
            source,
        })?;
    }
    if args.json {
        serde_json::to_writer(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report.render_text())?;
        if let Some(job) = &args.explain {
            let lines: Vec<&String> = report.policies.iter().flat_map(|p| p.explain.iter()).collect();
            writeln!(out, "spotfit's decisions for {job} ({} attempts):", lines.len())?;
            for l in lines {
                writeln!(out, "  {l}")?;
            }
        }
    }
    Ok(report)
}

/// The file's bytes, refusing one larger than a trace may be even before inflating.
fn read_bounded(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_TRACE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_TRACE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_TRACE_BYTES} bytes; not a trace this simulator reads"
        )));
    }
    Ok(bytes)
}
