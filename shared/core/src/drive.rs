//! The driver: the state machine's flow (`statemachine/spotfit.asl.json`) written over the
//! ports, so `spotfit run` on the local launcher takes exactly the steps an execution takes on
//! AWS — Size → Launch → (wait, Check)* → Terminate → Record → Outcome, with Resize on a retry
//! and CleanUp → RecordFailure on an error after launch. Only the waiting differs: locally a
//! short pause between checks instead of the ASL's Wait state.
//!
//! The retry rules are the ASL's: a step failing with a transient error name
//! ([`crate::error_names::TRANSIENT`]) is retried in place with capped exponential backoff; any
//! other error of Launch, Check or Terminate goes to CleanUp (terminate, retried on any error)
//! and RecordFailure, and ends the run failed. Size and Resize errors end it at once.

use crate::error_names;
use crate::pipeline::{
    check_step, launch_step, record_step, size_step, terminate_step, LaunchSettings, Outcome, PipelineError, RunState,
    SizeInput,
};
use crate::ports::{CapacityStore, Clock, InstanceLauncher, ObjectStore, ProfileStore, RunStore};
use crate::ranking::Candidate;
use crate::sizing::Requirement;
use crate::JobSpec;
use async_trait::async_trait;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Waiting between checks and between retries. Locally a thread sleep; in tests, a fake
/// clock's advance.
#[async_trait]
pub trait Pause: Send + Sync {
    async fn pause(&self, ms: u64);
}

/// The ports the driver runs the steps over.
#[derive(Clone, Copy)]
pub struct DrivePorts<'a> {
    pub profiles: &'a dyn ProfileStore,
    pub runs: &'a dyn RunStore,
    pub objects: &'a dyn ObjectStore,
    pub capacity: &'a dyn CapacityStore,
    pub launcher: &'a dyn InstanceLauncher,
    pub clock: &'a dyn Clock,
    pub pause: &'a dyn Pause,
}

impl std::fmt::Debug for DrivePorts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DrivePorts")
    }
}

