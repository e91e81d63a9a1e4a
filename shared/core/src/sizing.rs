//! Sizing: from a job's profile (or, for a job never seen, its spec's hints) to a requirement.
//! v1 (placeholder, to be replaced by the sizing issue's v2 — keep the signature).

use crate::profile::JobProfile;
use crate::spec::{Arch, JobSpec};
use crate::units::{gib_to_bytes, GIB};
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
    /// Minimum memory of the instance, bytes (margin included).
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
}

/// Conservative default for a job with neither history nor hints.
pub const DEFAULT_VCPU: u32 = 2;
pub const DEFAULT_MEMORY_GIB: f64 = 8.0;

/// Sizes the next run of `spec`.
pub fn size(spec: &JobSpec, profile: Option<&JobProfile>, _now_ms: i64) -> Requirement {
    let history = profile.filter(|p| p.usable_runs().next().is_some());
    let (mut cores, mut mem, basis) = match history {
        Some(p) => {
            let cores = p.cpu_p95_cores.quantile(0.95).unwrap_or(1.0);
            let mem = p.mem_max_gib.quantile(1.0).unwrap_or(1.0) * 1.2;
            (cores, mem, SizingBasis::History { runs: p.runs })
        }
        None => match (spec.hints.vcpu, spec.hints.memory_gib) {
            (None, None) => (DEFAULT_VCPU as f64, DEFAULT_MEMORY_GIB, SizingBasis::Default),
            (c, m) => (
                c.unwrap_or(DEFAULT_VCPU as f64),
                m.unwrap_or(DEFAULT_MEMORY_GIB),
                SizingBasis::Hints,
            ),
        },
    };
    if let Some(lo) = spec.resources.min_vcpu {
        cores = cores.max(lo as f64);
    }
    if let Some(hi) = spec.resources.max_vcpu {
        cores = cores.min(hi as f64);
    }
    if let Some(lo) = spec.resources.min_memory_gib {
        mem = mem.max(lo);
    }
    if let Some(hi) = spec.resources.max_memory_gib {
        mem = mem.min(hi);
    }
    Requirement {
        vcpu: (cores.ceil() as u32).max(1),
        cores_used: cores.max(0.1),
        memory_bytes: gib_to_bytes(mem).max(GIB / 2),
        gpu: spec.hints.gpu.unwrap_or(0).max(spec.resources.min_gpu.unwrap_or(0)),
        gpu_memory_bytes: gib_to_bytes(spec.hints.gpu_memory_gib.unwrap_or(0.0)),
        architectures: spec.placement.architectures.clone(),
        expected_duration_s: history
            .and_then(|p| p.duration_s.quantile(0.5))
            .or(spec.hints.duration_s),
        class: SizeClass::Dedicated,
        basis,
        notes: vec![],
    }
}
