//! The pipeline steps, written once, generic over the ports, used by `spotfit run` and by the
//! Lambdas: size, launch, check, terminate, record, reap.

use crate::ports::{ProfileStore, RunStore, StoreError};
use crate::profile::JobProfile;
use crate::run::RunRecord;

/// How many times a conditional profile write is retried after a conflict.
pub const PROFILE_WRITE_ATTEMPTS: u32 = 8;

/// Folds a finished run into its job's profile with optimistic concurrency: read, apply,
/// write-if-unchanged, and on conflict start again. Two runs of one job finishing together
/// both land. Returns the profile as written.
pub async fn update_profile<P: ProfileStore + ?Sized>(
    profiles: &P,
    run: &crate::summary::RunSummary,
) -> Result<JobProfile, StoreError> {
    // Where the store can do the read-modify-write under one lock, no conflict can happen.
    let apply = |current: Option<JobProfile>| {
        let expected = current.as_ref().map(|p| p.version);
        let mut profile = current.unwrap_or_else(|| JobProfile::new(&run.job));
        profile.record(run).then(|| {
            profile.version = expected.unwrap_or(0) + 1;
            profile
        })
    };
    if let Some(written) = profiles.update_atomically(&run.job, &apply).await? {
        return Ok(written);
    }
    let mut last_err = None;
    for _ in 0..PROFILE_WRITE_ATTEMPTS {
        let current = profiles.get(&run.job).await?;
        let expected = current.as_ref().map(|p| p.version);
        let mut profile = current.unwrap_or_else(|| JobProfile::new(&run.job));
        if !profile.record(run) {
            return Ok(profile); // already recorded: a retried call changes nothing
        }
        profile.version = expected.unwrap_or(0) + 1;
        match profiles.put_if_version(&profile, expected).await {
            Ok(()) => return Ok(profile),
            Err(e @ StoreError::Conflict { .. }) => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or(StoreError::Conflict {
        key: run.job.clone(),
        expected: None,
        found: None,
    }))
}

/// Records one attempt: the run row first (so a crash between the two leaves the run visible),
/// then the profile. Only finished attempts with a summary change the profile.
pub async fn record_run<P, R>(profiles: &P, runs: &R, record: &RunRecord) -> Result<Option<JobProfile>, StoreError>
where
    P: ProfileStore + ?Sized,
    R: RunStore + ?Sized,
{
    runs.put(record).await?;
    match &record.summary {
        Some(summary) if record.status.is_final() => Ok(Some(update_profile(profiles, summary).await?)),
        _ => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------------
// The serverless pipeline: the state that flows through the state machine and the steps that
// transform it. Each Lambda deserialises a [`RunState`] (or a [`SizeInput`]), calls one step
// and returns the new state; the ASL only routes on `check.status` and `outcome`.
// ---------------------------------------------------------------------------------------------

use crate::error_names as names;
use crate::fallback::{self, PlanInput};
use crate::ids::{valid_run_id, InstanceId, Pool, RunKeys};
use crate::ports::{
    CapacityMark, CapacityStore, Clock, InstanceInfo, InstanceLauncher, InstanceState, LaunchError, LaunchRequest,
    ObjectStore,
};
use crate::ranking::Candidate;
use crate::run::Placed;
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
/// Boot, agent download and upload at the end, on top of the job's own timeout.
pub const BOOT_GRACE_MS: i64 = 10 * 60 * 1000;
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

/// Size step: validate the spec, size from the job's profile, rank candidates. On a retry
/// (`input.previous`), the next attempt keeps the run id and the excluded pools, and an OOM
/// kill raises the memory floor by the spec's factor.
pub async fn size_step<P, R>(profiles: &P, rank: R, input: SizeInput, now_ms: i64) -> Result<RunState, PipelineError>
where
    P: ProfileStore + ?Sized,
    R: Fn(&Requirement, &JobSpec) -> Vec<Candidate>,
{
    let spec = JobSpec::from_json(&input.spec.to_string())?;
    let profile = profiles.get(&spec.name).await?;
    let mut requirement = crate::sizing::size(&spec, profile.as_ref(), now_ms);
    let (run_id, attempt, started_at_ms, excluded, mut oom_retries, history) = match input.previous {
        None => (
            run_id_for(input.execution.as_deref(), now_ms),
            1,
            now_ms,
            Vec::new(),
            0,
            Vec::new(),
        ),
        Some(prev) => {
            let prev = *prev;
            if prev.job != spec.name {
                return Err(PipelineError::InvalidState(format!(
                    "previous attempt is of job {}, spec is {}",
                    prev.job, spec.name
                )));
            }
            let oom = prev.check.as_ref().is_some_and(|c| c.status == RunStatus::OomKilled);
            if oom {
                // From the memory the killed attempt really had: ranking may buy a type above
                // the requirement's floor when its OOM risk is priced (sizing v3).
                let killed_on = prev.instance.as_ref().and_then(|i| {
                    prev.candidates
                        .iter()
                        .find(|c| c.instance_type == i.pool.instance_type)
                        .map(|c| c.memory_bytes)
                });
                let had = prev.requirement.memory_bytes.max(killed_on.unwrap_or(0));
                let bumped = (had as f64 * spec.retry.oom_memory_factor) as u64;
                if bumped > requirement.memory_bytes {
                    requirement.memory_bytes = bumped;
                    requirement.notes.push(format!(
                        "OOM kill in attempt {}: memory raised ×{} to {} bytes",
                        prev.attempt, spec.retry.oom_memory_factor, bumped
                    ));
                }
            }
            let ooms = prev.oom_retries + u32::from(oom);
            (
                prev.run_id,
                prev.attempt + 1,
                prev.started_at_ms,
                prev.excluded,
                ooms,
                prev.history,
            )
        }
    };
    if oom_retries > OOM_RETRIES {
        oom_retries = OOM_RETRIES;
    }
    let mut candidates = rank(&requirement, &spec);
    candidates.truncate(MAX_CANDIDATES);
    if candidates.is_empty() {
        return Err(PipelineError::NoCandidates {
            job: spec.name.clone(),
            reason: format!(
                "{} vCPU, {} MiB, {} GPU within the spec's placement and bounds",
                requirement.vcpu,
                requirement.memory_bytes / crate::units::MIB,
                requirement.gpu
            ),
        });
    }
    Ok(RunState {
        run_id,
        job: spec.name.clone(),
        spec,
        attempt,
        started_at_ms,
        requirement,
        candidates,
        excluded,
        oom_retries,
        instance: None,
        check: None,
        outcome: None,
        history,
    })
}

/// What the launch step needs from the deployment.
#[derive(Debug, Clone, Default)]
pub struct LaunchSettings {
    /// AZ ids with a subnet, in preference order.
    pub zones: Vec<String>,
}

/// Launch step: walk the fallback plan until a pool takes the instance. Capacity errors mark
/// the pool for every job (with a TTL) and move on; a pool that can never take the request
/// (unsupported type or architecture there) is skipped unmarked; a region-wide quota skips the
/// rest of that market (on to on-demand when the spec allows it) and, when no market is left,
/// ends the step with `WaitingForQuota` (retried with backoff by the state machine) until the
/// job's timeout has passed since the execution started (`QuotaExhausted`). Throttling and other
/// errors end the step. Idempotent: a retried call finds the instance a previous call started
/// (by its tags, then by ClientToken) instead of a second one.
pub async fn launch_step<L, C, R, K>(
    launcher: &L,
    capacity: &C,
    runs: &R,
    clock: &K,
    settings: &LaunchSettings,
    state: RunState,
) -> Result<RunState, PipelineError>
where
    L: InstanceLauncher + ?Sized,
    C: CapacityStore + ?Sized,
    R: RunStore + ?Sized,
    K: Clock + ?Sized,
{
    launch_step_within(launcher, capacity, runs, clock, settings, None, state).await
}

/// [`launch_step`] that stops walking once `budget` has passed since it began (checked before
/// each pool), with `LaunchBudgetSpent`: the Lambda must return a retryable error before its
/// own timeout cuts it off mid-call.
pub async fn launch_step_within<L, C, R, K>(
    launcher: &L,
    capacity: &C,
    runs: &R,
    clock: &K,
    settings: &LaunchSettings,
    budget: Option<std::time::Duration>,
    mut state: RunState,
) -> Result<RunState, PipelineError>
where
    L: InstanceLauncher + ?Sized,
    C: CapacityStore + ?Sized,
    R: RunStore + ?Sized,
    K: Clock + ?Sized,
{
    let now = clock.now_ms();
    let timeout_ms = state.spec.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S) as i64 * 1000;
    let agent_run_id = attempt_run_id(&state.run_id, state.attempt);

    if let Some(existing) = find_attempt_instance(launcher, &state).await? {
        let pool = Pool {
            instance_type: existing.instance_type.clone(),
            az: existing.az.clone(),
            market: existing.market,
        };
        let price = price_of(&state.candidates, &pool);
        let launched_at_ms = existing.launched_at_ms.unwrap_or(now);
        let deadline_ms = existing
            .deadline_ms
            .unwrap_or(launched_at_ms + timeout_ms + BOOT_GRACE_MS);
        state.instance = Some(AttemptInstance {
            instance_id: existing.instance_id,
            pool,
            price_per_hour: price,
            launched_at_ms,
            deadline_ms,
            agent_run_id,
            tried: Vec::new(),
            terminated_at_ms: None,
        });
        runs.put(&attempt_record(&state, RunStatus::Running, now)).await?;
        return Ok(state);
    }

    let mut unavailable: HashSet<Pool> = capacity.unavailable(now).await?.into_iter().collect();
    unavailable.extend(state.excluded.iter().cloned());
    let plan = fallback::plan(
        &state.candidates,
        &PlanInput {
            market: state.spec.market,
            zones: &settings.zones,
            allowed_zones: &state.spec.placement.availability_zones,
            unavailable: &unavailable,
            max_price_per_hour: state.spec.resources.max_price_per_hour,
        },
    );
    let deadline_ms = now + timeout_ms + BOOT_GRACE_MS;
    let budget_ms = budget.map(|b| b.as_millis() as i64);
    let mut tried = Vec::new();
    let mut quota_blocked: Vec<Market> = Vec::new();
    let mut last_quota: Option<(String, String)> = None;
    for step in plan {
        if quota_blocked.contains(&step.pool.market) {
            continue;
        }
        if let Some(b) = budget_ms {
            if clock.now_ms() - now >= b {
                return Err(PipelineError::LaunchBudgetSpent { budget_ms: b, tried });
            }
        }
        let req = LaunchRequest {
            pool: step.pool.clone(),
            job: state.job.clone(),
            run_id: state.run_id.clone(),
            attempt: state.attempt,
            client_token: client_token(&state.run_id, state.attempt, &step.pool),
            argv: state.spec.command.clone(),
            image: state.spec.image.clone(),
            env: state.spec.env.clone(),
            deadline_ms,
            max_price_per_hour: state.spec.resources.max_price_per_hour,
            memory_limit_bytes: Some(state.requirement.memory_bytes),
        };
        match launcher.launch(&req).await {
            Ok(launched) => {
                state.instance = Some(AttemptInstance {
                    instance_id: launched.instance_id,
                    pool: launched.pool,
                    price_per_hour: step.price_per_hour,
                    launched_at_ms: launched.launched_at_ms,
                    deadline_ms,
                    agent_run_id,
                    tried,
                    terminated_at_ms: None,
                });
                runs.put(&attempt_record(&state, RunStatus::Running, now)).await?;
                return Ok(state);
            }
            Err(LaunchError::Capacity { pool, code, .. }) => {
                capacity
                    .mark(&pool, CapacityMark::InsufficientCapacity, now + CAPACITY_MARK_MS)
                    .await?;
                tried.push(TriedPool { pool, code });
            }
            Err(LaunchError::PoolRejected { pool, code, .. }) => tried.push(TriedPool { pool, code }),
            Err(LaunchError::Quota { market, code, message }) => {
                quota_blocked.push(market);
                tried.push(TriedPool {
                    pool: step.pool.clone(),
                    code: code.clone(),
                });
                last_quota = Some((code, message));
            }
            Err(e) => return Err(PipelineError::Launch(e)),
        }
    }
    if let Some((code, message)) = last_quota {
        let timeout_s = state.spec.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S);
        if clock.now_ms() - state.started_at_ms > timeout_s as i64 * 1000 {
            return Err(PipelineError::QuotaExhausted {
                code,
                message,
                timeout_s,
            });
        }
        return Err(PipelineError::WaitingForQuota { code, message });
    }
    Err(PipelineError::CapacityExhausted { tried })
}

/// A live instance already started for this attempt (by a call that crashed or timed out).
async fn find_attempt_instance<L: InstanceLauncher + ?Sized>(
    launcher: &L,
    state: &RunState,
) -> Result<Option<InstanceInfo>, PipelineError> {
    let managed = launcher.list_managed().await.map_err(PipelineError::Launch)?;
    Ok(managed.into_iter().find(|i| {
        i.run_id.as_deref() == Some(&state.run_id)
            && i.attempt == Some(state.attempt)
            && matches!(i.state, InstanceState::Pending | InstanceState::Running)
    }))
}

fn price_of(candidates: &[Candidate], pool: &Pool) -> f64 {
    candidates
        .iter()
        .find(|c| c.instance_type == pool.instance_type)
        .and_then(|c| match pool.market {
            crate::spec::Market::OnDemand => c.on_demand_per_hour,
            _ => c.spot_per_hour,
        })
        .unwrap_or(0.0)
}

/// The run row of the attempt in flight, as of `now_ms`.
fn attempt_record(state: &RunState, status: RunStatus, now_ms: i64) -> RunRecord {
    let placed = state.instance.as_ref().map(|i| Placed {
        instance_id: Some(i.instance_id.clone()),
        instance_type: i.pool.instance_type.clone(),
        region: state.candidates.first().map(|c| c.region.clone()).unwrap_or_default(),
        az: i.pool.az.clone(),
        market: i.pool.market,
        price_per_hour: i.price_per_hour,
        local: i.instance_id.is_local(),
    });
    RunRecord {
        run_id: state.run_id.clone(),
        job: state.job.clone(),
        attempt: state.attempt,
        status,
        placed,
        cost_usd: attempt_cost(state, now_ms),
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
            crate::cost::billed_cost(i.price_per_hour, (end - i.launched_at_ms).max(0) as f64 / 1000.0)
        }
        None => 0.0,
    }
}

