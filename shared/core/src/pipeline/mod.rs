//! The pipeline steps, written once, generic over the ports, used by the Lambdas and by
//! `spotfit run` (through [`crate::drive`]): one module per step — [`size`], [`launch`],
//! [`check`], [`terminate`], [`record`], [`reap`], and the start of a scheduled run
//! ([`schedule`]) — and here the contract they share: the state
//! that flows through the state machine ([`RunState`] and its parts), the error type whose
//! names the ASL matches ([`PipelineError::name`]), the naming of attempts and tokens, and the
//! cost rule of an attempt. Each Lambda deserialises a [`RunState`] (or a [`SizeInput`]), calls
//! one step and returns the new state; the ASL only routes on `check.status` and `outcome`.

mod callback;
mod check;
mod launch;
mod reap;
mod record;
mod schedule;
mod size;
mod terminate;

pub use callback::*;
pub use check::{check_step, decide};
pub use launch::{launch_step, launch_step_within, LaunchSettings};
pub use reap::*;
pub use record::{
    bill, record_key, record_run, record_step, record_step_billed, update_profile, PROFILE_WRITE_ATTEMPTS,
};
pub use schedule::{scheduled_run_id, start_scheduled, ScheduledTick, TickAction, TickReport, MAX_EXECUTION_NAME};
pub use size::{size_step, DeployedRanking, Ranker};
pub use terminate::terminate_step;

use crate::error_names as names;
use crate::fallback::{self, PlanInput};
use crate::ids::{valid_run_id, InstanceId, Pool, RunKeys};
use crate::ports::{
    CapacityMark, CapacityStore, Clock, InstanceEnd, InstanceInfo, InstanceLauncher, InstanceState, LaunchError,
    LaunchRequest, ObjectStore, ProfileStore, RunStore, StoreError,
};
use crate::profile::JobProfile;
use crate::ranking::Candidate;
use crate::run::Placed;
use crate::run::RunRecord;
use crate::sizing::Requirement;
use crate::spec::{JobSpec, Market, SpecError};
use crate::summary::{ExitMarker, RunStatus, RunSummary};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Most candidates carried in the state (Step Functions caps a state at 256 KiB; a candidate
/// is ~400 bytes, and a launch that fails 24 pools in a row should fail rather than go on).
pub const MAX_CANDIDATES: usize = 24;
/// An attempt without a `timeout_s` may run this long before the pipeline stops it.
pub const DEFAULT_TIMEOUT_S: u64 = 24 * 3600;
/// Boot, agent download and upload at the end, on top of the job's own timeout (the
/// deployment may set another: `LaunchSettings::boot_grace_ms`).
pub const BOOT_GRACE_MS: i64 = 10 * 60 * 1000;
/// The longest boot grace a deployment may set (`SPOTFIT_BOOT_GRACE_S` ≤ 3600).
pub const MAX_BOOT_GRACE_MS: i64 = 60 * 60 * 1000;
/// The Await task's heartbeat bound when the deployment sets none: three 5-minute sweeps.
pub const DEFAULT_HEARTBEAT_S: u64 = 900;
/// How long a pool that refused capacity is skipped by every job.
pub const CAPACITY_MARK_MS: i64 = 15 * 60 * 1000;
/// How long a pool that interrupted a job is skipped by every job.
pub const INTERRUPTION_MARK_MS: i64 = 60 * 60 * 1000;
/// OOM kills get this many retries with more memory, whatever the retry policy says.
pub const OOM_RETRIES: u32 = 1;

/// Input of the size step: the job spec as submitted (validated here, so errors name fields)
/// and, on a retry, the state of the attempt that just ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SizeInput {
    pub spec: serde_json::Value,
    /// The Step Functions execution name: the run id when it is a valid one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Box<RunState>>,
}

/// The execution's state: one run of one job, across its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub run_id: String,
    pub job: String,
    pub spec: JobSpec,
    /// 1-based attempt number of the attempt in flight.
    pub attempt: u32,
    /// When the execution started (first size step), Unix ms.
    pub started_at_ms: i64,
    pub requirement: Requirement,
    /// Ranked candidates, best first, at most [`MAX_CANDIDATES`].
    pub candidates: Vec<Candidate>,
    /// Pools this execution must not use again (they interrupted or lost an attempt).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<Pool>,
    #[serde(default)]
    pub oom_retries: u32,
    /// The attempt's instance, once launched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<AttemptInstance>,
    /// The latest check of the attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
    /// What the execution does after this attempt (set once the attempt has ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Every ended attempt, costed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<AttemptSummary>,
}

/// One pool tried by a launch and why it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriedPool {
    pub pool: Pool,
    /// The AWS error code.
    pub code: String,
}

