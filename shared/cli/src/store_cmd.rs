//! `spotfit profile` and `spotfit runs`: what the local store holds.

use crate::output::{requirement_line, table};
use crate::source::Source;
use anyhow::Context;
use clap::Args;
use comfy_table::Cell;
use serde::Serialize;
use spotfit_core::profile::{JobProfile, Sketch};
use spotfit_core::sizing::{size, Requirement};
use spotfit_core::spec::JobSpec;
use spotfit_core::summary::RunStatus;
use spotfit_core::units::{fmt_bytes, gib_to_bytes};
use spotfit_local::{resolve_store_dir, LocalStore};
use std::path::Path;

#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// Job name.
    pub name: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only this job's runs.
    pub name: Option<String>,
    /// Most rows, newest first (0 = all).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

pub fn open_existing(flag: Option<&Path>) -> anyhow::Result<LocalStore> {
    let dir = resolve_store_dir(flag)?;
    Ok(LocalStore::open(&dir, spotfit_local::Access::ReadOnly)?)
}

/// `profile --json` output.
#[derive(Debug, Serialize)]
struct ProfileOutput<'a> {
    profile: &'a JobProfile,
    /// What the next run would be sized to, from this profile alone (no spec bounds).
    next_requirement: Requirement,
}

pub fn profile(store: Option<&Path>, stack: Option<&str>, args: ProfileArgs) -> anyhow::Result<()> {
    let src = Source::open(store, stack)?;
    let p = src
        .block_on(src.profiles().get(&args.name))?
        .with_context(|| format!("no profile for job {:?} in {}", args.name, src.describe()))?;
    let spec = JobSpec::for_command(&args.name, vec!["-".into()]);
    let next = size(&spec, Some(&p), chrono::Utc::now().timestamp_millis());
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&ProfileOutput {
                profile: &p,
                next_requirement: next
            })?
        );
        return Ok(());
    }
    println!(
        "job {}: {} runs ({} succeeded, {} OOM-killed, {} interrupted), version {}",
        p.job, p.runs, p.succeeded, p.oom_kills, p.interruptions, p.version
    );
    let mut t = table(&["per run", "p50", "p95", "max"]);
    let q = |s: &Sketch, f: &dyn Fn(f64) -> String| {
        vec![
            s.quantile(0.5).map(f).unwrap_or_else(|| "-".into()),
            s.quantile(0.95).map(f).unwrap_or_else(|| "-".into()),
            s.max().map(f).unwrap_or_else(|| "-".into()),
        ]
    };
    let cores = |v: f64| format!("{v:.2}");
    let gib = |v: f64| fmt_bytes(gib_to_bytes(v));
    let secs = |v: f64| format!("{v:.1} s");
    for (name, sk, f) in [
        ("CPU avg (cores)", &p.cpu_avg_cores, &cores as &dyn Fn(f64) -> String),
        ("CPU p95 (cores)", &p.cpu_p95_cores, &cores),
        ("CPU max (cores)", &p.cpu_max_cores, &cores),
        ("memory max", &p.mem_max_gib, &gib),
        ("duration", &p.duration_s, &secs),
    ] {
        let mut row = vec![Cell::new(name)];
        row.extend(q(sk, f).into_iter().map(Cell::new));
        t.add_row(row);
    }
    println!("{t}");
    println!("next run: {}", requirement_line(&next));
    Ok(())
}

pub fn runs(store: Option<&Path>, stack: Option<&str>, args: RunsArgs) -> anyhow::Result<()> {
    let src = Source::open(store, stack)?;
    let runs = src.block_on(src.runs().list(args.name.as_deref(), args.limit))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(());
    }
    let mut t = table(&[
        "run id",
        "job",
        "attempt",
        "status",
        "exit",
        "duration",
        "CPU avg/max",
        "mem max",
        "instance",
        "cost",
    ]);
    for r in &runs {
        let s = r.summary.as_ref();
        t.add_row(vec![
            r.run_id.clone(),
            r.job.clone(),
            r.attempt.to_string(),
            r.status.as_str().to_string(),
            s.map(|s| match (s.exit.code, s.exit.signal) {
                (Some(c), _) => c.to_string(),
                (None, Some(sig)) => format!("signal {sig}"),
                _ => "-".into(),
            })
            .unwrap_or_else(|| "-".into()),
            s.map(|s| format!("{:.1} s", s.duration_s))
                .unwrap_or_else(|| "-".into()),
            s.map(|s| format!("{:.2}/{:.2}", s.cpu.avg, s.cpu.max))
                .unwrap_or_else(|| "-".into()),
            s.map(|s| fmt_bytes(s.mem_max_bytes)).unwrap_or_else(|| "-".into()),
            r.placed
                .as_ref()
                .map(|p| format!("{}{}", p.instance_type, if p.local { " (est.)" } else { "" }))
                .unwrap_or_else(|| "-".into()),
            format!("${:.6}", r.cost_usd),
        ]);
    }
    println!("{t}");
    // What a run that did not succeed said last (the record keeps a few KiB of each stream;
    // `spotfit logs RUN_ID` has all of it).
    for r in runs.iter().filter(|r| r.status != RunStatus::Succeeded) {
        let Some(s) = &r.summary else { continue };
        let (name, tail) = if s.stderr_tail.trim().is_empty() {
            ("stdout", &s.stdout_tail)
        } else {
            ("stderr", &s.stderr_tail)
        };
        if tail.trim().is_empty() {
            continue;
        }
        println!(
            "{} attempt {} ({}), last lines of {name}:",
            r.run_id,
            r.attempt,
            r.status.as_str()
        );
        for line in last_lines(tail, FAILED_TAIL_LINES) {
            println!("  | {line}");
        }
    }
    Ok(())
}

/// Lines of a failed run's output shown under `spotfit runs`.
const FAILED_TAIL_LINES: usize = 5;

/// The last `n` non-empty lines of `text`.
fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().rev().filter(|l| !l.trim().is_empty()).take(n).collect();
    lines.reverse();
    lines
}
