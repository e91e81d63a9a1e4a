//! Sizing v3: from a job's history (or, for a job never seen, its spec's hints) to what the
//! next run needs, with the memory risk left for ranking to price. The reasoning behind every
//! constant is in `docs/sizing.md`.
//!
//! - Statistics over the recent usable runs, weighted by recency (half-life [`HALF_LIFE_RUNS`]),
//!   with the effective number of runs as the confidence.
//! - CPU: the cores the job keeps busy (per run, the larger of its mean and its median sample),
//!   the recency-weighted 90th percentile over runs whose need was measured. A run that kept
//!   ≥ [`CPU_CENSOR_FRACTION`] of its cores busy (or was throttled) only says "at least this
//!   many": the next run gets [`CPU_CENSORED_GROWTH`]× as many, never fewer. vCPUs are the
//!   fewest that keep the run within the spec's `max_slowdown`.
//! - Memory: a predictive distribution of the next peak (Student-t in log space: it widens
//!   with few runs, narrows with many, and jumps after an OOM kill), which ranking turns into
//!   P(OOM) per instance type and prices; a hard floor under it (recent peak, OOM bump).
//! - Cold start: the request (hints) as given; history shrinks it.
//! - GPU when a GPU was used; the spec's bounds always win; tiny or short jobs share a host.

use crate::input_fit::LogFit;
use crate::profile::JobProfile;
use crate::spec::{Arch, JobSpec, DEFAULT_MAX_SLOWDOWN};
use crate::summary::{RunStatus, RunSummary};
use crate::units::{bytes_to_gib, gib_to_bytes, GIB, MIB};
use serde::{Deserialize, Serialize};

/// Where a requirement came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SizingBasis {
    /// No history: the spec's hints.
    Hints,
    /// No history and no hints: the conservative default.
    Default,
    /// From `runs` completed runs.
    History { runs: u64 },
}

/// One instance per job, or a shared host for tiny/short jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SizeClass {
    #[default]
    Dedicated,
    Shared,
}

/// What an instance must offer for the next run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Requirement {
    /// Minimum vCPUs of the instance.
    pub vcpu: u32,
    /// Cores the job is expected to keep busy (for the score that fits and for duration).
    pub cores_used: f64,
    /// Minimum memory of the instance, bytes (margin and OS reserve included).
    pub memory_bytes: u64,
    pub gpu: u32,
    /// Minimum memory per GPU, bytes.
    pub gpu_memory_bytes: u64,
    /// Allowed architectures (empty = any).
    pub architectures: Vec<Arch>,
    /// Expected duration of the run, seconds, when known.
    pub expected_duration_s: Option<f64>,
    pub class: SizeClass,
    pub basis: SizingBasis,
    /// Human-readable reasons (margins applied, bounds hit, OOM bump).
    pub notes: Vec<String>,
    /// The job's memory on a shared host, bytes: the predictive [`MEM_SLOT_QUANTILE`] quantile
    /// of its peak, never under the floor, within the spec's bounds (the request as given on a
    /// cold start). A reservation (`memory.low`), not a limit. A shared requirement's
    /// `memory_bytes` is this plus the OS reserve; a dedicated one's is the floor plus the
    /// reserve, ranking pricing the risk of every type above it, so there the two differ.
    #[serde(default)]
    pub job_memory_bytes: u64,
    /// The spec's `resources.max_price_per_hour`, applied by ranking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price_per_hour: Option<f64>,
    /// Effective number of runs behind the figures (0 without history): the confidence.
    #[serde(default)]
    pub confidence_runs: f64,
    /// The spec's `max_slowdown`: no type may leave the run slower than this (expected,
    /// OOM retries included) relative to the cores it wants.
    #[serde(default = "default_max_slowdown", skip_serializing_if = "is_default_max_slowdown")]
    pub max_slowdown: f64,
    /// The predictive distribution of the job's peak memory, for ranking to price the OOM
    /// risk of each type. None: every type with `memory_bytes` is taken as safe (cold start:
    /// the request, as the batch service would run it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_risk: Option<MemoryRisk>,
    /// Memory factor of the retry after an OOM kill (the spec's `retry.oom_memory_factor`):
    /// the retry costs about this many times the killed run.
    #[serde(default = "default_oom_factor", skip_serializing_if = "is_default_oom_factor")]
    pub oom_retry_factor: f64,
    /// The job's CPU need is not yet known: its latest runs kept all their cores busy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cpu_need_unknown: bool,
    /// Cores to reserve on a shared host when the need is known: the fewest with which the
    /// run's expected slowdown over the job's history stays within `max_slowdown` even when
    /// the host is full. 0 when the need is not known (the slot then reserves `cores_used`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shared_slot_cores: f64,
    /// The job runs in a container image (its instance boots an image with Docker).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub container: bool,
    /// The spec's `resources.disk_gib`: the root volume ranking prices and the launch asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gib: Option<u32>,
}

// Fields at their defaults are left out of the JSON, so states written before v3 (and the
// contract fixtures) keep their shape.
fn default_max_slowdown() -> f64 {
    DEFAULT_MAX_SLOWDOWN
}
fn default_oom_factor() -> f64 {
    1.5
}
fn is_default_max_slowdown(v: &f64) -> bool {
    *v == DEFAULT_MAX_SLOWDOWN
}
fn is_default_oom_factor(v: &f64) -> bool {
    *v == default_oom_factor()
}
fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Requirement {
    /// Cores to reserve for the job on a shared host: with `cpu.weight` shares, a job is
    /// guaranteed its reservation's share under full contention and takes idle cores beyond it,
    /// so reserving `cores / max_slowdown` keeps it within `max_slowdown` even on a full host.
    /// A cold start reserves the request as given.
    pub fn slot_cores(&self) -> f64 {
        // `size` sets `shared_slot_cores` whenever the need is known; a requirement without it
        // (built by hand) is taken as a cold start, which reserves what it asked for.
        let c = if self.cpu_need_known() && self.shared_slot_cores > 0.0 {
            self.shared_slot_cores
        } else {
            self.cores_used
        };
        c.max(0.05)
    }

    /// Whether the cores wanted were measured: from history, and not censored.
    fn cpu_need_known(&self) -> bool {
        matches!(self.basis, SizingBasis::History { .. }) && !self.cpu_need_unknown
    }

    /// Cores a shared host must have really free (not only unreserved: co-tenants taken at
    /// their use when above their slots) to admit the slot: its reservation when the need is
    /// known; when it is not (a cold start, a censored job), room for
    /// [`CPU_CENSORED_GROWTH`] × the reservation, so the run that measures the need is not the
    /// one slowed by not knowing it.
    pub fn slot_admission_cores(&self) -> f64 {
        if self.cpu_need_known() {
            // Room for the cores the job wants within max_slowdown, though it reserves less.
            self.slot_cores().max(self.cores_used / self.max_slowdown.max(1.0))
        } else {
            self.slot_cores() * CPU_CENSORED_GROWTH
        }
    }

    /// What a new instance for this run must offer, for ranking to pick its type. A dedicated
    /// run: this requirement. A shared slot that opens a new host: the host must admit the slot
    /// by the host agent's own rule, so it needs [`Self::slot_admission_cores`] vCPUs (room for
    /// a job whose need is not known to grow into), besides the slot's memory and the reserve.
    /// Ranking the slot alone could pick a host its own admission rule refuses.
    pub fn new_instance(&self) -> Requirement {
        let mut r = self.clone();
        if self.class == SizeClass::Shared {
            let room = (self.slot_admission_cores() - 1e-9).ceil().max(1.0);
            r.vcpu = r.vcpu.max(room.min(u32::MAX as f64) as u32);
        }
        r
    }
}

/// Conservative default for a job with neither history nor hints: a general-purpose shape
/// (4 GiB per vCPU) big enough for most single-node data-science scripts.
pub const DEFAULT_VCPU: u32 = 2;
pub const DEFAULT_MEMORY_GIB: f64 = 8.0;

/// Memory kept for the OS, the agent and the container runtime on a dedicated instance.
pub const OS_RESERVE_BYTES: u64 = 256 * MIB;

