//! size-job: the first (and, on a retry, the re-)sizing step of the state machine.
pub mod handler;

use handler::Deps;
use spotfit_aws::DynamoProfileStore;
use spotfit_core::catalog::Catalog;
use spotfit_core::ports::SystemClock;

/// The adapters from the environment (once per cold start); an error names what is missing.
pub async fn from_env() -> Result<Deps<DynamoProfileStore, SystemClock>, lambda_runtime::Error> {
    let aws = spotfit_lambda::Aws::from_env().await?;
    let catalog = Catalog::embedded()?;
    Ok(Deps {
        profiles: aws.profiles,
        catalog,
        region: aws.store_config.region,
        clock: SystemClock,
    })
}
