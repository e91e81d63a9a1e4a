//! size-job: the first (and, on a retry, the re-)sizing step of the state machine.
pub mod handler;

use handler::Deps;
use spotfit_aws::{DynamoCapacityStore, DynamoProfileStore, S3ObjectStore};
use spotfit_core::catalog::Catalog;
use spotfit_core::ports::SystemClock;

/// The adapters from the environment (once per cold start); an error names what is missing.
pub async fn from_env(
) -> Result<Deps<DynamoProfileStore, SystemClock, S3ObjectStore, DynamoCapacityStore>, lambda_runtime::Error> {
    let aws = spotfit_lambda::Aws::from_env().await;
    let catalog = Catalog::embedded()?;
    let env = |k: &str| std::env::var(k).ok();
    Ok(Deps {
        profiles: aws.profiles()?,
        capacity: aws.capacity()?,
        objects: aws.objects()?,
        prices: Default::default(),
        price_max_age_ms: spotfit_aws::config::price_max_age_ms(&env)?,
        catalog,
        deployment: spotfit_core::ranking::Deployment {
            region: spotfit_aws::config::env_region()?,
            architectures: architectures_from_env()?,
            zones: spotfit_aws::config::subnet_zones(&env)?,
        },
        clock: SystemClock,
    })
}

/// The environment variables this function reads; the stack sets exactly these (infra/test).
pub const ENV: &[&str] = &[
    spotfit_aws::config::PROFILES_TABLE,
    spotfit_aws::config::REGION,
    spotfit_aws::config::BUCKET,
    spotfit_aws::config::CAPACITY_TABLE,
    spotfit_aws::config::SUBNETS,
    spotfit_aws::config::PRICE_MAX_AGE_S,
    ARCHITECTURES,
];

/// Architectures the deployment's launch templates can boot, comma-separated
/// (`x86_64`, `arm64`); default `x86_64`, the architecture of the stack's one AMI.
pub const ARCHITECTURES: &str = "SPOTFIT_ARCHITECTURES";

fn architectures_from_env() -> Result<Vec<spotfit_core::spec::Arch>, lambda_runtime::Error> {
    let raw = std::env::var(ARCHITECTURES).unwrap_or_else(|_| "x86_64".into());
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            spotfit_core::spec::Arch::parse(s)
                .ok_or_else(|| format!("{ARCHITECTURES}: {s:?} is not x86_64 or arm64").into())
        })
        .collect()
}