/// The instance memory a job needing `job_bytes` asks ranking for: its own and
/// [`OS_RESERVE_BYTES`] on top.
pub fn instance_memory_bytes(job_bytes: u64) -> u64 {
    job_bytes.saturating_add(OS_RESERVE_BYTES)
}
/// Recency weighting: a run `HALF_LIFE_RUNS` runs older weighs half (VPA halves a sample's
/// weight every 24 h; a run count works for jobs run hourly and monthly alike).
pub const HALF_LIFE_RUNS: f64 = 8.0;
/// Quantile of per-run busy cores over runs (the VPA CPU target percentile).
pub const CPU_QUANTILE: f64 = 0.9;
/// A run that kept this share of the cores it was given busy is censored: it might have used
/// more. Not 100%: the agent samples every few seconds and a saturated job still shows gaps
/// (I/O, start-up, the last straggler thread).
pub const CPU_CENSOR_FRACTION: f64 = 0.9;
/// After a censored run the next gets this many times the cores it had: a doubling search
/// finds the need in log2 steps and over-buys by at most 2× on the one run that finds it.
pub const CPU_CENSORED_GROWTH: f64 = 2.0;
/// Quantile of the predictive peak distribution a shared-host slot reserves (the slot is a
/// reservation, the host's free memory the second line; see docs/sizing.md).
pub const MEM_SLOT_QUANTILE: f64 = 0.99;
/// Prior spread of a job's peak memory between runs, in natural-log units (≈ ±25%), and its
/// weight in pseudo-runs: with one run the headroom is ~2×, with a dozen steady runs ~1.3×.
pub const MEM_PRIOR_LOG_SD: f64 = 0.25;
pub const MEM_PRIOR_RUNS: f64 = 2.0;
/// The distribution-free cap: above the window's largest peak × (1 + this) × (1 + 1/n) a type
/// is taken as safe (VPA's safety margin is 15%).
pub const MEM_MIN_MARGIN: f64 = 0.15;
/// Input-aware memory: the distribution-free cap is applied only for inputs within this factor
/// of the range seen (beyond it the fitted law is extrapolated and only its t-law is priced).
pub const MEM_FIT_CAP_SPAN: f64 = 2.0;
/// After an OOM kill the floor (memory at the kill) is multiplied by the spec's
/// `retry.oom_memory_factor` for this long, and by [`OOM_REMEMBERED_FACTOR`] ever after
/// (VPA's OOM bump is ×1.2).
pub const OOM_BUMP_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;
pub const OOM_REMEMBERED_FACTOR: f64 = 1.2;
/// GPU memory headroom over the largest peak seen (a GPU OOM kills the job too).
pub const GPU_MEM_MARGIN: f64 = 0.2;
/// Start-up overhead of a new instance (boot, image pull), seconds: the cost a short job
/// pays again on every dedicated instance.
pub const STARTUP_OVERHEAD_S: f64 = 60.0;
/// Short: the start-up would be over a sixth of the run. Small: a quarter of a 8-vCPU,
/// 32-GiB host. Tiny: half a core and 1 GiB, however long (jobs waiting on SQL).
pub const SHARED_MAX_DURATION_S: f64 = 5.0 * STARTUP_OVERHEAD_S;
pub const SHARED_MAX_CORES: f64 = 2.0;
pub const SHARED_MAX_MEMORY_BYTES: u64 = 8 * GIB;
pub const TINY_MAX_CORES: f64 = 0.5;
pub const TINY_MAX_MEMORY_BYTES: u64 = GIB;
/// Smallest memory any job is given (below it, interpreters fail to start).
pub const MIN_JOB_MEMORY_BYTES: u64 = 256 * MIB;

/// Recency-weighted statistics of a job's usable runs.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub runs: usize,
    /// Effective number of runs (Kish): (Σw)² / Σw².
    pub n_eff: f64,
    /// Cores kept busy, recency-weighted quantile [`CPU_QUANTILE`] over the runs whose need was
    /// measured (all runs when none was).
    pub busy_cores: f64,
    /// Cores the next run must get at least because a recent run was censored (kept its cores
    /// busy) and no later run with more cores measured the need; None when the need is known.
    pub cpu_censored_floor: Option<f64>,
    /// The fewest cores c with which the recency-weighted mean over the measured runs of
    /// max(1, busy / c) — the expected slowdown of the next run held to c cores — is at most
    /// `max_slowdown`.
    pub cpu_expected_slowdown_cores: f64,
    /// Log-space weighted mean and standard deviation of per-run memory peaks (GiB).
    pub mem_log_mean: f64,
    pub mem_log_sd: f64,
    /// Largest peak among the runs that weigh at least half (the last `HALF_LIFE_RUNS`), bytes.
    pub mem_recent_max_bytes: u64,
    /// Largest peak among all the runs of the window, bytes.
    pub mem_window_max_bytes: u64,
    /// Recency-weighted mean duration of runs that finished (not OOM-killed), seconds.
    pub mean_duration_s: Option<f64>,
    pub gpu_count: u32,
    pub gpu_mem_max_bytes: u64,
}

impl History {
    /// Whether the job's CPU need is not known yet: a censored run still binds (no later
    /// unsaturated run with more cores measured the need) and asks for more cores than the
    /// runs that were measured. The one definition: [`size`] grows such a job (and says so in
    /// [`Requirement::cpu_need_unknown`]), [`cpu_need_unknown`] answers it for a profile.
    pub fn cpu_need_unknown(&self) -> bool {
        self.cpu_censored_floor.is_some_and(|f| f > self.busy_cores)
    }
}

/// Whether `profile`'s CPU need is not known yet for `spec` (the spec matters: its
/// `max_slowdown` decides which saturated runs a measured one explains, its request how far a
/// censored job grows). False without usable runs: a cold start takes its request as given.
pub fn cpu_need_unknown(spec: &JobSpec, profile: &JobProfile) -> bool {
    history_for(profile, spec.max_slowdown(), hint_vcpu(spec)).is_some_and(|h| h.cpu_need_unknown())
}

/// The spec's vCPU request when it is a usable number.
fn hint_vcpu(spec: &JobSpec) -> Option<f64> {
    spec.hints.vcpu.filter(|v| v.is_finite() && *v > 0.0)
}

/// Cores a run kept busy: its median sample, or its mean when that is higher (a job busy at
/// 8 cores for seconds and at 1 the rest has median 1; a steady one has median = mean).
fn busy_cores(r: &RunSummary) -> f64 {
    let v = r.cpu.avg.max(r.cpu.p50);
    if v.is_finite() {
        v.max(0.0)
    } else {
        0.0
    }
}

/// Whether a run kept ≥ [`CPU_CENSOR_FRACTION`] of the cores it was given busy, or was
/// throttled: what it used is then a lower bound of what it needs.
pub fn cpu_saturated(r: &RunSummary) -> bool {
    r.cpu_throttled
        || r.cpu_given_cores
            .is_some_and(|g| g > 0.0 && busy_cores(r) >= CPU_CENSOR_FRACTION * g)
}

fn weighted_quantile(values: &mut [(f64, f64)], q: f64) -> f64 {
    values.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = values.iter().map(|v| v.1).sum();
    let mut acc = 0.0;
    for &(v, w) in values.iter() {
        acc += w;
        if acc >= q * total - 1e-12 {
            return v;
        }
    }
    values.last().map_or(0.0, |v| v.0)
}

