//! `spotfit run`: the embedded default end to end. Sizes the job from its profile, runs it here
//! as a child process under the monitor, stores its samples with the S3 key layout, records the
//! run and updates the profile in the embedded database, and recommends the instance for the
//! next run with its estimated cost.

use crate::output::{candidates_table, requirement_line, summary_table, Recommendation, RunOutput};
use crate::recommend_cmd::DEFAULT_REGION;
use anyhow::{bail, Context};
use clap::Args;
use futures_executor::block_on;
use indicatif::{ProgressBar, ProgressStyle};
use spotfit_core::catalog::Catalog;
use spotfit_core::cost::billed_cost;
use spotfit_core::ids::{new_run_id, RunKeys};
use spotfit_core::pipeline::record_run;
use spotfit_core::ports::{ObjectStore, ProfileStore};
use spotfit_core::ranking::{rank, Candidate, RankOptions};
use spotfit_core::run::{Placed, RunRecord};
use spotfit_core::sample::Sample;
use spotfit_core::sizing::size;
use spotfit_core::spec::{valid_job_name, JobSpec};
use spotfit_core::units::fmt_bytes;
use spotfit_local::{resolve_store_dir, LocalStore};
use std::io::{IsTerminal, Write};
use std::path::Path;
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
        let mut spec = JobSpec::from_json(&text).map_err(|e| anyhow::anyhow!("{first}: {e}"))?;
        if let Some(job) = &args.job {
            spec.name = job.clone();
            spec.validate().map_err(|e| anyhow::anyhow!("--job: {e}"))?;
        }
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

fn entropy() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

pub fn run(store_flag: Option<&Path>, args: RunArgs) -> anyhow::Result<i32> {
    if !(args.interval.is_finite() && args.interval >= 0.05 && args.interval <= 3600.0) {
        bail!(
            "--interval: must be between 0.05 and 3600 seconds (got {})",
            args.interval
        );
    }
    let spec = load_spec(&args)?;
    let dir = resolve_store_dir(store_flag)?;
    let store = LocalStore::open(&dir, spotfit_local::Access::ReadWrite)?;
    let catalog = Catalog::embedded().context("loading the instance catalog")?;
    let profile = block_on(ProfileStore::get(&store.db, &spec.name))?;

    let now = chrono::Utc::now().timestamp_millis();
    let req = size(&spec, profile.as_ref(), now);
    let opts = RankOptions {
        default_region: DEFAULT_REGION.into(),
        limit: args.top.max(1),
        ..Default::default()
    };
    let this_run_choice: Option<Candidate> = rank(catalog, &req, &spec.placement, spec.market, &opts)
        .into_iter()
        .next();

    let run_id = new_run_id(now, entropy());
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

    let command = spotfit_monitor::CommandSpec {
        argv: spec.command.clone(),
        env: spec.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        stdout_to_stderr: args.json,
        cwd: None,
    };
    // Samples take the same path as on EC2: spool file, then gzip'd NDJSON parts, the summary
    // and the exit marker through the ObjectStore port — here the filesystem store.
    let objects: Arc<dyn ObjectStore> = Arc::new(store.objects.clone());
    let mon_opts = spotfit_monitor::MonitorOptions {
        interval: Duration::from_secs_f64(args.interval),
        job: spec.name.clone(),
        run_id: run_id.clone(),
        spool_dir: Some(store.dir.join("spool").join(&run_id)),
        timeout: spec.timeout_s.map(Duration::from_secs),
        upload: Some(spotfit_monitor::UploadOptions {
            store: objects,
            every: UPLOAD_EVERY,
            runtime: None,
            finish_timeout: Duration::from_secs(30),
        }),
        ..Default::default()
    };
    let mut on_sample = |s: &Sample| {
        if let Some(pb) = &progress {
            pb.set_message(format!(
                "{} · CPU {:.2} cores · mem {} · {} procs",
                spec.name,
                s.cpu_cores,
                fmt_bytes(s.mem_bytes),
                s.processes
            ));
        }
    };
    let outcome = spotfit_monitor::run_command(&command, &mon_opts, &mut on_sample)
        .with_context(|| format!("running {:?}", spec.command))?;
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    let summary = outcome.summary.clone();
    let keys = RunKeys::new(&spec.name, outcome.started_at_ms, &run_id);
    if let Some(report) = &outcome.upload {
        if report.parts_pending > 0 || !report.summary_uploaded {
            bail!("run {run_id}: not every sample part reached the store ({report:?}); the spool keeps them");
        }
    }

    let placed = this_run_choice.as_ref().map(|c| Placed {
        instance_id: None,
        instance_type: c.instance_type.clone(),
        region: c.region.clone(),
        az: c.az.clone().unwrap_or_default(),
        market: c.market,
        price_per_hour: c.price_per_hour,
        local: true,
    });
    let record = RunRecord {
        run_id: run_id.clone(),
        job: spec.name.clone(),
        attempt: 1,
        status: summary.status,
        cost_usd: placed
            .as_ref()
            .map(|p| billed_cost(p.price_per_hour, summary.duration_s))
            .unwrap_or(0.0),
        placed,
        summary: Some(summary.clone()),
        requested_vcpu: req.vcpu,
        requested_memory_bytes: req.memory_bytes,
        heartbeat_ms: None,
    };
    block_on(
        store
            .objects
            .put(&keys.record(record.attempt), serde_json::to_vec(&record)?),
    )?;
    let profile = block_on(record_run(&store.db, &store.db, &record))?;

    // The next run's size and ranking, now that this run is in the profile.
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
}
