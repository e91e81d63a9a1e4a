//! Sizing v2: from a job's history (or, for a job never seen, its spec's hints) to what the
//! next run's instance must offer. The reasoning behind every constant is in `docs/sizing.md`.
//!
//! - Statistics over the recent usable runs, weighted by recency (half-life [`HALF_LIFE_RUNS`]),
//!   with the effective number of runs as the confidence.
//! - CPU: the cores the job keeps busy (per run, the larger of its mean and its median sample),
//!   the recency-weighted 90th percentile over runs, rounded down when the remainder is small.
//! - Memory: a one-sided prediction bound for the next run's peak in log space, with a prior
//!   spread that the history overrides as runs accumulate, so the headroom shrinks with
//!   confidence; never under the recent peaks plus a margin; an OOM kill raises a floor.
//! - GPU when a GPU was used; the spec's bounds always win; tiny or short jobs share a host.

use crate::profile::JobProfile;
use crate::spec::{Arch, JobSpec};
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
    /// Memory the job itself may use (its cgroup limit on a shared host), bytes: `memory_bytes`
    /// less the OS reserve.
    #[serde(default)]
    pub job_memory_bytes: u64,
    /// The spec's `resources.max_price_per_hour`, applied by ranking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price_per_hour: Option<f64>,
    /// Effective number of runs behind the figures (0 without history): the confidence.
    #[serde(default)]
    pub confidence_runs: f64,
}

/// Conservative default for a job with neither history nor hints: a general-purpose shape
/// (4 GiB per vCPU) big enough for most single-node data-science scripts.
pub const DEFAULT_VCPU: u32 = 2;
pub const DEFAULT_MEMORY_GIB: f64 = 8.0;

/// Memory kept for the OS, the agent and the container runtime on a dedicated instance.
pub const OS_RESERVE_BYTES: u64 = 256 * MIB;
/// Recency weighting: a run `HALF_LIFE_RUNS` runs older weighs half (VPA halves a sample's
/// weight every 24 h; a run count works for jobs run hourly and monthly alike).
pub const HALF_LIFE_RUNS: f64 = 8.0;
/// Quantile of per-run busy cores over runs (the VPA CPU target percentile).
pub const CPU_QUANTILE: f64 = 0.9;
/// A fractional core up to this much is left to share the last core rather than buy another:
/// the run is at most this fraction slower on that core, and a whole vCPU is not bought.
pub const CPU_ROUND_DOWN: f64 = 0.25;
/// z of the one-sided prediction bound for the next peak: 99% (a run under it is OOM-killed).
pub const MEM_Z: f64 = 2.33;
/// Prior spread of a job's peak memory between runs, in natural-log units (≈ ±25%), and its
/// weight in pseudo-runs: with one run the headroom is ~2×, with a dozen steady runs ~1.3×.
pub const MEM_PRIOR_LOG_SD: f64 = 0.25;
pub const MEM_PRIOR_RUNS: f64 = 2.0;
/// Never size under the largest recent peak plus this margin (VPA's safety margin is 15%).
pub const MEM_MIN_MARGIN: f64 = 0.15;
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
    /// Cores kept busy, recency-weighted quantile [`CPU_QUANTILE`].
    pub busy_cores: f64,
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

/// Statistics over the profile's usable runs, or None without any.
pub fn history(profile: &JobProfile) -> Option<History> {
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

    let mut cpu: Vec<(f64, f64)> = runs.iter().zip(&weights).map(|(r, w)| (busy_cores(r), *w)).collect();
    let busy = weighted_quantile(&mut cpu, CPU_QUANTILE);

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
        busy_cores: busy,
        mem_log_mean: mean,
        mem_log_sd: var.sqrt(),
        mem_recent_max_bytes: recent_max,
        mem_window_max_bytes: runs.iter().map(|r| r.mem_max_bytes).max().unwrap_or(0),
        mean_duration_s,
        gpu_count,
        gpu_mem_max_bytes: gpu_mem,
    })
}

