//! reap-instances: the scheduled safety net against orphaned instances.
pub mod handler;

use handler::Deps;
use spotfit_aws::{DynamoRunStore, Ec2Launcher, ReapConfig};
use spotfit_core::pipeline::ReapPolicy;
use spotfit_core::ports::SystemClock;

/// The adapters from the environment (once per cold start); an error names what is missing.
pub async fn from_env() -> Result<Deps<Ec2Launcher, DynamoRunStore, SystemClock>, lambda_runtime::Error> {
    let aws = spotfit_lambda::Aws::from_env().await?;
    let (launcher, _) = aws.launcher()?;
    let reap = ReapConfig::from_env()?;
    let policy = ReapPolicy {
        launch_grace_ms: reap.grace.as_millis() as i64,
        stale_heartbeat_ms: reap.stale.as_millis() as i64,
    };
    Ok(Deps {
        launcher,
        runs: aws.runs,
        clock: SystemClock,
        policy,
    })
}
