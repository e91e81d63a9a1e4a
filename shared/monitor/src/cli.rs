//! The `spotfit monitor` command line (feature `cli`): arguments, sample output, the summary
//! table. The binary wires the object store for `--upload` (S3 or a local directory), so this
//! crate stays free of the AWS SDK.

use crate::{monitor, CommandSpec, ImdsOptions, MonitorError, MonitorOptions, Outcome, Target, UploadOptions};
use clap::Args;
use spotfit_core::ports::{ObjectStore, StoreError};
use spotfit_core::secret_ref::SecretRef;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `spotfit monitor [OPTIONS] (-- CMD ARGS... | --pid PID | --cgroup PATH | --docker ID)`
#[derive(Debug, Clone, Args)]
pub struct MonitorArgs {
    /// Seconds between samples (fractions allowed).
    #[arg(long, default_value = "5", value_name = "SECS")]
    pub interval: f64,
    /// Write samples as NDJSON, one per line; `-` for stdout (the job's stdout then goes to stderr).
    #[arg(long, value_name = "FILE")]
    pub output: Option<String>,
    /// Job name (the profile key). Default: the command's file name, or `adhoc`.
    #[arg(long)]
    pub job: Option<String>,
    /// Run id. Default: a new sortable id.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Ship samples, summary and exit marker to `s3://bucket/prefix` (or `file:///dir`).
    #[arg(long, value_name = "URL")]
    pub upload: Option<String>,
    /// Seconds between uploaded parts.
    #[arg(long, default_value = "60", value_name = "SECS")]
    pub upload_every: f64,
    /// Write the run summary as JSON here.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Spool directory (default: a directory per run under the temp dir).
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Attach to a running process and its descendants.
    #[arg(long, conflicts_with_all = ["cgroup", "docker", "command"])]
    pub pid: Option<u32>,
    /// Track a cgroup (v2 dir, v1 controller dir, or a /proc/<pid>/cgroup path).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["docker", "command"])]
    pub cgroup: Option<String>,
    /// Track a Docker container through its cgroup (id or unique prefix).
    #[arg(long, value_name = "ID", conflicts_with = "command")]
    pub docker: Option<String>,
    /// Read PSS every Nth sample (0: about once a minute).
    #[arg(long, default_value = "0", value_name = "N")]
    pub pss_every: u32,
    /// Do not load NVML even if a GPU driver is present.
    #[arg(long)]
    pub no_gpu: bool,
    /// Spot interruption polling: `auto` (on when uploading to S3), `off`, or an IMDS URL.
    /// (`SPOTFIT_IMDS` lets tests that run the real user data off EC2 keep it off the network.)
    #[arg(long, env = "SPOTFIT_IMDS", default_value = "auto", value_name = "auto|off|URL")]
    pub imds: String,
    /// Seconds the end of a run waits for the last uploads (the spool keeps the rest).
    #[arg(long, default_value = "120", value_name = "SECS")]
    pub finish_timeout: f64,
    /// Ship what a stopped agent left in this spool directory (every part again, then the
    /// summary and exit marker) to `--upload`, and exit. Safe to repeat.
    #[arg(long, value_name = "DIR", requires = "upload", conflicts_with_all = ["pid", "cgroup", "docker", "command"])]
    pub resume_spool: Option<PathBuf>,
    /// The job's environment, for the job only: a file of NUL-separated NAME=VALUE entries
    /// (what the instance user data writes). The agent itself never runs with it.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["pid", "cgroup", "docker", "resume_spool"])]
    pub job_env: Option<PathBuf>,
    /// A variable of the job's environment read from a secret store at start:
    /// `NAME=ssm:PARAMETER` (SSM Parameter Store, SecureStrings decrypted) or
    /// `NAME=secretsmanager:ID` (Secrets Manager). Repeatable. The value goes to the job alone
    /// (never to argv, the agent's own environment, samples, logs or the summary); only
    /// `spotfit-agent` reads secrets (with its instance role).
    #[arg(long = "env-from", value_name = "NAME=REF", requires = "command")]
    pub env_from: Vec<String>,
    /// Sample the used space of the filesystem holding PATH with each sample (repeatable; each
    /// filesystem counted once): the peak of the sum is the summary's `disk_used_max_bytes`,
    /// from which sizing learns the job's disk.
    #[arg(long = "disk", value_name = "PATH")]
    pub disk: Vec<PathBuf>,
    /// The job's scratch directory (the instance store the user data mounted): the job gets
    /// `SPOTFIT_SCRATCH=DIR` and `TMPDIR=DIR/tmp` (unless its env sets TMPDIR), a container gets
    /// DIR mounted at the same path, and DIR's filesystem is sampled as with `--disk`.
    #[arg(long, value_name = "DIR", requires = "command")]
    pub scratch: Option<PathBuf>,
    /// Run the command inside this container image (an image reference, given to the runtime
    /// after `--`, in its own network namespace).
    #[arg(long, value_name = "IMAGE", requires = "command")]
    pub image: Option<String>,
    /// The container runtime's command for `--image`.
    #[arg(long, default_value = crate::container::DEFAULT_RUNTIME, value_name = "CMD")]
    pub container_runtime: String,
    /// The job's memory limit: bytes, or with a k/m/g suffix (KiB, MiB, GiB). A container gets
    /// it as `--memory` and `--memory-swap`; a command runs in a memory cgroup of that size.
    /// Going over it is an OOM kill, recorded as such.
    #[arg(long, value_name = "BYTES|Nm|Ng", value_parser = parse_bytes, requires = "command")]
    pub memory_limit: Option<u64>,
    /// Give the container every GPU of the host (`--gpus all`).
    #[arg(long, requires = "image")]
    pub gpus: bool,
    /// The command to run, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `--memory-limit`: bytes, or a number with a k/m/g suffix (KiB, MiB, GiB; `b` for bytes).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix("ib").or_else(|| t.strip_suffix('b')).unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bytes (e.g. 536870912, 512m, 2g)"))?;
    match n.checked_mul(mult) {
        Some(0) | None => Err(format!("{s:?} must be a positive size that fits in 64 bits")),
        Some(v) => Ok(v),
    }
}

