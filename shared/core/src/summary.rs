//! The summary of one run: what the job used and how it ended. Computed once, from the
//! samples, by [`summarize`]; stored as `runs/job=<job>/dt=<day>/<run_id>.json`, in the run
//! store, and folded into the job's profile.

use crate::sample::{MemoryMetric, Sample};
use serde::{Deserialize, Serialize};

/// How the job's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExitInfo {
    /// Exit code when the process exited normally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// Signal number when the process was killed by a signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

impl ExitInfo {
    pub fn code(code: i32) -> Self {
        Self {
            code: Some(code),
            signal: None,
        }
    }
    pub fn signal(signal: i32) -> Self {
        Self {
            code: None,
            signal: Some(signal),
        }
    }
    /// The shell convention: the code, or 128 + signal.
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 1,
        }
    }
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Outcome of a run, as the pipeline sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    #[default]
    Running,
    Succeeded,
    Failed,
    OomKilled,
    /// Spot interruption or shutdown signal to the agent.
    Interrupted,
    /// The instance vanished without an exit marker.
    Lost,
    TimedOut,
    /// Its execution was stopped (`spotfit cancel`, StopExecution) or ended without it: the
    /// instance was terminated and the row closed with the time it cost.
    Cancelled,
}

impl RunStatus {
    pub fn is_final(&self) -> bool {
        !matches!(self, RunStatus::Running)
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::OomKilled => "oom_killed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Lost => "lost",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

/// CPU statistics of a run, in cores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct CpuStats {
    /// Time-weighted mean (CPU-seconds / wall seconds).
    pub avg: f64,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

/// GPU statistics of a run (present only when a GPU was seen).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct GpuStats {
    pub count: u32,
    /// Mean over samples and devices of SM utilisation, 0–100.
    pub util_avg_pct: f64,
    pub util_max_pct: f64,
    /// Largest device memory in use on any one GPU, bytes.
    pub mem_max_bytes: u64,
}

/// I/O totals over the run, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct IoTotals {
    pub disk_read_bytes: u64,
    pub disk_write_bytes: u64,
    #[serde(default)]
    pub net_rx_bytes: u64,
    #[serde(default)]
    pub net_tx_bytes: u64,
}

/// Summary of one run. Field names are a stable contract (JSON, Athena `runs` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunSummary {
    pub job: String,
    pub run_id: String,
    /// Unix epoch milliseconds.
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    pub duration_s: f64,
    pub samples: u64,
    pub cpu: CpuStats,
    pub mem_max_bytes: u64,
    pub mem_metric: MemoryMetric,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuStats>,
    pub io: IoTotals,
    pub exit: ExitInfo,
    pub oom_killed: bool,
    pub status: RunStatus,
    /// Cores the job could use (the instance's vCPUs, or on a shared host its reservation
    /// plus the idle cores it could take), when the recorder knows them. With it, sizing can
    /// tell a run that kept all its cores busy (censored: it needed at least that) from one
    /// that used what it needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_given_cores: Option<f64>,
    /// The job's cgroup held it back (CPU-throttled) for at least [`CPU_THROTTLED_FRACTION`] of
    /// its wall time: censored too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cpu_throttled: bool,
    /// Size of the run's input, bytes, when the spec said it (`hints.input_bytes`): what
    /// input-aware sizing regresses memory and duration on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_bytes: Option<u64>,
    /// The last bytes of the job's stdout, as text (invalid UTF-8 replaced, cut at a character):
    /// at most [`crate::logs::SUMMARY_TAIL_BYTES`] in the agent's summary, and
    /// [`crate::logs::RECORD_TAIL_BYTES`] once the check step puts it in the run record.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout_tail: String,
    /// The same of stderr: what a failed job said last.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr_tail: String,
    /// Peak disk space in use while the job ran, bytes: the used space of the filesystems the
    /// agent was told to watch (`--disk`: the instance's root and its instance-store scratch),
    /// summed, at its highest sample. What sizing learns the next root volume from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_used_max_bytes: Option<u64>,
}

