//! Validates the job spec, sizes the next attempt from the job's profile and ranks the
//! candidate instances ([`spotfit_core::pipeline::size_step`]).

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use spotfit_core::catalog::Catalog;
use spotfit_core::pipeline::{size_step, DeployedRanking, SizeInput};
use spotfit_core::ports::{CapacityStore, Clock, ObjectStore, ProfileStore};
use spotfit_core::prices::{Loaded, OverlayCache};
use spotfit_core::ranking::Deployment;
use spotfit_lambda::{decode, encode, TaskError};

#[derive(Debug)]
pub struct Deps<P, K, O, C> {
    pub profiles: P,
    /// The capacity table, holding the pools' interruption history (record-run adds to it).
    pub capacity: C,
    /// The data bucket, where the price refresher writes the spot price overlay.
    pub objects: O,
    /// The overlay as this warm process holds it (re-read at most once a minute).
    pub prices: OverlayCache,
    /// Older overlays are ignored (`SPOTFIT_PRICE_MAX_AGE_S`).
    pub price_max_age_ms: i64,
    pub catalog: &'static Catalog,
    /// Where the deployment can launch (its region, the architectures its AMIs boot): only
    /// there is anything ranked, since another region's or architecture's candidate would fail
    /// at RunInstances.
    pub deployment: Deployment,
    pub clock: K,
}

