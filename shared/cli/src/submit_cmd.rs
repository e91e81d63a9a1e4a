//! `spotfit submit JOB.json [--wait]`: starts an execution of the deployed pipeline (Step
//! Functions) with the job spec as input, named by a new run id; with `--wait`, prints each
//! state as the execution enters it and ends with its result (exit 0 only if it succeeded).

use anyhow::{bail, Context};
use spotfit_aws::SfnExecutions;
use spotfit_core::ids::fresh_run_id;
use spotfit_core::JobSpec;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// The job spec (JSON), validated here before anything is started.
    pub spec: PathBuf,
    /// The pipeline's state machine (default: the `--stack`'s).
    #[arg(long, env = spotfit_aws::config::STATE_MACHINE_ARN, value_name = "ARN")]
    pub state_machine: Option<String>,
    /// Run id, used as the execution name (default: a new one). Step Functions refuses a
    /// second execution of the same name, so resubmitting with the same id cannot run a job twice.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Follow the execution until it ends.
    #[arg(long)]
    pub wait: bool,
    /// Seconds between polls with --wait.
    #[arg(long, default_value_t = 10.0)]
    pub poll: f64,
}

/// The state machine: the one named, else the stack's; one of them is needed.
fn state_machine(named: Option<&str>, stack: Option<&str>) -> anyhow::Result<String> {
    match (named, stack) {
        (Some(arn), _) => Ok(arn.to_string()),
        (None, Some(stack)) => {
            let src = crate::source::Source::open(None, Some(stack))?;
            let d = src.deployed().context("a stack source has its outputs")?;
            Ok(d.outputs.state_machine_arn.clone())
        }
        (None, None) => bail!(
            "which pipeline? pass --stack NAME (or set SPOTFIT_STACK), or --state-machine ARN (or set {})",
            spotfit_aws::config::STATE_MACHINE_ARN
        ),
    }
}

pub fn run(stack: Option<&str>, args: SubmitArgs) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(&args.spec).with_context(|| format!("reading {}", args.spec.display()))?;
    let spec = JobSpec::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.spec.display()))?;
    let run_id = match args.run_id {
        Some(id) if spotfit_core::ids::valid_run_id(&id) => id,
        Some(id) => bail!("--run-id {id:?}: use letters, digits, '-', '_' or '.' (at most 128)"),
        None => fresh_run_id(chrono::Utc::now().timestamp_millis()),
    };
    if !(args.poll.is_finite() && args.poll > 0.0) {
        bail!("--poll must be a positive number of seconds");
    }
    let input = serde_json::to_string(&spec)?;
    let machine = state_machine(args.state_machine.as_deref(), stack)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let sdk = spotfit_aws::load_sdk_config().await;
        let sfn = SfnExecutions::new(aws_sdk_sfn::Client::new(&sdk));
        let arn = sfn.start(&machine, &run_id, &input).await?;
        println!("submitted {} as run {run_id}\nexecution {arn}", spec.name);
        if !args.wait {
            return Ok(0);
        }
        let mut shown = 0;
        loop {
            let states = sfn.states_entered(&arn).await?;
            for s in &states[shown.min(states.len())..] {
                println!("  {} {s}", chrono::Utc::now().format("%H:%M:%S"));
            }
            shown = states.len();
            let ex = sfn.describe(&arn).await?;
            if !ex.is_running() {
                println!("{}", ex.status);
                if let Some(out) = ex
                    .output
                    .as_deref()
                    .and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok())
                {
                    for a in out["history"].as_array().into_iter().flatten() {
                        println!(
                            "  attempt {} {} on {} ${:.4}",
                            a["attempt"],
                            a["status"].as_str().unwrap_or("?"),
                            a["pool"]["instance_type"].as_str().unwrap_or("?"),
                            a["cost_usd"].as_f64().unwrap_or(0.0)
                        );
                    }
                }
                if let (Some(e), c) = (ex.error, ex.cause) {
                    println!("  {e}: {}", c.unwrap_or_default());
                }
                return Ok(if ex.status == "SUCCEEDED" { 0 } else { 1 });
            }
            tokio::time::sleep(Duration::from_secs_f64(args.poll)).await;
        }
    })
}

/// `spotfit cancel RUN_ID`: stops the run's execution. The stack's rule on the execution's
/// status change (ABORTED) terminates its instance and closes its run row as `cancelled`, with
/// the instance time it cost; the reaper's sweep does the same if that event is lost.
#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The run id (the execution's name, as `spotfit submit` printed it).
    pub run_id: String,
    /// The pipeline's state machine.
    /// The pipeline's state machine (default: the `--stack`'s).
    #[arg(long, env = spotfit_aws::config::STATE_MACHINE_ARN, value_name = "ARN")]
    pub state_machine: Option<String>,
    /// Why, kept as the execution's cause.
    #[arg(long, default_value = "cancelled with spotfit cancel")]
    pub reason: String,
}

/// The ARN of the execution named `name` of `state_machine_arn`.
pub fn execution_arn(state_machine_arn: &str, name: &str) -> anyhow::Result<String> {
    let Some((head, machine)) = state_machine_arn.split_once(":stateMachine:") else {
        bail!("--state-machine {state_machine_arn:?} is not a state machine ARN (arn:aws:states:REGION:ACCOUNT:stateMachine:NAME)");
    };
    if machine.is_empty() || machine.contains(':') {
        bail!("--state-machine {state_machine_arn:?}: expected one state machine name after :stateMachine:");
    }
    Ok(format!("{head}:execution:{machine}:{name}"))
}

pub fn cancel(stack: Option<&str>, args: CancelArgs) -> anyhow::Result<i32> {
    if !spotfit_core::ids::valid_run_id(&args.run_id) {
        bail!(
            "RUN_ID {:?} is not a run id (letters, digits, '-', '_' or '.', at most 128)",
            args.run_id
        );
    }
    let arn = execution_arn(&state_machine(args.state_machine.as_deref(), stack)?, &args.run_id)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let sdk = spotfit_aws::load_sdk_config().await;
        let sfn = SfnExecutions::new(aws_sdk_sfn::Client::new(&sdk));
        let before = sfn.describe(&arn).await?;
        if !before.is_running() {
            println!("run {} already ended: {}", args.run_id, before.status);
            return Ok(1);
        }
        sfn.stop(&arn, &args.reason).await?;
        println!(
            "cancelled run {} (execution {arn}); its instance is terminated within a minute",
            args.run_id
        );
        Ok(0)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_execution_arn_is_built_from_the_state_machine_arn() {
        assert_eq!(
            execution_arn("arn:aws:states:us-east-1:123456789012:stateMachine:spotfit", "run-1").unwrap(),
            "arn:aws:states:us-east-1:123456789012:execution:spotfit:run-1"
        );
        let e = execution_arn("arn:aws:lambda:us-east-1:1:function:x", "r").unwrap_err();
        assert!(e.to_string().contains("not a state machine ARN"), "{e}");
    }
}
