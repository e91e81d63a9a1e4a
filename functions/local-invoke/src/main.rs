//! `spotfit-local-invoke FUNCTION < payload.json`: runs one Lambda's handler once, wired from
//! the environment by the same `from_env` its `main.rs` uses (a cold start per call, as on
//! Lambda). Prints the result JSON and exits 0; on a handler error prints
//! `{"errorType": …, "errorMessage": …}` (what Lambda reports) and exits 1; on a wiring error
//! exits 2. The end-to-end test's state machine engine calls it for every Task state.
//!
//! `spotfit-local-invoke --serve FUNCTION`: a warm Lambda instance. Wires the handler once, then
//! reads one payload per line on stdin and answers one line per payload on stdout —
//! `{"ok": RESULT}` or `{"errorType": …, "errorMessage": …}` — one at a time, as one Lambda
//! execution environment serves one event at a time. The soak runs pools of these.

use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use serde_json::Value;
use spotfit_aws::{DynamoCapacityStore, DynamoProfileStore, DynamoRunStore, Ec2Launcher, S3ObjectStore};
use spotfit_core::ports::SystemClock;
use std::io::{BufRead, Read, Write};
use std::process::ExitCode;

/// One function, wired from the environment once.
enum Wired {
    SizeJob(Box<size_job::handler::Deps<DynamoProfileStore, SystemClock, S3ObjectStore, DynamoCapacityStore>>),
    LaunchInstance(Box<launch_instance::handler::Deps<Ec2Launcher, DynamoCapacityStore, DynamoRunStore, SystemClock>>),
    CheckJob(Box<spotfit_lambda::CompletionPorts>),
    TerminateInstance(Box<terminate_instance::handler::Deps<Ec2Launcher, SystemClock>>),
    RecordRun(
        Box<
            record_run::handler::Deps<
                DynamoProfileStore,
                DynamoRunStore,
                S3ObjectStore,
                SystemClock,
                spotfit_aws::Ec2SpotPrices,
                DynamoCapacityStore,
            >,
        >,
    ),
    ReapInstances(Box<reap_instances::handler::Deps>),
    JobEvents(Box<spotfit_lambda::CompletionPorts>),
    StartScheduled(Box<spotfit_aws::SfnStarter>),
    RefreshPrices(
        Box<
            refresh_prices::handler::Deps<
                spotfit_aws::Ec2SpotPrices,
                S3ObjectStore,
                SystemClock,
                spotfit_aws::pricing::PricingOnDemand,
            >,
        >,
    ),
}

async fn wire(function: &str) -> anyhow::Result<Wired> {
    let e = anyhow::Error::msg;
    Ok(match function {
        "size-job" => Wired::SizeJob(Box::new(size_job::from_env().await.map_err(e)?)),
        "launch-instance" => Wired::LaunchInstance(Box::new(launch_instance::from_env().await.map_err(e)?)),
        "check-job" => Wired::CheckJob(Box::new(check_job::from_env().await.map_err(e)?)),
        "terminate-instance" => Wired::TerminateInstance(Box::new(terminate_instance::from_env().await.map_err(e)?)),
        "record-run" => Wired::RecordRun(Box::new(record_run::from_env().await.map_err(e)?)),
        "reap-instances" => Wired::ReapInstances(Box::new(reap_instances::from_env().await.map_err(e)?)),
        "job-events" => Wired::JobEvents(Box::new(job_events::from_env().await.map_err(e)?)),
        "start-scheduled" => Wired::StartScheduled(Box::new(start_scheduled::from_env().await.map_err(e)?)),
        "refresh-prices" => Wired::RefreshPrices(Box::new(refresh_prices::from_env().await.map_err(e)?)),
        other => anyhow::bail!("unknown function {other:?}"),
    })
}

async fn call(w: &Wired, payload: Value) -> Result<Value, Diagnostic> {
    let ev = LambdaEvent::new(payload, Context::default());
    let out = match w {
        Wired::SizeJob(d) => size_job::handler::handle(ev, d).await,
        Wired::LaunchInstance(d) => launch_instance::handler::handle(ev, d).await,
        Wired::CheckJob(d) => check_job::handler::handle(ev, d).await,
        Wired::TerminateInstance(d) => terminate_instance::handler::handle(ev, d).await,
        Wired::RecordRun(d) => record_run::handler::handle(ev, d).await,
        Wired::ReapInstances(d) => reap_instances::handler::handle(ev, d).await,
        Wired::JobEvents(d) => job_events::handler::handle(ev, d).await,
        Wired::StartScheduled(d) => start_scheduled::handler::handle(ev, d.as_ref()).await,
        // Its own error type (no pipeline step): its names are its own.
        Wired::RefreshPrices(d) => return refresh_prices::handler::handle(ev, d).await.map_err(Diagnostic::from),
    };
    out.map_err(Diagnostic::from)
}

fn error_json(d: &Diagnostic) -> Value {
    serde_json::json!({"errorType": d.error_type, "errorMessage": d.error_message})
}

async fn serve(function: &str) -> ExitCode {
    let w = match wire(function).await {
        Ok(w) => w,
        Err(e) => {
            eprintln!("spotfit-local-invoke: {e:#}");
            return ExitCode::from(2);
        }
    };
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(payload) => match call(&w, payload).await {
                Ok(v) => serde_json::json!({ "ok": v }),
                Err(d) => error_json(&d),
            },
            Err(e) => serde_json::json!({"errorType": "Lambda.InvalidRequestContent", "errorMessage": e.to_string()}),
        };
        if writeln!(stdout, "{answer}").and_then(|()| stdout.flush()).is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
}

#[tokio::main]
async fn main() -> ExitCode {
    // The handlers' logs go to stderr (stdout carries the answers), warnings and up unless
    // RUST_LOG says otherwise: what a function warns about (stale prices, an estimated cost) is
    // visible to the tests as it is in CloudWatch.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, function] if flag == "--serve" => return serve(function).await,
        [_] => {}
        _ => {
            eprintln!("usage: spotfit-local-invoke FUNCTION < payload.json | spotfit-local-invoke --serve FUNCTION");
            return ExitCode::from(2);
        }
    }
    let function = &args[0];
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
    let w = match wire(function).await {
        Ok(w) => w,
        Err(e) => {
            eprintln!("spotfit-local-invoke: {e:#}");
            return ExitCode::from(2);
        }
    };
    match call(&w, payload).await {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(d) => {
            println!("{}", error_json(&d));
            ExitCode::from(1)
        }
    }
}