/// vCPUs to buy for `cores` kept busy: whole vCPUs, a small remainder shares the last one.
pub fn vcpus_for(cores: f64) -> u32 {
    ((cores - CPU_ROUND_DOWN).ceil().max(1.0)).min(u32::MAX as f64) as u32
}

/// The memory the next run's peak stays under with ~99% confidence, bytes.
pub fn memory_bound(h: &History) -> u64 {
    let n = h.n_eff.max(1.0);
    let var = (n * h.mem_log_sd.powi(2) + MEM_PRIOR_RUNS * MEM_PRIOR_LOG_SD.powi(2)) / (n + MEM_PRIOR_RUNS);
    let upper_gib = (h.mem_log_mean + MEM_Z * var.sqrt() * (1.0 + 1.0 / n).sqrt()).exp();
    let by_max = (h.mem_recent_max_bytes as f64 * (1.0 + MEM_MIN_MARGIN)) as u64;
    // Distribution-free cap: the next run exceeds the largest of n peaks with probability
    // 1/(n+1); the margin and a 1/n term on top of it make that far smaller. When a job's
    // peaks are spread over orders of magnitude (inputs of very different sizes) the
    // log-normal bound overshoots the observed maximum; with enough runs the maximum wins.
    let cap = h.mem_window_max_bytes as f64 * (1.0 + MEM_MIN_MARGIN) * (1.0 + 1.0 / h.runs.max(1) as f64);
    gib_to_bytes(upper_gib).min(cap as u64).max(by_max)
}

