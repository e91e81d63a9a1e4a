//! Event-driven completion: the execution waits on a task token (the Await state); the
//! attempt's end reaches it through [`complete_attempt`], whichever way it is noticed — the
//! arm step's first look ([`arm_step`]), an event ([`on_event`]) or the sweep ([`sweep_step`]).
//! Every path runs the same [`check_step`], so how an end is *noticed* changed and what it
//! *means* (record, retry, OOM, interruption) did not. See `docs/callback.md`.

use super::*;
use crate::ports::{Delivery, TaskCallback, WaitStore, Waiting};

/// The ports completion needs.
pub struct Completer<'a> {
    pub launcher: &'a dyn InstanceLauncher,
    pub objects: &'a dyn ObjectStore,
    pub capacity: &'a dyn CapacityStore,
    pub runs: &'a dyn RunStore,
    pub waits: &'a dyn WaitStore,
    pub callback: &'a dyn TaskCallback,
    pub clock: &'a dyn Clock,
}

/// What a completion attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    /// The attempt ended; its outcome was sent and the wait removed.
    Completed,
    /// The attempt still runs: nothing sent.
    StillRunning,
    /// No execution waits on this attempt (never armed, or already completed).
    NotWaiting,
    /// The outcome was sent, but the task was gone: an earlier callback completed it, or the
    /// execution stopped. One transition either way.
    AlreadyCompleted,
}

/// Arm step (the Await task's Lambda): store the wait, then look once — the job may have
/// ended before the token existed, and no event would come for it again.
pub async fn arm_step(c: &Completer<'_>, token: String, state: RunState) -> Result<Completion, PipelineError> {
    let Some(inst) = state.instance.as_ref() else {
        return Err(PipelineError::InvalidState(
            "await needs a launched instance (state.instance)".into(),
        ));
    };
    if token.is_empty() {
        return Err(PipelineError::InvalidState("await needs a task token (token)".into()));
    }
    let wait = Waiting {
        run_id: state.run_id.clone(),
        attempt: state.attempt,
        token,
        instance_id: inst.instance_id.clone(),
        armed_at_ms: c.clock.now_ms(),
        state: Box::new(state),
    };
    c.waits.arm(&wait).await?;
    complete_attempt(c, &wait).await
}

/// Checks a waiting attempt and, when it has ended, sends the checked state as the Await
/// task's output and removes the wait. Safe to run any number of times, concurrently: a
/// second send finds the task gone.
pub async fn complete_attempt(c: &Completer<'_>, wait: &Waiting) -> Result<Completion, PipelineError> {
    let state = check_step(c.launcher, c.objects, c.capacity, c.clock, (*wait.state).clone()).await?;
    if state.outcome.is_none() {
        return Ok(Completion::StillRunning);
    }
    let output = serde_json::to_value(&state).map_err(|e| PipelineError::InvalidState(e.to_string()))?;
    let delivery = c.callback.succeed(&wait.token, &output).await?;
    c.waits.disarm(&wait.run_id, wait.attempt, &wait.token).await?;
    Ok(match delivery {
        Delivery::Accepted => Completion::Completed,
        Delivery::Gone => Completion::AlreadyCompleted,
    })
}

/// An event, in the pipeline's terms (the Lambda parses the EventBridge envelope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobEvent {
    /// An exit marker landed at `key` (`runs/job=…/dt=…/<agent run id>.exit`).
    ExitMarker { key: String },
    /// The instance is stopping or has ended.
    InstanceChanged { instance_id: InstanceId, state: String },
    /// EC2 will reclaim this spot instance in two minutes.
    InterruptionWarning { instance_id: InstanceId },
    /// The execution of `run_id` ended without finishing its attempt (`ABORTED`, `FAILED`,
    /// `TIMED_OUT`).
    ExecutionEnded { run_id: String, status: String },
}

/// What an event led to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    pub action: EventAction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventAction {
    Completion(Completion),
    /// The pool of a spot instance about to be reclaimed was marked; the wait goes on until the
    /// instance ends (the agent ships its data meanwhile, and a job may still finish).
    PoolMarked,
    /// A stopped execution's attempts: instances terminated and rows closed.
    Closed {
        attempts: Vec<u32>,
    },
    /// Not a spotfit attempt (another object, an unmanaged instance …).
    Ignored {
        why: String,
    },
}

