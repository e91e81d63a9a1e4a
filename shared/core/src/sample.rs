//! One usage sample of a tracked job, as written by the monitor (one JSON object per NDJSON
//! line, in the spool and in `samples/job=<job>/dt=<day>/run=<run_id>/part-<n>.ndjson.gz`).
//!
//! Field names are a stable contract: Athena tables and the DuckDB queries read them.
//! Units are in the names where they are not obvious: `_bytes`, `_s`, `_pct`, `_ms`.
//! Counters (`disk_*`, `net_*`, `page_faults_*`) are cumulative since the monitor started,
//! so a lost line never loses a total; rates are derived by differencing.

use serde::{Deserialize, Serialize};

/// Which memory figure `mem_bytes` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MemoryMetric {
    /// Sum of resident set sizes over the tracked process tree (double-counts shared pages).
    #[default]
    Rss,
    /// Sum of proportional set sizes (exact for shared pages, costlier to read).
    Pss,
    /// Memory charged to the tracked cgroup (includes page cache).
    Cgroup,
}

/// One GPU, as NVML reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GpuSample {
    /// NVML device index.
    pub index: u32,
    /// Utilisation of the streaming multiprocessors over the last sample period, 0–100.
    pub util_pct: f64,
    /// Device memory in use (all processes), bytes.
    pub mem_used_bytes: u64,
    /// Device memory total, bytes.
    pub mem_total_bytes: u64,
    /// Device memory used by the tracked processes, bytes (absent if the driver does not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proc_mem_bytes: Option<u64>,
}

/// One sample. Everything beyond time, CPU and memory is optional: absent means "not measured
/// here" (no GPU, no cgroup), never zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Sample {
    /// Wall-clock time of the sample, Unix epoch milliseconds (UTC).
    pub ts_ms: i64,
    /// Run this sample belongs to.
    pub run_id: String,
    /// Sequence number within the run, from 0, gap-free: duplicates and losses are detectable.
    pub seq: u64,
    /// Seconds actually elapsed since the previous sample (the first: since start).
    pub interval_s: f64,
    /// CPU used by the tracked tree over the interval, in cores (1.0 = one core fully busy).
    pub cpu_cores: f64,
    /// CPU used by the whole host over the interval, in cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_cpu_cores: Option<f64>,
    /// Number of processes in the tracked tree at sample time.
    #[serde(default)]
    pub processes: u32,
    /// Memory of the tracked tree, bytes, as named by `mem_metric`.
    pub mem_bytes: u64,
    pub mem_metric: MemoryMetric,
    /// Sum of RSS over the tree, bytes (every sample).
    #[serde(default)]
    pub rss_bytes: u64,
    /// Sum of PSS over the tree, bytes (refreshed at a lower rate; the latest value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pss_bytes: Option<u64>,
    /// cgroup memory usage (memory.current / memory.usage_in_bytes), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_mem_bytes: Option<u64>,
    /// cgroup working set (usage minus inactive file cache), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_working_set_bytes: Option<u64>,
    /// cgroup memory limit, bytes (absent when unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_mem_limit_bytes: Option<u64>,
    /// Cumulative OOM kills reported by the cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_kills: Option<u64>,
    /// Cumulative times the cgroup hit its memory limit (memory.events max / failcnt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_limit_hits: Option<u64>,
    /// Cumulative CPU throttled time of the cgroup, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_throttled_s: Option<f64>,
    /// Cumulative page faults of the tree (minor, major).
    #[serde(default)]
    pub page_faults_minor: u64,
    #[serde(default)]
    pub page_faults_major: u64,
    /// Cumulative bytes read from / written to storage by the tree.
    #[serde(default)]
    pub disk_read_bytes: u64,
    #[serde(default)]
    pub disk_write_bytes: u64,
    /// Cumulative host network bytes received / sent (all non-loopback interfaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_rx_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_tx_bytes: Option<u64>,
    /// Per-GPU figures; empty when no GPU or no driver.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuSample>,
}

impl Sample {
    /// Encodes as one NDJSON line (without the newline).
    pub fn to_json_line(&self) -> String {
        // Serialising a plain struct of numbers and strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_omits_unmeasured_fields() {
        // GIVEN a sample without GPU or cgroup data
        let s = Sample {
            ts_ms: 1,
            run_id: "r".into(),
            cpu_cores: 1.5,
            mem_bytes: 10,
            ..Default::default()
        };
        // WHEN encoded
        let line = s.to_json_line();
        // THEN absent means absent, and decoding gives it back
        assert!(!line.contains("gpus"), "{line}");
        assert!(!line.contains("cgroup_mem_bytes"), "{line}");
        assert_eq!(serde_json::from_str::<Sample>(&line).unwrap(), s);
    }
}
