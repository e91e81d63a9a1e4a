//! launch-instance: starts the attempt's instance with capacity fallback.
pub mod handler;

use handler::Deps;
use spotfit_aws::{DynamoCapacityStore, DynamoRunStore, Ec2Launcher};
use spotfit_core::pipeline::LaunchSettings;
use spotfit_core::ports::SystemClock;

/// The adapters from the environment (once per cold start); an error names what is missing.
pub async fn from_env(
) -> Result<Deps<Ec2Launcher, DynamoCapacityStore, DynamoRunStore, SystemClock>, lambda_runtime::Error> {
    let aws = spotfit_lambda::Aws::from_env().await?;
    let (launcher, cfg) = aws.launcher()?;
    Ok(Deps {
        launcher,
        capacity: aws.capacity,
        runs: aws.runs,
        clock: SystemClock,
        settings: LaunchSettings { zones: cfg.zones() },
    })
}
