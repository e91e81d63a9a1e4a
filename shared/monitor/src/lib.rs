//! spotfit-monitor: the sampling agent. It runs a job (or attaches to a process tree, a cgroup or
//! a Docker container), samples CPU, memory, page faults, disk and network, cgroup counters and
//! GPUs at a fixed interval, appends every sample to a local spool, and ships the spool to an
//! [`ObjectStore`](spotfit_core::ports::ObjectStore) as deterministic gzip NDJSON parts, so a
//! retried upload overwrites instead of duplicating.
//!
//! Cheapness is the design goal: per sample it reads only O(1) kernel files (`stat`, `io`,
//! `children`, cgroup counters) into reused buffers; PSS (`smaps_rollup`, ~16 ms per GiB) is
//! refreshed at a lower rate. No thread is spawned per sample.

pub mod cgroup;
#[cfg(feature = "cli")]
pub mod cli;
pub mod container;
mod container_watch;
pub mod fs_store;
pub mod gpu;
pub mod imds;
pub mod logs;
pub mod procfs;
mod runner;
mod sampler;
pub mod spool;
pub mod tree;

pub use runner::{check, monitor, run_command, Target};
pub use spool::{upload_spool, SpoolRun, UploadReport};

use spotfit_core::ports::ObjectStore;
use spotfit_core::summary::{ExitInfo, RunSummary};
use spotfit_core::Sample;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Errors of the monitor. Sampling itself never fails a run: a file that cannot be read leaves
/// its field absent. These are the errors of setting a run up.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("invalid {field}: {reason}")]
    BadInput { field: &'static str, reason: String },
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("process {pid} not found")]
    NoSuchProcess { pid: u32 },
    #[error("cgroup not found: {path}")]
    CgroupNotFound { path: String },
    #[error("spool {path}: {source}")]
    Spool {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--output {path}: {source} (samples were lost)")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the {what}: {source}")]
    Setup {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The job to run: an argv, never a shell string.
#[derive(Debug, Clone, Default)]
pub struct CommandSpec {
    pub argv: Vec<String>,
    /// Added to (or overriding) the monitor's own environment.
    pub env: Vec<(String, String)>,
    /// Send the job's stdout to our stderr (when our stdout carries samples).
    pub stdout_to_stderr: bool,
    pub cwd: Option<PathBuf>,
    /// Do not start the job, for this reason (a set-up step for it failed). As an agent
    /// (uploading) that is the job's failure, exit [`runner::NOT_STARTED_CODE`] with a summary,
    /// marker and the reason in its stderr log; otherwise an error.
    pub refuse: Option<String>,
}

/// Where and how often to ship samples.
#[derive(Clone)]
pub struct UploadOptions {
    pub store: Arc<dyn ObjectStore>,
    /// Cut and upload a part this often (default 60 s).
    pub every: Duration,
    /// Runtime to drive the store's futures on (the CLI's, when its adapters need it); when
    /// `None` the uploader thread runs its own current-thread runtime.
    pub runtime: Option<tokio::runtime::Handle>,
    /// How long the end of a normal run waits for the last uploads (the spool keeps the rest).
    pub finish_timeout: Duration,
}

impl std::fmt::Debug for UploadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadOptions")
            .field("every", &self.every)
            .field("finish_timeout", &self.finish_timeout)
            .finish()
    }
}

/// IMDSv2 spot-interruption polling.
#[derive(Debug, Clone)]
pub struct ImdsOptions {
    /// `http://169.254.169.254` on EC2; a local server in tests.
    pub endpoint: String,
    /// AWS asks for a poll every 5 s.
    pub every: Duration,
}

impl Default for ImdsOptions {
    fn default() -> Self {
        Self {
            endpoint: imds::DEFAULT_ENDPOINT.to_string(),
            every: Duration::from_secs(5),
        }
    }
}

/// How to monitor.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// Time between samples; fractions allowed.
    pub interval: Duration,
    pub job: String,
    pub run_id: String,
    /// Read PSS every Nth sample; 0 = about once a minute.
    pub pss_every: u32,
    /// Load NVML and sample GPUs (absent driver: no GPU fields, no error).
    pub gpu: bool,
    /// Local spool directory; required for upload (a temp dir is used when `None`).
    pub spool_dir: Option<PathBuf>,
    pub upload: Option<UploadOptions>,
    pub imds: Option<ImdsOptions>,
    /// Catch SIGTERM/SIGINT: forward to the job, flush within 2 s, mark the run interrupted.
    pub handle_signals: bool,
    /// Keep every sample in [`Outcome::samples`] (the summary is computed from them anyway).
    pub keep_samples: bool,
    /// Root of the cgroup mounts (tests point it at fixtures).
    pub cgroup_root: PathBuf,
    /// Wall-clock limit for a command (the spec's `timeout_s`): past it the job gets SIGTERM,
    /// then SIGKILL after a grace, and the run is marked timed out. Checked at each tick.
    pub timeout: Option<Duration>,
    /// Set from another thread to stop a command as a terminating instance would (SIGTERM, then
    /// SIGKILL after a grace; the run is marked interrupted). Checked at each tick. The local
    /// launcher's `terminate` uses it.
    pub cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Command mode: run the job in a memory cgroup of this many bytes that the monitor creates
    /// (see [`cgroup::JobCgroup`]), so exceeding it is a real, recorded OOM kill. Where the host
    /// allows no such group the job runs unlimited and a warning says so.
    pub memory_limit: Option<u64>,
    /// Command mode: pass the job's stdout and stderr through to the agent's own (they are
    /// spooled and shipped either way). Off in tests that would flood their output.
    pub pass_output: bool,
    /// Command mode, a container job: the command is the runtime's client, which writes the
    /// container's id to this cidfile; the container is measured through its cgroup (see
    /// `container_watch`). Its memory limit is the container's (`--memory`), not
    /// [`MonitorOptions::memory_limit`].
    pub container: Option<container::ContainerRun>,
    /// Paths whose filesystems' used space is sampled with each sample (one `statvfs` each,
    /// each filesystem counted once); the peak of the sum is the summary's
    /// `disk_used_max_bytes`. Empty: not sampled (a laptop's disk says nothing about a job).
    pub disk_paths: Vec<PathBuf>,
}

impl Default for MonitorOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            job: "adhoc".into(),
            run_id: "run".into(),
            pss_every: 0,
            gpu: true,
            spool_dir: None,
            upload: None,
            imds: None,
            handle_signals: true,
            keep_samples: true,
            cgroup_root: PathBuf::from(cgroup::DEFAULT_ROOT),
            timeout: None,
            cancel: None,
            memory_limit: None,
            pass_output: true,
            container: None,
            disk_paths: Vec::new(),
        }
    }
}

/// A spot interruption notice (the core's type: the exit marker carries it).
pub use spotfit_core::summary::SpotNotice;

/// How a monitored run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The job's exit (command mode); unknown (both `None`) when attached.
    pub exit: ExitInfo,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    pub sample_count: u64,
    /// Every sample, when `keep_samples`.
    pub samples: Vec<Sample>,
    pub oom_killed: bool,
    /// SIGTERM/SIGINT or a spot notice arrived before the job ended.
    pub interrupted: bool,
    /// The job ran past [`MonitorOptions::timeout`] and was stopped.
    pub timed_out: bool,
    pub spot_notice: Option<SpotNotice>,
    pub summary: RunSummary,
    /// What reached the store (None without upload).
    pub upload: Option<UploadReport>,
}
