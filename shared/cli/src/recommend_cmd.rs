//! `spotfit recommend`: the ranked instance table for a size given on the command line.

use crate::output::{candidates_table, requirement_line, Recommendation};
use anyhow::{bail, Context};
use clap::Args;
use spotfit_core::catalog::Catalog;
use spotfit_core::ranking::{rank, RankOptions};
use spotfit_core::sizing::{Requirement, SizeClass, SizingBasis};
use spotfit_core::spec::{Arch, Market, Placement};
use spotfit_core::units::parse_memory;

/// Region used for estimates when none is given: the one ranking and spec validation use.
pub use spotfit_core::ranking::DEFAULT_REGION;

#[derive(Debug, Args)]
pub struct RecommendArgs {
    /// vCPUs the job needs (it keeps this many cores busy).
    #[arg(long, value_name = "N")]
    pub vcpu: f64,
    /// Memory, e.g. 16GiB, 512MiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    pub memory: u64,
    /// GPUs.
    #[arg(long, default_value_t = 0)]
    pub gpu: u32,
    /// Memory per GPU, e.g. 24GiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    pub gpu_memory: Option<u64>,
    /// Region(s) to consider (repeatable).
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
    /// Architecture(s): x86_64, arm64 (repeatable).
    #[arg(long = "arch", value_name = "ARCH")]
    pub archs: Vec<String>,
    /// Market: spot, on-demand, spot-then-on-demand.
    #[arg(long, default_value = "spot")]
    pub market: String,
    /// Expected run time in seconds, for the cost column.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Rows to show.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn parse_market(s: &str) -> anyhow::Result<Market> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .with_context(|| format!("--market: {s:?} is not one of spot, on-demand, spot-then-on-demand"))
}

pub fn run(args: RecommendArgs) -> anyhow::Result<()> {
    if !(args.vcpu.is_finite() && args.vcpu > 0.0) {
        bail!("--vcpu: must be a positive number (got {})", args.vcpu);
    }
    if args.memory == 0 {
        bail!("--memory: must be more than 0");
    }
    let mut architectures = Vec::new();
    for a in &args.archs {
        architectures.push(Arch::parse(a).with_context(|| format!("--arch: {a:?} is not x86_64 or arm64"))?);
    }
    let market = parse_market(&args.market)?;
    let req = Requirement {
        vcpu: args.vcpu.ceil() as u32,
        cores_used: args.vcpu,
        memory_bytes: args.memory,
        gpu: args.gpu,
        gpu_memory_bytes: args.gpu_memory.unwrap_or(0),
        architectures: architectures.clone(),
        expected_duration_s: args.duration,
        class: SizeClass::Dedicated,
        basis: SizingBasis::Hints,
        notes: vec![],
        // --memory is taken as the instance's memory: what the user asks for is what is filtered on.
        job_memory_bytes: args.memory,
        max_price_per_hour: None,
        confidence_runs: 0.0,
        max_slowdown: spotfit_core::spec::DEFAULT_MAX_SLOWDOWN,
        memory_risk: None,
        oom_retry_factor: 1.5,
        cpu_need_unknown: false,
        shared_slot_cores: 0.0,
        container: false,
        disk_gib: None,
    };
    let placement = Placement {
        regions: args.regions.clone(),
        architectures,
        ..Default::default()
    };
    let catalog = Catalog::embedded().context("loading the instance catalog")?;
    let opts = RankOptions {
        default_region: DEFAULT_REGION.into(),
        limit: args.top,
        ..Default::default()
    };
    let cands = rank(catalog, &req, &placement, market, &opts);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&Recommendation {
                requirement: &req,
                candidates: &cands
            })?
        );
        return Ok(());
    }
    if cands.is_empty() {
        bail!(
            "no instance type fits {} in {:?}",
            requirement_line(&req),
            if args.regions.is_empty() {
                vec![DEFAULT_REGION.to_string()]
            } else {
                args.regions
            }
        );
    }
    println!("{}", requirement_line(&req));
    println!("{}", candidates_table(&cands));
    Ok(())
}
