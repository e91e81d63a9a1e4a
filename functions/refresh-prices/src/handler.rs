//! Runs one refresh ([`spotfit_core::prices::refresh`]) for the deployment's region over the
//! types the catalog knows there. The scheduled event's content is not used: every tick reads
//! the market as it is now. A failure is the Lambda's error (its alarm fires) and leaves the
//! previous overlay in place.

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;
use spotfit_core::catalog::Catalog;
use spotfit_core::error_names;
use spotfit_core::ports::{Clock, ObjectStore, OnDemandFeed, SpotPriceFeed, StoreError};
use spotfit_core::prices::{refresh, RefreshError};
use std::time::Instant;

#[derive(Debug)]
pub struct Deps<F, O, K, D> {
    pub feed: F,
    /// On-demand list prices (the Pricing API), read daily.
    pub on_demand: D,
    pub objects: O,
    pub catalog: &'static Catalog,
    pub region: String,
    pub clock: K,
}

/// A refresh that wrote nothing, as Lambda reports it.
#[derive(Debug)]
pub struct Failed(pub RefreshError);

/// The error type of a refresh that kept the previous overlay because the market's answer
/// looked truncated.
pub const PARTIAL_REFRESH: &str = "PartialRefresh";

impl From<Failed> for Diagnostic {
    fn from(Failed(e): Failed) -> Diagnostic {
        let error_type = match &e {
            RefreshError::Feed(StoreError::Throttled { .. }) | RefreshError::Store(StoreError::Throttled { .. }) => {
                error_names::THROTTLED
            }
            RefreshError::Feed(StoreError::Unavailable { .. })
            | RefreshError::Store(StoreError::Unavailable { .. }) => error_names::SERVICE_UNAVAILABLE,
            RefreshError::Partial { .. } => PARTIAL_REFRESH,
            RefreshError::Feed(_) | RefreshError::Store(_) => error_names::STORE_FAILED,
        };
        Diagnostic {
            error_type: error_type.to_string(),
            error_message: e.to_string(),
        }
    }
}

pub async fn handle<F: SpotPriceFeed, O: ObjectStore, K: Clock, D: OnDemandFeed>(
    _event: LambdaEvent<Value>,
    deps: &Deps<F, O, K, D>,
) -> Result<Value, Failed> {
    let t0 = Instant::now();
    let region = deps.region.as_str();
    let known = |t: &str| deps.catalog.find(region, t).is_some();
    match refresh(
        &deps.feed,
        Some(&deps.on_demand),
        &deps.objects,
        region,
        deps.clock.now_ms(),
        known,
    )
    .await
    {
        Ok(report) => {
            if let Some(e) = &report.on_demand_error {
                lambda_runtime::tracing::warn!(region, error = %e, "on-demand prices not refreshed: the previous ones stay");
            }
            let ms = t0.elapsed().as_millis() as u64;
            lambda_runtime::tracing::info!(
                region,
                types = report.types,
                quotes = report.quotes,
                previous = report.previous_quotes,
                ms,
                "price overlay written"
            );
            let mut out = serde_json::to_value(&report).unwrap_or_default();
            out["elapsed_ms"] = ms.into();
            Ok(out)
        }
        Err(e) => {
            lambda_runtime::tracing::warn!(region, error = %e, "price refresh failed: the previous overlay stays");
            Err(Failed(e))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use lambda_runtime::Context;
    use spotfit_core::prices::{overlay_key, PriceOverlay, PricePoint, SpotQuote};
    use spotfit_core::testkit::{block_on, FakeClock, InMemoryObjectStore};
    use std::sync::Mutex;

    struct Feed(Mutex<Result<Vec<SpotQuote>, StoreError>>);
    #[async_trait::async_trait]
    impl SpotPriceFeed for Feed {
        async fn current(&self, _: i64) -> Result<Vec<SpotQuote>, StoreError> {
            std::mem::replace(&mut *self.0.lock().unwrap(), Ok(vec![]))
        }
        async fn history(&self, _: &str, _: &str, _: i64, _: i64) -> Result<Vec<PricePoint>, StoreError> {
            Ok(vec![])
        }
    }

    struct Od;
    #[async_trait::async_trait]
    impl OnDemandFeed for Od {
        async fn on_demand(&self, _: &str) -> Result<std::collections::BTreeMap<String, f64>, StoreError> {
            Ok([("m7i.large".to_string(), 0.1008)].into())
        }
    }

    fn deps(feed: Result<Vec<SpotQuote>, StoreError>) -> Deps<Feed, InMemoryObjectStore, FakeClock, Od> {
        Deps {
            feed: Feed(Mutex::new(feed)),
            on_demand: Od,
            objects: Default::default(),
            catalog: Catalog::embedded().unwrap(),
            region: "us-east-1".into(),
            clock: FakeClock::at(1_796_000_000_000),
        }
    }

    fn event() -> LambdaEvent<Value> {
        LambdaEvent::new(
            serde_json::from_str(include_str!("../events/scheduled.json")).unwrap(),
            Context::default(),
        )
    }

    #[test]
    fn writes_the_catalogs_types_only() {
        let q = |t: &str| SpotQuote {
            instance_type: t.into(),
            az_id: "use1-az1".into(),
            price_per_hour: 0.03,
            at_ms: 1,
        };
        let d = deps(Ok(vec![q("m7i.large"), q("not-a.type")]));
        let out = block_on(handle(event(), &d)).unwrap();
        assert_eq!((out["types"].as_u64(), out["written"].as_bool()), (Some(1), Some(true)));
        let o = PriceOverlay::from_json(&block_on(d.objects.get(&overlay_key("us-east-1"))).unwrap().unwrap()).unwrap();
        assert!(o.spot_zones("m7i.large").is_some() && o.spot_zones("not-a.type").is_none());
        assert_eq!(o.on_demand.get("m7i.large"), Some(&0.1008));
    }

    #[test]
    fn throttling_past_the_retries_is_a_throttled_error_and_writes_nothing() {
        let d = deps(Err(StoreError::Throttled {
            service: "ec2".into(),
            message: "RequestLimitExceeded".into(),
        }));
        let err: Diagnostic = block_on(handle(event(), &d)).unwrap_err().into();
        assert_eq!(err.error_type, error_names::THROTTLED);
        assert!(block_on(d.objects.get(&overlay_key("us-east-1"))).unwrap().is_none());
        // AND an empty market answer is a partial refresh, not an empty overlay
        let err: Diagnostic = block_on(handle(event(), &deps(Ok(vec![])))).unwrap_err().into();
        assert_eq!(err.error_type, PARTIAL_REFRESH);
    }
}
