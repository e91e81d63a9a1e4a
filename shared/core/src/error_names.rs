//! Stable error type names returned by the Lambdas (the `errorType` of their `Diagnostic`) and
//! matched by the state machine's Retry/Catch `ErrorEquals`. They are a contract with the ASL in
//! `statemachine/`: renaming one is a breaking change, and a test there checks that every name
//! the ASL matches is in [`ALL`].

/// The job spec is invalid; the message names every bad field. Not retryable.
pub const INVALID_JOB_SPEC: &str = "InvalidJobSpec";
/// The state handed to a step is not what the step needs (a contract bug). Not retryable.
pub const INVALID_STATE: &str = "InvalidState";
/// No instance type in the catalog fits the requirement and placement. Not retryable.
pub const NO_CANDIDATES: &str = "NoCandidates";
/// Every planned pool failed with a capacity error (or none was left to try).
pub const CAPACITY_EXHAUSTED: &str = "CapacityExhausted";
/// AWS asked us to slow down (RequestLimitExceeded, ThrottlingException …): retry with backoff.
pub const THROTTLED: &str = "Throttled";
/// An AWS service could not be reached or answered 5xx: retry.
pub const SERVICE_UNAVAILABLE: &str = "ServiceUnavailable";
/// A conditional write kept losing: retry the step.
pub const CONCURRENT_UPDATE: &str = "ConcurrentUpdate";
/// EC2 refused the launch for a reason other than capacity (the AWS code is in the cause).
pub const LAUNCH_FAILED: &str = "LaunchFailed";
/// EC2 failed on describe/terminate for a non-transient reason (the AWS code is in the cause).
pub const INSTANCE_API_FAILED: &str = "InstanceApiFailed";
/// A store (S3, DynamoDB) failed for a non-transient reason (the AWS code is in the cause).
pub const STORE_FAILED: &str = "StoreFailed";
/// The Lambda's configuration (environment) is invalid.
pub const CONFIG_INVALID: &str = "ConfigInvalid";
/// The launch walk ran out of its time budget (below the Lambda's timeout) before a pool took
/// the instance: retry; the retry finds an instance the cut-off walk did start.
pub const LAUNCH_BUDGET_SPENT: &str = "LaunchBudgetSpent";
/// A region-wide quota (MaxSpotInstanceCountExceeded, VcpuLimitExceeded …) refused the launch and
/// the spec allows no other market: retry with backoff ("waiting for quota").
pub const WAITING_FOR_QUOTA: &str = "WaitingForQuota";
/// The quota did not free within the job's timeout. Not retryable.
pub const QUOTA_EXHAUSTED: &str = "QuotaExhausted";

/// Every name a spotfit Lambda may return.
pub const ALL: &[&str] = &[
    INVALID_JOB_SPEC,
    INVALID_STATE,
    NO_CANDIDATES,
    CAPACITY_EXHAUSTED,
    THROTTLED,
    SERVICE_UNAVAILABLE,
    CONCURRENT_UPDATE,
    LAUNCH_FAILED,
    INSTANCE_API_FAILED,
    STORE_FAILED,
    CONFIG_INVALID,
    LAUNCH_BUDGET_SPENT,
    WAITING_FOR_QUOTA,
    QUOTA_EXHAUSTED,
];

/// The names worth retrying in place (transient): the ASL's Retry blocks use exactly these.
pub const TRANSIENT: &[&str] = &[THROTTLED, SERVICE_UNAVAILABLE, CONCURRENT_UPDATE];
/// Retried by the Launch state only, with their own backoff.
pub const LAUNCH_RETRY: &[&str] = &[LAUNCH_BUDGET_SPENT, WAITING_FOR_QUOTA];

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_pascal_case_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for n in super::ALL {
            assert!(n.chars().next().is_some_and(|c| c.is_ascii_uppercase()), "{n}");
            assert!(n.chars().all(|c| c.is_ascii_alphanumeric()), "{n}");
            assert!(seen.insert(*n), "duplicate {n}");
        }
        assert!(super::TRANSIENT.iter().all(|t| super::ALL.contains(t)));
    }
}
