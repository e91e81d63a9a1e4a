//! Launches the attempt's instance, walking the ranked pools with capacity fallback
//! ([`spotfit_core::pipeline::launch_step`]). Idempotent: the same input twice gives one instance.

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use spotfit_core::pipeline::{launch_step_within, LaunchSettings, RunState};
use spotfit_core::ports::{CapacityStore, Clock, InstanceLauncher, RunStore};
use spotfit_lambda::{decode, encode, TaskError};
use std::time::Duration;

#[derive(Debug)]
pub struct Deps<L, C, R, K> {
    pub launcher: L,
    pub capacity: C,
    pub runs: R,
    pub clock: K,
    pub settings: LaunchSettings,
    /// How long the walk may take before it returns `LaunchBudgetSpent` (retried): below the
    /// Lambda's timeout, so that a slow walk ends in a retryable error, not a kill mid-call.
    pub budget: Option<Duration>,
}

pub async fn handle<L, C, R, K>(event: LambdaEvent<Value>, deps: &Deps<L, C, R, K>) -> Result<Value, TaskError>
where
    L: InstanceLauncher,
    C: CapacityStore,
    R: RunStore,
    K: Clock,
{
    let state: RunState = decode(event.payload)?;
    let state = launch_step_within(
        &deps.launcher,
        &deps.capacity,
        &deps.runs,
        &deps.clock,
        &deps.settings,
        deps.budget,
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
    use spotfit_core::ids::Pool;
    use spotfit_core::spec::Market;
    use spotfit_core::testkit::*;

    const T0: i64 = 1_795_651_200_000;

    fn spot(t: &str) -> Pool {
        Pool {
            instance_type: t.into(),
            az: "use1-az1".into(),
            market: Market::Spot,
        }
    }

    fn deps(launcher: FakeLauncher) -> Deps<FakeLauncher, InMemoryCapacityStore, InMemoryRunStore, FakeClock> {
        Deps {
            launcher,
            capacity: Default::default(),
            runs: Default::default(),
            clock: FakeClock::at(T0),
            settings: LaunchSettings::new(vec!["use1-az1".into()]),
            budget: Some(crate::LAUNCH_BUDGET),
        }
    }

    fn event() -> Value {
        let cands = vec![
            candidate("m7i.large", 0.03),
            candidate("c7i.large", 0.035),
            candidate("r7i.large", 0.04),
        ];
        let spec = serde_json::json!({"name": "etl", "command": ["true"]});
        serde_json::to_value(sized_state(spec, "run-1", cands, T0)).unwrap()
    }

    #[test]
    fn capacity_errors_fall_back_in_rank_order() {
        // GIVEN a launcher whose two best pools have no capacity
        let d = deps(
            FakeLauncher::new()
                .insufficient(spot("m7i.large"), u32::MAX)
                .insufficient(spot("c7i.large"), u32::MAX),
        );
        // WHEN the handler runs
        let out = block_on(handle(LambdaEvent::new(event(), Context::default()), &d)).unwrap();
        // THEN it tried them in order and launched the third
        assert_eq!(
            d.launcher.tried(),
            [
                "m7i.large/use1-az1/spot",
                "c7i.large/use1-az1/spot",
                "r7i.large/use1-az1/spot"
            ]
        );
        assert_eq!(out["instance"]["pool"]["instance_type"], "r7i.large");
        assert_eq!(out["instance"]["tried"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn the_same_input_twice_starts_one_instance() {
        let d = deps(FakeLauncher::new());
        let a = block_on(handle(LambdaEvent::new(event(), Context::default()), &d)).unwrap();
        let b = block_on(handle(LambdaEvent::new(event(), Context::default()), &d)).unwrap();
        assert_eq!(a["instance"]["instance_id"], b["instance"]["instance_id"]);
        assert_eq!(d.launcher.live().len(), 1);
    }

    #[test]
    fn no_capacity_anywhere_is_capacity_exhausted() {
        let d = deps(
            FakeLauncher::new()
                .insufficient(spot("m7i.large"), u32::MAX)
                .insufficient(spot("c7i.large"), u32::MAX)
                .insufficient(spot("r7i.large"), u32::MAX),
        );
        let err = block_on(handle(LambdaEvent::new(event(), Context::default()), &d)).unwrap_err();
        assert_eq!(err.name(), "CapacityExhausted");
    }

    #[test]
    fn a_malformed_state_is_invalid_state() {
        let d = deps(FakeLauncher::new());
        let err = block_on(handle(
            LambdaEvent::new(serde_json::json!({"run_id": "x"}), Context::default()),
            &d,
        ))
        .unwrap_err();
        assert_eq!(err.name(), "InvalidState");
    }
}
