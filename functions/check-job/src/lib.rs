//! check-job: arms the Await task's wait (and looks once), or checks an attempt once.
pub mod handler;

use spotfit_lambda::CompletionPorts;

/// The environment variables this function reads; the stack sets exactly these (infra/test).
pub const ENV: &[&str] = &[
    spotfit_aws::config::BUCKET,
    spotfit_aws::config::CAPACITY_TABLE,
    spotfit_aws::config::RUNS_TABLE,
    spotfit_aws::config::WAITS_TABLE,
];

/// The adapters from the environment (once per cold start); an error names what is missing.
pub async fn from_env() -> Result<CompletionPorts, lambda_runtime::Error> {
    spotfit_lambda::completion_ports_from_env().await
}