/// Statistics over the profile's usable runs, or None without any. `max_slowdown` decides when
/// a saturated run is explained by a measured need (a run with more cores used no more than
/// `given × max_slowdown`: sizing would give it as many again); a censored job
/// below its request (`hint_vcpu`) grows to the request first.
pub fn history_for(profile: &JobProfile, max_slowdown: f64, hint_vcpu: Option<f64>) -> Option<History> {
    let runs: Vec<&RunSummary> = profile.usable_runs().collect();
    let n = runs.len();
    if n == 0 {
        return None;
    }
    let weights: Vec<f64> = (0..n)
        .map(|i| 0.5f64.powf((n - 1 - i) as f64 / HALF_LIFE_RUNS))
        .collect();
    let sw: f64 = weights.iter().sum();
    let sw2: f64 = weights.iter().map(|w| w * w).sum();
    let n_eff = sw * sw / sw2;

    // CPU censoring. A saturated run at g cores is explained when a run of the window that was
    // not saturated, with more cores, used at most g × max_slowdown (the job needs about g:
    // sizing it at g is within the slowdown allowed, and it saturates g because it is sized to
    // its need). An unexplained one is censored; it stays binding until a later unsaturated run
    // with more cores measures the need. The explanation leaves with the run that gave it (the
    // profile keeps RECENT_RUNS), so a job whose need grew is probed again within that many runs.
    let busy: Vec<f64> = runs.iter().map(|r| busy_cores(r)).collect();
    let given: Vec<f64> = runs
        .iter()
        .zip(&busy)
        .map(|(r, b)| r.cpu_given_cores.unwrap_or(*b))
        .collect();
    let saturated: Vec<bool> = runs.iter().map(|r| cpu_saturated(r)).collect();
    let censored: Vec<bool> = (0..n)
        .map(|i| {
            saturated[i]
                && !(0..n).any(|j| !saturated[j] && given[j] > given[i] + 1e-9 && busy[j] <= given[i] * max_slowdown)
        })
        .collect();
    let mut floor: Option<f64> = None;
    for i in (0..n).filter(|i| censored[*i]) {
        let resolved = (i + 1..n).any(|j| !censored[j] && given[j] > given[i] + 1e-9);
        if !resolved {
            // Up to the request first (what the batch service would give), beyond it by doubling.
            let grow = match hint_vcpu {
                Some(h) if h > given[i] + 1e-9 => h.min(given[i] * CPU_CENSORED_GROWTH),
                _ => given[i] * CPU_CENSORED_GROWTH,
            };
            floor = Some(floor.map_or(grow, |f: f64| f.max(grow)));
        }
    }
    let mut cpu: Vec<(f64, f64)> = (0..n)
        .filter(|i| !censored[*i])
        .map(|i| (busy[i], weights[i]))
        .collect();
    if cpu.is_empty() {
        cpu = busy.iter().zip(&weights).map(|(b, w)| (*b, *w)).collect();
    }
    let busy_q = weighted_quantile(&mut cpu, CPU_QUANTILE);
    let expected_slowdown = |c: f64| {
        let tw: f64 = cpu.iter().map(|v| v.1).sum();
        cpu.iter().map(|(x, w)| w * (x / c).max(1.0)).sum::<f64>() / tw.max(1e-12)
    };
    let (mut lo, mut hi) = (0.01f64, cpu.iter().map(|v| v.0).fold(0.05, f64::max));
    while hi - lo > 1e-3 {
        let mid = 0.5 * (lo + hi);
        if expected_slowdown(mid) <= max_slowdown {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let slot_cores = hi;

    let logs: Vec<f64> = runs
        .iter()
        .map(|r| bytes_to_gib(r.mem_max_bytes.max(MIN_JOB_MEMORY_BYTES / 4)).ln())
        .collect();
    let mean = logs.iter().zip(&weights).map(|(l, w)| l * w).sum::<f64>() / sw;
    let var = logs
        .iter()
        .zip(&weights)
        .map(|(l, w)| w * (l - mean).powi(2))
        .sum::<f64>()
        / sw;
    let recent_max = runs
        .iter()
        .zip(&weights)
        .filter(|(_, w)| **w >= 0.5 - 1e-9)
        .map(|(r, _)| r.mem_max_bytes)
        .max()
        .unwrap_or(0);

    let finished: Vec<(f64, f64)> = runs
        .iter()
        .zip(&weights)
        .filter(|(r, _)| r.status != RunStatus::OomKilled && r.duration_s.is_finite() && r.duration_s >= 0.0)
        .map(|(r, w)| (r.duration_s, *w))
        .collect();
    let fw: f64 = finished.iter().map(|f| f.1).sum();
    let mean_duration_s = (fw > 0.0).then(|| finished.iter().map(|(d, w)| d * w).sum::<f64>() / fw);

    let gpu_runs = runs
        .iter()
        .filter_map(|r| r.gpu)
        .filter(|g| g.util_max_pct > 0.0 || g.mem_max_bytes > 0);
    let (mut gpu_count, mut gpu_mem) = (0, 0);
    for g in gpu_runs {
        gpu_count = gpu_count.max(g.count.max(1));
        gpu_mem = gpu_mem.max(g.mem_max_bytes);
    }
    Some(History {
        runs: n,
        n_eff,
        busy_cores: busy_q,
        cpu_censored_floor: floor,
        cpu_expected_slowdown_cores: slot_cores,
        mem_log_mean: mean,
        mem_log_sd: var.sqrt(),
        mem_recent_max_bytes: recent_max,
        mem_window_max_bytes: runs.iter().map(|r| r.mem_max_bytes).max().unwrap_or(0),
        mean_duration_s,
        gpu_count,
        gpu_mem_max_bytes: gpu_mem,
    })
}

/// The fewest vCPUs on which a job keeping `cores` busy runs at most `max_slowdown` times
/// longer than on all the cores it wants (at least 1).
pub fn vcpus_for(cores: f64, max_slowdown: f64) -> u32 {
    ((cores / max_slowdown.max(1.0) - 1e-9).ceil().max(1.0)).min(u32::MAX as f64) as u32
}

/// Input-aware fits of a job's history (`input_fit`): memory peak (GiB) and duration (s) on
/// the input size, over the usable runs that carry one and were not OOM-killed (a killed run's
/// peak is its limit, not its need). Each is None unless it passes the quality gate.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InputFits {
    pub memory: Option<LogFit>,
    pub duration: Option<LogFit>,
}

pub fn input_fits(profile: &JobProfile) -> InputFits {
    let runs: Vec<&RunSummary> = profile
        .usable_runs()
        .filter(|r| r.status != RunStatus::OomKilled && r.input_bytes.is_some_and(|b| b > 0))
        .collect();
    let x = |r: &RunSummary| r.input_bytes.unwrap_or(1) as f64;
    let mem: Vec<(f64, f64)> = runs
        .iter()
        .map(|r| (x(r), bytes_to_gib(r.mem_max_bytes.max(MIN_JOB_MEMORY_BYTES / 4))))
        .collect();
    let dur: Vec<(f64, f64)> = runs
        .iter()
        .filter(|r| r.duration_s.is_finite() && r.duration_s > 0.0)
        .map(|r| (x(r), r.duration_s))
        .collect();
    InputFits {
        memory: LogFit::fit(&mem).filter(LogFit::usable),
        duration: LogFit::fit(&dur).filter(LogFit::usable),
    }
}

/// The predictive distribution of the next run's peak memory: `ln(peak GiB)` follows a
/// Student-t with `dof` degrees of freedom, centre `log_mean` and scale `log_scale`. Job memory
/// of `safe_bytes` or more is taken as safe (P = 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryRisk {
    pub log_mean: f64,
    pub log_scale: f64,
    pub dof: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe_bytes: Option<u64>,
}

/// Scale and degrees of freedom of the predictive law from `n` runs whose log-peaks spread by
/// `sd`: the spread blended with the prior ([`MEM_PRIOR_LOG_SD`], worth [`MEM_PRIOR_RUNS`]
/// runs), and Student-t tails with `n + prior − 1` degrees of freedom (an unknown variance
/// estimated from few runs and the prior's pseudo-runs). One rule for the plain and the
/// input-aware law, so the two widen and narrow alike.
fn blended_log_spread(n: f64, sd: f64) -> (f64, f64) {
    let var = (n * sd.powi(2) + MEM_PRIOR_RUNS * MEM_PRIOR_LOG_SD.powi(2)) / (n + MEM_PRIOR_RUNS);
    (var.sqrt(), n + MEM_PRIOR_RUNS - 1.0)
}

impl MemoryRisk {
    /// The distribution for a run with input `x` bytes from an input-aware fit: centred on the
    /// fitted law, the residual spread blended with the same prior, widened by the fit's
    /// prediction-interval factor (more for an input far from those seen). The
    /// distribution-free cap carries each fitted run's peak to `x` along the law (the
    /// residual ratios are exchangeable as the peaks are without input); it is not applied
    /// beyond [`MEM_FIT_CAP_SPAN`]× outside the inputs seen, where the law itself is the guess.
    pub fn from_fit(f: &LogFit, x: f64, carried_max_gib: f64) -> MemoryRisk {
        let n = f.n as f64;
        let (spread, dof) = blended_log_spread(n, f.resid_sd);
        let lx = x.max(1.0).ln();
        let span = MEM_FIT_CAP_SPAN.ln();
        let inside = lx >= f.x_min - span && lx <= f.x_max + span;
        let cap = carried_max_gib * (1.0 + MEM_MIN_MARGIN) * (1.0 + 1.0 / n.max(1.0));
        MemoryRisk {
            log_mean: f.predict_ln(x),
            log_scale: spread * f.spread_factor(x),
            dof,
            safe_bytes: inside.then(|| gib_to_bytes(cap)),
        }
    }

    /// The distribution for the next run from a job's history: the log-space mean, the
    /// blended spread (`blended_log_spread` over the effective number of runs) widened by the
    /// prediction-interval factor `sqrt(1 + 1/n)`, and a distribution-free cap.
    pub fn from_history(h: &History) -> MemoryRisk {
        let n = h.n_eff.max(1.0);
        let (spread, dof) = blended_log_spread(n, h.mem_log_sd);
        // Distribution-free cap: the next run exceeds the largest of n peaks with probability
        // 1/(n+1); the margin and a 1/n term on top make that far smaller. When peaks spread
        // over orders of magnitude the log-t tail overstates the risk above the maximum.
        let cap = h.mem_window_max_bytes as f64 * (1.0 + MEM_MIN_MARGIN) * (1.0 + 1.0 / h.runs.max(1) as f64);
        MemoryRisk {
            log_mean: h.mem_log_mean,
            log_scale: spread * (1.0 + 1.0 / n).sqrt(),
            dof,
            safe_bytes: Some(cap as u64),
        }
    }

    /// Whether job memory of `job_bytes` is taken as safe (P = 0, the law not evaluated).
    pub fn is_safe(&self, job_bytes: u64) -> bool {
        self.safe_bytes.is_some_and(|s| job_bytes >= s)
    }

    /// P(the next peak > `job_bytes`): the OOM risk of a run allowed `job_bytes`.
    pub fn p_exceed(&self, job_bytes: u64) -> f64 {
        if self.is_safe(job_bytes) {
            return 0.0;
        }
        if job_bytes == 0 {
            return 1.0;
        }
        let t = (bytes_to_gib(job_bytes).ln() - self.log_mean) / self.log_scale.max(1e-9);
        (1.0 - student_t_cdf(t, self.dof)).clamp(0.0, 1.0)
    }