/// Handles one event: finds the attempt it concerns and completes it if it has ended.
pub async fn on_event(c: &Completer<'_>, event: &JobEvent) -> Result<EventReport, PipelineError> {
    let ignored = |why: String| EventReport {
        run_id: None,
        attempt: None,
        action: EventAction::Ignored { why },
    };
    match event {
        JobEvent::ExitMarker { key } => {
            let candidates = attempts_of_marker_key(key);
            if candidates.is_empty() {
                return Ok(ignored(format!("{key} is not an exit marker key")));
            }
            // A run named like `x-a2` reads both as run `x-a2` attempt 1 and as run `x`
            // attempt 2: the one with a wait is the one.
            for (run_id, attempt) in &candidates {
                if c.waits.get(run_id, *attempt).await?.is_some() {
                    return complete_waiting(c, run_id, *attempt).await;
                }
            }
            let (run_id, attempt) = candidates[0].clone();
            complete_waiting(c, &run_id, attempt).await
        }
        JobEvent::InstanceChanged { instance_id, .. } | JobEvent::InterruptionWarning { instance_id } => {
            let info = c
                .launcher
                .describe(instance_id)
                .await
                .map_err(PipelineError::Instance)?;
            let Some((run_id, attempt)) = info.as_ref().and_then(|i| Some((i.run_id.clone()?, i.attempt?))) else {
                return Ok(ignored(format!("{instance_id} is not a spotfit attempt's instance")));
            };
            if let JobEvent::InterruptionWarning { .. } = event {
                if let Some(i) = &info {
                    let pool = Pool {
                        instance_type: i.instance_type.clone(),
                        az: i.az.clone(),
                        market: i.market,
                    };
                    let now = c.clock.now_ms();
                    c.capacity
                        .mark(&pool, CapacityMark::Interrupted, now + INTERRUPTION_MARK_MS)
                        .await?;
                }
                return Ok(EventReport {
                    run_id: Some(run_id),
                    attempt: Some(attempt),
                    action: EventAction::PoolMarked,
                });
            }
            complete_waiting(c, &run_id, attempt).await
        }
        JobEvent::ExecutionEnded { run_id, status } => {
            let closed = if status == "ABORTED" {
                RunStatus::Cancelled
            } else {
                RunStatus::Failed
            };
            let attempts = close_run(c, run_id, closed).await?;
            Ok(EventReport {
                run_id: Some(run_id.clone()),
                attempt: attempts.last().copied(),
                action: EventAction::Closed { attempts },
            })
        }
    }
}

async fn complete_waiting(c: &Completer<'_>, run_id: &str, attempt: u32) -> Result<EventReport, PipelineError> {
    let completion = match c.waits.get(run_id, attempt).await? {
        Some(wait) => complete_attempt(c, &wait).await?,
        None => Completion::NotWaiting,
    };
    Ok(EventReport {
        run_id: Some(run_id.to_string()),
        attempt: Some(attempt),
        action: EventAction::Completion(completion),
    })
}

/// The (run id, attempt) pairs an exit marker key may belong to: the inverse of
/// [`attempt_run_id`] under [`RunKeys::exit_marker`] (two when the name itself ends in `-aN`).
pub fn attempts_of_marker_key(key: &str) -> Vec<(String, u32)> {
    let Some(name) = key
        .strip_prefix("runs/job=")
        .and_then(|k| k.rsplit('/').next())
        .and_then(|n| n.strip_suffix(".exit"))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if valid_run_id(name) {
        out.push((name.to_string(), 1));
    }
    if let Some((run, n)) = name.rsplit_once("-a") {
        if let Ok(n @ 2..) = n.parse::<u32>() {
            if valid_run_id(run) && attempt_run_id(run, n) == name {
                out.push((run.to_string(), n));
            }
        }
    }
    out
}

/// Closes a stopped execution's attempts: every waiting attempt and every managed instance of
/// the run is terminated, and each attempt's row still `running` is closed as `status` with
/// the instance time it cost. Returns the attempts closed. Safe to repeat.
pub async fn close_run(c: &Completer<'_>, run_id: &str, status: RunStatus) -> Result<Vec<u32>, PipelineError> {
    let now = c.clock.now_ms();
    let mut closed = Vec::new();
    let mut done: HashSet<InstanceId> = HashSet::new();
    for wait in c.waits.of_run(run_id).await? {
        close_attempt(c, &wait.state, status, now).await?;
        c.waits.disarm(&wait.run_id, wait.attempt, &wait.token).await?;
        done.insert(wait.instance_id.clone());
        closed.push(wait.attempt);
    }
    // An execution stopped outside the wait (during launch or terminate) has no wait item: its
    // instances are found by their tags.
    let of_run = c.launcher.list_run(run_id).await.map_err(PipelineError::Instance)?;
    for info in of_run {
        if done.contains(&info.instance_id) {
            continue;
        }
        c.launcher
            .terminate(&info.instance_id)
            .await
            .map_err(PipelineError::Instance)?;
        if let Some(attempt) = info.attempt {
            if let Some(mut rec) = c.runs.get(run_id, attempt).await? {
                if !rec.status.is_final() {
                    rec.status = status;
                    if let (Some(p), Some(t0)) = (&rec.placed, info.launched_at_ms) {
                        rec.cost_usd = p.cost_after((now - t0).max(0) as f64 / 1000.0);
                    }
                    rec.heartbeat_ms = Some(now);
                    c.runs.put(&rec).await?;
                    closed.push(attempt);
                }
            }
        }
    }
    closed.sort_unstable();
    closed.dedup();
    Ok(closed)
}

