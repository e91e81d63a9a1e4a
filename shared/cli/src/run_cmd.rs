//! `spotfit run`: the embedded default end to end, through the same pipeline steps as an
//! execution on AWS ([`spotfit_core::drive`]): size from the profile, rank, "launch" on the
//! local launcher (the job runs here under the monitor, its samples, summary and exit marker
//! stored with the S3 key layout), check, terminate, record (run row, profile update, cost by
//! the pipeline's rule), with the OOM and interruption retries; then recommend the instance for
//! the next run with its estimated cost.

use crate::output::{candidates_table, requirement_line, summary_table, Recommendation, RunOutput};
use crate::recommend_cmd::DEFAULT_REGION;
use anyhow::{bail, Context};
use clap::Args;
use futures_executor::block_on;
use indicatif::{ProgressBar, ProgressStyle};
use signal_hook::consts::{SIGINT, SIGTERM};
use spotfit_core::catalog::Catalog;
use spotfit_core::drive::{drive, DriveOptions, DrivePorts, Pause};
use spotfit_core::ids::{fresh_run_id, RunKeys};
use spotfit_core::pipeline::MAX_CANDIDATES;
use spotfit_core::ports::{ProfileStore, RunStore, SystemClock};
use spotfit_core::ranking::{rank, RankOptions};
use spotfit_core::sample::Sample;
use spotfit_core::sizing::{size, Requirement};
use spotfit_core::spec::{valid_job_name, JobSpec};
use spotfit_core::units::fmt_bytes;
use spotfit_local::launcher::OnSample;
use spotfit_local::{resolve_store_dir, LocalLauncher, LocalRunSettings, LocalStore};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a part of samples is cut and stored while the job runs.
pub const UPLOAD_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Job name (the profile key). Default: derived from the command (program and script names).
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    /// Seconds between samples; fractions allowed (0.5).
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub interval: f64,
    /// Print the run summary and the recommendation as one JSON object on stdout; the job's own
    /// stdout then goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// Rows of the recommendation.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// `JOB.json`, or the command and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "JOB.json | -- CMD ARGS"
    )]
    pub command: Vec<String>,
}

/// A job name from argv: program basename plus the first non-flag argument's basename
/// (`python3 train.py` → `python3-train.py`), reduced to `[a-z0-9._-]`, at most 64 characters.
pub fn job_name_from_argv(argv: &[String]) -> String {
    let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    let mut parts = vec![base(argv.first().map(String::as_str).unwrap_or("job"))];
    if let Some(arg) = argv.iter().skip(1).find(|a| !a.starts_with('-') && !a.is_empty()) {
        parts.push(base(arg));
    }
    let mut name: String = parts
        .join("-")
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(spotfit_core::spec::MAX_NAME_LEN)
        .collect();
    if !valid_job_name(&name) {
        name = "job".into();
    }
    name
}

fn load_spec(args: &RunArgs) -> anyhow::Result<JobSpec> {
    let first = &args.command[0];
    if args.command.len() == 1 && first.ends_with(".json") && Path::new(first).is_file() {
        let text = std::fs::read_to_string(first).with_context(|| format!("reading {first}"))?;
        // Parsed, named by --job, then validated once: the rules (and the catalog walk) run on
        // the spec that will run, whose name is --job's when given.
        let mut spec = JobSpec::parse_json(&text).map_err(|e| anyhow::anyhow!("{first}: {e}"))?;
        if let Some(job) = &args.job {
            spec.name = job.clone();
        }
        spec.validate().map_err(|e| match &args.job {
            Some(job) => anyhow::anyhow!("{first} with --job {job:?}: {e}"),
            None => anyhow::anyhow!("{first}: {e}"),
        })?;
        if spec.image.is_some() {
            bail!("{first}: `image` jobs need a container runtime; the embedded default runs `command` as a process");
        }
        return Ok(spec);
    }
    let name = args.job.clone().unwrap_or_else(|| job_name_from_argv(&args.command));
    let spec = JobSpec::for_command(&name, args.command.clone());
    spec.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(spec)
}

/// The local pause between checks: a thread sleep (the ports are driven on this thread).
struct Sleep;

