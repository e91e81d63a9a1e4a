//! `spotfit logs RUN_ID [--attempt N] [--follow]`: the job's stdout and stderr as the agent
//! shipped them (`logs/job=<job>/dt=<day>/run=<run_id>/part-<n>.log.gz`, see
//! docs/notes/monitor.md), read through the `ObjectStore` port: the local store's objects for
//! `spotfit run`, or `--from s3://bucket/prefix` for runs on AWS (the S3 store is opened by
//! `monitor_cmd`'s few lines, only in builds with the `aws` feature). Stdout records go to
//! stdout and stderr records to stderr, in the order the agent read them.

use anyhow::{bail, Context};
use clap::Args;
use spotfit_core::ids::{day_of, valid_run_id, RunKeys};
use spotfit_core::logs::{Record, Stream};
use spotfit_core::pipeline::attempt_run_id;
use spotfit_core::ports::ObjectStore;
use spotfit_monitor::cli::UploadUrl;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The run id (`spotfit run` / `spotfit submit` printed it; for a bare `spotfit monitor`
    /// run, its --run-id).
    pub run_id: String,
    /// The attempt (a retried run has one agent run per attempt).
    #[arg(long, default_value_t = 1)]
    pub attempt: u32,
    /// Keep polling for new parts until the run's exit marker appears.
    #[arg(long)]
    pub follow: bool,
    /// Seconds between polls with --follow.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub poll: f64,
    /// Where the run's objects are: `s3://bucket/prefix` (AWS runs) or `file:///dir` (the
    /// `--upload` of `spotfit monitor`). Default: the local store.
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    /// The run's job, when no run record names it (a bare `spotfit monitor` run): narrows the
    /// search for its keys to that job's.
    #[arg(long)]
    pub job: Option<String>,
    /// Only this stream, to stdout (byte for byte, e.g. to a file).
    #[arg(long, value_parser = ["stdout", "stderr"])]
    pub stream: Option<String>,
}

/// The store and, when its futures need one, the runtime to drive them.
type Opened = (Arc<dyn ObjectStore>, Option<tokio::runtime::Handle>);

pub fn run(store_flag: Option<&Path>, stack: Option<&str>, args: LogsArgs) -> anyhow::Result<i32> {
    if !valid_run_id(&args.run_id) {
        bail!(
            "RUN_ID {:?} is not a run id (letters, digits, '-', '_' or '.', at most 128)",
            args.run_id
        );
    }
    if args.attempt == 0 {
        bail!("--attempt starts at 1");
    }
    if !(args.poll.is_finite() && args.poll > 0.0 && args.poll <= 3600.0) {
        bail!("--poll must be a positive number of seconds (at most 3600)");
    }
    if let Some(j) = &args.job {
        if !valid_run_id(j) {
            bail!("--job {j:?} is not a job name");
        }
    }
    let agent_run = attempt_run_id(&args.run_id, args.attempt);
    // Keep the S3 runtime (if any) alive as long as the store is used.
    let s3;
    let _source;
    let (store, handle, hint, where_) = match args.from.as_deref() {
        Some(url) => {
            let u = UploadUrl::parse(url)?;
            s3 = crate::monitor_cmd::S3::for_upload(Some(&u), "`spotfit logs --from s3://…`")?;
            let (store, handle): Opened = match &u {
                UploadUrl::Dir(dir) => (Arc::new(spotfit_local::FsObjectStore::new(dir.clone())), None),
                UploadUrl::S3 { bucket, prefix } => s3.open(bucket, prefix)?,
            };
            (store, handle, None, url.to_string())
        }
        None => {
            let src = crate::source::Source::open(store_flag, stack)?;
            let record = src.block_on(src.runs().get(&args.run_id, args.attempt))?;
            if record.is_none() && args.job.is_none() {
                let any = src.block_on(src.runs().get(&args.run_id, 1))?;
                if args.attempt > 1 && any.is_some() {
                    bail!(
                        "run {} has no attempt {} in {}",
                        args.run_id,
                        args.attempt,
                        src.describe()
                    );
                }
            }
            let hint = record.map(|r| Hint {
                job: r.job.clone(),
                days: match &r.summary {
                    Some(s) => vec![day_of(s.started_at_ms)],
                    // Still running: the agent names its keys by its start day, the launch
                    // day or the next (it boots across midnight at most).
                    None => r
                        .heartbeat_ms
                        .map(|t| vec![day_of(t), day_of(t + 86_400_000)])
                        .unwrap_or_default(),
                },
            });
            let (objects, handle, where_) = (src.objects_shared(), src.handle(), src.describe());
            _source = src;
            (objects, handle, hint, where_)
        }
    };
    let block = Block(handle);
    let job = args.job.clone().or_else(|| hint.as_ref().map(|h| h.job.clone()));
    let days = hint.map(|h| h.days).unwrap_or_default();
    let mut keys = block.on(locate(store.as_ref(), &agent_run, job.as_deref(), &days))?;
    // Following a run that has shipped nothing yet (its first part comes after --upload-every,
    // later still through an outage): wait for it to appear. Without --follow it is an error.
    if keys.is_none() && args.follow {
        if std::io::stderr().is_terminal() {
            eprintln!("spotfit: waiting for run {} to appear in {where_} …", args.run_id);
        }
        while keys.is_none() {
            std::thread::sleep(Duration::from_secs_f64(args.poll));
            keys = block.on(locate(store.as_ref(), &agent_run, job.as_deref(), &days))?;
        }
    }
    let Some(keys) = keys else {
        bail!(
            "no run {} (attempt {}) in {where_}: no logs, summary or exit marker for agent run {agent_run}{}",
            args.run_id,
            args.attempt,
            if job.is_none() && args.from.is_some() {
                " (pass --job to search one job's keys)"
            } else {
                ""
            }
        );
    };
    let only = args
        .stream
        .as_deref()
        .map(|s| if s == "stdout" { Stream::Stdout } else { Stream::Stderr });
    let mut printed = 0usize;
    loop {
        // The marker first: every part is in the store before the agent writes it, so the parts
        // listed after seeing it are all of them.
        let ended = block.on(store.get(&keys.exit_marker()))?.is_some();
        let parts = block.on(list_parts(store.as_ref(), &keys))?;
        for key in parts.iter().skip(printed) {
            let bytes = block
                .on(store.get(key))?
                .with_context(|| format!("{key} was listed but is gone"))?;
            let records = spotfit_monitor::logs::read_part(&bytes).with_context(|| format!("reading {key}"))?;
            print_records(&records, only)?;
        }
        printed = printed.max(parts.len());
        if ended || !args.follow {
            if printed == 0 && ended {
                eprintln!("spotfit: run {} wrote nothing to stdout or stderr", args.run_id);
            }
            return Ok(0);
        }
        std::thread::sleep(Duration::from_secs_f64(args.poll));
    }
}

