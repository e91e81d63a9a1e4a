//! reap-instances: the scheduled sweep of waiting attempts and safety net against orphans.
pub mod handler;

use handler::Deps;
use spotfit_aws::ReapConfig;
use spotfit_core::pipeline::ReapPolicy;

/// The environment variables this function reads; the stack sets exactly these (infra/test).
pub const ENV: &[&str] = &[
    spotfit_aws::config::BUCKET,
    spotfit_aws::config::CAPACITY_TABLE,
    spotfit_aws::config::RUNS_TABLE,
    spotfit_aws::config::WAITS_TABLE,
    spotfit_aws::config::HEARTBEAT_S,
    spotfit_aws::config::REAP_STALE_S,
    spotfit_aws::config::REAP_GRACE_S,
];

/// The adapters from the environment (once per cold start); an error names what is missing.
pub async fn from_env() -> Result<Deps, lambda_runtime::Error> {
    let aws = spotfit_lambda::Aws::from_env().await;
    let reap = ReapConfig::from_env()?;
    let policy = ReapPolicy {
        launch_grace_ms: reap.grace.as_millis() as i64,
        stale_heartbeat_ms: reap.stale.as_millis() as i64,
    };
    // The heartbeat bound is three sweep periods (the stack sets both from one setting).
    let heartbeat_s = spotfit_aws::config::heartbeat_s(&|k| std::env::var(k).ok())?;
    Ok(Deps {
        ports: aws.completion_ports()?,
        policy,
        sweep_period_ms: heartbeat_s as i64 * 1000 / 3,
    })
}