impl RunSummary {
    /// Keeps at most `max` bytes of each tail (their ends), for where the summary must stay small.
    pub fn trim_tails(&mut self, max: usize) {
        for t in [&mut self.stdout_tail, &mut self.stderr_tail] {
            let keep = crate::logs::last_chars(t, max).len();
            t.drain(..t.len() - keep);
        }
    }
}

/// A spot interruption notice as IMDS gave it (`{"action":"terminate","time":"…"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpotNotice {
    pub action: String,
    pub time: String,
    /// When the agent saw it, Unix ms.
    pub seen_at_ms: i64,
}

/// The exit marker (`runs/job=…/dt=…/<run_id>.exit`): the agent's last write, after the run
/// summary, saying the run is over. The check step ends the wait on it and reads the summary
/// it points at; written and read through this one type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitMarker {
    pub run_id: String,
    pub job: String,
    pub ended_at_ms: i64,
    pub status: RunStatus,
    pub exit: ExitInfo,
    #[serde(default)]
    pub spot_notice: Option<SpotNotice>,
}

impl ExitMarker {
    /// The marker of the run `summary` describes.
    pub fn of(summary: &RunSummary, spot_notice: Option<SpotNotice>) -> Self {
        ExitMarker {
            run_id: summary.run_id.clone(),
            job: summary.job.clone(),
            ended_at_ms: summary.ended_at_ms,
            status: summary.status,
            exit: summary.exit,
            spot_notice,
        }
    }
}

/// The rows of a run's summary as people read it, label and value: the one rendering that
/// `spotfit run` (a table with the cost added) and `spotfit monitor` (plain text with the upload
/// added) both show.
pub fn summary_rows(s: &RunSummary) -> Vec<(&'static str, String)> {
    use crate::units::fmt_bytes;
    let exit = match (s.exit.code, s.exit.signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "exit unknown (attached)".into(),
    };
    let metric = match s.mem_metric {
        MemoryMetric::Rss => "rss",
        MemoryMetric::Pss => "pss",
        MemoryMetric::Cgroup => "cgroup working set",
    };
    let mut rows = vec![
        ("job", s.job.clone()),
        ("run id", s.run_id.clone()),
        (
            "status",
            format!(
                "{} ({exit}{})",
                s.status.as_str(),
                if s.oom_killed { ", OOM-killed" } else { "" }
            ),
        ),
        ("duration", format!("{:.2} s", s.duration_s)),
        ("samples", s.samples.to_string()),
        (
            "CPU cores avg / p50 / p95 / max",
            format!(
                "{:.2} / {:.2} / {:.2} / {:.2}",
                s.cpu.avg, s.cpu.p50, s.cpu.p95, s.cpu.max
            ),
        ),
        ("memory max", format!("{} ({metric})", fmt_bytes(s.mem_max_bytes))),
        (
            "disk read / write",
            format!(
                "{} / {}",
                fmt_bytes(s.io.disk_read_bytes),
                fmt_bytes(s.io.disk_write_bytes)
            ),
        ),
        (
            "net rx / tx",
            format!("{} / {}", fmt_bytes(s.io.net_rx_bytes), fmt_bytes(s.io.net_tx_bytes)),
        ),
    ];
    if let Some(g) = &s.gpu {
        rows.push((
            "GPU util avg / max, mem max",
            format!(
                "{} device(s), {:.0}% / {:.0}%, {}",
                g.count,
                g.util_avg_pct,
                g.util_max_pct,
                fmt_bytes(g.mem_max_bytes)
            ),
        ));
    }
    rows
}

