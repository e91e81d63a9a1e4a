//! `spotfit status RUN_ID [--json]`: where a run stands — its execution (on a stack), each
//! attempt as recorded, the latest attempt's instance, and the last sample it shipped.
//! Exit status: 0 the run succeeded, 1 it ended otherwise, 3 it is still running, 2 an error
//! (no such run among them).

use crate::output::table;
use crate::source::Source;
use anyhow::bail;
use clap::Args;
use serde::Serialize;
use spotfit_core::ids::valid_run_id;
use spotfit_core::run::RunRecord;
use spotfit_core::sample::Sample;
use spotfit_core::summary::RunStatus;
use spotfit_core::units::fmt_bytes;
use std::path::Path;

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub run_id: String,
    /// One JSON object: `run_id`, `job`, `execution` (null off a stack), `attempts` (the run
    /// records, oldest first), `last_sample` (null before the first part is shipped).
    #[arg(long)]
    pub json: bool,
}

/// Most attempts looked up (the state machine's retry budget is far below).
const MAX_ATTEMPTS: u32 = 64;

#[derive(Debug, Serialize)]
struct Status<'a> {
    run_id: &'a str,
    job: &'a str,
    execution: Option<Execution>,
    attempts: &'a [RunRecord],
    last_sample: Option<&'a Sample>,
}

#[derive(Debug, Clone, Serialize)]
struct Execution {
    arn: String,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<String>,
}

pub fn run(store: Option<&Path>, stack: Option<&str>, args: StatusArgs) -> anyhow::Result<i32> {
    if !valid_run_id(&args.run_id) {
        bail!(
            "RUN_ID {:?} is not a run id (letters, digits, '-', '_' or '.', at most 128)",
            args.run_id
        );
    }
    let src = Source::open(store, stack)?;
    let mut attempts = Vec::new();
    for n in 1..=MAX_ATTEMPTS {
        match src.block_on(src.runs().get(&args.run_id, n))? {
            Some(r) => attempts.push(r),
            None => break,
        }
    }
    let execution = execution(&src, &args.run_id)?;
    let Some(latest) = attempts.last() else {
        match &execution {
            // Started, but not yet sized and launched: no attempt row yet.
            Some(e) if e.status == "RUNNING" => {
                print_status(&args, "", &execution, &attempts, None)?;
                return Ok(3);
            }
            _ => bail!("no run {} in {}", args.run_id, src.describe()),
        }
    };
    let mut warnings = Vec::new();
    let samples = src.block_on(spotfit_report::read_samples(src.objects(), latest, &mut warnings))?;
    for w in &warnings {
        eprintln!("spotfit: warning: {w}");
    }
    print_status(&args, &latest.job, &execution, &attempts, samples.last())?;
    let running = match &execution {
        Some(e) => e.status == "RUNNING",
        None => latest.status == RunStatus::Running,
    };
    Ok(if running {
        3
    } else if latest.status == RunStatus::Succeeded {
        0
    } else {
        1
    })
}

/// The run's execution on a stack (its name is the run id); None off a stack, or when the
/// state machine has no execution of that name (a run started another way).
#[cfg(feature = "aws")]
fn execution(src: &Source, run_id: &str) -> anyhow::Result<Option<Execution>> {
    let Some(d) = src.deployed() else { return Ok(None) };
    let arn = crate::submit_cmd::execution_arn(&d.outputs.state_machine_arn, run_id)?;
    let sfn = spotfit_aws::SfnExecutions::new(aws_sdk_sfn::Client::new(&d.sdk));
    match src.block_on(sfn.describe(&arn)) {
        Ok(v) => Ok(Some(Execution {
            arn,
            status: v.status,
            error: v.error,
            cause: v.cause,
        })),
        Err(spotfit_core::ports::StoreError::Other { code, .. }) if code == "ExecutionDoesNotExist" => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(feature = "aws"))]
fn execution(_src: &Source, _run_id: &str) -> anyhow::Result<Option<Execution>> {
    Ok(None)
}

fn print_status(
    args: &StatusArgs,
    job: &str,
    execution: &Option<Execution>,
    attempts: &[RunRecord],
    last: Option<&Sample>,
) -> anyhow::Result<()> {
    if args.json {
        let s = Status {
            run_id: &args.run_id,
            job,
            execution: execution.clone(),
            attempts,
            last_sample: last,
        };
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    match execution {
        Some(e) => {
            print!("run {} (job {job}): execution {}", args.run_id, e.status);
            if let Some(err) = &e.error {
                print!(" — {err}: {}", e.cause.as_deref().unwrap_or(""));
            }
            println!();
        }
        None => println!("run {} (job {job})", args.run_id),
    }
    if attempts.is_empty() {
        println!("no attempt recorded yet (sizing and launch come first)");
        return Ok(());
    }
    let mut t = table(&[
        "attempt", "status", "instance", "market", "AZ", "duration", "cost", "basis",
    ]);
    for r in attempts {
        let p = r.placed.as_ref();
        t.add_row(vec![
            r.attempt.to_string(),
            r.status.as_str().to_string(),
            p.map(|p| {
                format!(
                    "{} {}",
                    p.instance_type,
                    p.instance_id.as_ref().map(|i| i.to_string()).unwrap_or_default()
                )
            })
            .unwrap_or_else(|| "-".into()),
            p.map_or("-", |p| p.market.as_str()).to_string(),
            p.map(|p| p.az.clone())
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| "-".into()),
            r.summary
                .as_ref()
                .map(|s| format!("{:.1} s", s.duration_s))
                .unwrap_or_else(|| "-".into()),
            format!("${:.6}", r.cost_usd),
            r.cost_basis.as_str().to_string(),
        ]);
    }
    println!("{t}");
    let now = chrono::Utc::now().timestamp_millis();
    match last {
        Some(s) => {
            print!(
                "last sample: {:.1} s ago, CPU {:.2} cores, memory {}, {} processes",
                (now - s.ts_ms) as f64 / 1000.0,
                s.cpu_cores,
                fmt_bytes(s.mem_bytes),
                s.processes
            );
            for g in &s.gpus {
                print!(
                    ", GPU {} {:.0} % ({})",
                    g.index,
                    g.util_pct,
                    fmt_bytes(g.mem_used_bytes)
                );
            }
            println!();
        }
        None => println!("no sample shipped yet for attempt {}", attempts.len()),
    }
    Ok(())
}