    /// The least job memory with P(peak above it) ≤ 1 − `q`, bytes.
    pub fn quantile_bytes(&self, q: f64) -> u64 {
        let target = 1.0 - q;
        let (mut lo, mut hi) = (MIN_JOB_MEMORY_BYTES / 16, 64 * 1024 * GIB);
        if let Some(s) = self.safe_bytes {
            hi = hi.min(s.max(lo + 1));
        }
        if self.p_exceed(lo) <= target {
            return lo;
        }
        while hi - lo > MIB {
            let mid = lo + (hi - lo) / 2;
            if self.p_exceed(mid) <= target {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }
}

/// ln Γ(x), Lanczos (g = 7, n = 9), for x > 0.
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Continued fraction of the incomplete beta function (modified Lentz).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-12 {
            break;
        }
    }
    h
}

/// Regularized incomplete beta I_x(a, b).
fn beta_inc(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let bt = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        bt * beta_cf(a, b, x) / a
    } else {
        1.0 - bt * beta_cf(b, a, 1.0 - x) / b
    }
}

/// Standard normal CDF (Abramowitz–Stegun 7.1.26 erfc; |error| < 1.5e-7).
pub fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-x * x).exp();
    if z >= 0.0 {
        1.0 - 0.5 * erfc
    } else {
        0.5 * erfc
    }
}

/// CDF of Student's t with `dof` degrees of freedom (the normal beyond 200).
pub fn student_t_cdf(t: f64, dof: f64) -> f64 {
    if !t.is_finite() {
        return if t > 0.0 { 1.0 } else { 0.0 };
    }
    if dof > 200.0 {
        return normal_cdf(t);
    }
    let dof = dof.max(0.5);
    let tail = 0.5 * beta_inc(dof / 2.0, 0.5, dof / (dof + t * t));
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// How [`size_with`] sets a dedicated run's memory. The product uses the default; the other
/// exists so that the simulator's ablation runs this code with one rule changed, not a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryHeadroom {
    /// The floor as the least memory, the OOM risk of every type above it priced by ranking.
    #[default]
    Priced,
    /// v2's rule: the least memory is the predictive [`MEM_SLOT_QUANTILE`] quantile (never
    /// under the floor) and no risk is left to price.
    FixedQuantile,
}

/// Options of [`size_with`].
#[derive(Debug, Clone, Default)]
pub struct SizeOptions {
    pub memory_headroom: MemoryHeadroom,
}

/// Sizes the next run of `spec` from its profile at time `now_ms` (Unix ms).
pub fn size(spec: &JobSpec, profile: Option<&JobProfile>, now_ms: i64) -> Requirement {
    size_with(spec, profile, now_ms, &SizeOptions::default())
}

