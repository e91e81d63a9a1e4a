//! Records the attempt: run row with its cost, profile update (conditional write), and the
//! Athena copy in S3 ([`spotfit_core::pipeline::record_step`]). Keeps a caught `error`.

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use spotfit_core::pipeline::{record_step_billed, RunState};
use spotfit_core::ports::{CapacityStore, Clock, ObjectStore, ProfileStore, RunStore, SpotPriceFeed};
use spotfit_lambda::{decode, encode_with_error, take_caught_error, TaskError};

#[derive(Debug)]
pub struct Deps<P, R, O, K, F, C> {
    pub profiles: P,
    pub runs: R,
    pub objects: O,
    pub clock: K,
    /// The spot price history a spot attempt is billed from.
    pub prices: F,
    /// The pools' interruption history a spot attempt is added to.
    pub capacity: C,
}

pub async fn handle<P, R, O, K, F, C>(
    event: LambdaEvent<Value>,
    deps: &Deps<P, R, O, K, F, C>,
) -> Result<Value, TaskError>
where
    P: ProfileStore,
    R: RunStore,
    O: ObjectStore,
    K: Clock,
    F: SpotPriceFeed,
    C: CapacityStore,
{
    let mut payload = event.payload;
    let error = take_caught_error(&mut payload);
    let state: RunState = decode(payload)?;
    let (state, problem) = record_step_billed(
        &deps.profiles,
        &deps.runs,
        &deps.objects,
        &deps.clock,
        &deps.prices,
        &deps.capacity,
        state,
    )
    .await?;
    if let Some(why) = problem {
        tracing::warn!(run_id = %state.run_id, attempt = state.attempt, reason = %why, "cost recorded as an estimate");
    }
    encode_with_error(&state, error)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use lambda_runtime::Context;
    use spotfit_core::pipeline::{launch_step, LaunchSettings};
    use spotfit_core::ports::StoreError;
    use spotfit_core::prices::{CostBasis, PricePoint, SpotQuote};
    use spotfit_core::testkit::*;

    const T0: i64 = 1_795_651_200_000;
    const HOUR: i64 = 3_600_000;

    /// A pool's price history as EC2 would answer it, or its failure.
    struct History(Result<Vec<PricePoint>, ()>);
    #[async_trait::async_trait]
    impl SpotPriceFeed for History {
        async fn current(&self, _: i64) -> Result<Vec<SpotQuote>, StoreError> {
            Ok(vec![])
        }
        async fn history(&self, t: &str, az: &str, from: i64, to: i64) -> Result<Vec<PricePoint>, StoreError> {
            assert_eq!((t, az), ("m7i.large", "use1-az1"), "the attempt's own pool");
            assert!(from <= to);
            self.0.clone().map_err(|()| StoreError::Throttled {
                service: "ec2".into(),
                message: "RequestLimitExceeded".into(),
            })
        }
    }
    #[allow(non_upper_case_globals)]
    const NoHistory: History = History(Ok(Vec::new()));

    type TestDeps =
        Deps<InMemoryProfileStore, InMemoryRunStore, InMemoryObjectStore, FakeClock, History, InMemoryCapacityStore>;

    fn deps(prices: History) -> TestDeps {
        Deps {
            profiles: InMemoryProfileStore::default(),
            runs: InMemoryRunStore::default(),
            objects: InMemoryObjectStore::default(),
            clock: FakeClock::at(T0),
            prices,
            capacity: InMemoryCapacityStore::default(),
        }
    }

    /// A spot attempt on m7i.large in use1-az1, launched at T0 and terminated `ms` later.
    fn ended_attempt(d: &TestDeps, ms: i64) -> Value {
        let spec = serde_json::json!({"name": "etl", "command": ["true"], "market": "spot"});
        let state = sized_state(spec, "run-1", vec![candidate("m7i.large", 0.036)], T0);
        let (l, cap) = (FakeLauncher::new(), InMemoryCapacityStore::default());
        l.now_ms.store(T0, std::sync::atomic::Ordering::SeqCst);
        let settings = LaunchSettings::new(vec!["use1-az1".into()]);
        let state = block_on(launch_step(&l, &cap, &d.runs, &d.clock, &settings, state)).unwrap();
        d.clock.advance(ms + 5_000);
        let mut ev = serde_json::to_value(&state).unwrap();
        assert_eq!(ev["instance"]["launched_at_ms"], T0);
        ev["instance"]["terminated_at_ms"] = (T0 + ms).into();
        ev
    }

    #[test]
    fn a_spot_attempt_is_billed_from_its_pools_price_history() {
        // GIVEN $0.030 in force before the launch and $0.060 from 30 min in; a 90-minute run
        let d = deps(History(Ok(vec![
            PricePoint {
                at_ms: T0 - 2 * HOUR,
                price_per_hour: 0.030,
            },
            PricePoint {
                at_ms: T0 + HOUR / 2,
                price_per_hour: 0.060,
            },
        ])));
        let ev = ended_attempt(&d, HOUR + HOUR / 2);
        block_on(handle(LambdaEvent::new(ev, Context::default()), &d)).unwrap();
        // THEN the row holds 30 min × 0.030 + 60 min × 0.060, marked billed
        let row = block_on(d.runs.get("run-1", 1)).unwrap().unwrap();
        let want = 0.5 * 0.030 + 1.0 * 0.060;
        assert!((row.cost_usd - want).abs() < 1e-12, "{} vs {want}", row.cost_usd);
        assert_eq!(row.cost_basis, CostBasis::Billed);
        // AND a 20-second run pays the minute at the launch price
        let d = deps(History(Ok(vec![PricePoint {
            at_ms: T0 - HOUR,
            price_per_hour: 0.036,
        }])));
        let ev = ended_attempt(&d, 20_000);
        block_on(handle(LambdaEvent::new(ev, Context::default()), &d)).unwrap();
        let row = block_on(d.runs.get("run-1", 1)).unwrap().unwrap();
        assert!((row.cost_usd - 0.036 / 60.0).abs() < 1e-12, "{}", row.cost_usd);
    }

    #[test]
    fn an_ended_spot_attempt_adds_its_hours_to_its_pool_once() {
        let d = deps(NoHistory);
        let mut ev = ended_attempt(&d, 2 * HOUR);
        ev["check"] = serde_json::json!({"status": "interrupted", "at_ms": T0 + 2 * HOUR});
        block_on(handle(LambdaEvent::new(ev.clone(), Context::default()), &d)).unwrap();
        // a repeated record step (a retried invocation) counts nothing more
        block_on(handle(LambdaEvent::new(ev, Context::default()), &d)).unwrap();
        let got = block_on(d.capacity.exposures(T0 + 3 * HOUR)).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (got[0].instance_type.as_str(), got[0].az.as_str()),
            ("m7i.large", "use1-az1")
        );
        assert!(
            (got[0].hours - 2.0).abs() < 1e-9 && got[0].interruptions == 1,
            "{got:?}"
        );
    }

    #[test]
    fn without_a_history_the_run_is_still_recorded_at_its_estimate() {
        for prices in [History(Err(())), NoHistory] {
            let d = deps(prices);
            let ev = ended_attempt(&d, HOUR);
            block_on(handle(LambdaEvent::new(ev, Context::default()), &d)).unwrap();
            let row = block_on(d.runs.get("run-1", 1)).unwrap().unwrap();
            assert!((row.cost_usd - 0.036).abs() < 1e-9, "{}", row.cost_usd);
            assert_eq!(row.cost_basis, CostBasis::Estimated);
        }
    }

    #[test]
    fn an_attempt_caught_by_an_error_is_recorded_failed_and_costed() {
        let d = deps(NoHistory);
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