/// Nearest-rank percentile of an already sorted slice; 0 for an empty one.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Everything [`summarize`] needs besides the samples.
#[derive(Debug, Clone, Default)]
pub struct RunEnd {
    pub job: String,
    pub run_id: String,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    pub exit: ExitInfo,
    /// The monitor saw an OOM kill (cgroup event, or SIGKILL with memory at the limit).
    pub oom_killed: bool,
    /// The agent was told to stop (SIGTERM, spot notice) before the job ended.
    pub interrupted: bool,
    pub timed_out: bool,
    /// Cores the job could use, as the recorder found them (the monitor: the job's cgroup CPU
    /// quota where one applies, else the CPUs the job may run on). Goes to
    /// [`RunSummary::cpu_given_cores`].
    pub cpu_given_cores: Option<f64>,
    /// CPU-throttled seconds the recorder saw over the run in the cgroup whose quota binds
    /// (`throttled_usec`/`throttled_time`); the larger of it and the samples' own counts (an
    /// attached cgroup may report the same counter both ways).
    pub cpu_throttled_s: f64,
}

/// A run is taken as CPU-throttled when its cgroup held it back for at least this fraction of
/// its wall time. It is the threshold of [`crate::sizing::CPU_CENSOR_FRACTION`] seen from the
/// throttling side, so it is defined from it, not set on its own: a run that kept ≥ 90% of its
/// cores busy is too close to its cap to show it needed no more, and a run its quota held back
/// for ≥ 10% of its time would have been about that much faster with more cores. Both mean
/// "within 10% of what the cores it had allowed"; tuned apart, a throttled run and a busy one
/// would be censored at different points.
pub const CPU_THROTTLED_FRACTION: f64 = 1.0 - crate::sizing::CPU_CENSOR_FRACTION;

/// Reduces a run's samples to its summary. Pure; samples may be in any order.
pub fn summarize(samples: &[Sample], end: &RunEnd) -> RunSummary {
    let duration_s = ((end.ended_at_ms - end.started_at_ms).max(0) as f64) / 1000.0;
    let mut cpu: Vec<f64> = samples.iter().map(|s| s.cpu_cores).filter(|c| c.is_finite()).collect();
    cpu.sort_by(|a, b| a.total_cmp(b));
    let cpu_seconds: f64 = samples
        .iter()
        .map(|s| s.cpu_cores * s.interval_s)
        .filter(|v| v.is_finite())
        .sum();
    let sampled_s: f64 = samples.iter().map(|s| s.interval_s).filter(|v| v.is_finite()).sum();
    let avg = if sampled_s > 0.0 { cpu_seconds / sampled_s } else { 0.0 };
    let mem_max_bytes = samples.iter().map(|s| s.mem_bytes).max().unwrap_or(0);
    let mem_metric = samples
        .iter()
        .max_by_key(|s| s.mem_bytes)
        .map(|s| s.mem_metric)
        .unwrap_or_default();
    let gpu = gpu_stats(samples);
    let last = samples.iter().max_by_key(|s| s.seq);
    let io = IoTotals {
        disk_read_bytes: samples.iter().map(|s| s.disk_read_bytes).max().unwrap_or(0),
        disk_write_bytes: samples.iter().map(|s| s.disk_write_bytes).max().unwrap_or(0),
        net_rx_bytes: counter_delta(samples.iter().filter_map(|s| s.net_rx_bytes)),
        net_tx_bytes: counter_delta(samples.iter().filter_map(|s| s.net_tx_bytes)),
    };
    let oom_from_cgroup = last.and_then(|s| s.oom_kills).unwrap_or(0) > 0;
    let oom_killed = end.oom_killed || oom_from_cgroup;
    let status = if end.timed_out {
        RunStatus::TimedOut
    } else if oom_killed {
        RunStatus::OomKilled
    } else if end.interrupted {
        RunStatus::Interrupted
    } else if end.exit.success() {
        RunStatus::Succeeded
    } else {
        RunStatus::Failed
    };
    RunSummary {
        job: end.job.clone(),
        run_id: end.run_id.clone(),
        started_at_ms: end.started_at_ms,
        ended_at_ms: end.ended_at_ms,
        duration_s,
        samples: samples.len() as u64,
        cpu: CpuStats {
            avg,
            p50: percentile_sorted(&cpu, 50.0),
            p95: percentile_sorted(&cpu, 95.0),
            max: cpu.last().copied().unwrap_or(0.0),
        },
        mem_max_bytes,
        mem_metric,
        gpu,
        io,
        exit: end.exit,
        oom_killed,
        status,
        // The samples do not say how many cores the run could use; the recorder that knows
        // (the monitor, from the job's cgroup and CPU affinity; the simulator's slot) says it.
        cpu_given_cores: end.cpu_given_cores.filter(|c| c.is_finite() && *c > 0.0),
        cpu_throttled: duration_s > 0.0
            && throttled_s(samples).max(end.cpu_throttled_s) >= CPU_THROTTLED_FRACTION * duration_s,
        // The monitor does not know the input; the pipeline, which has the spec, sets it.
        input_bytes: None,
        // The monitor's log capture sets them; samples say nothing of the job's output.
        stdout_tail: String::new(),
        stderr_tail: String::new(),
        disk_used_max_bytes: None,
    }
}

