//! Terminates the attempt's instance ([`spotfit_core::pipeline::terminate_step`]). Used on the
//! normal path and by every Catch: the input may then carry the error under `error`, and may
//! have no instance yet (a failure before launch), which is a no-op.

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use spotfit_core::pipeline::{terminate_step, RunState};
use spotfit_core::ports::{Clock, InstanceLauncher};
use spotfit_lambda::{decode, encode_with_error, take_caught_error, TaskError};

#[derive(Debug)]
pub struct Deps<L, K> {
    pub launcher: L,
    pub clock: K,
}

pub async fn handle<L: InstanceLauncher, K: Clock>(
    event: LambdaEvent<Value>,
    deps: &Deps<L, K>,
) -> Result<Value, TaskError> {
    let mut payload = event.payload;
    let error = take_caught_error(&mut payload);
    let state: RunState = decode(payload)?;
    let state = terminate_step(&deps.launcher, &deps.clock, state).await?;
    encode_with_error(&state, error)
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
    fn terminates_and_keeps_the_caught_error() {
        let d = Deps {
            launcher: FakeLauncher::new(),
            clock: FakeClock::at(T0),
        };
        let spec = serde_json::json!({"name": "etl", "command": ["true"]});
        let state = sized_state(spec, "run-1", vec![candidate("m7i.large", 0.03)], T0);
        let (cap, runs) = (InMemoryCapacityStore::default(), InMemoryRunStore::default());
        let settings = LaunchSettings::new(vec!["use1-az1".into()]);
        let state = block_on(launch_step(&d.launcher, &cap, &runs, &d.clock, &settings, state)).unwrap();
        let mut ev = serde_json::to_value(&state).unwrap();
        ev["error"] = serde_json::json!({"Error": "Throttled", "Cause": "x"});
        let out = block_on(handle(LambdaEvent::new(ev, Context::default()), &d)).unwrap();
        assert!(d.launcher.live().is_empty());
        assert_eq!(out["error"]["Error"], "Throttled");
        assert_eq!(out["instance"]["terminated_at_ms"], T0);
        // again: no-op, no error
        block_on(handle(LambdaEvent::new(out, Context::default()), &d)).unwrap();
    }
}
