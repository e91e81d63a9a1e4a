//! The check step: has the attempt ended, and how — and what follows it.

use super::*;

/// Check step: has the attempt ended, and how? The exit marker (written last by the agent)
/// decides when present; otherwise the instance's state.
pub async fn check_step<L, O, C, K>(
    launcher: &L,
    objects: &O,
    capacity: &C,
    clock: &K,
    mut state: RunState,
) -> Result<RunState, PipelineError>
where
    L: InstanceLauncher + ?Sized,
    O: ObjectStore + ?Sized,
    C: CapacityStore + ?Sized,
    K: Clock + ?Sized,
{
    let now = clock.now_ms();
    let Some(inst) = state.instance.clone() else {
        return Err(PipelineError::InvalidState(
            "check needs a launched instance (state.instance)".into(),
        ));
    };
    let check = match read_exit(objects, &state.job, &inst, now).await? {
        Some(summary) => marker_check(summary, &state, now),
        None => {
            let info = launcher
                .describe(&inst.instance_id)
                .await
                .map_err(PipelineError::Instance)?;
            let check = instance_check(info.as_ref(), &inst, now);
            // The agent writes its marker and then shuts the instance down; if it did both
            // between the read above and the describe, the instance is gone but the marker is
            // there. Read once more before calling the attempt lost or interrupted.
            if matches!(check.status, RunStatus::Interrupted | RunStatus::Lost) {
                match read_exit(objects, &state.job, &inst, now).await? {
                    Some(summary) => marker_check(summary, &state, now),
                    None => check,
                }
            } else {
                check
            }
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
    if let Some(i) = state.instance.as_mut() {
        i.wait_s = wait_seconds(i.deadline_ms, now);
        i.heartbeat_s = heartbeat_within(i.heartbeat_s, i.wait_s);
    }
    // A running attempt writes nothing: an execution waits on it (the waits table is what the
    // reaper spares), and a write per look would make a 14-day wait's sweeps cost a write each.
    if status == RunStatus::Running {
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

/// The check of an attempt whose agent wrote its exit marker (and, before it, `summary`).
fn marker_check(mut summary: RunSummary, state: &RunState, now_ms: i64) -> Check {
    // The run's input size, from its spec, for input-aware sizing of later runs.
    summary.input_bytes = summary.input_bytes.or(state.spec.hints.input_bytes);
    // The agent's summary object keeps 64 KiB of each stream; the check travels in the Step
    // Functions state (256 KiB) and becomes the run record (one DynamoDB attribute, 400 KB):
    // a few KiB of each is what the record shows ("the last lines"), `spotfit logs` the rest.
    summary.trim_tails(crate::logs::RECORD_TAIL_BYTES);
    Check {
        status: summary.status,
        at_ms: now_ms,
        reason: "exit marker found".into(),
        summary: Some(summary),
    }
}

/// Reads the agent's summary once its exit marker exists. The agent names its keys by its own
/// start day: the launch day, or the next one when it booted across midnight (it starts within
/// the boot grace, at most [`MAX_BOOT_GRACE_MS`]). Those one or two days are read, however long
/// the job has run: a probe of a 14-day wait costs two reads, not fifteen.
async fn read_exit<O: ObjectStore + ?Sized>(
    objects: &O,
    job: &str,
    inst: &AttemptInstance,
    now_ms: i64,
) -> Result<Option<RunSummary>, PipelineError> {
    const DAY_MS: i64 = 86_400_000;
    let mut day_ms = inst.launched_at_ms;
    let last = crate::ids::day_of(now_ms.clamp(inst.launched_at_ms, inst.launched_at_ms + MAX_BOOT_GRACE_MS));
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
                let status = match i.end {
                    Some(InstanceEnd::SpotReclaimed) => RunStatus::Interrupted,
                    _ => RunStatus::Lost,
                };
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
        // Only a stopped execution's bookkeeping closes an attempt as cancelled; nothing follows.
        RunStatus::Cancelled => Outcome::Failed,
        RunStatus::OomKilled if oom_retries < OOM_RETRIES => Outcome::Retry,
        RunStatus::OomKilled => Outcome::Failed,
        RunStatus::Interrupted | RunStatus::Lost if attempt < max_attempts.max(1) => Outcome::Retry,
        RunStatus::Interrupted | RunStatus::Lost => Outcome::RetriesExhausted,
    }
}