/// How the driver waits and retries.
#[derive(Debug, Clone)]
pub struct DriveOptions {
    /// Between checks of a running attempt (the ASL's Wait state: 30 s on AWS).
    pub poll_ms: u64,
    /// First backoff of a transient retry (the ASL's `IntervalSeconds`: 2 s on AWS), doubled
    /// per retry up to [`DriveOptions::max_backoff_ms`].
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Retries of a transient error (the ASL's `MaxAttempts`: 8).
    pub transient_retries: u32,
    /// Retries of CleanUp on any error (the ASL's: 4).
    pub cleanup_retries: u32,
    pub launch: LaunchSettings,
    /// Set (e.g. by Ctrl-C) to start no further attempt: the one in flight is still checked,
    /// terminated and recorded, as a `StopExecution` would leave it to the reaper on AWS.
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for DriveOptions {
    fn default() -> Self {
        Self {
            poll_ms: 30_000,
            backoff_ms: 2_000,
            max_backoff_ms: 60_000,
            transient_retries: 8,
            cleanup_retries: 4,
            launch: LaunchSettings::default(),
            stop: None,
        }
    }
}

/// A run that ended on the error path (the ASL's `Failed`/`SizeFailed` states).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct DriveFailure {
    pub error: PipelineError,
    /// The state as the failing step got it (after CleanUp and RecordFailure), if the run got
    /// past sizing.
    pub state: Option<Box<RunState>>,
}

fn transient(e: &PipelineError) -> bool {
    error_names::TRANSIENT.contains(&e.name())
}

/// Runs `step` on a copy of `state`, retrying transient errors like the ASL's Retry blocks.
async fn with_retry<F, Fut>(
    ports: &DrivePorts<'_>,
    opts: &DriveOptions,
    retries: u32,
    any_error: bool,
    mut step: F,
) -> Result<RunState, PipelineError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<RunState, PipelineError>>,
{
    let mut delay = opts.backoff_ms;
    let mut attempt = 0;
    loop {
        match step().await {
            Ok(s) => return Ok(s),
            Err(e) if attempt < retries && (any_error || transient(&e)) => {
                attempt += 1;
                ports.pause.pause(delay).await;
                delay = (delay * 2).min(opts.max_backoff_ms);
            }
            Err(e) => return Err(e),
        }
    }
}

/// CleanUp → RecordFailure → Failed: terminate whatever the state launched (retried on any
/// error), record the attempt as failed, and end with `error`.
async fn fail_after_launch(
    ports: &DrivePorts<'_>,
    opts: &DriveOptions,
    state: RunState,
    error: PipelineError,
) -> DriveFailure {
    let cleaned = with_retry(ports, opts, opts.cleanup_retries, true, || {
        terminate_step(ports.launcher, ports.clock, state.clone())
    })
    .await;
    let state = match cleaned {
        Ok(s) => s,
        // CleanUp failed for good: the instance is left to the reaper, exactly as on AWS (the
        // execution fails with the original error, and the core does no logging of its own).
        Err(_) => {
            return DriveFailure {
                error,
                state: Some(Box::new(state)),
            }
        }
    };
    let recorded = with_retry(ports, opts, opts.transient_retries, false, || {
        record_step(ports.profiles, ports.runs, ports.objects, ports.clock, state.clone())
    })
    .await;
    DriveFailure {
        error,
        state: Some(Box::new(recorded.unwrap_or(state))),
    }
}

/// Drives one run of `spec` to its end. `rank` ranks candidates for a requirement (the same
/// closure the size-job Lambda gives [`size_step`]); `execution` names the run like the
/// execution name does on AWS. Returns the final state (its `outcome` says how it ended and its
/// `history` lists every attempt, costed), or the failure with the state it left.
pub async fn drive<R>(
    ports: DrivePorts<'_>,
    rank: R,
    spec: serde_json::Value,
    execution: Option<String>,
    opts: &DriveOptions,
) -> Result<RunState, Box<DriveFailure>>
where
    R: Fn(&Requirement, &JobSpec) -> Vec<Candidate>,
{
    let stopped = || opts.stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed));
    let mut previous: Option<Box<RunState>> = None;
    loop {
        // Size (first attempt) or Resize (later ones): errors end the run without cleanup.
        let input = SizeInput {
            spec: spec.clone(),
            execution: execution.clone(),
            previous: previous.take(),
        };
        let sized = with_retry(&ports, opts, opts.transient_retries, false, || {
            size_step(ports.profiles, &rank, input.clone(), ports.clock.now_ms())
        })
        .await;
        let state = match sized {
            Ok(s) => s,
            Err(error) => return Err(Box::new(DriveFailure { error, state: None })),
        };

        let launched = with_retry(&ports, opts, opts.transient_retries, false, || {
            launch_step(
                ports.launcher,
                ports.capacity,
                ports.runs,
                ports.clock,
                &opts.launch,
                state.clone(),
            )
        })
        .await;
        let mut state = match launched {
            Ok(s) => s,
            Err(e) => return Err(Box::new(fail_after_launch(&ports, opts, state, e).await)),
        };

        // Wait → Check → Ended? until the check says the attempt is over.
        loop {
            let checked = with_retry(&ports, opts, opts.transient_retries, false, || {
                check_step(
                    ports.launcher,
                    ports.objects,
                    ports.capacity,
                    ports.clock,
                    state.clone(),
                )
            })
            .await;
            state = match checked {
                Ok(s) => s,
                Err(e) => return Err(Box::new(fail_after_launch(&ports, opts, state, e).await)),
            };
            if state.outcome.is_some() {
                break;
            }
            ports.pause.pause(opts.poll_ms).await;
        }

        let terminated = with_retry(&ports, opts, opts.transient_retries, false, || {
            terminate_step(ports.launcher, ports.clock, state.clone())
        })
        .await;
        let state = match terminated {
            Ok(s) => s,
            Err(e) => return Err(Box::new(fail_after_launch(&ports, opts, state, e).await)),
        };
        let recorded = with_retry(&ports, opts, opts.transient_retries, false, || {
            record_step(ports.profiles, ports.runs, ports.objects, ports.clock, state.clone())
        })
        .await;
        let state = match recorded {
            Ok(s) => s,
            Err(error) => {
                return Err(Box::new(DriveFailure {
                    error,
                    state: Some(Box::new(state)),
                }))
            }
        };
        match state.outcome {
            Some(Outcome::Retry) if !stopped() => previous = Some(Box::new(state)),
            _ => return Ok(state),
        }
    }
}

#[cfg(test)]
#[path = "drive_tests.rs"]
mod tests;
