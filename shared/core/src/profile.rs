//! A job's profile: what its runs have used, merged across runs, bounded in size however many
//! runs and samples it has seen. Per-run figures go into DDSketches (relative-error quantile
//! sketches, mergeable, a few KiB each at 1% accuracy) and the most recent run summaries are
//! kept verbatim in a ring of [`RECENT_RUNS`].

use crate::summary::{RunStatus, RunSummary};
use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};
use std::collections::VecDeque;

/// Run summaries kept verbatim: enough for recency-weighted statistics, small enough for one
/// DynamoDB item (400 KB) with room to spare (a summary is ~600 bytes).
pub const RECENT_RUNS: usize = 32;

/// Relative accuracy of the sketches: 1% of the value, which is finer than any margin we add.
const SKETCH_ALPHA: f64 = 0.01;
/// Bucket cap per sketch; with alpha 1% this spans ~1e-4..1e9 without collapsing.
const SKETCH_MAX_BINS: u32 = 2048;
const SKETCH_MIN_VALUE: f64 = 1e-4;

fn new_sketch() -> DDSketch {
    DDSketch::new(Config::new(SKETCH_ALPHA, SKETCH_MAX_BINS, SKETCH_MIN_VALUE))
}

/// Quantile sketch with serde, wrapping `sketches_ddsketch::DDSketch`. An empty sketch is
/// stored as `null` (its min/max are infinities, which JSON cannot hold).
#[derive(Clone, Serialize, Deserialize)]
#[serde(from = "Option<DDSketch>", into = "Option<DDSketch>")]
pub struct Sketch(DDSketch);

impl From<Option<DDSketch>> for Sketch {
    fn from(s: Option<DDSketch>) -> Self {
        Sketch(s.unwrap_or_else(new_sketch))
    }
}

impl From<Sketch> for Option<DDSketch> {
    fn from(s: Sketch) -> Self {
        (s.0.count() > 0).then_some(s.0)
    }
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch(new_sketch())
    }
}

impl std::fmt::Debug for Sketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Sketch(n={}, p50={:?}, max={:?})",
            self.0.count(),
            self.quantile(0.5),
            self.0.max()
        )
    }
}

impl PartialEq for Sketch {
    fn eq(&self, other: &Self) -> bool {
        self.0.count() == other.0.count() && self.quantile(0.5) == other.quantile(0.5) && self.0.max() == other.0.max()
    }
}

impl Sketch {
    pub fn add(&mut self, v: f64) {
        if v.is_finite() && v >= 0.0 {
            self.0.add(v);
        }
    }
    /// Quantile `q` in 0..=1, or None when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.0.quantile(q.clamp(0.0, 1.0)).ok().flatten()
    }
    pub fn count(&self) -> usize {
        self.0.count()
    }
    pub fn max(&self) -> Option<f64> {
        self.0.max()
    }
    pub fn merge(&mut self, other: &Sketch) {
        // Merging fails only for sketches of different configs; all of ours share one.
        let _ = self.0.merge(&other.0);
    }
}

/// The profile of one job. Whether its CPU need is known is not stored here: it depends on the
/// spec too (`sizing::cpu_need_unknown`), and a flag kept beside the runs would be a second
/// definition of it. (Profiles written with the old `cpu_need_unknown` field still read: serde
/// skips it.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct JobProfile {
    pub job: String,
    /// Incremented on every write; stores use it for optimistic concurrency.
    pub version: u64,
    /// Runs folded in, all time.
    pub runs: u64,
    pub succeeded: u64,
    pub oom_kills: u64,
    pub interruptions: u64,
    /// Time of the latest OOM kill (Unix ms), so sizing keeps its bump for a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_oom_at_ms: Option<i64>,
    /// Memory the job had when last OOM-killed, bytes: the next size must exceed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_memory_floor_bytes: Option<u64>,
    /// Per-run figures, all time, as sketches.
    pub cpu_avg_cores: Sketch,
    pub cpu_p95_cores: Sketch,
    pub cpu_max_cores: Sketch,
    pub mem_max_gib: Sketch,
    pub duration_s: Sketch,
    pub gpu_mem_max_gib: Sketch,
    /// The most recent run summaries, oldest first.
    pub recent: VecDeque<RunSummary>,
}

impl JobProfile {
    pub fn new(job: &str) -> Self {
        JobProfile {
            job: job.to_string(),
            ..Default::default()
        }
    }

