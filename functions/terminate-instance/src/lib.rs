//! terminate-instance: ends the attempt's instance, on every path out of a run.
pub mod handler;

use handler::Deps;
use spotfit_aws::Ec2Launcher;
use spotfit_core::ports::SystemClock;

/// The environment variables this function reads; the stack sets exactly these (infra/test).
pub const ENV: &[&str] = &[];

/// The adapters from the environment (once per cold start); an error names what is missing.
pub async fn from_env() -> Result<Deps<Ec2Launcher, SystemClock>, lambda_runtime::Error> {
    let aws = spotfit_lambda::Aws::from_env().await;
    Ok(Deps {
        launcher: aws.instances(),
        clock: SystemClock,
    })
}