/// Check step: has the attempt ended, and how? The exit marker (written last by the agent)
/// decides when present; otherwise the instance's state. A running attempt gets a heartbeat
/// in the run store (the reaper's sign that an execution still polls it).
pub async fn check_step<L, O, C, R, K>(
    launcher: &L,
    objects: &O,
    capacity: &C,
    runs: &R,
    clock: &K,
    mut state: RunState,
) -> Result<RunState, PipelineError>
where
    L: InstanceLauncher + ?Sized,
    O: ObjectStore + ?Sized,
    C: CapacityStore + ?Sized,
    R: RunStore + ?Sized,
    K: Clock + ?Sized,
{
    let now = clock.now_ms();
    let Some(inst) = state.instance.clone() else {
        return Err(PipelineError::InvalidState(
            "check needs a launched instance (state.instance)".into(),
        ));
    };
    let check = match read_exit(objects, &state.job, &inst, now).await? {
        Some(mut summary) => {
            // The run's input size, from its spec, for input-aware sizing of later runs.
            summary.input_bytes = summary.input_bytes.or(state.spec.hints.input_bytes);
            Check {
                status: summary.status,
                at_ms: now,
                reason: "exit marker found".into(),
                summary: Some(summary),
            }
        }
        None => {
            let info = launcher
                .describe(&inst.instance_id)
                .await
                .map_err(PipelineError::Instance)?;
            instance_check(info.as_ref(), &inst, now)
        }
    };
    if matches!(check.status, RunStatus::Interrupted | RunStatus::Lost) {
        capacity
            .mark(&inst.pool, CapacityMark::Interrupted, now + INTERRUPTION_MARK_MS)
            .await?;
        if !state.excluded.contains(&inst.pool) {
            state.excluded.push(inst.pool.clone());
        }
    }
    let status = check.status;
    state.check = Some(check);
    if status == RunStatus::Running {
        runs.put(&attempt_record(&state, RunStatus::Running, now)).await?;
        state.outcome = None;
    } else {
        state.outcome = Some(decide(
            status,
            state.attempt,
            state.spec.retry.max_attempts,
            state.oom_retries,
        ));
    }
    Ok(state)
}