    /// Folds one finished run into the profile. Idempotent per run id: a run already in
    /// `recent` is not counted twice (a retried Lambda may record the same run again).
    pub fn record(&mut self, run: &RunSummary) -> bool {
        if self.recent.iter().any(|r| r.run_id == run.run_id) {
            return false;
        }
        self.runs += 1;
        match run.status {
            RunStatus::Succeeded => self.succeeded += 1,
            RunStatus::OomKilled => {
                self.oom_kills += 1;
                self.last_oom_at_ms = Some(run.ended_at_ms);
                let floor = self.oom_memory_floor_bytes.unwrap_or(0).max(run.mem_max_bytes);
                self.oom_memory_floor_bytes = Some(floor);
            }
            RunStatus::Interrupted | RunStatus::Lost => self.interruptions += 1,
            _ => {}
        }
        // Interrupted or lost runs stopped early: their peaks understate the job, their
        // durations are wrong. Keep them in `recent` for the record, but out of the sketches.
        if matches!(
            run.status,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::OomKilled
        ) {
            self.cpu_avg_cores.add(run.cpu.avg);
            self.cpu_p95_cores.add(run.cpu.p95);
            self.cpu_max_cores.add(run.cpu.max);
            self.mem_max_gib.add(crate::units::bytes_to_gib(run.mem_max_bytes));
            if run.status != RunStatus::OomKilled {
                self.duration_s.add(run.duration_s);
            }
            if let Some(g) = run.gpu {
                self.gpu_mem_max_gib.add(crate::units::bytes_to_gib(g.mem_max_bytes));
            }
        }
        // The profile keeps numbers, not output: 32 runs' tails would bloat every profile read.
        let mut kept = run.clone();
        kept.stdout_tail.clear();
        kept.stderr_tail.clear();
        self.recent.push_back(kept);
        while self.recent.len() > RECENT_RUNS {
            self.recent.pop_front();
        }
        true
    }

    /// Whether any run of the job used a GPU.
    pub fn gpu_seen(&self) -> bool {
        self.gpu_mem_max_gib.count() > 0 || self.recent.iter().any(|r| r.gpu.is_some_and(|g| g.util_max_pct > 0.0))
    }

    /// Runs usable for sizing (completed, not interrupted).
    pub fn usable_runs(&self) -> impl Iterator<Item = &RunSummary> {
        self.recent.iter().filter(|r| {
            matches!(
                r.status,
                RunStatus::Succeeded | RunStatus::Failed | RunStatus::OomKilled
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::CpuStats;

    fn run(id: &str, cpu: f64, mem_gib: u64, status: RunStatus) -> RunSummary {
        RunSummary {
            job: "j".into(),
            run_id: id.into(),
            duration_s: 60.0,
            cpu: CpuStats {
                avg: cpu,
                p50: cpu,
                p95: cpu,
                max: cpu,
            },
            mem_max_bytes: mem_gib * crate::units::GIB,
            status,
            ..Default::default()
        }
    }

    #[test]
    fn bounded_however_many_runs() {
        // GIVEN 10,000 runs, WHEN folded in, THEN the profile stays small and the quantiles are right
        let mut p = JobProfile::new("j");
        for i in 0..10_000u64 {
            p.record(&run(
                &format!("r{i}"),
                (i % 100) as f64 / 10.0,
                1 + i % 8,
                RunStatus::Succeeded,
            ));
        }
        assert_eq!(p.runs, 10_000);
        assert_eq!(p.recent.len(), RECENT_RUNS);
        let size = serde_json::to_vec(&p).unwrap().len();
        assert!(size < 64 * 1024, "profile is {size} bytes");
        let p50 = p.cpu_avg_cores.quantile(0.5).unwrap();
        assert!((p50 - 4.95).abs() < 0.2, "{p50}");
        let m = p.mem_max_gib.quantile(1.0).unwrap();
        assert!((m - 8.0).abs() < 0.1, "{m}");
    }

    #[test]
    fn records_a_run_once_and_remembers_oom() {
        let mut p = JobProfile::new("j");
        assert!(p.record(&run("a", 1.0, 4, RunStatus::OomKilled)));
        assert!(!p.record(&run("a", 1.0, 4, RunStatus::OomKilled)));
        assert_eq!(p.runs, 1);
        assert_eq!(p.oom_kills, 1);
        assert_eq!(p.oom_memory_floor_bytes, Some(4 * crate::units::GIB));
    }

    #[test]
    fn interrupted_runs_do_not_skew_sizing() {
        let mut p = JobProfile::new("j");
        p.record(&run("a", 1.0, 1, RunStatus::Interrupted));
        assert_eq!(p.mem_max_gib.count(), 0);
        assert_eq!(p.interruptions, 1);
        assert_eq!(p.usable_runs().count(), 0);
    }

    #[test]
    fn survives_json_round_trip() {
        let mut p = JobProfile::new("j");
        p.record(&run("a", 2.0, 3, RunStatus::Succeeded));
        let json = serde_json::to_string(&p).unwrap();
        let back: JobProfile = serde_json::from_str(&json).unwrap();
        assert_eq!(back.cpu_avg_cores.quantile(0.5), p.cpu_avg_cores.quantile(0.5));
        assert_eq!(back.recent, p.recent);
        // a profile stored while it still carried the cpu_need_unknown flag reads the same
        let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
        old["cpu_need_unknown"] = serde_json::Value::Bool(true);
        assert_eq!(serde_json::from_value::<JobProfile>(old).unwrap(), back);
    }
}