/// Where `--upload` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadUrl {
    S3 { bucket: String, prefix: String },
    Dir(PathBuf),
}

impl UploadUrl {
    pub fn parse(url: &str) -> Result<Self, MonitorError> {
        let bad = |reason: &str| MonitorError::BadInput {
            field: "upload",
            reason: format!("{url:?}: {reason}"),
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket"));
            }
            let prefix = prefix.trim_matches('/');
            let prefix = if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            };
            Ok(UploadUrl::S3 {
                bucket: bucket.to_string(),
                prefix,
            })
        } else if let Some(rest) = url.strip_prefix("file://") {
            if rest.is_empty() {
                return Err(bad("no directory"));
            }
            Ok(UploadUrl::Dir(PathBuf::from(rest)))
        } else {
            Err(bad("expected s3://bucket/prefix or file:///dir"))
        }
    }
}

/// An object store that puts every key under a fixed prefix (`s3://bucket/prefix`).
#[derive(Debug)]
pub struct PrefixedStore<S> {
    pub inner: S,
    pub prefix: String,
}

#[async_trait::async_trait]
impl<S: ObjectStore> ObjectStore for PrefixedStore<S> {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.inner.put(&format!("{}{key}", self.prefix), bytes).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(&format!("{}{key}", self.prefix)).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let p = self.prefix.len();
        let keys = self.inner.list(&format!("{}{prefix}", self.prefix)).await?;
        Ok(keys
            .into_iter()
            .map(|k| k.get(p..).unwrap_or_default().to_string())
            .collect())
    }
}

/// Reads the secrets `--env-from` names (`spotfit-agent`: SSM Parameter Store and Secrets
/// Manager, with the instance's credentials).
pub trait SecretReader {
    /// The secret's value. The error says why (the store's error code, the reference), never
    /// a value.
    fn read(&self, secret: &SecretRef) -> Result<String, String>;
}

/// `--env-from` entries, checked: (variable, reference).
pub fn parse_env_from(entries: &[String]) -> Result<Vec<(String, SecretRef)>, MonitorError> {
    let mut out: Vec<(String, SecretRef)> = Vec::with_capacity(entries.len());
    for e in entries {
        let bad = |reason: String| MonitorError::BadInput {
            field: "env_from",
            reason: format!("{e:?}: {reason}"),
        };
        let (name, r) = e
            .split_once('=')
            .ok_or_else(|| bad("must be NAME=ssm:PARAMETER or NAME=secretsmanager:ID".into()))?;
        if !spotfit_core::spec::valid_env_name(name) {
            return Err(bad("the variable name must match [A-Za-z_][A-Za-z0-9_]*".into()));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(bad(format!("{name} is named twice")));
        }
        out.push((name.to_string(), SecretRef::parse(r).map_err(bad)?));
    }
    Ok(out)
}

