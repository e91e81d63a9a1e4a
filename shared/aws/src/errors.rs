//! Classification of AWS SDK errors into domain errors, by AWS error code, in one place
//! (as Karpenter's pkg/errors does). Adapters call these; nothing else inspects SDK errors.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use spotfit_core::ids::Pool;
use spotfit_core::ports::{LaunchError, StoreError};

/// Codes AWS services use for "slow down".
pub const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "SlowDown",
    "PriorRequestNotComplete",
    "BandwidthLimitExceeded",
];

/// EC2 codes meaning "this pool cannot take the instance now, another may": the launch moves
/// on to the next candidate and marks the pool (Karpenter's unfulfillable-capacity set).
pub const CAPACITY_CODES: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientCapacityOnHost",
    "UnfulfillableCapacity",
    "ReservationCapacityExceeded",
    "SpotMaxPriceTooLow",
    "InsufficientFreeAddressesInSubnet",
];

/// EC2 codes of region-wide quotas: not capacity (no pool is to blame, every pool of the market
/// would refuse too), so nothing is marked and the walk does not go through every pool.
pub const QUOTA_CODES: &[&str] = &[
    "MaxSpotInstanceCountExceeded",
    "VcpuLimitExceeded",
    "InstanceLimitExceeded",
    "PendingVerification",
];

/// EC2 codes meaning "this pool can never take this request" (the type is not offered in the AZ,
/// or not with these parameters): the launch moves on to the next candidate without marking.
/// "The requested instance type is not supported in the requested Availability Zone" is
/// `Unsupported`; a type that cannot boot the image's architecture is InvalidParameterValue or
/// InvalidParameterCombination naming the architecture or the instance type.
pub const POOL_REJECTION_CODES: &[&str] = &["Unsupported", "UnsupportedOperation"];

/// Whether `code` with `message` concerns only the pool (type or AZ), not the request itself.
pub fn is_pool_rejection(code: &str, message: &str) -> bool {
    if POOL_REJECTION_CODES.contains(&code) {
        return true;
    }
    let m = message.to_ascii_lowercase();
    matches!(code, "InvalidParameterCombination" | "InvalidParameterValue")
        && (m.contains("architecture") || m.contains("instance type") || m.contains("instancetype"))
}

/// Whether `code` is a region-wide quota.
pub fn is_quota(code: &str) -> bool {
    QUOTA_CODES.contains(&code)
}

/// EC2 codes meaning "the instance is not there" (describe/terminate treat it as gone).
pub const NOT_FOUND_CODES: &[&str] = &["InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"];

/// Whether `code` is a per-pool capacity error.
pub fn is_capacity(code: &str) -> bool {
    CAPACITY_CODES.contains(&code)
}

/// The AWS error code of an SDK error, if the service answered with one.
pub fn code_of<E, R>(err: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(se) => se.err().code(),
        _ => None,
    }
}

/// Classifies an EC2 error of a launch in `pool`: capacity codes → `Capacity` (try the next
/// pool), throttling or no answer at all → `Throttled` (retry the same call: with the same
/// ClientToken a launch that did happen is returned, not repeated), the rest → `Fatal` with
/// the AWS code.
pub fn launch_error<E>(pool: &Pool, err: SdkError<E, HttpResponse>) -> LaunchError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match ec2_error(err) {
        LaunchError::Fatal { code, message } if is_capacity(&code) => LaunchError::Capacity {
            pool: pool.clone(),
            code,
            message,
        },
        LaunchError::Fatal { code, message } if is_quota(&code) => LaunchError::Quota {
            market: pool.market,
            code,
            message,
        },
        LaunchError::Fatal { code, message } if is_pool_rejection(&code, &message) => LaunchError::PoolRejected {
            pool: pool.clone(),
            code,
            message,
        },
        other => other,
    }
}

/// Classifies an EC2 error outside a launch (describe, terminate, list): throttling or no
/// answer → `Throttled`, else `Fatal` with the AWS code.
pub fn ec2_error<E>(err: SdkError<E, HttpResponse>) -> LaunchError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            LaunchError::Throttled {
                code: "Unavailable".into(),
                message: format!("{}", DisplayChain(&err)),
            }
        }
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown").to_string();
            let message = se.err().message().unwrap_or("").to_string();
            let status = se.raw().status().as_u16();
            if is_throttling(&code) || status >= 500 || code == "InternalError" || code == "Unavailable" {
                LaunchError::Throttled { code, message }
            } else {
                LaunchError::Fatal { code, message }
            }
        }
        _ => LaunchError::Fatal {
            code: err.code().unwrap_or("Unknown").to_string(),
            message: format!("{}", DisplayChain(&err)),
        },
    }
}

/// Whether `code` means throttling.
pub fn is_throttling(code: &str) -> bool {
    THROTTLING_CODES.contains(&code)
}

/// Classifies any SDK error of `service` into a [`StoreError`]: no response at all (connection
/// refused, timeout) is `Unavailable`; throttling codes are `Throttled`; 5xx service errors are
/// `Unavailable`; the rest is `Other` with the AWS code kept.
pub fn store_error<E, R>(service: &str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let service = service.to_string();
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => StoreError::Unavailable {
            service,
            message: format!("{}", DisplayChain(&err)),
        },
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown").to_string();
            let message = se.err().message().unwrap_or("").to_string();
            let status = format!("{:?}", se.raw());
            if is_throttling(&code) {
                StoreError::Throttled {
                    service,
                    message: format!("{code}: {message}"),
                }
            } else if status.contains("status: 50") || code == "InternalError" || code == "ServiceUnavailable" {
                StoreError::Unavailable {
                    service,
                    message: format!("{code}: {message}"),
                }
            } else {
                StoreError::Other { service, code, message }
            }
        }
        _ => {
            let code = err.code().unwrap_or("Unknown").to_string();
            StoreError::Other {
                service,
                code,
                message: format!("{}", DisplayChain(&err)),
            }
        }
    }
}

/// Displays an error with its source chain (SDK errors hide the useful part in sources).
#[derive(Debug)]
pub struct DisplayChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut src = self.0.source();
        while let Some(s) = src {
            write!(f, ": {s}")?;
            src = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_and_pool_rejections_are_not_capacity() {
        for q in ["MaxSpotInstanceCountExceeded", "VcpuLimitExceeded"] {
            assert!(is_quota(q) && !is_capacity(q), "{q}");
        }
        assert!(is_pool_rejection("Unsupported", "not supported in the requested AZ") && !is_capacity("Unsupported"));
        assert!(is_pool_rejection(
            "InvalidParameterValue",
            "The architecture 'arm64' of the specified instance type does not match the architecture 'x86_64' of the specified AMI"
        ));
        // about the request itself: aborts
        assert!(!is_pool_rejection("InvalidParameterValue", "Invalid user data"));
        assert!(!is_pool_rejection("UnauthorizedOperation", "not authorized"));
    }
}
