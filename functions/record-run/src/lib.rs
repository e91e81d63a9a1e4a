//! record-run: records the attempt and folds it into the job's profile.
pub mod handler;

use handler::Deps;
use spotfit_aws::{DynamoCapacityStore, DynamoProfileStore, DynamoRunStore, Ec2SpotPrices, S3ObjectStore};
use spotfit_core::ports::SystemClock;

/// The environment variables this function reads; the stack sets exactly these (infra/test).
pub const ENV: &[&str] = &[
    spotfit_aws::config::BUCKET,
    spotfit_aws::config::PROFILES_TABLE,
    spotfit_aws::config::RUNS_TABLE,
    spotfit_aws::config::CAPACITY_TABLE,
];

/// The adapters from the environment (once per cold start); an error names what is missing.
pub async fn from_env() -> Result<
    Deps<DynamoProfileStore, DynamoRunStore, S3ObjectStore, SystemClock, Ec2SpotPrices, DynamoCapacityStore>,
    lambda_runtime::Error,
> {
    let aws = spotfit_lambda::Aws::from_env().await;
    Ok(Deps {
        profiles: aws.profiles()?,
        runs: aws.runs()?,
        objects: aws.objects()?,
        clock: SystemClock,
        prices: Ec2SpotPrices::new(aws_sdk_ec2::Client::new(&aws.sdk)),
        capacity: aws.capacity()?,
    })
}