/// Throttled seconds over the run from the samples' cumulative counter (its rise from the
/// first sample to the last: an attached cgroup's counter includes time before the run).
fn throttled_s(samples: &[Sample]) -> f64 {
    let mut v = samples
        .iter()
        .filter_map(|s| s.cpu_throttled_s)
        .filter(|t| t.is_finite());
    let Some(first) = v.next() else { return 0.0 };
    let (lo, hi) = v.fold((first, first), |(lo, hi), t| (lo.min(t), hi.max(t)));
    hi - lo
}

fn counter_delta(values: impl Iterator<Item = u64>) -> u64 {
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    hi.saturating_sub(lo)
}

fn gpu_stats(samples: &[Sample]) -> Option<GpuStats> {
    let count = samples.iter().map(|s| s.gpus.len()).max().unwrap_or(0);
    if count == 0 {
        return None;
    }
    let utils: Vec<f64> = samples.iter().flat_map(|s| s.gpus.iter().map(|g| g.util_pct)).collect();
    Some(GpuStats {
        count: count as u32,
        util_avg_pct: utils.iter().sum::<f64>() / utils.len().max(1) as f64,
        util_max_pct: utils.iter().copied().fold(0.0, f64::max),
        mem_max_bytes: samples
            .iter()
            .flat_map(|s| s.gpus.iter().map(|g| g.mem_used_bytes))
            .max()
            .unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u64, cpu: f64, mem: u64) -> Sample {
        Sample {
            seq,
            ts_ms: seq as i64 * 1000,
            interval_s: 1.0,
            cpu_cores: cpu,
            mem_bytes: mem,
            ..Default::default()
        }
    }

    #[test]
    fn summary_rows_say_how_the_run_ended_and_what_it_used() {
        let s = RunSummary {
            job: "etl".into(),
            status: RunStatus::OomKilled,
            oom_killed: true,
            exit: ExitInfo {
                code: None,
                signal: Some(9),
            },
            mem_max_bytes: 3 << 30,
            ..Default::default()
        };
        let rows = summary_rows(&s);
        let get = |k: &str| rows.iter().find(|(l, _)| *l == k).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get("status"), "oom_killed (killed by signal 9, OOM-killed)");
        assert_eq!(get("memory max"), "3.00 GiB (rss)");
        assert!(
            rows.iter().all(|(l, _)| !l.starts_with("GPU")),
            "no GPU row without a GPU"
        );
    }

    #[test]
    fn tails_are_optional_in_json_and_trim_to_their_ends() {
        // a summary written before tails existed still parses
        let old = serde_json::to_value(RunSummary::default()).unwrap();
        assert!(old.get("stderr_tail").is_none(), "empty tails are not written");
        let mut s: RunSummary = serde_json::from_value(old).unwrap();
        assert_eq!(s.stderr_tail, "");
        s.stderr_tail = "aé\nlast line\n".into();
        s.trim_tails(11);
        assert_eq!(s.stderr_tail, "\nlast line\n");
        s.trim_tails(100);
        assert_eq!(s.stderr_tail, "\nlast line\n");
    }

    #[test]
    fn summarizes_cpu_memory_and_status() {
        // GIVEN ten one-second samples, mostly 1 core with one 4-core spike
        let mut s: Vec<Sample> = (0..10).map(|i| sample(i, 1.0, 100 + i)).collect();
        s[5].cpu_cores = 4.0;
        let end = RunEnd {
            ended_at_ms: 10_000,
            exit: ExitInfo::code(0),
            ..Default::default()
        };
        // WHEN summarized
        let r = summarize(&s, &end);
        // THEN the average is time-weighted, the max is the spike, p50 ignores it
        assert!((r.cpu.avg - 1.3).abs() < 1e-9);
        assert_eq!(r.cpu.max, 4.0);
        assert_eq!(r.cpu.p50, 1.0);
        assert_eq!(r.mem_max_bytes, 109);
        assert_eq!(r.status, RunStatus::Succeeded);
        assert_eq!(r.duration_s, 10.0);
    }

    #[test]
    fn status_precedence() {
        let s = vec![sample(0, 1.0, 1)];
        let cases = [
            (
                RunEnd {
                    exit: ExitInfo::code(3),
                    ..Default::default()
                },
                RunStatus::Failed,
            ),
            (
                RunEnd {
                    exit: ExitInfo::signal(9),
                    oom_killed: true,
                    ..Default::default()
                },
                RunStatus::OomKilled,
            ),
            (
                RunEnd {
                    exit: ExitInfo::signal(15),
                    interrupted: true,
                    ..Default::default()
                },
                RunStatus::Interrupted,
            ),
            (
                RunEnd {
                    exit: ExitInfo::signal(9),
                    timed_out: true,
                    ..Default::default()
                },
                RunStatus::TimedOut,
            ),
        ];
        for (end, want) in cases {
            assert_eq!(summarize(&s, &end).status, want, "{end:?}");
        }
        assert_eq!(ExitInfo::signal(9).shell_code(), 137);
    }

    #[test]
    fn cores_given_and_throttling_reach_the_summary() {
        // GIVEN a 10 s run on 2 cores whose samples show 0.5 s throttled, the recorder 0 or 2 s
        let mut s: Vec<Sample> = (0..10).map(|i| sample(i, 2.0, 1)).collect();
        for (i, x) in s.iter_mut().enumerate() {
            x.cpu_throttled_s = Some(7.0 + if i < 5 { 0.0 } else { 0.5 });
        }
        let end = |given, extra| RunEnd {
            ended_at_ms: 10_000,
            exit: ExitInfo::code(0),
            cpu_given_cores: given,
            cpu_throttled_s: extra,
            ..Default::default()
        };
        // WHEN summarized with what the recorder knew
        let r = summarize(&s, &end(Some(2.0), 0.0));
        // THEN the given cores are kept; 0.5 s of 10 s (the counter's rise, not its 7 s from
        // before the run) is not a throttled run, 2 s is
        assert_eq!(r.cpu_given_cores, Some(2.0));
        assert!(!r.cpu_throttled);
        assert!(summarize(&s, &end(Some(2.0), 2.0)).cpu_throttled);
        // … and the line is a tenth of the wall time (the censoring fraction's complement):
        // 1 s of 10 s held back is a throttled run, 0.9 s is not
        assert!(summarize(&s, &end(Some(2.0), 1.0)).cpu_throttled);
        assert!(!summarize(&s, &end(Some(2.0), 0.9)).cpu_throttled);
        assert_eq!(summarize(&s, &end(Some(f64::NAN), 0.0)).cpu_given_cores, None);
        assert_eq!(summarize(&s, &end(None, 0.0)).cpu_given_cores, None);
    }

    #[test]
    fn empty_run_is_not_a_panic() {
        let r = summarize(&[], &RunEnd::default());
        assert_eq!(r.samples, 0);
        assert_eq!(r.cpu.max, 0.0);
    }
}