/// The instance of the attempt in flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptInstance {
    pub instance_id: InstanceId,
    pub pool: Pool,
    pub price_per_hour: f64,
    pub launched_at_ms: i64,
    /// After this the attempt is timed out (and the reaper may terminate the instance).
    pub deadline_ms: i64,
    /// The run id the agent writes samples, summary and exit marker under.
    pub agent_run_id: String,
    /// Pools that refused capacity before this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tried: Vec<TriedPool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated_at_ms: Option<i64>,
    /// Seconds from the latest launch or check to the deadline (at least 1): the Await task's
    /// `TimeoutSecondsPath`, so the wait ends at the deadline whatever else happens.
    #[serde(default = "one_second")]
    pub wait_s: u64,
    /// The Await task's `HeartbeatSecondsPath`: how long a wait lives without the sweep's
    /// heartbeat before the execution checks the attempt itself.
    #[serde(default = "default_heartbeat_s")]
    pub heartbeat_s: u64,
    /// The root volume's price per hour (the candidate's `storage_per_hour`), billed beside
    /// `price_per_hour` until the instance is gone.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub storage_per_hour: f64,
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

fn one_second() -> u64 {
    1
}

fn default_heartbeat_s() -> u64 {
    DEFAULT_HEARTBEAT_S
}

/// The heartbeat bound for a wait of `wait_s`: Step Functions wants a heartbeat shorter than the
/// task's timeout, so near the deadline it shrinks with it (never below 1 s).
pub fn heartbeat_within(heartbeat_s: u64, wait_s: u64) -> u64 {
    heartbeat_s.min(wait_s.saturating_sub(1)).max(1)
}

/// Seconds from `now_ms` to `deadline_ms`, rounded up, at least 1 (Step Functions refuses 0).
pub fn wait_seconds(deadline_ms: i64, now_ms: i64) -> u64 {
    (((deadline_ms - now_ms).max(0) + 999) / 1000).max(1) as u64
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub status: RunStatus,
    pub at_ms: i64,
    /// Why, in words (instance state reason, missing marker …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The agent's summary, when the exit marker was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<RunSummary>,
}

/// What follows an ended attempt; the ASL's Choice after the record step routes on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    /// Launch the next attempt (after an interruption, a lost instance or an OOM kill).
    Retry,
    /// The job itself failed (non-zero exit, or OOM again).
    Failed,
    TimedOut,
    /// Interrupted or lost more often than the retry policy allows.
    RetriesExhausted,
}

/// One ended attempt, as the execution's output lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptSummary {
    pub attempt: u32,
    pub pool: Option<Pool>,
    pub instance_id: Option<InstanceId>,
    pub status: RunStatus,
    pub cost_usd: f64,
}

/// Errors of the pipeline steps; [`PipelineError::name`] is the Lambda's error type.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    InvalidSpec(#[from] SpecError),
    #[error("invalid state for this step: {0}")]
    InvalidState(String),
    #[error("no instance type fits job {job}: {reason}")]
    NoCandidates { job: String, reason: String },
    #[error("no capacity in any of {} pools tried: {}", tried.len(), tried_list(tried))]
    CapacityExhausted { tried: Vec<TriedPool> },
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("instance API: {0}")]
    Instance(LaunchError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The walk used its time budget (below the Lambda's timeout) before a pool took the
    /// instance; a retry resumes (and finds any instance this walk did start).
    #[error("launch time budget ({budget_ms} ms) spent after {} pools: {}", tried.len(), tried_list(tried))]
    LaunchBudgetSpent { budget_ms: i64, tried: Vec<TriedPool> },
    /// A region-wide quota refused every market the spec allows: back off and retry.
    #[error("waiting for quota: {code} ({message}); retried until the job's timeout")]
    WaitingForQuota { code: String, message: String },
    /// The quota did not free within the job's timeout.
    #[error("quota {code} did not free within the job's timeout of {timeout_s} s: {message}")]
    QuotaExhausted {
        code: String,
        message: String,
        timeout_s: u64,
    },
}

fn tried_list(tried: &[TriedPool]) -> String {
    tried
        .iter()
        .map(|t| format!("{} ({})", t.pool, t.code))
        .collect::<Vec<_>>()
        .join(", ")
}

impl PipelineError {
    /// The stable error type (see [`crate::error_names`]).
    pub fn name(&self) -> &'static str {
        match self {
            PipelineError::InvalidSpec(_) => names::INVALID_JOB_SPEC,
            PipelineError::InvalidState(_) => names::INVALID_STATE,
            PipelineError::NoCandidates { .. } => names::NO_CANDIDATES,
            PipelineError::CapacityExhausted { .. } => names::CAPACITY_EXHAUSTED,
            PipelineError::Launch(LaunchError::Throttled { .. })
            | PipelineError::Instance(LaunchError::Throttled { .. }) => names::THROTTLED,
            // A capacity error outside a launch walk (should not happen) is still transient.
            PipelineError::Launch(LaunchError::Capacity { .. }) => names::CAPACITY_EXHAUSTED,
            PipelineError::Launch(LaunchError::Quota { .. }) => names::WAITING_FOR_QUOTA,
            PipelineError::Launch(LaunchError::Fatal { .. } | LaunchError::PoolRejected { .. }) => names::LAUNCH_FAILED,
            PipelineError::LaunchBudgetSpent { .. } => names::LAUNCH_BUDGET_SPENT,
            PipelineError::WaitingForQuota { .. } => names::WAITING_FOR_QUOTA,
            PipelineError::QuotaExhausted { .. } => names::QUOTA_EXHAUSTED,
            PipelineError::Instance(_) => names::INSTANCE_API_FAILED,
            PipelineError::Store(StoreError::Throttled { .. }) => names::THROTTLED,
            PipelineError::Store(StoreError::Unavailable { .. }) => names::SERVICE_UNAVAILABLE,
            PipelineError::Store(StoreError::Conflict { .. }) => names::CONCURRENT_UPDATE,
            PipelineError::Store(_) => names::STORE_FAILED,
        }
    }
}