/// Sizes the next run of `spec` from its profile at time `now_ms` (Unix ms).
pub fn size(spec: &JobSpec, profile: Option<&JobProfile>, now_ms: i64) -> Requirement {
    let mut notes = Vec::new();
    let hist = profile.and_then(history);
    let hints = &spec.hints;
    let (mut cores, mut job_mem, basis, duration, confidence) = match &hist {
        Some(h) => {
            let mem = memory_bound(h);
            notes.push(format!(
                "history: {} runs (effective {:.1}); busy cores p90 {:.2}; memory bound {:.2} GiB over recent peak {:.2} GiB",
                h.runs,
                h.n_eff,
                h.busy_cores,
                bytes_to_gib(mem),
                bytes_to_gib(h.mem_recent_max_bytes)
            ));
            let runs = profile.map_or(0, |p| p.runs);
            (
                h.busy_cores,
                mem,
                SizingBasis::History { runs },
                h.mean_duration_s.or(hints.duration_s),
                h.n_eff,
            )
        }
        None => match (hints.vcpu, hints.memory_gib) {
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
                let c = c.filter(|v| v.is_finite() && *v > 0.0).unwrap_or(DEFAULT_VCPU as f64);
                let m = m
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .map_or(gib_to_bytes(DEFAULT_MEMORY_GIB), gib_to_bytes);
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
                    "OOM bump: killed at {:.2} GiB, now {:.2} GiB (×{factor})",
                    bytes_to_gib(floor),
                    bytes_to_gib(bumped)
                ));
                job_mem = bumped;
            }
        }
    }
    job_mem = job_mem.max(MIN_JOB_MEMORY_BYTES);

    let b = &spec.resources;
    let mut vcpu = vcpus_for(cores);
    if let Some(lo) = b.min_vcpu.filter(|lo| vcpu < *lo) {
        notes.push(format!("resources.min_vcpu raises vCPU {vcpu} → {lo}"));
        vcpu = lo;
        cores = cores.max(lo as f64);
    }
    if let Some(hi) = b.max_vcpu.filter(|hi| vcpu > *hi) {
        notes.push(format!("resources.max_vcpu caps vCPU {vcpu} → {hi}"));
        vcpu = hi.max(1);
        cores = cores.min(vcpu as f64);
    }
    if let Some(lo) = b.min_memory_gib.map(gib_to_bytes).filter(|lo| job_mem < *lo) {
        notes.push(format!(
            "resources.min_memory_gib raises memory to {:.2} GiB",
            bytes_to_gib(lo)
        ));
        job_mem = lo;
    }
    if let Some(hi) = b.max_memory_gib.map(gib_to_bytes).filter(|hi| job_mem > *hi) {
        notes.push(format!(
            "resources.max_memory_gib caps memory at {:.2} GiB",
            bytes_to_gib(hi)
        ));
        job_mem = hi;
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

    let small = cores <= SHARED_MAX_CORES && job_mem <= SHARED_MAX_MEMORY_BYTES;
    // A small job never seen, with no duration hint, is treated as short: a slot on a shared
    // host costs at most its share of the host and needs no start-up when a host is warm,
    // and its first run measures how long it really is.
    let short = duration.map_or(basis == SizingBasis::Hints && small, |d| d < SHARED_MAX_DURATION_S);
    let tiny = hist.is_some() && cores <= TINY_MAX_CORES && job_mem <= TINY_MAX_MEMORY_BYTES;
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

    Requirement {
        vcpu,
        cores_used: cores.clamp(0.05, vcpu as f64 + CPU_ROUND_DOWN),
        memory_bytes: job_mem.saturating_add(OS_RESERVE_BYTES),
        gpu,
        gpu_memory_bytes: gpu_mem,
        architectures: spec.placement.architectures.clone(),
        expected_duration_s: duration,
        class,
        basis,
        notes,
        job_memory_bytes: job_mem,
        max_price_per_hour: b.max_price_per_hour,
        confidence_runs: confidence,
    }
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
            cpu: CpuStats { avg, p50: avg, p95, max },
            mem_max_bytes: gib_to_bytes(mem_gib),
            oom_killed: status == RunStatus::OomKilled,
            status,
            ..Default::default()
        }
    }

    fn profile(runs: &[RunSummary]) -> JobProfile {
        let mut p = JobProfile::new("j");
        for r in runs {
            p.record(r);
        }
        p
    }

    fn steady(n: usize, avg: f64, mem_gib: f64, dur: f64) -> JobProfile {
        profile(&(0..n).map(|i| run(i, avg, avg, avg, mem_gib, dur, RunStatus::Succeeded)).collect::<Vec<_>>())
    }

    fn spec() -> JobSpec {
        JobSpec { name: "j".into(), ..JobSpec::default() }
    }

    fn gib(r: &Requirement) -> f64 {
        bytes_to_gib(r.job_memory_bytes)
    }

    #[test]
    fn cold_start_table() {
        // GIVEN no history: (hints vcpu, hints memory) → (vCPU, job GiB, basis, class)
        let cases: [(Option<f64>, Option<f64>, u32, f64, SizingBasis, SizeClass); 4] = [
            (None, None, DEFAULT_VCPU, DEFAULT_MEMORY_GIB, SizingBasis::Default, SizeClass::Dedicated),
            (Some(3.0), Some(12.0), 3, 12.0, SizingBasis::Hints, SizeClass::Dedicated),
            (Some(1.0), None, 1, DEFAULT_MEMORY_GIB, SizingBasis::Hints, SizeClass::Shared),
            (Some(16.0), Some(64.0), 16, 64.0, SizingBasis::Hints, SizeClass::Dedicated),
        ];
        for (vcpu, mem, want_vcpu, want_gib, basis, class) in cases {
            let mut s = spec();
            s.hints.vcpu = vcpu;
            s.hints.memory_gib = mem;
            let r = size(&s, None, 0);
            assert_eq!((r.vcpu, gib(&r), &r.basis, r.class), (want_vcpu, want_gib, &basis, class), "{vcpu:?} {mem:?}");
            assert_eq!(r.memory_bytes, r.job_memory_bytes + OS_RESERVE_BYTES);
        }
    }

    #[test]
    fn cpu_follows_cores_kept_busy_not_bursts() {
        // GIVEN a job averaging 1 core with bursts to 8 WHEN sized THEN 1 vCPU
        let runs: Vec<RunSummary> =
            (0..10).map(|i| run(i, 1.0, 3.0, 8.0, 2.0, 3600.0, RunStatus::Succeeded)).collect();
        assert_eq!(size(&spec(), Some(&profile(&runs)), 0).vcpu, 1);
        // a steady 3.9-core job gets 4, a 4.2-core one shares its last core
        assert_eq!(size(&spec(), Some(&steady(5, 3.9, 2.0, 3600.0)), 0).vcpu, 4);
        assert_eq!(size(&spec(), Some(&steady(5, 4.2, 2.0, 3600.0)), 0).vcpu, 4);
        assert_eq!(size(&spec(), Some(&steady(5, 4.4, 2.0, 3600.0)), 0).vcpu, 5);
    }

    #[test]
    fn memory_headroom_shrinks_with_confidence() {
        let one = gib(&size(&spec(), Some(&steady(1, 2.0, 10.0, 3600.0)), 0));
        let few = gib(&size(&spec(), Some(&steady(3, 2.0, 10.0, 3600.0)), 0));
        let many = gib(&size(&spec(), Some(&steady(30, 2.0, 10.0, 3600.0)), 0));
        assert!(one > few && few > many, "{one} {few} {many}");
        assert!((17.0..=21.0).contains(&one), "{one}");
        assert!((11.5..=13.5).contains(&many), "{many}");
        // never under the recent peak + 15%, even for a job whose peaks vary
        let runs: Vec<RunSummary> = (0..20)
            .map(|i| run(i, 1.0, 1.0, 1.0, if i == 18 { 40.0 } else { 4.0 }, 3600.0, RunStatus::Succeeded))
            .collect();
        assert!(gib(&size(&spec(), Some(&profile(&runs)), 0)) >= 46.0);
    }

    #[test]
    fn oom_bump_is_marked_and_remembered() {
        // GIVEN 10 steady 4-GiB runs, then an OOM kill at 6 GiB
        let mut runs: Vec<RunSummary> =
            (0..10).map(|i| run(i, 1.0, 1.0, 1.0, 4.0, 3600.0, RunStatus::Succeeded)).collect();
        runs.push(run(10, 1.0, 1.0, 1.0, 6.0, 100.0, RunStatus::OomKilled));
        let mut p = profile(&runs);
        p.last_oom_at_ms = Some(0);
        let right_after = size(&spec(), Some(&p), DAY_MS);
        assert!(gib(&right_after) >= 9.0, "×1.5 the killed size: {}", gib(&right_after));
        assert!(right_after.notes.iter().any(|n| n.contains("OOM")));
        let weeks_later = size(&spec(), Some(&p), 30 * DAY_MS);
        assert!(gib(&weeks_later) >= 7.19 && gib(&weeks_later) < gib(&right_after), "{}", gib(&weeks_later));
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
        s.resources = Bounds { max_vcpu: Some(2), min_memory_gib: Some(64.0), ..Bounds::default() };
        let r = size(&s, Some(&p), 0);
        assert_eq!((r.vcpu, gib(&r)), (2, 64.0));
        assert!(r.cores_used <= 2.0 + CPU_ROUND_DOWN);
    }

    #[test]
    fn gpu_when_seen() {
        let runs: Vec<RunSummary> = (0..3)
            .map(|i| {
                let mut r = run(i, 2.0, 2.0, 2.0, 16.0, 3600.0, RunStatus::Succeeded);
                r.gpu = Some(GpuStats { count: 1, util_avg_pct: 60.0, util_max_pct: 99.0, mem_max_bytes: 10 * GIB });
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
        assert_eq!(size(&spec(), Some(&steady(5, 1.5, 2.0, 30.0)), 0).class, SizeClass::Shared);
        assert_eq!(size(&spec(), Some(&steady(5, 6.0, 20.0, 3600.0)), 0).class, SizeClass::Dedicated);
        assert_eq!(size(&spec(), Some(&steady(5, 0.1, 0.2, 36_000.0)), 0).class, SizeClass::Shared);
        let r = size(&spec(), Some(&steady(5, 1.0, 2.0, 30.0)), 0);
        assert_eq!(r.expected_duration_s, Some(30.0));
    }
}
