//! The reaper's schedule. First the sweep ([`spotfit_core::pipeline::sweep_step`]): every
//! waiting attempt gets a heartbeat, one whose instance is gone or stopped is completed (its
//! event was lost), one whose execution is gone is closed. Then the reap
//! ([`spotfit_core::pipeline::reap_step`]): managed instances whose run has ended, is unknown,
//! was abandoned or is past its deadline are terminated — an attempt an execution still waits
//! on is never "abandoned". The input (an EventBridge scheduled event) is ignored.

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use spotfit_core::pipeline::{reap_step, sweep_step, ReapPolicy};
use spotfit_lambda::{encode, CompletionPorts, TaskError};

#[derive(Debug)]
pub struct Deps {
    pub ports: CompletionPorts,
    pub policy: ReapPolicy,
    /// The schedule's period: each wait's marker probe happens in one sweep an hour.
    pub sweep_period_ms: i64,
}

pub async fn handle(_event: LambdaEvent<Value>, deps: &Deps) -> Result<Value, TaskError> {
    let c = deps.ports.completer();
    let sweep = sweep_step(&c, deps.sweep_period_ms).await?;
    for (run_id, attempt) in &sweep.completed {
        lambda_runtime::tracing::warn!(%run_id, attempt, "completed by the sweep: its end event was lost");
    }
    for (run_id, attempt, e) in &sweep.failed {
        lambda_runtime::tracing::error!(%run_id, attempt, error = %e, "sweep failed for this wait");
    }
    let report = reap_step(c.launcher, c.runs, c.clock, &deps.policy, &sweep.waited_on).await?;
    for r in &report.terminated {
        lambda_runtime::tracing::info!(instance_id = %r.instance_id, reason = ?r.reason, run_id = ?r.run_id, "reaped");
    }
    for (id, e) in &report.failed {
        lambda_runtime::tracing::error!(instance_id = %id, error = %e, "could not reap");
    }
    let mut out = encode(&report)?;
    if let Some(o) = out.as_object_mut() {
        o.insert("sweep".into(), encode(&sweep)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use lambda_runtime::Context;
    use spotfit_core::pipeline::{arm_step, launch_step, LaunchSettings};
    use spotfit_core::testkit::*;
    use std::sync::Arc;

    const T0: i64 = 1_795_651_200_000;

    #[test]
    fn an_abandoned_attempt_is_reaped_but_a_waited_on_one_is_heartbeaten() {
        let launcher = Arc::new(FakeLauncher::new());
        let clock = Arc::new(FakeClock::at(T0));
        let callback = Arc::new(FakeCallback::default());
        let d = Deps {
            ports: CompletionPorts {
                launcher: launcher.clone(),
                objects: Arc::new(InMemoryObjectStore::default()),
                capacity: Arc::new(InMemoryCapacityStore::default()),
                runs: Arc::new(InMemoryRunStore::default()),
                waits: Arc::new(InMemoryWaitStore::default()),
                callback: callback.clone(),
                clock: clock.clone(),
            },
            policy: ReapPolicy {
                launch_grace_ms: 60_000,
                stale_heartbeat_ms: 60_000,
            },
            sweep_period_ms: 60_000,
        };
        let c = d.ports.completer();
        let settings = LaunchSettings::new(vec!["use1-az1".into()]);
        let launch = |run: &str| {
            let spec = serde_json::json!({"name": "etl", "command": ["true"]});
            let state = sized_state(spec, run, vec![candidate("m7i.large", 0.03)], T0);
            block_on(launch_step(c.launcher, c.capacity, c.runs, c.clock, &settings, state)).unwrap()
        };
        let _orphan = launch("run-orphan");
        let waited = launch("run-waited");
        callback.open("tok");
        block_on(arm_step(&c, "tok".into(), waited)).unwrap();
        let ev = || LambdaEvent::new(serde_json::json!({}), Context::default());
        let out = block_on(handle(ev(), &d)).unwrap();
        assert_eq!(out["terminated"].as_array().unwrap().len(), 0);
        assert_eq!(out["sweep"]["heartbeats"], 1);
        clock.advance(120_000);
        let out = block_on(handle(ev(), &d)).unwrap();
        assert_eq!(out["terminated"].as_array().unwrap().len(), 1, "{out}");
        assert_eq!(out["terminated"][0]["run_id"], "run-orphan");
        assert_eq!(out["terminated"][0]["reason"], "abandoned");
        assert_eq!(out["sweep"]["heartbeats"], 1);
        assert_eq!(launcher.live().len(), 1);
    }
}