/// [`size`] with one of its rules switched by `opts`.
pub fn size_with(spec: &JobSpec, profile: Option<&JobProfile>, now_ms: i64, opts: &SizeOptions) -> Requirement {
    let mut notes = Vec::new();
    let max_slowdown = spec.max_slowdown();
    let hints = &spec.hints;
    let hint_vcpu = hint_vcpu(spec);
    let hint_mem = hints.memory_gib.filter(|v| v.is_finite() && *v > 0.0).map(gib_to_bytes);
    let input_x = hints.input_bytes.filter(|b| *b > 0).map(|b| b as f64);
    let hist = profile.and_then(|p| history_for(p, max_slowdown, hint_vcpu));
    let mut risk: Option<MemoryRisk> = None;
    let mut cpu_need_unknown = false;
    // The predictive MEM_SLOT_QUANTILE quantile of the peak: a shared slot's reservation, and
    // what the history note reports.
    let mut slot_quantile: Option<u64> = None;
    // (cores wanted, job memory floor, basis, duration, confidence)
    let (mut cores, mut job_mem, basis, duration, confidence) = match &hist {
        Some(h) => {
            let mut r = MemoryRisk::from_history(h);
            // Input-aware (item 5): where this run's input size is known and the job's memory
            // (duration) follows its input, the fitted law replaces the plain distribution, and
            // the floor keeps only the recent runs with inputs no larger than this one.
            let fits = match (input_x, profile) {
                (Some(_), Some(p)) => input_fits(p),
                _ => InputFits::default(),
            };
            let mut floor_mem = h.mem_recent_max_bytes;
            let mut mean_duration = h.mean_duration_s;
            if let (Some(x), Some(f), Some(p)) = (input_x, fits.memory.as_ref(), profile) {
                let runs: Vec<&RunSummary> = p.usable_runs().collect();
                let k = runs.len();
                let carried = |r: &RunSummary| match r.input_bytes.filter(|b| *b > 0) {
                    Some(xi) if r.status != RunStatus::OomKilled => {
                        f.carry(bytes_to_gib(r.mem_max_bytes), xi as f64, x)
                    }
                    _ => bytes_to_gib(r.mem_max_bytes),
                };
                let all_max = runs.iter().map(|r| carried(r)).fold(0.0, f64::max);
                // The floor over the runs that weigh at least half (the last HALF_LIFE_RUNS, as
                // in History) keeps only what holds without the fitted law: a job's peak does not
                // fall as its input grows, so a recent run with an input no larger than this one
                // (or without an input) needed at most what this run needs. Runs with larger
                // inputs say nothing certain about a smaller one; their law-carried peaks are
                // priced through the risk, never made a floor a wrong fit could lower.
                let recent = runs.iter().skip(k.saturating_sub(HALF_LIFE_RUNS as usize + 1));
                floor_mem = recent
                    .filter(|r| r.input_bytes.is_none_or(|xi| xi == 0 || xi as f64 <= x))
                    .map(|r| r.mem_max_bytes)
                    .max()
                    .unwrap_or(0);
                r = MemoryRisk::from_fit(f, x, all_max);
                notes.push(format!(
                    "input-aware memory: {:.3e} bytes in, peak ≈ {:.2} GiB (ln-slope {:.2}, robust R² {:.2}, {} runs)",
                    x,
                    r.log_mean.exp(),
                    f.slope,
                    f.r2,
                    f.n
                ));
            }
            if let (Some(x), Some(f)) = (input_x, fits.duration.as_ref()) {
                let d = (f.predict_ln(x) + 0.5 * f.resid_sd.powi(2)).exp();
                notes.push(format!("input-aware duration: ≈ {d:.0} s"));
                mean_duration = Some(d);
            }
            // The request is what the batch service runs, and the job has fitted it: while no
            // run came near it (no peak above it, no OOM kill at or above it), memory of the
            // request is as safe as the batch service is.
            if let (Some(req), Some(p)) = (hint_mem, profile) {
                let disproved = p.usable_runs().any(|r| {
                    r.mem_max_bytes > req
                        || (r.status == RunStatus::OomKilled && r.mem_max_bytes as f64 >= 0.99 * req as f64)
                });
                if !disproved {
                    r.safe_bytes = Some(r.safe_bytes.map_or(req, |s| s.min(req)));
                }
            }
            let q = r.quantile_bytes(MEM_SLOT_QUANTILE);
            slot_quantile = Some(q);
            notes.push(format!(
                "history: {} runs (effective {:.1}); busy cores p90 {:.2}; peak p{:.0} {:.2} GiB, recent max {:.2} GiB",
                h.runs,
                h.n_eff,
                h.busy_cores,
                MEM_SLOT_QUANTILE * 100.0,
                bytes_to_gib(q),
                bytes_to_gib(h.mem_recent_max_bytes)
            ));
            let mut cores = h.busy_cores;
            if let Some(f) = h.cpu_censored_floor.filter(|_| h.cpu_need_unknown()) {
                notes.push(format!(
                    "CPU need not known yet: a recent run kept its cores busy; growing to {f:.2} cores"
                ));
                cores = f;
                cpu_need_unknown = true;
            }
            risk = Some(r);
            let runs = profile.map_or(0, |p| p.runs);
            (
                cores,
                floor_mem,
                SizingBasis::History { runs },
                mean_duration.or(hints.duration_s),
                h.n_eff,
            )
        }
        None => match (hint_vcpu, hint_mem) {
            (None, None) => {
                notes.push(format!(
                    "no history, no hints: default {DEFAULT_VCPU} vCPU, {DEFAULT_MEMORY_GIB} GiB"
                ));
                (
                    DEFAULT_VCPU as f64,
                    gib_to_bytes(DEFAULT_MEMORY_GIB),
                    SizingBasis::Default,
                    hints.duration_s,
                    0.0,
                )
            }
            (c, m) => {
                notes.push("no history: the spec's hints".to_string());
                let c = c.unwrap_or(DEFAULT_VCPU as f64);
                let m = m.unwrap_or(gib_to_bytes(DEFAULT_MEMORY_GIB));
                (c, m, SizingBasis::Hints, hints.duration_s, 0.0)
            }
        },
    };

    // OOM: never again the memory that was killed; markedly more right after a kill.
    if let Some(p) = profile {
        if let Some(floor) = p.oom_memory_floor_bytes.filter(|f| *f > 0) {
            let recent = p
                .last_oom_at_ms
                .is_some_and(|t| now_ms.saturating_sub(t) < OOM_BUMP_WINDOW_MS);
            let factor = if recent {
                spec.retry.oom_memory_factor.max(OOM_REMEMBERED_FACTOR)
            } else {
                OOM_REMEMBERED_FACTOR
            };
            let bumped = (floor as f64 * factor) as u64;
            if bumped > job_mem {
                notes.push(format!(
                    "OOM bump: killed at {:.2} GiB, now at least {:.2} GiB (×{factor})",
                    bytes_to_gib(floor),
                    bytes_to_gib(bumped)
                ));
                job_mem = bumped;
            }
        }
    }
    job_mem = job_mem.max(MIN_JOB_MEMORY_BYTES);

    let b = &spec.resources;
    let mut vcpu = if cpu_need_unknown || hist.is_none() {
        // The request as given; a censored job gets all the cores it grows to.
        vcpus_for(cores, 1.0)
    } else {
        vcpus_for(cores, max_slowdown)
    };
    if let Some(lo) = b.min_vcpu.filter(|lo| vcpu < *lo) {
        notes.push(format!("resources.min_vcpu raises vCPU {vcpu} → {lo}"));
        vcpu = lo;
        cores = cores.max(lo as f64);
    }
    if let Some(hi) = b.max_vcpu.filter(|hi| vcpu > *hi) {
        notes.push(format!("resources.max_vcpu caps vCPU {vcpu} → {hi}"));
        vcpu = hi.max(1);
        cores = cores.min(vcpu as f64 * max_slowdown);
    }
    let mem_lo = b.min_memory_gib.map(gib_to_bytes);
    let mem_hi = b.max_memory_gib.map(gib_to_bytes);
    if let Some(lo) = mem_lo.filter(|lo| job_mem < *lo) {
        notes.push(format!(
            "resources.min_memory_gib raises memory to {:.2} GiB",
            bytes_to_gib(lo)
        ));
        job_mem = lo;
    }
    if let Some(hi) = mem_hi.filter(|hi| job_mem > *hi) {
        notes.push(format!(
            "resources.max_memory_gib caps memory at {:.2} GiB",
            bytes_to_gib(hi)
        ));
        job_mem = hi;
    }
    // Memory bounded above by the spec is as much as the job may have: no risk to price there.
    if let (Some(r), Some(hi)) = (risk.as_mut(), mem_hi) {
        r.safe_bytes = Some(r.safe_bytes.map_or(hi, |s| s.min(hi)));
    }

    let (mut gpu, mut gpu_mem) = match &hist {
        Some(h) if h.gpu_count > 0 => (
            h.gpu_count,
            (h.gpu_mem_max_bytes as f64 * (1.0 + GPU_MEM_MARGIN)) as u64,
        ),
        _ => (hints.gpu.unwrap_or(0), hints.gpu_memory_gib.map_or(0, gib_to_bytes)),
    };
    if gpu > 0 && hist.as_ref().is_some_and(|h| h.gpu_count > 0) {
        notes.push(format!("GPU seen: {gpu} GPU, {:.2} GiB each", bytes_to_gib(gpu_mem)));
    }
    if let Some(lo) = b.min_gpu.filter(|lo| gpu < *lo) {
        gpu = lo;
    }
    if let Some(hi) = b.max_gpu.filter(|hi| gpu > *hi) {
        notes.push(format!("resources.max_gpu caps GPUs at {hi}"));
        gpu = hi;
    }
    if let Some(lo) = b.min_gpu_memory_gib.map(gib_to_bytes).filter(|lo| gpu_mem < *lo) {
        gpu_mem = lo;
    }
    if let Some(hi) = b.max_gpu_memory_gib.map(gib_to_bytes).filter(|hi| gpu_mem > *hi) {
        gpu_mem = hi;
    }
    if gpu == 0 {
        gpu_mem = 0;
    }

    // Memory of a shared slot (a reservation): the predictive quantile, never under the floor,
    // never over the bounds (the quantile was taken before `max_memory_gib` made memory above
    // it safe, hence the cap here). A dedicated run gets what its type leaves.
    let slot_mem = slot_quantile.map_or(job_mem, |q| q.max(job_mem));
    let slot_mem = mem_hi.map_or(slot_mem, |hi| slot_mem.min(hi)).max(job_mem);

    let small = cores <= SHARED_MAX_CORES && slot_mem <= SHARED_MAX_MEMORY_BYTES;
    // A small job never seen, with no duration hint, is treated as short: a slot on a shared
    // host costs at most its share of the host and needs no start-up when a host is warm,
    // and its first run measures how long it really is.
    let short = duration.map_or(basis == SizingBasis::Hints && small, |d| d < SHARED_MAX_DURATION_S);
    let tiny = hist.is_some() && cores <= TINY_MAX_CORES && slot_mem <= TINY_MAX_MEMORY_BYTES;
    let class = if gpu == 0 && (short || tiny) {
        notes.push(if tiny {
            "tiny: shares a host".to_string()
        } else {
            "short and small: shares a host".to_string()
        });
        SizeClass::Shared
    } else {
        SizeClass::Dedicated
    };
    // A shared slot's memory is its reservation; a dedicated type must hold at least the floor,
    // and ranking prices the risk of every type above it — unless the fixed quantile is asked
    // for, which makes the slot's figure the dedicated run's least memory too (a cold start
    // has no distribution, so both are its request).
    let fixed = opts.memory_headroom == MemoryHeadroom::FixedQuantile;
    let unpriced = class == SizeClass::Shared || fixed;
    let need_mem = if unpriced { slot_mem } else { job_mem };
    let disk_gib = match b.disk_gib {
        Some(d) => Some(d),
        None => {
            let learned = profile.and_then(learned_disk_gib);
            if let Some(d) = learned {
                notes.push(format!("disk from history: {d} GiB"));
            }
            learned
        }
    };

    Requirement {
        vcpu,
        cores_used: cores.clamp(0.05, vcpu as f64 * max_slowdown),
        memory_bytes: instance_memory_bytes(need_mem),
        gpu,
        gpu_memory_bytes: gpu_mem,
        architectures: spec.placement.architectures.clone(),
        expected_duration_s: duration,
        class,
        basis,
        notes,
        job_memory_bytes: slot_mem,
        max_price_per_hour: b.max_price_per_hour,
        confidence_runs: confidence,
        max_slowdown,
        memory_risk: if unpriced { None } else { risk },
        oom_retry_factor: spec.retry.oom_memory_factor.max(OOM_REMEMBERED_FACTOR),
        cpu_need_unknown,
        shared_slot_cores: match &hist {
            Some(h) if !cpu_need_unknown => h.cpu_expected_slowdown_cores.clamp(0.05, cores.max(0.05)),
            _ => 0.0,
        },
        container: spec.image.is_some(),
        disk_gib,
    }
}

/// Recent runs a disk figure is learned from: enough for a high water mark, recent enough to
/// follow a job whose inputs grow.
pub const DISK_RECENT_RUNS: usize = 10;
/// Headroom on the highest disk use seen: a full disk fails the run (ENOSPC) and costs a retry,
/// while a GiB of gp3 costs ~$0.00011 an hour, so the margin is wide and fixed rather than
/// priced: half again the peak, plus 2 GiB for the OS's own logs and caches.
pub const DISK_HEADROOM: f64 = 1.5;
pub const DISK_SLACK_GIB: f64 = 2.0;

