//! The size step: validate the spec, size the attempt from the job's profile, rank.

use super::*;
use crate::catalog::Catalog;
use crate::ranking::{rank, Deployment, RankOptions};

/// Ranks the candidates of a requirement for a spec, as the size step asks, and says which
/// specs it can rank. A closure returning the candidates is one (validating as
/// [`JobSpec::validate`] does: the spec's regions, else the default region);
/// [`DeployedRanking`] ranks where a deployment can launch.
pub trait Ranker {
    /// The candidates, or why none can exist (the reason becomes the `NoCandidates` error).
    fn rank(&self, req: &Requirement, spec: &JobSpec) -> Result<Vec<Candidate>, String>;
    /// The spec's rules and placement, checked where this ranking looks.
    fn validate(&self, spec: &JobSpec) -> Result<(), SpecError> {
        spec.validate()
    }
}

impl<F: Fn(&Requirement, &JobSpec) -> Vec<Candidate>> Ranker for F {
    fn rank(&self, req: &Requirement, spec: &JobSpec) -> Result<Vec<Candidate>, String> {
        Ok(self(req, spec))
    }
}

/// Ranking for a deployment ([`Deployment`]): only in its region, only the architectures its
/// AMIs boot; a spec is validated there too, so one that could be placed only elsewhere is
/// refused up front, naming the field, rather than validated against another region.
#[derive(Debug)]
pub struct DeployedRanking<'a> {
    pub catalog: &'a Catalog,
    pub deployment: &'a Deployment,
    /// Live spot prices to rank on, already checked fresh (`prices::OverlayCache`).
    pub live: Option<std::sync::Arc<crate::prices::PriceOverlay>>,
    /// The pools' interruption history, for learned rates.
    pub history: Option<std::sync::Arc<crate::ranking::PoolHistory>>,
}

impl Ranker for DeployedRanking<'_> {
    fn rank(&self, req: &Requirement, spec: &JobSpec) -> Result<Vec<Candidate>, String> {
        let placement = self.deployment.placement(&spec.placement)?;
        if placement.architectures.is_empty() {
            return Ok(Vec::new()); // the spec allows none the deployment can boot: no candidate
        }
        let opts = RankOptions {
            default_region: self.deployment.region.clone(),
            live: self.live.clone(),
            live_zones: self.deployment.zones.clone(),
            history: self.history.clone(),
            ..Default::default()
        };
        Ok(rank(self.catalog, req, &placement, spec.market, &opts))
    }

    fn validate(&self, spec: &JobSpec) -> Result<(), SpecError> {
        spec.validate_with(self.catalog, &[self.deployment.region.as_str()])
    }
}

/// Size step: validate the spec, size from the job's profile, rank candidates. On a retry
/// (`input.previous`), the next attempt keeps the run id and the excluded pools, and an OOM
/// kill raises the memory floor by the spec's factor.
pub async fn size_step<P, R>(profiles: &P, rank: R, input: SizeInput, now_ms: i64) -> Result<RunState, PipelineError>
where
    P: ProfileStore + ?Sized,
    R: Ranker,
{
    let spec = JobSpec::parse_json(&input.spec.to_string())?;
    rank.validate(&spec)?;
    let profile = profiles.get(&spec.name).await?;
    let mut requirement = crate::sizing::size(&spec, profile.as_ref(), now_ms);
    let (run_id, attempt, started_at_ms, excluded, mut oom_retries, history) = match input.previous {
        None => (
            run_id_for(input.execution.as_deref(), now_ms),
            1,
            now_ms,
            Vec::new(),
            0,
            Vec::new(),
        ),
        Some(prev) => {
            let prev = *prev;
            if prev.job != spec.name {
                return Err(PipelineError::InvalidState(format!(
                    "previous attempt is of job {}, spec is {}",
                    prev.job, spec.name
                )));
            }
            let oom = prev.check.as_ref().is_some_and(|c| c.status == RunStatus::OomKilled);
            if oom {
                // From the memory the killed attempt really had: ranking may buy a type above
                // the requirement's floor when its OOM risk is priced (sizing v3).
                let killed_on = prev.instance.as_ref().and_then(|i| {
                    prev.candidates
                        .iter()
                        .find(|c| c.instance_type == i.pool.instance_type)
                        .map(|c| c.memory_bytes)
                });
                let had = prev.requirement.memory_bytes.max(killed_on.unwrap_or(0));
                let bumped = (had as f64 * spec.retry.oom_memory_factor) as u64;
                if bumped > requirement.memory_bytes {
                    requirement.memory_bytes = bumped;
                    requirement.notes.push(format!(
                        "OOM kill in attempt {}: memory raised ×{} to {} bytes",
                        prev.attempt, spec.retry.oom_memory_factor, bumped
                    ));
                }
            }
            let ooms = prev.oom_retries + u32::from(oom);
            (
                prev.run_id,
                prev.attempt + 1,
                prev.started_at_ms,
                prev.excluded,
                ooms,
                prev.history,
            )
        }
    };
    if oom_retries > OOM_RETRIES {
        oom_retries = OOM_RETRIES;
    }
    let mut candidates = rank
        .rank(&requirement, &spec)
        .map_err(|reason| PipelineError::NoCandidates {
            job: spec.name.clone(),
            reason,
        })?;
    candidates.truncate(MAX_CANDIDATES);
    if candidates.is_empty() {
        return Err(PipelineError::NoCandidates {
            job: spec.name.clone(),
            reason: format!(
                "{} vCPU, {} MiB, {} GPU within the spec's placement and bounds",
                requirement.vcpu,
                requirement.memory_bytes / crate::units::MIB,
                requirement.gpu
            ),
        });
    }
    Ok(RunState {
        run_id,
        job: spec.name.clone(),
        spec,
        attempt,
        started_at_ms,
        requirement,
        candidates,
        excluded,
        oom_retries,
        instance: None,
        check: None,
        outcome: None,
        history,
    })
}
