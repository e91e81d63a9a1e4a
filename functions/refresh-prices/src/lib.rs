//! refresh-prices: the spot price overlay's writer (issue 15). Once an hour (the stack's
//! `spotfit:priceRefreshMinutes`) it reads the spot price in force for every instance type and
//! AZ of the region and writes `prices/<region>/spot.json`, which size-job ranks on.
pub mod handler;

use handler::Deps;
use spotfit_aws::config;
use spotfit_aws::pricing::PricingOnDemand;
use spotfit_aws::{Ec2SpotPrices, S3ObjectStore};
use spotfit_core::catalog::Catalog;
use spotfit_core::ports::SystemClock;

/// The environment variables this function reads; the stack sets exactly these (infra/test).
pub const ENV: &[&str] = &[config::BUCKET, config::REGION];

/// The adapters from the environment (once per cold start); an error names what is missing.
pub async fn from_env(
) -> Result<Deps<Ec2SpotPrices, S3ObjectStore, SystemClock, PricingOnDemand>, lambda_runtime::Error> {
    let aws = spotfit_lambda::Aws::from_env().await;
    Ok(Deps {
        feed: Ec2SpotPrices::new(aws_sdk_ec2::Client::new(&aws.sdk)),
        on_demand: PricingOnDemand::from_sdk(&aws.sdk),
        objects: aws.objects()?,
        catalog: Catalog::embedded()?,
        region: config::env_region()?,
        clock: SystemClock,
    })
}