/// Reads the agent's summary once its exit marker exists. The agent names keys by its own
/// start day, which may be a day (or, for long jobs, days) after the launch day: look at each
/// day from launch to now.
async fn read_exit<O: ObjectStore + ?Sized>(
    objects: &O,
    job: &str,
    inst: &AttemptInstance,
    now_ms: i64,
) -> Result<Option<RunSummary>, PipelineError> {
    const DAY_MS: i64 = 86_400_000;
    let mut day_ms = inst.launched_at_ms;
    let last = crate::ids::day_of(now_ms.max(inst.launched_at_ms));
    loop {
        let keys = RunKeys::new(job, day_ms, &inst.agent_run_id);
        if let Some(bytes) = objects.get(&keys.exit_marker()).await? {
            // The marker is the agent's typed last word; one that does not parse, or names
            // another run, is reported rather than taken as the end of this one.
            let marker: ExitMarker = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                key: keys.exit_marker(),
                reason: format!("not an exit marker: {e}"),
            })?;
            if marker.run_id != inst.agent_run_id || marker.job != job {
                return Err(PipelineError::Store(StoreError::Corrupt {
                    key: keys.exit_marker(),
                    reason: format!(
                        "exit marker of {}/{} under {job}/{}",
                        marker.job, marker.run_id, inst.agent_run_id
                    ),
                }));
            }
            let summary = match objects.get(&keys.summary()).await? {
                Some(bytes) => serde_json::from_slice::<RunSummary>(&bytes).map_err(|e| StoreError::Corrupt {
                    key: keys.summary(),
                    reason: e.to_string(),
                })?,
                None => {
                    return Err(PipelineError::Store(StoreError::Corrupt {
                        key: keys.summary(),
                        reason: "exit marker present but no run summary".into(),
                    }))
                }
            };
            return Ok(Some(summary));
        }
        if keys.day >= last {
            return Ok(None);
        }
        day_ms += DAY_MS;
    }
}