/// The job's variables from `--env-from`, read with `reader`; `Err(reason)` when one cannot be
/// read or given to the job (the job is then not started). `to_container`: the values go
/// through an env file, one NAME=VALUE per line.
fn read_env_from(
    refs: &[(String, SecretRef)],
    reader: Option<&dyn SecretReader>,
    to_container: bool,
) -> Result<Vec<(String, String)>, String> {
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    let reader = reader.ok_or("this binary reads no secrets: run the job under spotfit-agent monitor")?;
    let mut out = Vec::with_capacity(refs.len());
    for (name, r) in refs {
        let value = reader
            .read(r)
            .map_err(|why| format!("env_from.{name}: cannot read {r}: {why}"))?;
        if value.contains('\0') {
            return Err(format!(
                "env_from.{name}: the value of {r} holds a NUL byte, which no environment can carry"
            ));
        }
        if to_container && (value.contains('\n') || value.contains('\r')) {
            return Err(format!(
                "env_from.{name}: the value of {r} holds a line break, which a container's env file cannot carry"
            ));
        }
        out.push((name.clone(), value));
    }
    Ok(out)
}

/// `--scratch DIR`: the job's `SPOTFIT_SCRATCH` and (unless it sets its own) `TMPDIR`, added
/// to `env`; returns the tmp directory to create. DIR must be an absolute path a container
/// mount can name (no `:` or `,`).
fn scratch_env(dir: &std::path::Path, env: &mut Vec<(String, String)>) -> Result<PathBuf, MonitorError> {
    let text = crate::container::check_scratch(dir)?;
    let tmp = dir.join("tmp");
    env.retain(|(k, _)| k != "SPOTFIT_SCRATCH");
    env.push(("SPOTFIT_SCRATCH".into(), text));
    if !env.iter().any(|(k, _)| k == "TMPDIR") {
        env.push(("TMPDIR".into(), tmp.display().to_string()));
    }
    Ok(tmp)
}

/// Opens the store an `--upload` URL names, with the runtime its futures need (if any).
pub type OpenStore<'a> =
    &'a dyn Fn(&UploadUrl) -> Result<(Arc<dyn ObjectStore>, Option<tokio::runtime::Handle>), MonitorError>;

