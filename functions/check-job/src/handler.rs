//! Polls the attempt (exit marker, instance state, deadline), marks interrupted pools and
//! decides what follows ([`spotfit_core::pipeline::check_step`]).

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use spotfit_core::pipeline::{check_step, RunState};
use spotfit_core::ports::{CapacityStore, Clock, InstanceLauncher, ObjectStore, RunStore};
use spotfit_lambda::{decode, encode, TaskError};

#[derive(Debug)]
pub struct Deps<L, O, C, R, K> {
    pub launcher: L,
    pub objects: O,
    pub capacity: C,
    pub runs: R,
    pub clock: K,
}

pub async fn handle<L, O, C, R, K>(event: LambdaEvent<Value>, deps: &Deps<L, O, C, R, K>) -> Result<Value, TaskError>
where
    L: InstanceLauncher,
    O: ObjectStore,
    C: CapacityStore,
    R: RunStore,
    K: Clock,
{
    let state: RunState = decode(event.payload)?;
    let state = check_step(
        &deps.launcher,
        &deps.objects,
        &deps.capacity,
        &deps.runs,
        &deps.clock,
        state,
    )
    .await?;
    encode(&state)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use lambda_runtime::Context;
    use spotfit_core::pipeline::{launch_step, LaunchSettings};
    use spotfit_core::ports::InstanceState;
    use spotfit_core::testkit::*;

    const T0: i64 = 1_795_651_200_000;

    #[test]
    fn running_then_interrupted_marks_the_pool_and_asks_for_a_retry() {
        let d = Deps {
            launcher: FakeLauncher::new(),
            objects: InMemoryObjectStore::default(),
            capacity: InMemoryCapacityStore::default(),
            runs: InMemoryRunStore::default(),
            clock: FakeClock::at(T0),
        };
        let spec = serde_json::json!({"name": "etl", "command": ["true"]});
        let state = sized_state(spec, "run-1", vec![candidate("m7i.large", 0.03)], T0);
        let settings = LaunchSettings {
            zones: vec!["use1-az1".into()],
        };
        let state = block_on(launch_step(
            &d.launcher,
            &d.capacity,
            &d.runs,
            &d.clock,
            &settings,
            state,
        ))
        .unwrap();
        let ev = serde_json::to_value(&state).unwrap();
        let out = block_on(handle(LambdaEvent::new(ev, Context::default()), &d)).unwrap();
        assert_eq!(out["check"]["status"], "running");
        assert!(out.get("outcome").is_none());

        let id = state.instance.as_ref().unwrap().instance_id.clone();
        d.launcher
            .set_state(&id, InstanceState::Terminated, Some("Server.SpotInstanceTermination"));
        let out = block_on(handle(LambdaEvent::new(out, Context::default()), &d)).unwrap();
        assert_eq!(out["check"]["status"], "interrupted");
        assert_eq!(out["outcome"], "retry");
        assert_eq!(block_on(d.capacity.unavailable(T0)).unwrap().len(), 1);
    }
}