/// The status of an attempt without an exit marker, from its instance.
fn instance_check(info: Option<&InstanceInfo>, inst: &AttemptInstance, now_ms: i64) -> Check {
    let check = |status, reason: String| Check {
        status,
        at_ms: now_ms,
        reason,
        summary: None,
    };
    match info {
        None => check(
            RunStatus::Lost,
            format!("instance {} is unknown to EC2", inst.instance_id),
        ),
        Some(i) => match i.state {
            InstanceState::Pending | InstanceState::Running if now_ms > inst.deadline_ms => check(
                RunStatus::TimedOut,
                format!("past the deadline ({} ms)", inst.deadline_ms),
            ),
            InstanceState::Pending | InstanceState::Running => check(RunStatus::Running, String::new()),
            _ => {
                let reason = i.state_reason.clone().unwrap_or_default();
                let spot = reason.contains("Spot") || reason.contains("spot") || reason.contains("no-capacity");
                let status = if spot { RunStatus::Interrupted } else { RunStatus::Lost };
                check(status, format!("instance {:?} without exit marker: {reason}", i.state))
            }
        },
    }
}

/// What to do after an attempt that ended with `status`.
pub fn decide(status: RunStatus, attempt: u32, max_attempts: u32, oom_retries: u32) -> Outcome {
    match status {
        RunStatus::Succeeded | RunStatus::Running => Outcome::Succeeded,
        RunStatus::Failed => Outcome::Failed,
        RunStatus::TimedOut => Outcome::TimedOut,
        RunStatus::OomKilled if oom_retries < OOM_RETRIES => Outcome::Retry,
        RunStatus::OomKilled => Outcome::Failed,
        RunStatus::Interrupted | RunStatus::Lost if attempt < max_attempts.max(1) => Outcome::Retry,
        RunStatus::Interrupted | RunStatus::Lost => Outcome::RetriesExhausted,
    }
}

