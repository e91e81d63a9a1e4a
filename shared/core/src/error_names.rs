//! Stable error type names returned by the Lambdas and matched by the state machine's
//! Retry/Catch `ErrorEquals` (placeholder; the serverless pipeline work fills it).
