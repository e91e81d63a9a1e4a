//! check-job: polls the attempt and decides what follows.
pub mod handler;

use handler::Deps;
use spotfit_aws::{DynamoCapacityStore, DynamoRunStore, Ec2Launcher, S3ObjectStore};
use spotfit_core::ports::SystemClock;

/// The environment variables this function reads; the stack sets exactly these (infra/test).
pub const ENV: &[&str] = &[
    spotfit_aws::config::BUCKET,
    spotfit_aws::config::CAPACITY_TABLE,
    spotfit_aws::config::RUNS_TABLE,
];

/// The adapters from the environment (once per cold start); an error names what is missing.
pub async fn from_env(
) -> Result<Deps<Ec2Launcher, S3ObjectStore, DynamoCapacityStore, DynamoRunStore, SystemClock>, lambda_runtime::Error> {
    let aws = spotfit_lambda::Aws::from_env().await;
    Ok(Deps {
        launcher: aws.instances(),
        objects: aws.objects()?,
        capacity: aws.capacity()?,
        runs: aws.runs()?,
        clock: SystemClock,
    })
}
