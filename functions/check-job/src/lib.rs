//! check-job: polls the attempt and decides what follows.
pub mod handler;

use handler::Deps;
use spotfit_aws::{DynamoCapacityStore, DynamoRunStore, Ec2Launcher, S3ObjectStore};
use spotfit_core::ports::SystemClock;

/// The adapters from the environment (once per cold start); an error names what is missing.
pub async fn from_env(
) -> Result<Deps<Ec2Launcher, S3ObjectStore, DynamoCapacityStore, DynamoRunStore, SystemClock>, lambda_runtime::Error> {
    let aws = spotfit_lambda::Aws::from_env().await?;
    let (launcher, _) = aws.launcher()?;
    Ok(Deps {
        launcher,
        objects: aws.objects,
        capacity: aws.capacity,
        runs: aws.runs,
        clock: SystemClock,
    })
}