/// Terminate step: terminates the attempt's instance (safe to repeat; a state without an
/// instance — a failure before launch — is a no-op).
pub async fn terminate_step<L, K>(launcher: &L, clock: &K, mut state: RunState) -> Result<RunState, PipelineError>
where
    L: InstanceLauncher + ?Sized,
    K: Clock + ?Sized,
{
    if let Some(inst) = state.instance.as_mut() {
        if inst.terminated_at_ms.is_none() {
            launcher
                .terminate(&inst.instance_id)
                .await
                .map_err(PipelineError::Instance)?;
            inst.terminated_at_ms = Some(clock.now_ms());
        }
    }
    Ok(state)
}

/// `records/dt=<day>/<run_id>-<attempt>.json`: the run rows for Athena (the `run_records`
/// table, partitioned by day only so cross-job questions need no job filter).
pub fn record_key(record: &RunRecord, started_at_ms: i64) -> String {
    crate::ids::RunKeys::new(&record.job, started_at_ms, &record.run_id).record(record.attempt)
}

/// Record step: the attempt's run row (costed), the profile update, the Athena copy in S3,
/// and the attempt appended to the history. An attempt that never launched (a failure
/// before launch) records nothing. Safe to repeat.
pub async fn record_step<P, R, O, K>(
    profiles: &P,
    runs: &R,
    objects: &O,
    clock: &K,
    mut state: RunState,
) -> Result<RunState, PipelineError>
where
    P: ProfileStore + ?Sized,
    R: RunStore + ?Sized,
    O: ObjectStore + ?Sized,
    K: Clock + ?Sized,
{
    let Some(inst) = state.instance.clone() else {
        return Ok(state);
    };
    let now = clock.now_ms();
    // A state that reaches record without a final check (the error path) failed.
    let status = match state.check.as_ref().map(|c| c.status) {
        Some(s) if s.is_final() => s,
        _ => RunStatus::Failed,
    };
    if state.outcome.is_none() {
        state.outcome = Some(Outcome::Failed);
    }
    let record = RunRecord {
        status,
        ..attempt_record(&state, status, now)
    };
    record_run(profiles, runs, &record).await?;
    let json = serde_json::to_vec(&record).map_err(|e| StoreError::Corrupt {
        key: "record".into(),
        reason: e.to_string(),
    })?;
    objects.put(&record_key(&record, inst.launched_at_ms), json).await?;
    if !state.history.iter().any(|h| h.attempt == state.attempt) {
        state.history.push(AttemptSummary {
            attempt: state.attempt,
            pool: Some(inst.pool.clone()),
            instance_id: Some(inst.instance_id.clone()),
            status,
            cost_usd: record.cost_usd,
        });
    }
    Ok(state)
}