pub async fn handle<P: ProfileStore, K: Clock, O: ObjectStore, C: CapacityStore>(
    event: LambdaEvent<Value>,
    deps: &Deps<P, K, O, C>,
) -> Result<Value, TaskError> {
    let input: SizeInput = decode(event.payload)?;
    let now = deps.clock.now_ms();
    let live = match deps
        .prices
        .current(&deps.objects, &deps.deployment.region, now, deps.price_max_age_ms)
        .await
    {
        Loaded::Live(o) => Some(o),
        Loaded::Snapshot { why, warn: true } => {
            tracing::warn!(reason = %why, "spot prices: not live");
            None
        }
        Loaded::Snapshot { why, warn: false } => {
            tracing::info!(reason = %why, "spot prices: not live");
            None
        }
    };
    // The pools' own interruption history; without it (the table failing) the Advisor's
    // buckets rank, as they always did.
    let history = match deps.capacity.exposures(now).await {
        Ok(rows) if rows.is_empty() => None,
        Ok(rows) => Some(std::sync::Arc::new(spotfit_core::ranking::PoolHistory::new(&rows))),
        Err(e) => {
            tracing::warn!(error = %e, "interruption history unreadable: ranking on the Advisor's buckets");
            None
        }
    };
    let ranker = DeployedRanking {
        catalog: deps.catalog,
        deployment: &deps.deployment,
        live,
        history,
    };
    let state = size_step(&deps.profiles, ranker, input, now).await?;
    encode(&state)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use lambda_runtime::Context;
    use spotfit_core::prices::{overlay_key, PriceOverlay, SpotQuote, DEFAULT_MAX_AGE_MS};
    use spotfit_core::spec::Arch;
    use spotfit_core::testkit::{
        block_on, FakeClock, InMemoryCapacityStore, InMemoryObjectStore, InMemoryProfileStore,
    };

    fn deps() -> Deps<InMemoryProfileStore, FakeClock, InMemoryObjectStore, InMemoryCapacityStore> {
        Deps {
            profiles: Default::default(),
            capacity: Default::default(),
            objects: Default::default(),
            prices: Default::default(),
            price_max_age_ms: DEFAULT_MAX_AGE_MS,
            catalog: Catalog::embedded().unwrap(),
            deployment: Deployment {
                region: "us-east-1".into(),
                architectures: vec![Arch::X86_64],
                zones: vec!["use1-az1".into(), "use1-az2".into()],
            },
            clock: FakeClock::at(1_795_651_200_000),
        }
    }

    #[test]
    fn a_spec_is_validated_where_the_deployment_launches() {
        // GIVEN an on-demand hpc7a job (a family offered in eu-west-1, not in us-east-1)
        let spec = serde_json::json!({"spec": {"name": "hpc", "command": ["x"], "market": "on-demand",
            "placement": {"allowed_families": ["hpc7a"]}}});
        // WHEN a deployment in eu-west-1 sizes it, THEN it ranks hpc7a there
        let mut eu = deps();
        eu.deployment.region = "eu-west-1".into();
        let out = block_on(handle(LambdaEvent::new(spec.clone(), Context::default()), &eu)).unwrap();
        let cands = out["candidates"].as_array().unwrap();
        assert!(!cands.is_empty());
        assert!(
            cands
                .iter()
                .all(|c| c["region"] == "eu-west-1" && c["instance_type"].as_str().unwrap().starts_with("hpc7a")),
            "{cands:?}"
        );
        // AND one in us-east-1 refuses it up front, naming the field
        let err = block_on(handle(LambdaEvent::new(spec, Context::default()), &deps())).unwrap_err();
        assert_eq!(err.name(), "InvalidJobSpec");
        assert!(err.to_string().contains("placement"), "{err}");
    }

    #[test]
    fn sizes_and_ranks_from_the_real_catalog() {
        let event = serde_json::from_str(include_str!("../events/size.json")).unwrap();
        let out = block_on(handle(LambdaEvent::new(event, Context::default()), &deps())).unwrap();
        assert_eq!(out["run_id"], "20261126T000000Z-0000abcd");
        assert_eq!(out["attempt"], 1);
        assert!(!out["candidates"].as_array().unwrap().is_empty());
    }

    #[test]
    fn never_offers_an_architecture_the_deployment_cannot_boot() {
        // GIVEN a deployment with x86_64 AMIs only and a spec that allows any architecture
        let event =
            serde_json::json!({"spec": {"name": "etl", "command": ["x"], "hints": {"vcpu": 1, "memory_gib": 1}}});
        let out = block_on(handle(LambdaEvent::new(event, Context::default()), &deps())).unwrap();
        let cands = out["candidates"].as_array().unwrap();
        assert!(!cands.is_empty());
        // THEN no Graviton (arm64) type is ranked, though they are often the cheapest
        let catalog = Catalog::embedded().unwrap();
        for c in cands {
            let t = c["instance_type"].as_str().unwrap();
            let offer = catalog.find("us-east-1", t).unwrap();
            assert_eq!(offer.arch, Arch::X86_64, "{t}");
        }
    }

    #[test]
    fn a_spec_naming_only_other_regions_is_refused_with_the_reason() {
        // GIVEN a us-east-1 deployment and a spec placed in eu-west-1 only
        let event =
            serde_json::json!({"spec": {"name": "nlp", "command": ["x"], "placement": {"regions": ["eu-west-1"]}}});
        let err = block_on(handle(LambdaEvent::new(event, Context::default()), &deps())).unwrap_err();
        // THEN it is refused, naming the field and both regions, instead of ranking eu-west-1
        assert_eq!(err.name(), "InvalidJobSpec");
        assert!(
            err.to_string().contains("placement.regions")
                && err.to_string().contains("eu-west-1")
                && err.to_string().contains("us-east-1"),
            "{err}"
        );
        // AND a spec that includes the deployment's region ranks there only
        let event = serde_json::json!({"spec": {"name": "nlp", "command": ["x"], "placement": {"regions": ["eu-west-1", "us-east-1"]}}});
        let out = block_on(handle(LambdaEvent::new(event, Context::default()), &deps())).unwrap();
        assert!(out["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["region"] == "us-east-1"));
    }

    #[test]
    fn previous_generation_types_are_not_ranked_unless_their_family_is_named() {
        let catalog = Catalog::embedded().unwrap();
        let event =
            serde_json::json!({"spec": {"name": "etl", "command": ["x"], "hints": {"vcpu": 2, "memory_gib": 4}}});
        let out = block_on(handle(LambdaEvent::new(event, Context::default()), &deps())).unwrap();
        for c in out["candidates"].as_array().unwrap() {
            let t = c["instance_type"].as_str().unwrap();
            assert!(
                catalog.find("us-east-1", t).unwrap().current_generation,
                "{t} is previous-generation"
            );
        }
        let event = serde_json::json!({"spec": {"name": "etl", "command": ["x"], "hints": {"vcpu": 2, "memory_gib": 4},
            "placement": {"allowed_families": ["m4"]}}});
        let out = block_on(handle(LambdaEvent::new(event, Context::default()), &deps())).unwrap();
        let cands = out["candidates"].as_array().unwrap();
        assert!(
            !cands.is_empty()
                && cands
                    .iter()
                    .all(|c| c["instance_type"].as_str().unwrap().starts_with("m4."))
        );
    }

    #[test]
    fn ranks_on_the_fresh_overlay_in_the_deployments_zones_and_ignores_a_stale_one() {
        // GIVEN the snapshot's first pick for a small job
        let event = || {
            serde_json::json!({"spec": {"name": "etl", "command": ["x"], "market": "spot",
                "hints": {"vcpu": 2, "memory_gib": 4}}})
        };
        let d = deps();
        let now = d.clock.now_ms();
        let first = block_on(handle(LambdaEvent::new(event(), Context::default()), &d)).unwrap();
        let pick = first["candidates"][0]["instance_type"].as_str().unwrap().to_string();
        let snapshot_price = first["candidates"][0]["price_per_hour"].as_f64().unwrap();
        assert!(
            first["candidates"][0].get("price_source").is_none(),
            "{}",
            first["candidates"][0]
        );
        // WHEN a fresh overlay quotes it in three zones, two of them the deployment's
        let quote = |az: &str, f: f64| SpotQuote {
            instance_type: pick.clone(),
            az_id: az.into(),
            price_per_hour: snapshot_price * f,
            at_ms: now - 1000,
        };
        let overlay = PriceOverlay::from_quotes(
            "us-east-1",
            now - 60_000,
            [quote("use1-az1", 0.9), quote("use1-az2", 0.7), quote("use1-az3", 0.5)],
            |_| true,
        );
        let d = deps();
        block_on(d.objects.put(&overlay_key("us-east-1"), overlay.to_json())).unwrap();
        let out = block_on(handle(LambdaEvent::new(event(), Context::default()), &d)).unwrap();
        // THEN it ranks per zone, the cheaper of the deployment's zones first, at its live price
        let c = &out["candidates"];
        assert_eq!(c[0]["instance_type"], pick.as_str());
        assert_eq!(
            (c[0]["az"].as_str(), c[0]["price_source"].as_str()),
            (Some("use1-az2"), Some("live"))
        );
        assert!((c[0]["price_per_hour"].as_f64().unwrap() - snapshot_price * 0.7).abs() < 1e-12);
        assert!(!c.as_array().unwrap().iter().any(|c| c["az"] == "use1-az3"), "{c}");
        // AND an overlay older than the bound is ignored: the snapshot ranks again
        let mut stale = deps();
        stale.clock = FakeClock::at(now + DEFAULT_MAX_AGE_MS + 1);
        block_on(stale.objects.put(&overlay_key("us-east-1"), overlay.to_json())).unwrap();
        let out = block_on(handle(LambdaEvent::new(event(), Context::default()), &stale)).unwrap();
        assert!(out["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c.get("price_source").is_none()));
    }

    #[test]
    fn a_pool_that_interrupts_often_here_loses_its_place_to_its_quiet_zone() {
        use spotfit_core::ids::Pool;
        use spotfit_core::ports::Exposure;
        let event = || {
            serde_json::json!({"spec": {"name": "etl", "command": ["x"], "market": "spot",
                "hints": {"vcpu": 2, "memory_gib": 4}, "timeout_s": 36000}})
        };
        let d = deps();
        let now = d.clock.now_ms();
        let first = block_on(handle(LambdaEvent::new(event(), Context::default()), &d)).unwrap();
        let pick = first["candidates"][0]["instance_type"].as_str().unwrap().to_string();
        let price = first["candidates"][0]["price_per_hour"].as_f64().unwrap() * 0.5;
        // GIVEN the pick live at one price in both deployment zones, and 1,200 attempts of an
        // hour in each: use1-az1 interrupted 300 times, use1-az2 never
        let q = |az: &str| SpotQuote {
            instance_type: pick.clone(),
            az_id: az.into(),
            price_per_hour: price,
            at_ms: now,
        };
        let overlay = PriceOverlay::from_quotes("us-east-1", now, [q("use1-az1"), q("use1-az2")], |_| true);
        block_on(d.objects.put(&overlay_key("us-east-1"), overlay.to_json())).unwrap();
        d.clock.advance(spotfit_core::prices::RECHECK_MS); // the warm process looks again
        let base = block_on(handle(LambdaEvent::new(event(), Context::default()), &d)).unwrap();
        let order = |v: &Value| -> Vec<String> {
            v["candidates"].as_array().unwrap()[..2]
                .iter()
                .map(|c| c["az"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(order(&base), ["use1-az1", "use1-az2"], "tied on price: az order");
        for i in 0..2400 {
            let az = if i % 2 == 0 { "use1-az1" } else { "use1-az2" };
            let e = Exposure {
                pool: Pool {
                    instance_type: pick.clone(),
                    az: az.into(),
                    market: spotfit_core::Market::Spot,
                },
                attempt_key: format!("r{i}#1"),
                ended_at_ms: now - 1000,
                hours: 1.0,
                interrupted: az == "use1-az1" && i % 8 == 0,
            };
            assert!(block_on(d.capacity.add_exposure(&e)).unwrap());
        }
        // WHEN sized again THEN the quiet zone ranks first, its rate learned
        let out = block_on(handle(LambdaEvent::new(event(), Context::default()), &d)).unwrap();
        assert_eq!(order(&out), ["use1-az2", "use1-az1"], "{}", out["candidates"][0]);
        assert_eq!(out["candidates"][0]["interruption_source"], "learned");
        assert!(out["candidates"][1]["interruption_rate_per_h"].as_f64().unwrap() > 0.1);
    }

    #[test]
    fn a_full_overlay_loads_in_milliseconds() {
        // GIVEN an overlay quoting every us-east-1 type of the catalog in six zones (us-east-1 has
        // six; the e2e's emulator three), as the refresher writes it
        let catalog = Catalog::embedded().unwrap();
        let quotes: Vec<SpotQuote> = catalog
            .region("us-east-1")
            .iter()
            .filter(|o| o.spot_per_hour.is_some())
            .flat_map(|o| {
                (1..=6).map(move |z| SpotQuote {
                    instance_type: o.instance_type.clone(),
                    az_id: format!("use1-az{z}"),
                    price_per_hour: o.spot_per_hour.unwrap_or(1.0) * (0.8 + z as f64 / 20.0),
                    at_ms: 1,
                })
            })
            .collect();
        let overlay = PriceOverlay::from_quotes("us-east-1", 1_795_651_000_000, quotes, |_| true);
        let bytes = overlay.to_json();
        // WHEN a cold process reads it (parse and check) and ranks on it
        let t = std::time::Instant::now();
        let n = 20;
        for _ in 0..n {
            assert_eq!(PriceOverlay::from_json(&bytes).unwrap().counts(), overlay.counts());
        }
        let parse_ms = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
        let d = deps();
        block_on(d.objects.put(&overlay_key("us-east-1"), bytes.clone())).unwrap();
        let event =
            serde_json::json!({"spec": {"name": "etl", "command": ["x"], "hints": {"vcpu": 2, "memory_gib": 4}}});
        let t = std::time::Instant::now();
        let out = block_on(handle(LambdaEvent::new(event.clone(), Context::default()), &d)).unwrap();
        let live_ms = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(out["candidates"][0]["price_source"], "live");
        let t = std::time::Instant::now();
        block_on(handle(LambdaEvent::new(event, Context::default()), &deps())).unwrap();
        let snapshot_ms = t.elapsed().as_secs_f64() * 1000.0;
        // THEN (printed for the record; the bound only catches a pathological regression)
        let (types, quotes) = overlay.counts();
        println!(
            "overlay: {types} types, {quotes} quotes, {} KiB; parse {parse_ms:.2} ms; first sizing with it {live_ms:.1} ms, \
             without {snapshot_ms:.1} ms (this build's profile)",
            bytes.len() / 1024
        );
        assert!(parse_ms < 250.0, "{parse_ms} ms");
    }

    #[test]
    fn a_bad_spec_is_invalid_job_spec_naming_the_field() {
        let event =
            serde_json::json!({"spec": {"name": "etl", "command": ["x"], "resources": {"min_vcpu": 4, "max_vcpu": 2}}});
        let err = block_on(handle(LambdaEvent::new(event, Context::default()), &deps())).unwrap_err();
        assert_eq!(err.name(), "InvalidJobSpec");
        assert!(err.to_string().contains("resources.max_vcpu"), "{err}");
    }
}