/// Terminates one attempt's instance and closes its row as `status`, unless the row is final.
async fn close_attempt(c: &Completer<'_>, state: &RunState, status: RunStatus, now: i64) -> Result<(), PipelineError> {
    let state = terminate_step(c.launcher, c.clock, state.clone()).await?;
    let existing = c.runs.get(&state.run_id, state.attempt).await?;
    if existing.as_ref().is_some_and(|r| r.status.is_final()) {
        return Ok(());
    }
    c.runs.put(&attempt_record(&state, status, now)).await?;
    Ok(())
}

/// The sweep's report.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SweepReport {
    /// Waits looked at.
    pub waiting: usize,
    /// Heartbeats Step Functions accepted.
    pub heartbeats: usize,
    /// Attempts whose end no event had delivered, completed here (run id, attempt).
    pub completed: Vec<(String, u32)>,
    /// Attempts whose execution no longer waits: instance terminated, row closed cancelled.
    pub orphaned: Vec<(String, u32)>,
    /// Waits that failed this time (run id, attempt, error); the next sweep tries again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<(String, u32, String)>,
    /// Every attempt an execution waited on when the sweep began: the reaper spares these, from
    /// this one scan of the waits table rather than a second.
    #[serde(skip)]
    pub waited_on: HashSet<(String, u32)>,
}

/// How often the sweep also looks for an exit marker of an attempt whose instance still runs
/// (the agent writes its marker and then shuts the instance down, so a marker with a live
/// instance means a stuck shutdown, not a lost event): hourly keeps a 14-day wait at a few
/// hundred S3 reads.
pub const MARKER_PROBE_EVERY_MS: i64 = 60 * 60 * 1000;

/// Sweep step (the reaper's schedule): keeps every wait alive with a heartbeat, and completes
/// any attempt whose instance is gone, stopped or past its deadline — an end whose event was
/// lost costs one sweep period, never a stuck execution. A wait whose task is gone (the
/// execution was stopped or failed and its status event was lost) has its instance terminated
/// and its row closed `cancelled`. One failing wait does not stop the others.
pub async fn sweep_step(c: &Completer<'_>, period_ms: i64) -> Result<SweepReport, PipelineError> {
    let now = c.clock.now_ms();
    let waits = c.waits.all().await?;
    let ids: Vec<InstanceId> = waits.iter().map(|w| w.instance_id.clone()).collect();
    let infos = c.launcher.describe_many(&ids).await.map_err(PipelineError::Instance)?;
    let mut report = SweepReport {
        waiting: waits.len(),
        waited_on: waits.iter().map(|w| (w.run_id.clone(), w.attempt)).collect(),
        ..Default::default()
    };
    for wait in &waits {
        let key = (wait.run_id.clone(), wait.attempt);
        let info = infos.iter().find(|i| i.instance_id == wait.instance_id);
        let alive = info.is_some_and(|i| matches!(i.state, InstanceState::Pending | InstanceState::Running));
        let deadline = wait.state.instance.as_ref().map_or(i64::MAX, |i| i.deadline_ms);
        let probe = probe_due(wait.armed_at_ms, now, period_ms);
        let result = if !alive || now > deadline || probe {
            complete_attempt(c, wait).await.map(Some)
        } else {
            Ok(None)
        };
        match result {
            Ok(Some(Completion::Completed | Completion::AlreadyCompleted)) => {
                report.completed.push(key);
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                report.failed.push((key.0, key.1, e.to_string()));
                continue;
            }
        }
        match c.callback.heartbeat(&wait.token).await {
            Ok(Delivery::Accepted) => report.heartbeats += 1,
            Ok(Delivery::Gone) => {
                // Disarm first, on this token: if the execution re-armed the attempt with a new
                // token meanwhile (a heartbeat timeout, then Check, then Await again), the wait
                // is not this one and the attempt is not an orphan.
                let closed = async {
                    if !c.waits.disarm(&wait.run_id, wait.attempt, &wait.token).await? {
                        return Ok(false);
                    }
                    close_attempt(c, &wait.state, RunStatus::Cancelled, now).await?;
                    Ok::<_, PipelineError>(true)
                };
                match closed.await {
                    Ok(true) => report.orphaned.push(key),
                    Ok(false) => {}
                    Err(e) => report.failed.push((key.0, key.1, e.to_string())),
                }
            }
            Err(e) => report.failed.push((key.0, key.1, e.to_string())),
        }
    }
    Ok(report)
}

/// Whether this sweep (at `now_ms`, one every `period_ms`) is the one past an hour boundary of
/// the wait's age: each wait is probed for its marker once an hour, without state between sweeps.
fn probe_due(armed_at_ms: i64, now_ms: i64, period_ms: i64) -> bool {
    let age = now_ms - armed_at_ms;
    let period = period_ms.max(1);
    age >= MARKER_PROBE_EVERY_MS && (age % MARKER_PROBE_EVERY_MS) < period
}

impl std::fmt::Debug for Completer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completer").finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "../callback_tests.rs"]
mod callback_tests;