/// Why the reaper terminates an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReapReason {
    /// Past the deadline in its `spotfit:deadline` tag.
    PastDeadline,
    /// Its run attempt has ended (recorded final) but the instance lives on.
    RunEnded,
    /// No run id tags, or no run row, long after launch.
    Unknown,
    /// Its attempt is recorded as running but no execution has polled it for too long.
    Abandoned,
}

/// Reaper thresholds.
#[derive(Debug, Clone, Copy)]
pub struct ReapPolicy {
    /// Time after launch before a missing run row counts (the launch step writes it right after).
    pub launch_grace_ms: i64,
    /// Heartbeat age after which a running attempt counts as abandoned (several poll intervals).
    pub stale_heartbeat_ms: i64,
}

impl Default for ReapPolicy {
    fn default() -> Self {
        ReapPolicy {
            launch_grace_ms: 10 * 60 * 1000,
            stale_heartbeat_ms: 15 * 60 * 1000,
        }
    }
}

/// Whether (and why) the reaper terminates `info`, given its run row. Pure.
pub fn reap_reason(
    info: &InstanceInfo,
    record: Option<&RunRecord>,
    now_ms: i64,
    policy: &ReapPolicy,
) -> Option<ReapReason> {
    if info.state == InstanceState::Terminated || info.state == InstanceState::ShuttingDown {
        return None;
    }
    if info.deadline_ms.is_some_and(|d| now_ms > d) {
        return Some(ReapReason::PastDeadline);
    }
    let young = info.launched_at_ms.is_some_and(|t| now_ms - t < policy.launch_grace_ms);
    match record {
        _ if info.run_id.is_none() || info.attempt.is_none() => (!young).then_some(ReapReason::Unknown),
        None => (!young).then_some(ReapReason::Unknown),
        Some(r) if r.status.is_final() => Some(ReapReason::RunEnded),
        Some(r) => {
            let beat = r.heartbeat_ms.or(info.launched_at_ms).unwrap_or(0);
            (now_ms - beat > policy.stale_heartbeat_ms).then_some(ReapReason::Abandoned)
        }
    }
}