/// Runs `spotfit monitor`; returns the process exit code (the job's, in command mode).
pub fn run(
    args: &MonitorArgs,
    open_store: OpenStore<'_>,
    secrets: Option<&dyn SecretReader>,
) -> Result<i32, MonitorError> {
    let secs = |field: &'static str, v: f64| {
        if v.is_finite() && v > 0.0 && v <= 86_400.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(MonitorError::BadInput {
                field,
                reason: format!("{v} is not a positive number of seconds"),
            })
        }
    };
    if let Some(dir) = &args.resume_spool {
        return resume(dir, args, open_store);
    }
    let target = match (&args.pid, &args.cgroup, &args.docker) {
        (Some(p), _, _) => Target::Pid(*p),
        (_, Some(c), _) => Target::Cgroup(c.clone()),
        (_, _, Some(d)) => Target::Docker(d.clone()),
        _ if args.command.is_empty() => {
            return Err(MonitorError::BadInput {
                field: "command",
                reason: "give a command after --, or --pid, --cgroup or --docker".into(),
            })
        }
        _ => Target::Command(CommandSpec {
            argv: args.command.clone(),
            stdout_to_stderr: args.output.as_deref() == Some("-"),
            ..Default::default()
        }),
    };
    let now = chrono::Utc::now();
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| spotfit_core::ids::fresh_run_id(now.timestamp_millis()));
    let job = args.job.clone().unwrap_or_else(|| default_job(&target));
    let upload_url = args.upload.as_deref().map(UploadUrl::parse).transpose()?;
    let upload = match &upload_url {
        Some(u) => {
            let (store, runtime) = open_store(u)?;
            Some(UploadOptions {
                store,
                every: secs("upload_every", args.upload_every)?,
                runtime,
                finish_timeout: secs("finish_timeout", args.finish_timeout)?,
            })
        }
        None => None,
    };
    let imds = match args.imds.as_str() {
        "off" => None,
        "auto" => matches!(upload_url, Some(UploadUrl::S3 { .. })).then(ImdsOptions::default),
        url => {
            crate::imds::parse_endpoint(url).map_err(|reason| MonitorError::BadInput { field: "imds", reason })?;
            Some(ImdsOptions {
                endpoint: url.to_string(),
                ..Default::default()
            })
        }
    };
    let opts = MonitorOptions {
        interval: secs("interval", args.interval)?,
        job,
        run_id,
        pss_every: args.pss_every,
        gpu: !args.no_gpu,
        spool_dir: args.spool.clone(),
        upload,
        imds,
        handle_signals: true,
        keep_samples: true,
        // A container's limit is the container's (below); a command's is its own cgroup.
        memory_limit: args.memory_limit.filter(|_| args.image.is_none()),
        disk_paths: args.disk.iter().chain(args.scratch.as_ref()).cloned().collect(),
        ..Default::default()
    };

    // Everything about the arguments is checked before the first side effect (creating
    // `--output`, writing the container env file, starting the job).
    crate::check(&target, &opts)?;
    let mut job_env = args
        .job_env
        .as_deref()
        .map(crate::container::read_job_env)
        .transpose()?
        .unwrap_or_default();
    let refs = parse_env_from(&args.env_from)?;
    if let Some((name, _)) = refs.iter().find(|(n, _)| job_env.iter().any(|(k, _)| k == n)) {
        return Err(MonitorError::BadInput {
            field: "env_from",
            reason: format!("{name} is also in the job's env: a variable has one source"),
        });
    }
    // Read before the job starts; a secret that cannot be read keeps it from starting (as an
    // agent, a recorded failure with the reason in its log: see `CommandSpec::refuse`).
    if let Some(dir) = &args.scratch {
        let tmp = scratch_env(dir, &mut job_env)?;
        std::fs::create_dir_all(&tmp).map_err(|source| MonitorError::Setup {
            what: "the scratch directory's tmp",
            source,
        })?;
    }
    let refuse = match read_env_from(&refs, secrets, args.image.is_some()) {
        Ok(values) => {
            job_env.extend(values);
            None
        }
        Err(why) => Some(why),
    };
    let mut private: Option<PathBuf> = None;
    let mut opts = opts;
    let target = match target {
        Target::Command(mut c) => {
            c.refuse = refuse;
            match &args.image {
                Some(image) => {
                    let mut run = crate::container::RunOptions {
                        memory_limit: args.memory_limit,
                        gpus: args.gpus,
                        scratch: args.scratch.as_deref(),
                        ..Default::default()
                    };
                    crate::container::run_argv(&args.container_runtime, image, &run, &c.argv)?; // checks the image
                                                                                                // The env file and the container's id file live in a private directory.
                    let dir = crate::spool::private_dir(&std::env::temp_dir(), &opts.run_id)?;
                    private = Some(dir.clone());
                    let env_file = if job_env.is_empty() {
                        None
                    } else {
                        Some(crate::container::write_env_file(&dir, &job_env)?)
                    };
                    let cidfile = dir.join("cid");
                    run.env_file = env_file.as_deref();
                    run.cidfile = Some(&cidfile);
                    c.argv = crate::container::run_argv(&args.container_runtime, image, &run, &c.argv)?;
                    // The client runs in the private directory: podman's conmon leaves an `oom`
                    // file in its working directory when the container is OOM-killed.
                    c.cwd = Some(dir.clone());
                    opts.container = Some(crate::container::ContainerRun {
                        runtime: args.container_runtime.clone(),
                        cidfile: cidfile.clone(),
                    });
                }
                None => c.env = job_env,
            }
            Target::Command(c)
        }
        t => t,
    };
    let result = run_checked(args, &target, &opts);
    if let Some(dir) = private {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

/// [`run`] once the arguments are known to be good.
fn run_checked(args: &MonitorArgs, target: &Target, opts: &MonitorOptions) -> Result<i32, MonitorError> {
    let output_path = args.output.as_deref().filter(|p| *p != "-").map(PathBuf::from);
    let mut out: Option<Box<dyn Write>> = match args.output.as_deref() {
        None => None,
        Some("-") => Some(Box::new(std::io::LineWriter::new(std::io::stdout()))),
        Some(path) => Some(Box::new(std::io::LineWriter::new(
            std::fs::File::create(path).map_err(|source| MonitorError::Output {
                path: PathBuf::from(path),
                source,
            })?,
        ))),
    };
    let mut line = Vec::with_capacity(512);
    let mut write_error: Option<std::io::Error> = None;
    let mut on_sample = |s: &spotfit_core::Sample| {
        if let (Some(w), None) = (out.as_mut(), &write_error) {
            line.clear();
            if serde_json::to_writer(&mut line, s).is_ok() {
                line.push(b'\n');
                if let Err(e) = w.write_all(&line) {
                    write_error = Some(e);
                }
            }
        }
    };
    let outcome = monitor(target, opts, &mut on_sample)?;
    if let (Some(w), None) = (out.as_mut(), &write_error) {
        if let Err(e) = w.flush() {
            write_error = Some(e);
        }
    }
    if let Some(path) = &args.summary {
        // The summary is a convenience copy (the spool and the upload carry the run): failing to
        // write it is reported, and the job's exit status stays the job's.
        let json = serde_json::to_vec_pretty(&outcome.summary).unwrap_or_default();
        if let Err(e) = std::fs::write(path, json) {
            eprintln!(
                "spotfit monitor: warning: cannot write --summary {}: {e}",
                path.display()
            );
        }
    }
    eprint!("{}", summary_table(&outcome));
    if let Some(source) = write_error {
        // Samples the caller asked for were lost: that is a failure of this run, whatever the job did.
        return Err(MonitorError::Output {
            path: output_path.unwrap_or_else(|| PathBuf::from("-")),
            source,
        });
    }
    Ok(match target {
        Target::Command(_) => outcome.exit.shell_code(),
        _ => 0,
    })
}

fn resume(dir: &std::path::Path, args: &MonitorArgs, open_store: OpenStore<'_>) -> Result<i32, MonitorError> {
    let url = UploadUrl::parse(args.upload.as_deref().unwrap_or_default())?;
    let (store, handle) = open_store(&url)?;
    let fut = crate::upload_spool(dir, store.as_ref(), true);
    let report = match handle {
        Some(h) => h.block_on(fut),
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| MonitorError::Setup {
                what: "runtime",
                source,
            })?
            .block_on(fut),
    }?;
    eprintln!(
        "resumed {}: {} part(s) uploaded, {} failed, summary {}, exit marker {}",
        dir.display(),
        report.parts_uploaded,
        report.parts_pending,
        report.summary_uploaded,
        report.exit_marker_uploaded
    );
    Ok(if report.parts_pending == 0 && report.exit_marker_uploaded {
        0
    } else {
        1
    })
}

