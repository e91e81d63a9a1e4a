//! `spotfit-local-invoke FUNCTION < payload.json`: runs one Lambda's handler once, wired from
//! the environment by the same `from_env` its `main.rs` uses (a cold start per call, as on
//! Lambda). Prints the result JSON and exits 0; on a handler error prints
//! `{"errorType": …, "errorMessage": …}` (what Lambda reports) and exits 1; on a wiring error
//! exits 2. The end-to-end test's state machine engine calls it for every Task state.

use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use serde_json::Value;
use std::io::Read;
use std::process::ExitCode;

async fn invoke(function: &str, payload: Value) -> anyhow::Result<Result<Value, Diagnostic>> {
    let ev = LambdaEvent::new(payload, Context::default());
    let out = match function {
        "size-job" => size_job::handler::handle(ev, &size_job::from_env().await.map_err(anyhow::Error::msg)?).await,
        "launch-instance" => {
            launch_instance::handler::handle(ev, &launch_instance::from_env().await.map_err(anyhow::Error::msg)?).await
        }
        "check-job" => check_job::handler::handle(ev, &check_job::from_env().await.map_err(anyhow::Error::msg)?).await,
        "terminate-instance" => {
            terminate_instance::handler::handle(ev, &terminate_instance::from_env().await.map_err(anyhow::Error::msg)?)
                .await
        }
        "record-run" => {
            record_run::handler::handle(ev, &record_run::from_env().await.map_err(anyhow::Error::msg)?).await
        }
        "reap-instances" => {
            reap_instances::handler::handle(ev, &reap_instances::from_env().await.map_err(anyhow::Error::msg)?).await
        }
        "job-events" => {
            job_events::handler::handle(ev, &job_events::from_env().await.map_err(anyhow::Error::msg)?).await
        }
        other => anyhow::bail!("unknown function {other:?}"),
    };
    Ok(out.map_err(Diagnostic::from))
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(function) = std::env::args().nth(1) else {
        eprintln!("usage: spotfit-local-invoke FUNCTION < payload.json");
        return ExitCode::from(2);
    };
    let mut input = String::new();
    let payload = match std::io::stdin()
        .read_to_string(&mut input)
        .map(|_| serde_json::from_str::<Value>(&input))
    {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            eprintln!("spotfit-local-invoke: payload is not JSON: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("spotfit-local-invoke: cannot read stdin: {e}");
            return ExitCode::from(2);
        }
    };
    match invoke(&function, payload).await {
        Ok(Ok(v)) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Ok(Err(d)) => {
            println!(
                "{}",
                serde_json::json!({"errorType": d.error_type, "errorMessage": d.error_message})
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("spotfit-local-invoke: {e:#}");
            ExitCode::from(2)
        }
    }
}
