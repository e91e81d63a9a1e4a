//! Validates the job spec, sizes the next attempt from the job's profile and ranks the
//! candidate instances ([`spotfit_core::pipeline::size_step`]).

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use spotfit_core::catalog::Catalog;
use spotfit_core::pipeline::{size_step, DeployedRanking, SizeInput};
use spotfit_core::ports::{Clock, ProfileStore};
use spotfit_core::ranking::Deployment;
use spotfit_lambda::{decode, encode, TaskError};

#[derive(Debug)]
pub struct Deps<P, K> {
    pub profiles: P,
    pub catalog: &'static Catalog,
    /// Where the deployment can launch (its region, the architectures its AMIs boot): only
    /// there is anything ranked, since another region's or architecture's candidate would fail
    /// at RunInstances.
    pub deployment: Deployment,
    pub clock: K,
}

pub async fn handle<P: ProfileStore, K: Clock>(
    event: LambdaEvent<Value>,
    deps: &Deps<P, K>,
) -> Result<Value, TaskError> {
    let input: SizeInput = decode(event.payload)?;
    let ranker = DeployedRanking {
        catalog: deps.catalog,
        deployment: &deps.deployment,
    };
    let state = size_step(&deps.profiles, ranker, input, deps.clock.now_ms()).await?;
    encode(&state)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use lambda_runtime::Context;
    use spotfit_core::spec::Arch;
    use spotfit_core::testkit::{block_on, FakeClock, InMemoryProfileStore};

    fn deps() -> Deps<InMemoryProfileStore, FakeClock> {
        Deps {
            profiles: Default::default(),
            catalog: Catalog::embedded().unwrap(),
            deployment: Deployment {
                region: "us-east-1".into(),
                architectures: vec![Arch::X86_64],
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
    fn a_bad_spec_is_invalid_job_spec_naming_the_field() {
        let event =
            serde_json::json!({"spec": {"name": "etl", "command": ["x"], "resources": {"min_vcpu": 4, "max_vcpu": 2}}});
        let err = block_on(handle(LambdaEvent::new(event, Context::default()), &deps())).unwrap_err();
        assert_eq!(err.name(), "InvalidJobSpec");
        assert!(err.to_string().contains("resources.max_vcpu"), "{err}");
    }
}
