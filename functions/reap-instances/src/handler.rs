//! Terminates spotfit-managed instances whose run has ended, is unknown, was abandoned (its
//! execution stopped polling) or is past its deadline ([`spotfit_core::pipeline::reap_step`]).
//! The input (an EventBridge scheduled event) is ignored.

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use spotfit_core::pipeline::{reap_step, ReapPolicy};
use spotfit_core::ports::{Clock, InstanceLauncher, RunStore};
use spotfit_lambda::{encode, TaskError};

#[derive(Debug)]
pub struct Deps<L, R, K> {
    pub launcher: L,
    pub runs: R,
    pub clock: K,
    pub policy: ReapPolicy,
}

pub async fn handle<L: InstanceLauncher, R: RunStore, K: Clock>(
    _event: LambdaEvent<Value>,
    deps: &Deps<L, R, K>,
) -> Result<Value, TaskError> {
    let report = reap_step(&deps.launcher, &deps.runs, &deps.clock, &deps.policy).await?;
    for r in &report.terminated {
        lambda_runtime::tracing::info!(instance_id = %r.instance_id, reason = ?r.reason, run_id = ?r.run_id, "reaped");
    }
    for (id, e) in &report.failed {
        lambda_runtime::tracing::error!(instance_id = %id, error = %e, "could not reap");
    }
    encode(&report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use lambda_runtime::Context;
    use spotfit_core::pipeline::{launch_step, LaunchSettings};
    use spotfit_core::testkit::*;

    const T0: i64 = 1_795_651_200_000;

    #[test]
    fn an_abandoned_attempt_is_reaped() {
        let d = Deps {
            launcher: FakeLauncher::new(),
            runs: InMemoryRunStore::default(),
            clock: FakeClock::at(T0),
            policy: ReapPolicy {
                launch_grace_ms: 60_000,
                stale_heartbeat_ms: 60_000,
            },
        };
        let spec = serde_json::json!({"name": "etl", "command": ["true"]});
        let state = sized_state(spec, "run-1", vec![candidate("m7i.large", 0.03)], T0);
        let settings = LaunchSettings {
            zones: vec!["use1-az1".into()],
        };
        block_on(launch_step(
            &d.launcher,
            &InMemoryCapacityStore::default(),
            &d.runs,
            &d.clock,
            &settings,
            state,
        ))
        .unwrap();
        let ev = || LambdaEvent::new(serde_json::json!({}), Context::default());
        let out = block_on(handle(ev(), &d)).unwrap();
        assert_eq!(out["terminated"].as_array().unwrap().len(), 0);
        d.clock.advance(120_000);
        let out = block_on(handle(ev(), &d)).unwrap();
        assert_eq!(out["terminated"][0]["reason"], "abandoned");
        assert!(d.launcher.live().is_empty());
    }
}
