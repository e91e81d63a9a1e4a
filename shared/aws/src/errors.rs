//! Classification of AWS SDK errors into domain errors, by AWS error code, in one place
//! (as Karpenter's pkg/errors does). Adapters call these; nothing else inspects SDK errors.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::result::SdkError;
use spotfit_core::ports::StoreError;

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
