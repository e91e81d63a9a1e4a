//! The launch step: walk the fallback plan until a pool takes the instance.

use super::*;

/// What the launch step needs from the deployment.
#[derive(Debug, Clone)]
pub struct LaunchSettings {
    /// AZ ids with a subnet, in preference order.
    pub zones: Vec<String>,
    /// The Await task's heartbeat bound (three sweep periods), seconds.
    pub heartbeat_s: u64,
    /// Boot, agent download and upload at the end, on top of the job's own timeout: the
    /// attempt's deadline is launch + `timeout_s` + this.
    pub boot_grace_ms: i64,
}

impl Default for LaunchSettings {
    fn default() -> Self {
        LaunchSettings::new(Vec::new())
    }
}

impl LaunchSettings {
    pub fn new(zones: Vec<String>) -> Self {
        LaunchSettings {
            zones,
            heartbeat_s: DEFAULT_HEARTBEAT_S,
            boot_grace_ms: BOOT_GRACE_MS,
        }
    }
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
        let storage = candidate_of(&state.candidates, &pool).map_or(0.0, |c| c.storage_per_hour);
        let launched_at_ms = existing.launched_at_ms.unwrap_or(now);
        let deadline_ms = existing
            .deadline_ms
            .unwrap_or(launched_at_ms + timeout_ms + settings.boot_grace_ms);
        state.instance = Some(AttemptInstance {
            instance_id: existing.instance_id,
            pool,
            price_per_hour: price,
            launched_at_ms,
            deadline_ms,
            agent_run_id,
            tried: Vec::new(),
            terminated_at_ms: None,
            wait_s: wait_seconds(deadline_ms, now),
            heartbeat_s: heartbeat_within(settings.heartbeat_s, wait_seconds(deadline_ms, now)),
            storage_per_hour: storage,
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
    let deadline_ms = now + timeout_ms + settings.boot_grace_ms;
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
        // The candidate this pool was planned from; its image and volume are size-job's choice
        // (a state from before they were chosen has no volume: the launch template's then).
        let planned = state.candidates.get(step.rank);
        let boot = planned.filter(|c| c.root_volume_gib > 0);
        let req = LaunchRequest {
            pool: step.pool.clone(),
            job: state.job.clone(),
            run_id: state.run_id.clone(),
            attempt: state.attempt,
            agent_run_id: agent_run_id.clone(),
            client_token: client_token(&state.run_id, state.attempt, &step.pool),
            argv: state.spec.command.clone(),
            image: state.spec.image.clone(),
            env: state.spec.env.clone(),
            deadline_ms,
            max_price_per_hour: state.spec.resources.max_price_per_hour,
            memory_limit_bytes: Some(state.requirement.memory_bytes),
            image_id: boot.and_then(|c| c.machine_image.image_id(c.arch)),
            root_volume_gib: boot.map(|c| c.root_volume_gib),
            env_from: state.spec.env_from.clone(),
            role: state.spec.role.clone(),
            gpus: planned.map_or(0, |c| c.gpu),
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
                    wait_s: wait_seconds(deadline_ms, now),
                    heartbeat_s: heartbeat_within(settings.heartbeat_s, wait_seconds(deadline_ms, now)),
                    storage_per_hour: boot.map_or(0.0, |c| c.storage_per_hour),
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

/// The candidate a pool was planned from (its type).
fn candidate_of<'a>(candidates: &'a [Candidate], pool: &Pool) -> Option<&'a Candidate> {
    candidates.iter().find(|c| c.instance_type == pool.instance_type)
}

pub(super) fn price_of(candidates: &[Candidate], pool: &Pool) -> f64 {
    candidate_of(candidates, pool)
        .and_then(|c| match pool.market {
            crate::spec::Market::OnDemand => c.on_demand_per_hour,
            _ => c.spot_per_hour,
        })
        .unwrap_or(0.0)
}