/// Drives the store's futures: on the S3 SDK's runtime when it has one.
struct Block(Option<tokio::runtime::Handle>);

impl Block {
    fn on<F: std::future::Future>(&self, fut: F) -> F::Output {
        match &self.0 {
            Some(h) => h.block_on(fut),
            None => futures_executor::block_on(fut),
        }
    }
}

/// What the run record says about where the agent's keys are.
struct Hint {
    job: String,
    days: Vec<String>,
}

/// The keys of agent run `run`: from the record's job and days when known, else found by
/// listing (`logs/` or `logs/job=<job>/`, then `runs/…` for a run that wrote no output).
async fn locate(
    store: &dyn ObjectStore,
    run: &str,
    job: Option<&str>,
    days: &[String],
) -> anyhow::Result<Option<RunKeys>> {
    if let Some(j) = job {
        for day in days {
            let k = RunKeys {
                job: j.to_string(),
                day: day.clone(),
                run_id: run.to_string(),
            };
            let has_logs = !store.list(&k.logs_prefix()).await?.is_empty();
            if has_logs || store.get(&k.summary()).await?.is_some() || store.get(&k.exit_marker()).await?.is_some() {
                return Ok(Some(k));
            }
        }
        if let Some(d) = days.first() {
            // Known from the record but nothing shipped yet: follow those keys.
            return Ok(Some(RunKeys {
                job: j.to_string(),
                day: d.clone(),
                run_id: run.to_string(),
            }));
        }
    }
    let scope = |root: &str| match job {
        Some(j) => format!("{root}job={j}/"),
        None => root.to_string(),
    };
    let run_dir = format!("/run={run}/");
    for key in store.list(&scope("logs/")).await? {
        if key.contains(&run_dir) {
            return Ok(parse_key(&key, "logs/"));
        }
    }
    let (json, exit) = (format!("/{run}.json"), format!("/{run}.exit"));
    for key in store.list(&scope("runs/")).await? {
        if key.ends_with(&json) || key.ends_with(&exit) {
            return Ok(parse_key(&key, "runs/"));
        }
    }
    Ok(None)
}

/// Job, day and run of a `logs/job=J/dt=D/run=R/…` or `runs/job=J/dt=D/R.json` key.
fn parse_key(key: &str, root: &str) -> Option<RunKeys> {
    let mut it = key.strip_prefix(root)?.split('/');
    let job = it.next()?.strip_prefix("job=")?;
    let day = it.next()?.strip_prefix("dt=")?;
    let last = it.next()?;
    let run = match root {
        "logs/" => last.strip_prefix("run=")?,
        _ => last.rsplit_once('.')?.0,
    };
    Some(RunKeys {
        job: job.to_string(),
        day: day.to_string(),
        run_id: run.to_string(),
    })
}

/// The run's log parts in part order.
async fn list_parts(store: &dyn ObjectStore, keys: &RunKeys) -> anyhow::Result<Vec<String>> {
    Ok(keys.log_parts_in_order(store.list(&keys.logs_prefix()).await?))
}

fn print_records(records: &[Record], only: Option<Stream>) -> anyhow::Result<()> {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    for r in records {
        match (only, r.stream) {
            (Some(s), got) if s != got => {}
            (Some(_), _) | (None, Stream::Stdout) => out.write_all(&r.bytes)?,
            (None, Stream::Stderr) => {
                out.flush()?; // keep the arrival order on a terminal showing both
                err.write_all(&r.bytes)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_parsed_back_from_either_root() {
        let k = RunKeys::new("etl", 1_795_651_200_000, "r1");
        assert_eq!(parse_key(&k.log_part(3), "logs/"), Some(k.clone()));
        assert_eq!(parse_key(&k.summary(), "runs/"), Some(k.clone()));
        assert_eq!(parse_key(&k.exit_marker(), "runs/"), Some(k));
        assert_eq!(parse_key("logs/x", "logs/"), None);
    }
}
