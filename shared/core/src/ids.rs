//! Identifiers: run ids, pools, instance ids, and the S3-style object keys of a run.
//! The key layout is shared by S3 and the local object store, so Athena and DuckDB read both.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An EC2 instance id (or a local process handle rendered as `local-<pid>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct InstanceId(pub String);

impl InstanceId {
    /// The prefix of the local launcher's "instances" (a job run here under the monitor).
    pub const LOCAL_PREFIX: &'static str = "local-";

    /// Whether this is a local run rather than an EC2 instance (its cost is an estimate of what
    /// the chosen type would have cost).
    pub fn is_local(&self) -> bool {
        self.0.starts_with(Self::LOCAL_PREFIX)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A capacity pool: one instance type in one availability zone for one market.
/// Capacity errors and interruptions are remembered per pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct Pool {
    pub instance_type: String,
    /// AZ id or name; empty when the region-level offer was used.
    pub az: String,
    pub market: crate::spec::Market,
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.instance_type,
            if self.az.is_empty() { "*" } else { &self.az },
            self.market.as_str()
        )
    }
}

/// `YYYY-MM-DD` (UTC) of a Unix-millisecond time: the `dt=` partition.
pub fn day_of(ts_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ts_ms)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".to_string())
}

/// A run id: sortable by start time, unique enough without coordination
/// (`YYYYMMDDTHHMMSSZ-<8 hex>`), and safe in S3 keys and file names.
pub fn new_run_id(now_ms: i64, entropy: u64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    format!("{}-{:08x}", t.format("%Y%m%dT%H%M%SZ"), entropy as u32)
}

/// A new run id for a run started now by this process (`spotfit run`, `spotfit submit`): the
/// time, and entropy from the process's randomly keyed hasher, the clock's nanoseconds and the
/// pid, so two runs started in the same second by two processes do not collide.
pub fn fresh_run_id(now_ms: i64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    new_run_id(now_ms, h.finish())
}

/// True if `id` is safe as a run id in keys and paths.
pub fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `PREFIXpart-<n>SUFFIX` keys sorted by `n` (numerically: part 100 after part 99).
fn parts_in_order(listed: Vec<String>, prefix: &str, suffix: &str) -> Vec<String> {
    let mut parts: Vec<(u64, String)> = listed
        .into_iter()
        .filter_map(|k| {
            let n = k
                .strip_prefix(prefix)?
                .strip_prefix("part-")?
                .strip_suffix(suffix)?
                .parse()
                .ok()?;
            Some((n, k))
        })
        .collect();
    parts.sort();
    parts.into_iter().map(|(_, k)| k).collect()
}

/// Object keys of one run, identical in S3 and in the local store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunKeys {
    pub job: String,
    pub day: String,
    pub run_id: String,
}

impl RunKeys {
    pub fn new(job: &str, started_at_ms: i64, run_id: &str) -> Self {
        Self {
            job: job.to_string(),
            day: day_of(started_at_ms),
            run_id: run_id.to_string(),
        }
    }
    /// `samples/job=<job>/dt=<day>/run=<run_id>/`
    pub fn samples_prefix(&self) -> String {
        format!("samples/job={}/dt={}/run={}/", self.job, self.day, self.run_id)
    }
    /// Deterministic part name, so that a retried upload overwrites instead of duplicating.
    pub fn sample_part(&self, n: u64) -> String {
        format!("{}part-{:05}.ndjson.gz", self.samples_prefix(), n)
    }
    /// The sample parts among `listed` keys (an object store's listing of
    /// [`RunKeys::samples_prefix`]), in part order: other keys are left out.
    pub fn sample_parts_in_order(&self, listed: Vec<String>) -> Vec<String> {
        parts_in_order(listed, &self.samples_prefix(), ".ndjson.gz")
    }
    /// The same for the log parts under [`RunKeys::logs_prefix`].
    pub fn log_parts_in_order(&self, listed: Vec<String>) -> Vec<String> {
        parts_in_order(listed, &self.logs_prefix(), ".log.gz")
    }
    /// `logs/job=<job>/dt=<day>/run=<run_id>/`
    pub fn logs_prefix(&self) -> String {
        format!("logs/job={}/dt={}/run={}/", self.job, self.day, self.run_id)
    }
    /// Part `n` of the job's stdout and stderr ([`crate::logs`]), named like the sample parts
    /// so a retried upload overwrites.
    pub fn log_part(&self, n: u64) -> String {
        format!("{}part-{:05}.log.gz", self.logs_prefix(), n)
    }
    /// `runs/job=<job>/dt=<day>/<run_id>.json`
    pub fn summary(&self) -> String {
        format!("runs/job={}/dt={}/{}.json", self.job, self.day, self.run_id)
    }
    /// `records/dt=<day>/<run_id>-<attempt>.json` — the [`crate::run::RunRecord`] of one attempt,
    /// read by Athena's `run_records` table. Partitioned by day only: its questions are across
    /// jobs (cost per job per day, interruptions per pool) and the job is a field of the record.
    pub fn record(&self, attempt: u32) -> String {
        format!("records/dt={}/{}-{}.json", self.day, self.run_id, attempt)
    }
    /// `runs/job=<job>/dt=<day>/<run_id>.exit` — written last; its presence means the run is over.
    pub fn exit_marker(&self) -> String {
        format!("runs/job={}/dt={}/{}.exit", self.job, self.day, self.run_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_hive_layout() {
        // 2026-11-26T00:00:00Z
        let k = RunKeys::new("etl", 1_795_651_200_000, "r1");
        assert_eq!(
            k.sample_part(3),
            "samples/job=etl/dt=2026-11-26/run=r1/part-00003.ndjson.gz"
        );
        assert_eq!(k.summary(), "runs/job=etl/dt=2026-11-26/r1.json");
        assert_eq!(k.log_part(0), "logs/job=etl/dt=2026-11-26/run=r1/part-00000.log.gz");
        assert_eq!(k.record(2), "records/dt=2026-11-26/r1-2.json");
        assert!(valid_run_id(&new_run_id(1_795_651_200_000, 0xdead_beef)));
        // two fresh ids in the same millisecond differ, and both are valid
        let (a, b) = (fresh_run_id(1_795_651_200_000), fresh_run_id(1_795_651_200_000));
        assert_ne!(a, b);
        assert!(valid_run_id(&a) && a.starts_with("20261126T000000Z-"), "{a}");
        assert!(!valid_run_id("../x"));
    }
}
