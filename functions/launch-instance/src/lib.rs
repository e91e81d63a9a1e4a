//! launch-instance: starts the attempt's instance with capacity fallback.
pub mod handler;

use handler::Deps;
use spotfit_aws::{DynamoCapacityStore, DynamoRunStore, Ec2Launcher};
use spotfit_core::pipeline::LaunchSettings;
use spotfit_core::ports::SystemClock;
use std::time::Duration;

/// The launch walk's time budget: 30 s under the function's 120 s timeout in the stack
/// (infra/lib/spotfit-stack.ts), so the walk returns `LaunchBudgetSpent` (which the state machine
/// retries) before Lambda would cut it off mid-call.
pub const LAUNCH_BUDGET: Duration = Duration::from_secs(90);

/// The environment variables this function reads; the stack sets exactly these (infra/test).
pub const ENV: &[&str] = &[
    spotfit_aws::config::CAPACITY_TABLE,
    spotfit_aws::config::RUNS_TABLE,
    spotfit_aws::config::LAUNCH_TEMPLATE_ID,
    spotfit_aws::config::SUBNETS,
    spotfit_aws::config::INSTANCE_PROFILE_ARN,
    spotfit_aws::config::BUCKET,
    spotfit_aws::config::AGENT_KEY,
    spotfit_aws::config::REGION,
    spotfit_aws::config::SECURITY_GROUP_IDS,
    spotfit_aws::config::HEARTBEAT_S,
    spotfit_aws::config::BOOT_GRACE_S,
    spotfit_aws::config::ASSOCIATE_PUBLIC_IP,
    spotfit_aws::config::ECR_REGISTRIES,
    spotfit_aws::config::JOB_PROFILES,
];

/// The adapters from the environment (once per cold start); an error names what is missing.
pub async fn from_env(
) -> Result<Deps<Ec2Launcher, DynamoCapacityStore, DynamoRunStore, SystemClock>, lambda_runtime::Error> {
    let aws = spotfit_lambda::Aws::from_env().await;
    let (launcher, cfg) = aws.launcher()?;
    launcher.verify_subnets().await?;
    Ok(Deps {
        launcher,
        capacity: aws.capacity()?,
        runs: aws.runs()?,
        clock: SystemClock,
        settings: LaunchSettings {
            heartbeat_s: spotfit_aws::config::heartbeat_s(&|k| std::env::var(k).ok())?,
            boot_grace_ms: spotfit_aws::config::boot_grace_ms(&|k| std::env::var(k).ok())?,
            ..LaunchSettings::new(cfg.zones())
        },
        budget: Some(LAUNCH_BUDGET),
    })
}
