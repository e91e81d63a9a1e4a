//! start-scheduled: a job's schedule rule fired; start that tick's run unless it was started.
pub mod handler;

use spotfit_aws::config::{self, env_var};
use spotfit_aws::SfnStarter;

/// The environment variables this function reads; the stack sets exactly these (infra/test).
pub const ENV: &[&str] = &[config::STATE_MACHINE_ARN];

/// The adapters from the environment (once per cold start); an error names what is missing.
pub async fn from_env() -> Result<SfnStarter, lambda_runtime::Error> {
    let aws = spotfit_lambda::Aws::from_env().await;
    Ok(SfnStarter::from_sdk(&aws.sdk, &env_var(config::STATE_MACHINE_ARN)?))
}
