//! reap-instances: the scheduled safety net against orphaned instances.
pub mod handler;

use handler::Deps;
use spotfit_aws::{DynamoRunStore, Ec2Launcher, ReapConfig};
use spotfit_core::pipeline::ReapPolicy;
use spotfit_core::ports::SystemClock;

/// The environment variables this function reads; the stack sets exactly these (infra/test).
pub const ENV: &[&str] = &[
    spotfit_aws::config::RUNS_TABLE,
    spotfit_aws::config::REAP_STALE_S,
    spotfit_aws::config::REAP_GRACE_S,
];

/// The adapters from the environment (once per cold start); an error names what is missing.
pub async fn from_env() -> Result<Deps<Ec2Launcher, DynamoRunStore, SystemClock>, lambda_runtime::Error> {
    let aws = spotfit_lambda::Aws::from_env().await;
    let launcher = aws.instances();
    let reap = ReapConfig::from_env()?;
    let policy = ReapPolicy {
        launch_grace_ms: reap.grace.as_millis() as i64,
        stale_heartbeat_ms: reap.stale.as_millis() as i64,
    };
    Ok(Deps {
        launcher,
        runs: aws.runs()?,
        clock: SystemClock,
        policy,
    })
}