fn default_job(t: &Target) -> String {
    let name = match t {
        Target::Command(c) => c
            .argv
            .first()
            .and_then(|a| a.rsplit('/').next())
            .unwrap_or("adhoc")
            .to_string(),
        Target::Pid(p) => format!("pid-{p}"),
        Target::Docker(id) => format!("docker-{}", id.get(..12).unwrap_or(id)),
        Target::Cgroup(_) => "cgroup".to_string(),
    };
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if spotfit_core::ids::valid_run_id(&clean) {
        clean
    } else {
        "adhoc".into()
    }
}

/// The end-of-run table on stderr.
pub fn summary_table(o: &Outcome) -> String {
    let mut rows = spotfit_core::summary::summary_rows(&o.summary);
    if let Some(n) = &o.spot_notice {
        rows.push(("spot notice", format!("{} at {}", n.action, n.time)));
    }
    if let Some(u) = &o.upload {
        rows.push((
            "upload",
            format!(
                "{} part(s) uploaded, {} pending in spool{}, summary {}, exit marker {}",
                u.parts_uploaded,
                u.parts_pending,
                if u.parts_refused > 0 {
                    format!(", {} refused by the store (kept in the spool)", u.parts_refused)
                } else {
                    String::new()
                },
                if u.summary_uploaded { "yes" } else { "no" },
                if u.exit_marker_uploaded { "yes" } else { "no" }
            ),
        ));
    }
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter().map(|(k, v)| format!("{k:<w$}  {v}\n")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits_parse_with_units_and_refuse_junk() {
        assert_eq!(parse_bytes("536870912"), Ok(512 << 20));
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2g"), Ok(2 << 30));
        assert_eq!(parse_bytes("64k"), Ok(64 << 10));
        for bad in ["", "m", "-1", "1.5g", "0", "99999999999999999999g", "12 parsecs"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn upload_urls() {
        assert_eq!(
            UploadUrl::parse("s3://b/x/y/").unwrap(),
            UploadUrl::S3 {
                bucket: "b".into(),
                prefix: "x/y/".into()
            }
        );
        assert_eq!(
            UploadUrl::parse("s3://b").unwrap(),
            UploadUrl::S3 {
                bucket: "b".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            UploadUrl::parse("file:///tmp/s").unwrap(),
            UploadUrl::Dir("/tmp/s".into())
        );
        assert!(UploadUrl::parse("http://x").unwrap_err().to_string().contains("upload"));
        assert!(UploadUrl::parse("s3:///k").is_err());
    }
}
