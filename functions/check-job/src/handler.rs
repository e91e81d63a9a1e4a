//! Two calls. With a plain `RunState` (the `Check` state: after the Await task timed out, or
//! its heartbeat did): checks the attempt once (exit marker, instance state, deadline), marks
//! interrupted pools and decides what follows ([`spotfit_core::pipeline::check_step`]). With
//! `{"token", "state"}` (the Await task, `.waitForTaskToken`): arms the wait — stores the
//! token with the attempt — and looks once, sending the outcome at once if the job has already
//! ended ([`spotfit_core::pipeline::arm_step`]). Step Functions ignores what the Await call
//! returns; the report is for the logs.

use lambda_runtime::LambdaEvent;
use serde::Deserialize;
use serde_json::Value;
use spotfit_core::pipeline::{arm_step, check_step, RunState};
use spotfit_lambda::{decode, encode, CompletionPorts, TaskError};

/// The Await task's payload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Arm {
    token: String,
    state: RunState,
}

pub async fn handle(event: LambdaEvent<Value>, deps: &CompletionPorts) -> Result<Value, TaskError> {
    let c = deps.completer();
    if event.payload.get("token").is_some() {
        let arm: Arm = decode(event.payload)?;
        let (run_id, attempt) = (arm.state.run_id.clone(), arm.state.attempt);
        let completion = arm_step(&c, arm.token, arm.state).await?;
        lambda_runtime::tracing::info!(%run_id, attempt, ?completion, "armed");
        return Ok(serde_json::json!({"armed": true, "run_id": run_id, "attempt": attempt, "completion": completion}));
    }
    let state: RunState = decode(event.payload)?;
    let state = check_step(c.launcher, c.objects, c.capacity, c.clock, state).await?;
    encode(&state)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use lambda_runtime::Context;
    use spotfit_core::pipeline::{launch_step, LaunchSettings};
    use spotfit_core::ports::{CapacityStore, InstanceState, WaitStore};
    use spotfit_core::testkit::*;
    use std::sync::Arc;

    const T0: i64 = 1_795_651_200_000;

    struct Shared {
        launcher: Arc<FakeLauncher>,
        callback: Arc<FakeCallback>,
        waits: Arc<InMemoryWaitStore>,
        capacity: Arc<InMemoryCapacityStore>,
    }

    fn ports() -> (CompletionPorts, Shared) {
        let s = Shared {
            launcher: Arc::new(FakeLauncher::new()),
            callback: Arc::new(FakeCallback::default()),
            waits: Arc::new(InMemoryWaitStore::default()),
            capacity: Arc::new(InMemoryCapacityStore::default()),
        };
        let p = CompletionPorts {
            launcher: s.launcher.clone(),
            objects: Arc::new(InMemoryObjectStore::default()),
            capacity: s.capacity.clone(),
            runs: Arc::new(InMemoryRunStore::default()),
            waits: s.waits.clone(),
            callback: s.callback.clone(),
            clock: Arc::new(FakeClock::at(T0)),
        };
        (p, s)
    }

    fn launched(p: &CompletionPorts) -> RunState {
        let spec = serde_json::json!({"name": "etl", "command": ["true"]});
        let state = sized_state(spec, "run-1", vec![candidate("m7i.large", 0.03)], T0);
        let c = p.completer();
        block_on(launch_step(
            c.launcher,
            c.capacity,
            c.runs,
            c.clock,
            &LaunchSettings::new(vec!["use1-az1".into()]),
            state,
        ))
        .unwrap()
    }

    fn call(p: &CompletionPorts, v: Value) -> Result<Value, TaskError> {
        block_on(handle(LambdaEvent::new(v, Context::default()), p))
    }

    #[test]
    fn running_then_interrupted_marks_the_pool_and_asks_for_a_retry() {
        let (p, s) = ports();
        let state = launched(&p);
        let out = call(&p, serde_json::to_value(&state).unwrap()).unwrap();
        assert_eq!(out["check"]["status"], "running");
        assert!(out.get("outcome").is_none());
        let id = state.instance.as_ref().unwrap().instance_id.clone();
        s.launcher
            .set_state(&id, InstanceState::Terminated, Some("Server.SpotInstanceTermination"));
        let out = call(&p, out).unwrap();
        assert_eq!(out["check"]["status"], "interrupted");
        assert_eq!(out["outcome"], "retry");
        assert_eq!(block_on(s.capacity.unavailable(T0)).unwrap().len(), 1);
    }

    #[test]
    fn the_await_call_stores_the_token_and_the_end_is_sent_to_it() {
        let (p, s) = ports();
        let state = launched(&p);
        s.callback.open("tok");
        let out = call(&p, serde_json::json!({"token": "tok", "state": state})).unwrap();
        assert_eq!(out["armed"], true);
        assert_eq!(out["completion"], "still_running");
        let wait = block_on(s.waits.get("run-1", 1)).unwrap().unwrap();
        assert_eq!(wait.token, "tok");
        // The instance goes; the next look (an event, the sweep) sends the outcome.
        s.launcher.instances.lock().unwrap().clear();
        let c = p.completer();
        let done = block_on(spotfit_core::pipeline::complete_attempt(&c, &wait)).unwrap();
        assert_eq!(done, spotfit_core::pipeline::Completion::Completed);
        assert_eq!(s.callback.output("tok").unwrap()["check"]["status"], "lost");
    }

    #[test]
    fn a_malformed_await_payload_names_the_field_and_stores_nothing() {
        let (p, s) = ports();
        let state = launched(&p);
        let e = call(&p, serde_json::json!({"token": 7, "state": state})).unwrap_err();
        assert_eq!(e.name(), "InvalidState");
        assert!(e.to_string().contains("token"), "{e}");
        let e = call(&p, serde_json::json!({"token": "t", "state": state, "extra": 1})).unwrap_err();
        assert!(e.to_string().contains("extra"), "{e}");
        assert!(block_on(s.waits.all()).unwrap().is_empty());
    }
}
