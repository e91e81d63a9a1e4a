//! The record step (run row, profile update, Athena copy) and the profile update it shares
//! with every writer of profiles.

use super::*;

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

/// `records/dt=<day>/<run_id>-<attempt>.json`: the run rows for Athena (the `run_records`
/// table, partitioned by day only so cross-job questions need no job filter).
pub fn record_key(record: &RunRecord, started_at_ms: i64) -> String {
    crate::ids::RunKeys::new(&record.job, started_at_ms, &record.run_id).record(record.attempt)
}

/// Record step: the attempt's run row (costed), the profile update, the Athena copy in S3,
/// and the attempt appended to the history. An attempt that never launched (a failure
/// before launch) records nothing. Safe to repeat. The cost is an estimate (the price it was
/// ranked at); [`record_step_billed`] bills it from the spot price history.
pub async fn record_step<P, R, O, K>(
    profiles: &P,
    runs: &R,
    objects: &O,
    clock: &K,
    state: RunState,
) -> Result<RunState, PipelineError>
where
    P: ProfileStore + ?Sized,
    R: RunStore + ?Sized,
    O: ObjectStore + ?Sized,
    K: Clock + ?Sized,
{
    let now = clock.now_ms();
    record_at(profiles, runs, objects, now, None, state).await
}

/// The record step with the attempt billed and learned from: a spot attempt in a known AZ is
/// priced from its pool's price history over its instance's lifetime ([`bill`]), and its
/// instance time (interrupted or not) is added to the pool's history in `capacity`, which
/// the next rankings learn the pool's interruption rate from ([`crate::cost::learned_rate`]).
/// When the price history cannot be read the run is still recorded, at its estimate (a lost
/// record would cost more than an estimated one); the reason is returned beside the state for
/// the caller's log. The history is added after the run row, so a failure there is retried
/// with the step, and counted once ([`CapacityStore::add_exposure`]).
pub async fn record_step_billed<P, R, O, K, F, C>(
    profiles: &P,
    runs: &R,
    objects: &O,
    clock: &K,
    prices: &F,
    capacity: &C,
    state: RunState,
) -> Result<(RunState, Option<String>), PipelineError>
where
    P: ProfileStore + ?Sized,
    R: RunStore + ?Sized,
    O: ObjectStore + ?Sized,
    K: Clock + ?Sized,
    F: crate::ports::SpotPriceFeed + ?Sized,
    C: CapacityStore + ?Sized,
{
    let now = clock.now_ms();
    let (billed, problem) = match &state.instance {
        Some(inst) => match bill(prices, inst, now).await {
            Ok(b) => (b, None),
            Err(e) => (None, Some(format!("spot price history of {}: {e}", inst.pool))),
        },
        None => (None, None),
    };
    let state = record_at(profiles, runs, objects, now, billed, state).await?;
    if let Some(e) = exposure_of(&state, now) {
        capacity.add_exposure(&e).await?;
    }
    Ok((state, problem))
}

/// What an ended attempt adds to its pool's history: spot, in a known AZ, on EC2, with a
/// final status. Only an interruption counts as one; a lost instance is not known to be one.
pub fn exposure_of(state: &RunState, now_ms: i64) -> Option<crate::ports::Exposure> {
    let inst = state.instance.as_ref()?;
    let status = state.check.as_ref().map(|c| c.status).filter(RunStatus::is_final)?;
    if inst.pool.market != Market::Spot || inst.pool.az.is_empty() || inst.instance_id.is_local() {
        return None;
    }
    let end = inst.terminated_at_ms.unwrap_or(now_ms).max(inst.launched_at_ms);
    Some(crate::ports::Exposure {
        pool: inst.pool.clone(),
        attempt_key: format!("{}#{}", state.run_id, state.attempt),
        ended_at_ms: end,
        hours: (end - inst.launched_at_ms) as f64 / 3_600_000.0,
        interrupted: status == RunStatus::Interrupted,
    })
}

/// What EC2 billed for the attempt's instance: its pool's spot prices in force from the launch
/// to the termination (or `now_ms` if it has not been terminated), per second with the 60 s
/// minimum, plus its volume ([`crate::prices::billed_over`]). `Ok(None)` when there is nothing
/// to bill from: an on-demand or local attempt, no AZ, or a history that does not reach back
/// to the launch.
pub async fn bill<F: crate::ports::SpotPriceFeed + ?Sized>(
    prices: &F,
    inst: &AttemptInstance,
    now_ms: i64,
) -> Result<Option<f64>, StoreError> {
    if inst.pool.market != Market::Spot || inst.pool.az.is_empty() || inst.instance_id.is_local() {
        return Ok(None);
    }
    let end = inst.terminated_at_ms.unwrap_or(now_ms).max(inst.launched_at_ms);
    let history = prices
        .history(&inst.pool.instance_type, &inst.pool.az, inst.launched_at_ms, end)
        .await?;
    Ok(crate::prices::billed_over(
        &history,
        inst.launched_at_ms,
        end,
        inst.storage_per_hour,
    ))
}

async fn record_at<P, R, O>(
    profiles: &P,
    runs: &R,
    objects: &O,
    now: i64,
    billed: Option<f64>,
    mut state: RunState,
) -> Result<RunState, PipelineError>
where
    P: ProfileStore + ?Sized,
    R: RunStore + ?Sized,
    O: ObjectStore + ?Sized,
{
    let Some(inst) = state.instance.clone() else {
        return Ok(state);
    };
    // A state that reaches record without a final check (the error path) failed.
    let status = match state.check.as_ref().map(|c| c.status) {
        Some(s) if s.is_final() => s,
        _ => RunStatus::Failed,
    };
    if state.outcome.is_none() {
        state.outcome = Some(Outcome::Failed);
    }
    let mut record = RunRecord {
        status,
        ..attempt_record(&state, status, now)
    };
    if let Some(usd) = billed {
        record.cost_usd = usd;
        record.cost_basis = crate::prices::CostBasis::Billed;
    }
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