/// The root volume a job's history asks for, GiB, when its spec names none: the highest disk
/// use (`RunSummary::disk_used_max_bytes`: the root filesystem's, the OS included, plus the
/// instance-store scratch's) of its last [`DISK_RECENT_RUNS`] runs that measured it, with
/// [`DISK_HEADROOM`] and [`DISK_SLACK_GIB`]. None without such runs (the default volume then);
/// a run that ended otherwise than succeeding counts too, since it may have failed for space.
pub fn learned_disk_gib(profile: &JobProfile) -> Option<u32> {
    let peak = profile
        .recent
        .iter()
        .rev()
        .filter_map(|r| r.disk_used_max_bytes)
        .take(DISK_RECENT_RUNS)
        .max()?;
    let gib = peak as f64 / (1u64 << 30) as f64 * DISK_HEADROOM + DISK_SLACK_GIB;
    Some((gib.ceil() as u32).clamp(1, crate::machine_image::MAX_ROOT_GIB))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Bounds;
    use crate::summary::{CpuStats, GpuStats};

    const DAY_MS: i64 = 24 * 3600 * 1000;

    fn run(i: usize, avg: f64, p95: f64, max: f64, mem_gib: f64, dur: f64, status: RunStatus) -> RunSummary {
        RunSummary {
            job: "j".into(),
            run_id: format!("r{i}"),
            started_at_ms: i as i64 * 1000,
            ended_at_ms: i as i64 * 1000 + 1,
            duration_s: dur,
            cpu: CpuStats {
                avg,
                p50: avg,
                p95,
                max,
            },
            mem_max_bytes: gib_to_bytes(mem_gib),
            oom_killed: status == RunStatus::OomKilled,
            status,
            ..Default::default()
        }
    }

    #[test]
    fn the_root_volume_follows_the_disk_the_job_used_unless_the_spec_names_one() {
        let spec = JobSpec::for_command("j", vec!["x".into()]);
        // GIVEN no run that measured its disk, THEN the default volume (no figure)
        let p = profile(
            &(0..3)
                .map(|i| run(i, 1.0, 1.0, 1.0, 1.0, 600.0, RunStatus::Succeeded))
                .collect::<Vec<_>>(),
        );
        assert_eq!(size(&spec, Some(&p), 0).disk_gib, None);
        // GIVEN runs that used up to 40 GiB (one older run used 300 GiB, beyond the recent window)
        let mut runs = vec![];
        let mut big = run(0, 1.0, 1.0, 1.0, 1.0, 600.0, RunStatus::Succeeded);
        big.disk_used_max_bytes = Some(300 << 30);
        runs.push(big);
        for i in 1..=DISK_RECENT_RUNS {
            let mut r = run(i, 1.0, 1.0, 1.0, 1.0, 600.0, RunStatus::Succeeded);
            r.disk_used_max_bytes = Some(((20 + i as u64 * 2) << 30).min(40 << 30));
            runs.push(r);
        }
        let p = profile(&runs);
        let req = size(&spec, Some(&p), 0);
        // THEN the peak of the recent window, with headroom: 40 × 1.5 + 2 = 62 GiB
        assert_eq!(req.disk_gib, Some(62));
        assert!(
            req.notes.iter().any(|n| n.contains("disk from history: 62 GiB")),
            "{:?}",
            req.notes
        );
        // AND a spec's own figure wins
        let mut fixed = spec.clone();
        fixed.resources.disk_gib = Some(500);
        assert_eq!(size(&fixed, Some(&p), 0).disk_gib, Some(500));
        // AND a failed run's figure counts (it may have failed for want of space)
        let mut failed = run(99, 1.0, 1.0, 1.0, 1.0, 60.0, RunStatus::Failed);
        failed.disk_used_max_bytes = Some(100 << 30);
        runs.push(failed);
        assert_eq!(size(&spec, Some(&profile(&runs)), 0).disk_gib, Some(152));
    }

    fn profile(runs: &[RunSummary]) -> JobProfile {
        let mut p = JobProfile::new("j");
        for r in runs {
            p.record(r);
        }
        p
    }

    fn steady(n: usize, avg: f64, mem_gib: f64, dur: f64) -> JobProfile {
        profile(
            &(0..n)
                .map(|i| run(i, avg, avg, avg, mem_gib, dur, RunStatus::Succeeded))
                .collect::<Vec<_>>(),
        )
    }

    fn spec() -> JobSpec {
        JobSpec {
            name: "j".into(),
            ..JobSpec::default()
        }
    }

    fn gib(r: &Requirement) -> f64 {
        bytes_to_gib(r.job_memory_bytes)
    }

    #[test]
    fn cold_start_table() {
        // GIVEN no history: (hints vcpu, hints memory) → (vCPU, job GiB, basis, class)
        type Case = (Option<f64>, Option<f64>, u32, f64, SizingBasis, SizeClass);
        let cases: [Case; 4] = [
            (
                None,
                None,
                DEFAULT_VCPU,
                DEFAULT_MEMORY_GIB,
                SizingBasis::Default,
                SizeClass::Dedicated,
            ),
            (Some(3.0), Some(12.0), 3, 12.0, SizingBasis::Hints, SizeClass::Dedicated),
            (
                Some(1.0),
                None,
                1,
                DEFAULT_MEMORY_GIB,
                SizingBasis::Hints,
                SizeClass::Shared,
            ),
            (
                Some(16.0),
                Some(64.0),
                16,
                64.0,
                SizingBasis::Hints,
                SizeClass::Dedicated,
            ),
        ];
        for (vcpu, mem, want_vcpu, want_gib, basis, class) in cases {
            let mut s = spec();
            s.hints.vcpu = vcpu;
            s.hints.memory_gib = mem;
            let r = size(&s, None, 0);
            assert_eq!(
                (r.vcpu, gib(&r), &r.basis, r.class),
                (want_vcpu, want_gib, &basis, class),
                "{vcpu:?} {mem:?}"
            );
            assert_eq!(r.memory_bytes, r.job_memory_bytes + OS_RESERVE_BYTES);
        }
    }

    #[test]
    fn cpu_follows_cores_kept_busy_not_bursts() {
        // GIVEN a job averaging 1 core with bursts to 8 WHEN sized THEN 1 vCPU
        let runs: Vec<RunSummary> = (0..10)
            .map(|i| run(i, 1.0, 3.0, 8.0, 2.0, 3600.0, RunStatus::Succeeded))
            .collect();
        assert_eq!(size(&spec(), Some(&profile(&runs)), 0).vcpu, 1);
        // the fewest vCPUs within max_slowdown 1.1: 4.4 cores → 4 (10% slower), 4.5 → 5
        assert_eq!(size(&spec(), Some(&steady(5, 3.9, 2.0, 3600.0)), 0).vcpu, 4);
        assert_eq!(size(&spec(), Some(&steady(5, 4.4, 2.0, 3600.0)), 0).vcpu, 4);
        assert_eq!(size(&spec(), Some(&steady(5, 4.5, 2.0, 3600.0)), 0).vcpu, 5);
        // a job that may not be slowed at all gets every core it keeps busy
        let mut strict = spec();
        strict.max_slowdown = Some(1.0);
        assert_eq!(size(&strict, Some(&steady(5, 4.2, 2.0, 3600.0)), 0).vcpu, 5);
        for cores in [0.3, 1.0, 2.7, 4.4, 7.9, 15.0] {
            for ms in [1.0, 1.1, 1.5, 2.0] {
                let v = vcpus_for(cores, ms);
                assert!(cores / v as f64 <= ms + 1e-9 && (v == 1 || cores / (v - 1) as f64 > ms));
            }
        }
    }

    /// A run given `given` cores that used `min(need, given)` of them (what the agent sees).
    fn capped(i: usize, need: f64, given: f64) -> RunSummary {
        let used = need.min(given);
        let mut r = run(i, used, used, used, 2.0, 600.0, RunStatus::Succeeded);
        r.cpu_given_cores = Some(given);
        r
    }

    /// A job whose peak is 0.4 GiB × (input / GB)^0.9 and whose duration is 1000 s × input / GB,
    /// each ±`noise` (deterministic), over inputs from 0.5 to 32 GB in shuffled order.
    fn input_runs(n: usize, noise: f64) -> Vec<RunSummary> {
        (0..n)
            .map(|i| {
                let k = (i * 7) % n;
                let x = 0.5e9 * 64f64.powf(k as f64 / (n - 1) as f64);
                let e = ((i as f64 * 12.9898).sin() * 43_758.545_3).fract().abs() * 2.0 - 1.0;
                let gb = x / 1e9;
                let mut r = run(
                    i,
                    1.0,
                    1.0,
                    1.0,
                    0.4 * gb.powf(0.9) * (1.0 + noise * e),
                    1000.0 * gb * (1.0 + noise * e),
                    RunStatus::Succeeded,
                );
                r.input_bytes = Some(x as u64);
                r
            })
            .collect()
    }

    fn with_input(x: u64) -> JobSpec {
        let mut s = spec();
        s.hints.input_bytes = Some(x);
        s
    }

    #[test]
    fn input_aware_sizing_follows_the_input_and_falls_back_on_a_poor_fit() {
        // GIVEN 16 runs whose peak and duration follow their input closely (±5%)
        let p = profile(&input_runs(16, 0.05));
        let plain = size(&spec(), Some(&p), 0);
        // WHEN the next run's input is small (1 GB) or large (30 GB)
        let small = size(&with_input(1_000_000_000), Some(&p), 0);
        let large = size(&with_input(30_000_000_000), Some(&p), 0);
        // THEN the small run's floor and risk are those of a ~0.4 GiB job, far under the plain
        // floor (the largest recent peak, ~9 GiB) …
        let risk_s = small.memory_risk.clone().unwrap();
        assert!(
            small.notes.iter().any(|n| n.contains("input-aware memory")),
            "{:?}",
            small.notes
        );
        assert!(gib(&small) < 0.3 * gib(&plain), "{} vs {}", gib(&small), gib(&plain));
        assert!(risk_s.p_exceed(gib_to_bytes(0.6)) < 0.01, "{risk_s:?}");
        assert!(risk_s.p_exceed(gib_to_bytes(0.3)) > 0.5, "{risk_s:?}");
        // … the large run's floor follows its input up (the recent runs' peaks carried to
        // 30 GB), and its risk is centred on the ~8.5 GiB the law gives: small at 1.35× of it,
        // even at the centre
        let law = 0.4 * 30f64.powf(0.9);
        assert!(gib(&large) > 0.9 * law, "{} vs {law}", gib(&large));
        let risk_l = large.memory_risk.clone().unwrap();
        assert!(risk_l.p_exceed(gib_to_bytes(1.35 * law)) < 0.01, "{risk_l:?}");
        assert!(risk_l.p_exceed(gib_to_bytes(0.9 * law)) > 0.5, "{risk_l:?}");
        // … and the durations are predicted from the input (1000 s per GB)
        let d = large.expected_duration_s.unwrap();
        assert!((d / 30_000.0 - 1.0).abs() < 0.1, "{d}");
        assert!(small.expected_duration_s.unwrap() < 1500.0);

        // GIVEN runs whose peaks do not follow their inputs (the same peaks, inputs shuffled
        // against them) THEN the fit fails its gate and sizing is the plain one
        let mut shuffled = input_runs(16, 0.05);
        let inputs: Vec<Option<u64>> = shuffled.iter().map(|r| r.input_bytes).collect();
        for (i, r) in shuffled.iter_mut().enumerate() {
            r.input_bytes = inputs[(i * 5 + 3) % 16];
        }
        let p2 = profile(&shuffled);
        assert!(input_fits(&p2).memory.is_none());
        let a = size(&with_input(1_000_000_000), Some(&p2), 0);
        let b = size(&spec(), Some(&p2), 0);
        assert_eq!(
            (a.memory_bytes, a.memory_risk.clone()),
            (b.memory_bytes, b.memory_risk.clone())
        );
        // GIVEN too few runs with an input THEN no fit either
        assert_eq!(input_fits(&profile(&input_runs(16, 0.05)[..4])), InputFits::default());
    }

    #[test]
    fn saturating_job_grows_until_it_stops_saturating_and_never_shrinks_on_censored_runs() {
        // GIVEN a job first run on 1 core (it keeps it busy: censored), each next run given what
        // sizing says, with the vCPUs and the "need not known" verdict of each sizing worked out
        // by hand (max_slowdown 1.1, no request, censoring at 90% busy, growth ×2):
        // - 0.95 cores: 1 (busy 0.95 of 1: censored) → 2 (0.95 of 2: measured; it explains the
        //   1-core run, 0.95 ≤ 1 × 1.1) → ceil(0.95 / 1.1) = 1, saturated but explained: 1 on
        // - 1.5: 1 → 2 (1.5 of 2 measured; 1.5 > 1.1 does not explain the 1-core run, but a
        //   later measured run with more cores resolves it) → ceil(1.5 / 1.1) = 2 on
        // - 5.5: 1 → 2 → 4 (each kept busy, doubled) → 8 (5.5 of 8 measured) → ceil(5.5 / 1.1)
        //   = 5, saturated but explained by the 8-core run (5.5 ≤ 5 × 1.1): 5 on
        // - 13: 1 → 2 → 4 → 8 → 16 (13 of 16 measured) → ceil(13 / 1.1) = 12, explained: 12 on
        type Case = (f64, [u32; 10], usize);
        let cases: [Case; 4] = [
            (0.95, [1, 2, 1, 1, 1, 1, 1, 1, 1, 1], 1),
            (1.5, [1, 2, 2, 2, 2, 2, 2, 2, 2, 2], 1),
            (5.5, [1, 2, 4, 8, 5, 5, 5, 5, 5, 5], 3),
            (13.0, [1, 2, 4, 8, 16, 12, 12, 12, 12, 12], 4),
        ];
        for (need, want, unknown_runs) in cases {
            let mut runs = vec![capped(0, need, 1.0)];
            let mut given_seq = vec![1];
            for i in 1..10 {
                let p = profile(&runs);
                let r = size(&spec(), Some(&p), 0);
                // THEN the need is unknown exactly while a censored run binds, and the profile-level
                // answer is the requirement's
                let unknown = i <= unknown_runs;
                assert_eq!(r.cpu_need_unknown, unknown, "need {need}, sizing {i}: {:?}", r.notes);
                assert_eq!(cpu_need_unknown(&spec(), &p), unknown, "need {need}, sizing {i}");
                given_seq.push(r.vcpu);
                runs.push(capped(i, need, r.vcpu as f64));
            }
            // … and the sizes are the hand-computed ones: doubling while censored, then the
            // fewest within max_slowdown, without oscillating
            assert_eq!(given_seq, want, "need {need}");
        }
        // the verdict depends on the spec: a 1.05-core job measured on 2 cores, then kept busy on
        // 1, is explained within max_slowdown 1.1 (1.05 ≤ 1 × 1.1) but not within 1.0, where the
        // 1-core run binds (nothing later measured more) and the job grows again
        let p = profile(&[capped(0, 1.05, 2.0), capped(1, 1.05, 1.0)]);
        let mut strict = spec();
        strict.max_slowdown = Some(1.0);
        assert!(!cpu_need_unknown(&spec(), &p));
        assert!(cpu_need_unknown(&strict, &p));
        assert!(size(&strict, Some(&p), 0).cpu_need_unknown);
        assert!(!cpu_need_unknown(&spec(), &JobProfile::new("j")));
        // GIVEN a job sized to its need of 2 cores whose need then grows to 6 (bigger inputs)
        let mut runs: Vec<RunSummary> = (0..10).map(|i| capped(i, 2.0, 8.0)).collect();
        let mut seq = vec![];
        for i in 10..60 {
            let r = size(&spec(), Some(&profile(&runs)), 0);
            let given = r.vcpu as f64;
            let last = runs.last().unwrap();
            // THEN it never gets fewer cores than a run that kept its cores busy …
            if cpu_saturated(last) && given < last.cpu_given_cores.unwrap() {
                panic!("shrank after a saturated run: {seq:?}");
            }
            seq.push(given);
            runs.push(capped(i, if i < 12 { 2.0 } else { 6.0 }, given));
        }
        // … and once the runs that measured the old need leave the window it is probed again and
        // grows to the new need
        let reached = seq.iter().position(|g| 6.0 / g <= DEFAULT_MAX_SLOWDOWN + 1e-9);
        assert!(reached.is_some_and(|k| k <= crate::profile::RECENT_RUNS + 4), "{seq:?}");
        assert!(
            seq[seq.len() - 5..]
                .iter()
                .all(|g| 6.0 / g <= DEFAULT_MAX_SLOWDOWN + 1e-9),
            "{seq:?}"
        );
        // … and the bounds still win
        let mut s = spec();
        s.resources.max_vcpu = Some(3);
        let censored = vec![capped(0, 6.0, 2.0)];
        assert_eq!(size(&s, Some(&profile(&censored)), 0).vcpu, 3);
        assert!(size(&spec(), Some(&profile(&censored)), 0).vcpu >= 4);
    }

    #[test]
    fn memory_distribution_widens_with_few_runs_and_jumps_after_an_oom() {
        let risk = |p: &JobProfile| size(&spec(), Some(p), 0).memory_risk.unwrap();
        let at = gib_to_bytes(13.0);
        let one = risk(&steady(1, 2.0, 10.0, 3600.0)).p_exceed(at);
        let few = risk(&steady(3, 2.0, 10.0, 3600.0)).p_exceed(at);
        let many = risk(&steady(30, 2.0, 10.0, 3600.0)).p_exceed(at);
        assert!(one > few && few > many, "{one} {few} {many}");
        assert!(many < 0.01 && one > 0.05, "{one} {many}");
        // the floor: never under the recent peak, even for a job whose peaks vary
        let runs: Vec<RunSummary> = (0..20)
            .map(|i| {
                run(
                    i,
                    1.0,
                    1.0,
                    1.0,
                    if i == 18 { 40.0 } else { 4.0 },
                    3600.0,
                    RunStatus::Succeeded,
                )
            })
            .collect();
        assert!(size(&spec(), Some(&profile(&runs)), 0).memory_bytes >= gib_to_bytes(40.0) + OS_RESERVE_BYTES);
        // an OOM kill at 11 GiB makes 13 GiB far riskier than before, and 11 GiB impossible
        let mut runs: Vec<RunSummary> = (0..30)
            .map(|i| run(i, 2.0, 2.0, 2.0, 10.0, 3600.0, RunStatus::Succeeded))
            .collect();
        runs.push(run(30, 2.0, 2.0, 2.0, 11.0, 3600.0, RunStatus::OomKilled));
        let mut p = profile(&runs);
        p.last_oom_at_ms = Some(0);
        let after = size(&spec(), Some(&p), 0);
        assert!(after.memory_risk.as_ref().unwrap().p_exceed(at) > 3.0 * many);
        assert!(after.memory_bytes >= gib_to_bytes(16.5));
    }

    #[test]
    fn the_request_is_as_safe_as_the_batch_service_until_a_run_comes_near_it() {
        // GIVEN a job requesting 4 GiB whose 3 runs peaked at ~3 GiB
        let mut s = spec();
        s.hints.memory_gib = Some(4.0);
        let r = size(&s, Some(&steady(3, 1.0, 3.0, 3600.0)), 0);
        let risk = r.memory_risk.unwrap();
        // THEN 4 GiB is safe, 3.5 is not
        assert_eq!(risk.p_exceed(gib_to_bytes(4.0)), 0.0);
        assert!(risk.p_exceed(gib_to_bytes(3.5)) > 0.0);
        // … and a run above the request disproves it
        let mut runs: Vec<RunSummary> = (0..3)
            .map(|i| run(i, 1.0, 1.0, 1.0, 3.0, 3600.0, RunStatus::Succeeded))
            .collect();
        runs.push(run(3, 1.0, 1.0, 1.0, 4.2, 3600.0, RunStatus::Succeeded));
        let risk = size(&s, Some(&profile(&runs)), 0).memory_risk.unwrap();
        assert!(risk.p_exceed(gib_to_bytes(4.3)) > 0.0);
    }

    #[test]
    fn fixed_headroom_makes_the_99_percent_bound_the_least_memory() {
        // GIVEN a long 2-core job (dedicated) whose 6 runs peaked at 6–10 GiB
        let runs: Vec<RunSummary> = (0..6)
            .map(|i| {
                run(
                    i,
                    2.0,
                    2.0,
                    2.0,
                    6.0 + (i % 3) as f64 * 2.0,
                    3600.0,
                    RunStatus::Succeeded,
                )
            })
            .collect();
        let p = profile(&runs);
        let fixed_opts = SizeOptions {
            memory_headroom: MemoryHeadroom::FixedQuantile,
        };
        let priced = size(&spec(), Some(&p), 0);
        let fixed = size_with(&spec(), Some(&p), 0, &fixed_opts);
        // THEN priced: the floor (the largest recent peak, 10 GiB) as the least memory, the risk
        // above it left to ranking
        assert_eq!(priced.class, SizeClass::Dedicated);
        assert_eq!(priced.memory_bytes, gib_to_bytes(10.0) + OS_RESERVE_BYTES);
        let risk = priced.memory_risk.clone().unwrap();
        // … fixed: the least memory is the 99% bound of that same risk, nothing left to price,
        // and every other figure is the same
        assert!(fixed.memory_risk.is_none());
        assert_eq!(fixed.memory_bytes, fixed.job_memory_bytes + OS_RESERVE_BYTES);
        let q = fixed.memory_bytes - OS_RESERVE_BYTES;
        assert!(q > gib_to_bytes(10.0), "{}", bytes_to_gib(q));
        assert!(
            risk.p_exceed(q) <= 0.01 && risk.p_exceed(q - 2 * MIB) > 0.01,
            "{}",
            bytes_to_gib(q)
        );
        assert_eq!(
            (fixed.vcpu, fixed.job_memory_bytes, &fixed.notes),
            (priced.vcpu, priced.job_memory_bytes, &priced.notes)
        );
        // a cold start has no distribution: its request either way
        let mut s = spec();
        s.hints.memory_gib = Some(12.0);
        s.hints.vcpu = Some(4.0);
        assert_eq!(size_with(&s, None, 0, &fixed_opts), size(&s, None, 0));
    }

    #[test]
    fn a_new_instance_for_a_shared_slot_has_the_room_its_admission_needs() {
        // GIVEN a never-seen small job asking for 1.5 cores (shared: its need is not known, so
        // a host admits it only with 2 × 1.5 = 3 cores free)
        let mut s = spec();
        s.hints.vcpu = Some(1.5);
        s.hints.memory_gib = Some(2.0);
        let cold = size(&s, None, 0);
        assert_eq!((cold.class, cold.vcpu), (SizeClass::Shared, 2));
        // THEN a host it opens needs 3 vCPUs, and nothing else changes
        let host = cold.new_instance();
        assert_eq!(host.vcpu, 3);
        assert_eq!(
            Requirement {
                vcpu: cold.vcpu,
                ..host.clone()
            },
            cold
        );
        // GIVEN the same job once measured at 1.5 cores of 4 in a minute (need known: the
        // reservation and the cores within max_slowdown, ceil(1.5 / 1.1) = 2) THEN no more
        // than it asks for
        let mut once = capped(0, 1.5, 4.0);
        once.duration_s = 60.0;
        let measured = size(&s, Some(&profile(&[once])), 0);
        assert_eq!(measured.class, SizeClass::Shared);
        assert_eq!(measured.new_instance().vcpu, 2);
        // … and a dedicated run's new instance is its requirement
        let big = size(&spec(), Some(&steady(5, 6.0, 20.0, 3600.0)), 0);
        assert_eq!(big.new_instance(), big);
    }

    #[test]
    fn t_and_normal_cdfs_match_tables() {
        // two-sided 95% points: z 1.960, t(10) 2.228, t(2) 4.303; t(1) is Cauchy
        assert!((normal_cdf(1.96) - 0.975).abs() < 1e-4);
        assert!((student_t_cdf(2.228, 10.0) - 0.975).abs() < 1e-4);
        assert!((student_t_cdf(4.303, 2.0) - 0.975).abs() < 1e-4);
        assert!((student_t_cdf(1.0, 1.0) - 0.75).abs() < 1e-6);
        assert!((student_t_cdf(-2.228, 10.0) - 0.025).abs() < 1e-4);
        assert!((student_t_cdf(2.326, 1e6) - 0.99).abs() < 1e-4);
    }

    #[test]
    fn oom_bump_is_marked_and_remembered() {
        // GIVEN 10 steady 4-GiB runs, then an OOM kill at 6 GiB
        let mut runs: Vec<RunSummary> = (0..10)
            .map(|i| run(i, 1.0, 1.0, 1.0, 4.0, 3600.0, RunStatus::Succeeded))
            .collect();
        runs.push(run(10, 1.0, 1.0, 1.0, 6.0, 100.0, RunStatus::OomKilled));
        let mut p = profile(&runs);
        p.last_oom_at_ms = Some(0);
        let right_after = size(&spec(), Some(&p), DAY_MS);
        assert!(gib(&right_after) >= 9.0, "×1.5 the killed size: {}", gib(&right_after));
        assert!(right_after.notes.iter().any(|n| n.contains("OOM")));
        let weeks_later = size(&spec(), Some(&p), 30 * DAY_MS);
        assert!(
            gib(&weeks_later) >= 7.19 && gib(&weeks_later) < gib(&right_after),
            "{}",
            gib(&weeks_later)
        );
        // the spec's oom factor is honoured
        let mut s = spec();
        s.retry.oom_memory_factor = 2.0;
        assert!(gib(&size(&s, Some(&p), DAY_MS)) >= 12.0);
    }

    #[test]
    fn bounds_always_win() {
        let mut p = steady(10, 6.0, 20.0, 3600.0);
        p.oom_memory_floor_bytes = Some(30 * GIB);
        p.last_oom_at_ms = Some(0);
        let mut s = spec();
        s.resources = Bounds {
            min_vcpu: Some(8),
            max_memory_gib: Some(24.0),
            max_price_per_hour: Some(0.5),
            ..Bounds::default()
        };
        let r = size(&s, Some(&p), 0);
        assert_eq!(r.vcpu, 8);
        assert_eq!(gib(&r), 24.0);
        assert_eq!(r.max_price_per_hour, Some(0.5));
        s.resources = Bounds {
            max_vcpu: Some(2),
            min_memory_gib: Some(64.0),
            ..Bounds::default()
        };
        let r = size(&s, Some(&p), 0);
        assert_eq!((r.vcpu, gib(&r)), (2, 64.0));
        assert!(r.cores_used <= 2.0 * DEFAULT_MAX_SLOWDOWN);
    }

    #[test]
    fn gpu_when_seen() {
        let runs: Vec<RunSummary> = (0..3)
            .map(|i| {
                let mut r = run(i, 2.0, 2.0, 2.0, 16.0, 3600.0, RunStatus::Succeeded);
                r.gpu = Some(GpuStats {
                    count: 1,
                    util_avg_pct: 60.0,
                    util_max_pct: 99.0,
                    mem_max_bytes: 10 * GIB,
                });
                r
            })
            .collect();
        let r = size(&spec(), Some(&profile(&runs)), 0);
        assert_eq!(r.gpu, 1);
        assert_eq!(r.gpu_memory_bytes, 12 * GIB);
        assert_eq!(r.class, SizeClass::Dedicated);
        // no GPU use, no GPU unless hinted
        assert_eq!(size(&spec(), Some(&steady(3, 2.0, 4.0, 60.0)), 0).gpu, 0);
        let mut s = spec();
        s.hints.gpu = Some(2);
        s.hints.gpu_memory_gib = Some(24.0);
        let r = size(&s, None, 0);
        assert_eq!((r.gpu, r.gpu_memory_bytes), (2, 24 * GIB));
    }

    #[test]
    fn tiny_and_short_jobs_share_a_host() {
        // short (30 s) and small → shared; long and big → dedicated; tiny and long → shared
        assert_eq!(
            size(&spec(), Some(&steady(5, 1.5, 2.0, 30.0)), 0).class,
            SizeClass::Shared
        );
        assert_eq!(
            size(&spec(), Some(&steady(5, 6.0, 20.0, 3600.0)), 0).class,
            SizeClass::Dedicated
        );
        assert_eq!(
            size(&spec(), Some(&steady(5, 0.1, 0.2, 36_000.0)), 0).class,
            SizeClass::Shared
        );
        let r = size(&spec(), Some(&steady(5, 1.0, 2.0, 30.0)), 0);
        assert_eq!(r.expected_duration_s, Some(30.0));
    }
}
