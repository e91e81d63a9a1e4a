//! Records the attempt: run row with its cost, profile update (conditional write), and the
//! Athena copy in S3 ([`spotfit_core::pipeline::record_step`]). Keeps a caught `error`.

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use spotfit_core::pipeline::{record_step, RunState};
use spotfit_core::ports::{Clock, ObjectStore, ProfileStore, RunStore};
use spotfit_lambda::{decode, encode_with_error, take_caught_error, TaskError};

#[derive(Debug)]
pub struct Deps<P, R, O, K> {
    pub profiles: P,
    pub runs: R,
    pub objects: O,
    pub clock: K,
}

pub async fn handle<P, R, O, K>(event: LambdaEvent<Value>, deps: &Deps<P, R, O, K>) -> Result<Value, TaskError>
where
    P: ProfileStore,
    R: RunStore,
    O: ObjectStore,
    K: Clock,
{
    let mut payload = event.payload;
    let error = take_caught_error(&mut payload);
    let state: RunState = decode(payload)?;
    let state = record_step(&deps.profiles, &deps.runs, &deps.objects, &deps.clock, state).await?;
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
    fn an_attempt_caught_by_an_error_is_recorded_failed_and_costed() {
        let d = Deps {
            profiles: InMemoryProfileStore::default(),
            runs: InMemoryRunStore::default(),
            objects: InMemoryObjectStore::default(),
            clock: FakeClock::at(T0),
        };
        let spec = serde_json::json!({"name": "etl", "command": ["true"]});
        let state = sized_state(spec, "run-1", vec![candidate("m7i.large", 0.036)], T0);
        let (l, cap) = (FakeLauncher::new(), InMemoryCapacityStore::default());
        l.now_ms.store(T0, std::sync::atomic::Ordering::SeqCst);
        let settings = LaunchSettings::new(vec!["use1-az1".into()]);
        let state = block_on(launch_step(&l, &cap, &d.runs, &d.clock, &settings, state)).unwrap();
        d.clock.advance(3_600_000);
        let mut ev = serde_json::to_value(&state).unwrap();
        ev["error"] = serde_json::json!({"Error": "InstanceApiFailed", "Cause": "x"});
        let out = block_on(handle(LambdaEvent::new(ev, Context::default()), &d)).unwrap();
        assert_eq!(out["outcome"], "failed");
        assert_eq!(out["error"]["Error"], "InstanceApiFailed");
        let row = block_on(d.runs.get("run-1", 1)).unwrap().unwrap();
        assert!((row.cost_usd - 0.036).abs() < 1e-9, "{}", row.cost_usd);
        assert_eq!(block_on(d.objects.list("records/")).unwrap().len(), 1);
    }
}
