//! The pipeline steps, written once, generic over the ports, used by `spotfit run` and by the
//! Lambdas: size, launch, check, terminate, record, reap.

use crate::ports::{ProfileStore, RunStore, StoreError};
use crate::profile::JobProfile;
use crate::run::RunRecord;

/// How many times a conditional profile write is retried after a conflict.
pub const PROFILE_WRITE_ATTEMPTS: u32 = 8;

/// Folds a finished run into its job's profile with optimistic concurrency: read, apply,
/// write-if-unchanged, and on conflict start again. Two runs of one job finishing together
/// both land. Returns the profile as written.
pub async fn update_profile<P: ProfileStore + ?Sized>(
    profiles: &P,
    run: &crate::summary::RunSummary,
) -> Result<JobProfile, StoreError> {
    let mut last_err = None;
    for _ in 0..PROFILE_WRITE_ATTEMPTS {
        let current = profiles.get(&run.job).await?;
        let expected = current.as_ref().map(|p| p.version);
        let mut profile = current.unwrap_or_else(|| JobProfile::new(&run.job));
        if !profile.record(run) {
            return Ok(profile); // already recorded: a retried call changes nothing
        }
        profile.version = expected.unwrap_or(0) + 1;
        match profiles.put_if_version(&profile, expected).await {
            Ok(()) => return Ok(profile),
            Err(e @ StoreError::Conflict { .. }) => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or(StoreError::Conflict {
        key: run.job.clone(),
        expected: None,
        found: None,
    }))
}

/// Records one attempt: the run row first (so a crash between the two leaves the run visible),
/// then the profile. Only finished attempts with a summary change the profile.
pub async fn record_run<P, R>(profiles: &P, runs: &R, record: &RunRecord) -> Result<Option<JobProfile>, StoreError>
where
    P: ProfileStore + ?Sized,
    R: RunStore + ?Sized,
{
    runs.put(record).await?;
    match &record.summary {
        Some(summary) if record.status.is_final() => Ok(Some(update_profile(profiles, summary).await?)),
        _ => Ok(None),
    }
}