#[async_trait::async_trait]
impl Pause for Sleep {
    async fn pause(&self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// A program that is neither a path nor on `PATH` cannot be run: say so before anything is
/// launched, as a shell would, instead of retrying a launch that cannot work.
fn check_program(argv: &[String]) -> anyhow::Result<()> {
    let Some(prog) = argv.first() else {
        bail!("command: empty")
    };
    if prog.contains('/') {
        return Ok(());
    }
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false);
    if !found {
        bail!("command[0]: {prog:?} is not on PATH");
    }
    Ok(())
}

pub fn run(store_flag: Option<&Path>, args: RunArgs) -> anyhow::Result<i32> {
    if !(args.interval.is_finite() && args.interval >= 0.05 && args.interval <= 3600.0) {
        bail!(
            "--interval: must be between 0.05 and 3600 seconds (got {})",
            args.interval
        );
    }
    let spec = load_spec(&args)?;
    check_program(&spec.command)?;
    let dir = resolve_store_dir(store_flag)?;
    let store = LocalStore::open(&dir, spotfit_local::Access::ReadWrite)?;
    let catalog = Catalog::embedded().context("loading the instance catalog")?;

    let run_id = fresh_run_id(chrono::Utc::now().timestamp_millis());
    let interactive = !args.json && std::io::stdout().is_terminal();
    let progress = interactive.then(|| {
        let pb = ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        pb.enable_steady_tick(Duration::from_millis(200));
        pb
    });
    let on_sample: Option<OnSample> = progress.clone().map(|pb| {
        let name = spec.name.clone();
        Arc::new(move |s: &Sample| {
            pb.set_message(format!(
                "{name} · CPU {:.2} cores · mem {} · {} procs",
                s.cpu_cores,
                fmt_bytes(s.mem_bytes),
                s.processes
            ))
        }) as OnSample
    });

    // The same steps as an execution on AWS (size, launch, check, terminate, record, with the
    // OOM and interruption retries), over the embedded store and the local launcher: the
    // "instance" is the job run here under the monitor, writing samples, summary and exit
    // marker through the S3 key layout into the store's object directory.
    // Ctrl-C or SIGTERM: start no further attempt, and stop the job in flight (the launcher
    // cancels it at the next check, ≤ 100 ms); it is still recorded, as interrupted. A second
    // signal exits at once (the job, in our process group for Ctrl-C, has had its own SIGINT).
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()))
            .context("installing the Ctrl-C handler")?;
    }
    let launcher = LocalLauncher::new(
        Arc::new(store.objects.clone()),
        store.dir.join("spool"),
        LocalRunSettings {
            interval: Duration::from_secs_f64(args.interval),
            upload_every: UPLOAD_EVERY,
            stdout_to_stderr: args.json,
            on_sample,
            stop: Some(stop.clone()),
        },
    );
    let ports = DrivePorts {
        profiles: &store.db,
        runs: &store.db,
        objects: &store.objects,
        capacity: &store.db,
        launcher: &launcher,
        clock: &SystemClock,
        pause: &Sleep,
    };
    let rank_opts = RankOptions {
        default_region: DEFAULT_REGION.into(),
        limit: MAX_CANDIDATES,
        ..Default::default()
    };
    let ranker = |req: &Requirement, spec: &JobSpec| rank(catalog, req, &spec.placement, spec.market, &rank_opts);
    let drive_opts = DriveOptions {
        // A local check is a few file reads: check often, so the run ends when the job does.
        poll_ms: 100,
        backoff_ms: 200,
        max_backoff_ms: 5_000,
        stop: Some(stop.clone()),
        ..Default::default()
    };
    let driven = block_on(drive(
        ports,
        ranker,
        serde_json::to_value(&spec)?,
        Some(run_id.clone()),
        &drive_opts,
    ));
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    let state = match driven {
        Ok(state) => state,
        Err(f) => {
            let why = f
                .state
                .as_ref()
                .and_then(|s| s.instance.as_ref())
                .and_then(|i| launcher.agent_error(&i.instance_id));
            match why {
                Some(agent) => bail!("run {run_id}: {} ({agent})", f.error),
                None => bail!("run {run_id}: {}", f.error),
            }
        }
    };
    let record = block_on(RunStore::get(&store.db, &state.run_id, state.attempt))?
        .with_context(|| format!("run {run_id}: attempt {} was not recorded", state.attempt))?;
    let Some(summary) = record.summary.clone() else {
        let why = state
            .instance
            .as_ref()
            .and_then(|i| launcher.agent_error(&i.instance_id))
            .or_else(|| state.check.as_ref().map(|c| c.reason.clone()))
            .unwrap_or_default();
        bail!(
            "run {run_id}: attempt {} ended {} without a run summary: {why}",
            record.attempt,
            record.status.as_str()
        );
    };
    if stop.load(Ordering::SeqCst) {
        eprintln!(
            "run {run_id}: stopped by a signal during attempt {}; no further attempt",
            state.attempt
        );
    }
    if state.attempt > 1 {
        let earlier: Vec<String> = state
            .history
            .iter()
            .filter(|h| h.attempt < state.attempt)
            .map(|h| format!("attempt {} {} (${:.6})", h.attempt, h.status.as_str(), h.cost_usd))
            .collect();
        eprintln!("run {run_id}: {}; retried", earlier.join(", "));
    }
    let keys = RunKeys::new(&spec.name, summary.started_at_ms, &summary.run_id);
    let profile = block_on(ProfileStore::get(&store.db, &spec.name))?;

    // The next run's size and ranking, now that this run is in the profile.
    let opts = RankOptions {
        default_region: DEFAULT_REGION.into(),
        limit: args.top.max(1),
        ..Default::default()
    };
    let next_req = size(&spec, profile.as_ref(), chrono::Utc::now().timestamp_millis());
    let cands = rank(catalog, &next_req, &spec.placement, spec.market, &opts);

    if args.json {
        let out = RunOutput {
            run: &record,
            summary: &summary,
            samples_prefix: store.objects.root().join(keys.samples_prefix()).display().to_string(),
            recommendation: Recommendation {
                requirement: &next_req,
                candidates: &cands,
            },
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let mut err = std::io::stderr().lock();
        writeln!(err)?;
        writeln!(err, "{}", summary_table(&summary, &record))?;
        writeln!(
            err,
            "samples: {}",
            store.objects.root().join(keys.samples_prefix()).display()
        )?;
        writeln!(err, "logs: spotfit logs {}", record.run_id)?;
        writeln!(err, "next run of {}: {}", spec.name, requirement_line(&next_req))?;
        if cands.is_empty() {
            writeln!(
                err,
                "no instance type in the catalog fits this job's bounds and placement"
            )?;
        } else {
            writeln!(err, "{}", candidates_table(&cands))?;
        }
    }
    Ok(summary.exit.shell_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_from_argv() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            job_name_from_argv(&v(&["python3", "-u", "/opt/Train Model.py"])),
            "python3-train_model.py"
        );
        assert_eq!(job_name_from_argv(&v(&["/usr/bin/Rscript"])), "rscript");
        assert!(valid_job_name(&job_name_from_argv(&v(&["x".repeat(200).as_str()]))));
    }

    fn run_args(job: Option<&str>, file: &Path) -> RunArgs {
        RunArgs {
            job: job.map(str::to_string),
            interval: 1.0,
            json: false,
            top: 5,
            command: vec![file.to_string_lossy().into_owned()],
        }
    }

    #[test]
    fn a_job_file_is_validated_with_the_name_that_will_run() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("job.json");
        // GIVEN a spec file whose own name breaks the rules
        std::fs::write(&file, r#"{"name":"Not A Name","command":["true"]}"#).unwrap();
        // WHEN --job names it THEN it is the name checked and kept: the file's is never run
        assert_eq!(
            load_spec(&run_args(Some("etl.daily"), &file)).unwrap().name,
            "etl.daily"
        );
        // … and without --job the file's name is refused
        let e = load_spec(&run_args(None, &file)).unwrap_err().to_string();
        assert!(e.contains("job.json: invalid job spec: name:"), "{e}");
        // AND a bad --job is refused, naming --job and the field
        std::fs::write(&file, r#"{"name":"ok","command":["true"]}"#).unwrap();
        let e = load_spec(&run_args(Some("-rf"), &file)).unwrap_err().to_string();
        assert!(e.contains("with --job \"-rf\"") && e.contains("name:"), "{e}");
        // AND a rule the file breaks is still reported, once
        std::fs::write(&file, r#"{"name":"ok","command":["true"],"timeout_s":0}"#).unwrap();
        let e = load_spec(&run_args(Some("etl"), &file)).unwrap_err().to_string();
        assert_eq!(e.matches("timeout_s").count(), 1, "{e}");
    }
}