/// The run id the agent uses for `attempt`: the run id itself for the first attempt (so a
/// single-attempt run looks the same as a local `spotfit run`), `<run_id>-a<N>` after.
pub fn attempt_run_id(run_id: &str, attempt: u32) -> String {
    if attempt <= 1 {
        run_id.to_string()
    } else {
        format!("{run_id}-a{attempt}")
    }
}

/// EC2 ClientToken for launching `attempt` of `run_id` in `pool`: deterministic, so a retried
/// Lambda gets the instance the first call started instead of a second one; per pool, because
/// EC2 rejects a token reused with different parameters. At most 64 ASCII characters.
pub fn client_token(run_id: &str, attempt: u32, pool: &Pool) -> String {
    let key = format!("{run_id}\u{1f}{attempt}\u{1f}{pool}");
    format!(
        "spotfit-{:016x}{:016x}",
        fnv1a(key.as_bytes(), 0xcbf2_9ce4_8422_2325),
        fnv1a(key.as_bytes(), 0x8422_2325_cbf2_9ce4)
    )
}

fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes
        .iter()
        .fold(seed, |h, b| (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// A run id for an execution: its name when that is a valid run id, else one derived from it.
pub fn run_id_for(execution: Option<&str>, now_ms: i64) -> String {
    match execution {
        Some(e) if valid_run_id(e) => e.to_string(),
        Some(e) => crate::ids::new_run_id(now_ms, fnv1a(e.as_bytes(), 0xcbf2_9ce4_8422_2325)),
        None => crate::ids::new_run_id(now_ms, now_ms as u64 ^ 0x9e37_79b9_7f4a_7c15),
    }
}

/// The run row of the attempt in flight, as of `now_ms`.
pub(crate) fn attempt_record(state: &RunState, status: RunStatus, now_ms: i64) -> RunRecord {
    let placed = state.instance.as_ref().map(|i| Placed {
        instance_id: Some(i.instance_id.clone()),
        instance_type: i.pool.instance_type.clone(),
        region: state.candidates.first().map(|c| c.region.clone()).unwrap_or_default(),
        az: i.pool.az.clone(),
        market: i.pool.market,
        price_per_hour: i.price_per_hour,
        local: i.instance_id.is_local(),
        storage_per_hour: i.storage_per_hour,
    });
    RunRecord {
        run_id: state.run_id.clone(),
        job: state.job.clone(),
        attempt: state.attempt,
        status,
        placed,
        cost_usd: attempt_cost(state, now_ms),
        cost_basis: crate::prices::CostBasis::Estimated,
        summary: state.check.as_ref().and_then(|c| c.summary.clone()),
        requested_vcpu: state.requirement.vcpu,
        requested_memory_bytes: state.requirement.memory_bytes,
        heartbeat_ms: Some(now_ms),
    }
}

/// What the attempt's instance cost: launch to termination (or `now_ms`), billed per second
/// with EC2's minimum.
pub fn attempt_cost(state: &RunState, now_ms: i64) -> f64 {
    match &state.instance {
        Some(i) => {
            let end = i.terminated_at_ms.unwrap_or(now_ms);
            crate::cost::billed_cost(
                i.price_per_hour + i.storage_per_hour,
                (end - i.launched_at_ms).max(0) as f64 / 1000.0,
            )
        }
        None => 0.0,
    }
}

#[cfg(test)]
#[path = "../pipeline_tests.rs"]
mod steps_tests;