/// One instance the reaper terminated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reaped {
    pub instance_id: InstanceId,
    pub reason: ReapReason,
    pub job: Option<String>,
    pub run_id: Option<String>,
}

/// The reaper's report.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReapReport {
    /// Managed instances looked at.
    pub checked: usize,
    pub terminated: Vec<Reaped>,
    /// Instances that should have been terminated but the call failed (id, error).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<(InstanceId, String)>,
}

/// Reap step: terminate every managed instance whose run is over, unknown, abandoned or past
/// its deadline. One failed terminate does not stop the others: it is listed in the report.
pub async fn reap_step<L, R, K>(
    launcher: &L,
    runs: &R,
    clock: &K,
    policy: &ReapPolicy,
) -> Result<ReapReport, PipelineError>
where
    L: InstanceLauncher + ?Sized,
    R: RunStore + ?Sized,
    K: Clock + ?Sized,
{
    let now = clock.now_ms();
    let managed = launcher.list_managed().await.map_err(PipelineError::Instance)?;
    let mut report = ReapReport {
        checked: managed.len(),
        ..Default::default()
    };
    for info in managed {
        let record = match (&info.run_id, info.attempt) {
            (Some(run_id), Some(attempt)) => runs.get(run_id, attempt).await?,
            _ => None,
        };
        let Some(reason) = reap_reason(&info, record.as_ref(), now, policy) else {
            continue;
        };
        match launcher.terminate(&info.instance_id).await {
            Ok(()) => report.terminated.push(Reaped {
                instance_id: info.instance_id,
                reason,
                job: info.job,
                run_id: info.run_id,
            }),
            Err(e) => report.failed.push((info.instance_id, e.to_string())),
        }
    }
    Ok(report)
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod steps_tests;
