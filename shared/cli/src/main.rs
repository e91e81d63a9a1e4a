//! `spotfit`: run batch jobs measured and right-sized. `main` parses the command line and
//! dispatches; each subcommand lives in its own module.

mod logs_cmd;
mod monitor_cmd;
mod output;
mod recommend_cmd;
mod report_cmd;
mod run_cmd;
mod simulate_cmd;
mod source;
mod status_cmd;
mod store_cmd;
#[cfg(feature = "aws")]
mod submit_cmd;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "spotfit",
    version,
    about = "Run each batch job on its own right-sized spot instance, and learn from every run."
)]
struct Cli {
    /// Store directory (profiles, runs, samples). Default: the per-user data directory.
    #[arg(long, global = true, env = spotfit_local::STORE_ENV, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Use a deployed stack: `runs`, `profile`, `logs`, `report` and `status` read it instead of
    /// the local store, `submit` and `cancel` use its state machine. Its CloudFormation outputs
    /// name the bucket, tables and state machine. AWS credentials and region as for the AWS CLI.
    #[arg(long, global = true, env = "SPOTFIT_STACK", value_name = "NAME")]
    stack: Option<String>,
    /// Log filter for diagnostics on stderr (e.g. `debug`, `spotfit=trace`).
    #[arg(long, global = true, env = "SPOTFIT_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a job here under the monitor, record it, and recommend an instance for the next run.
    Run(run_cmd::RunArgs),
    /// Rank instance types for a given size.
    Recommend(recommend_cmd::RecommendArgs),
    /// Show a job's profile.
    Profile(store_cmd::ProfileArgs),
    /// List recorded runs.
    Runs(store_cmd::RunsArgs),
    /// Write one HTML page of the runs: usage against what each was given, each job's sizing and ledger, the fleet's cost.
    Report(report_cmd::ReportArgs),
    /// Show a run's state: its execution (on a stack), each attempt, the instance, the last sample.
    Status(status_cmd::StatusArgs),
    /// Show a run's stdout and stderr (local store, or `--from s3://…` for AWS runs).
    Logs(logs_cmd::LogsArgs),
    /// Track a command, a process tree, a cgroup or a container; ship samples (the agent).
    Monitor(Box<spotfit_monitor::cli::MonitorArgs>),
    /// Replay a job trace and price it under the batch baselines, spotfit, the Spare Cores rule and the floor.
    Simulate(simulate_cmd::SimulateArgs),
    /// Start the job on AWS through the deployed pipeline (Step Functions); --wait follows it.
    #[cfg(feature = "aws")]
    Submit(submit_cmd::SubmitArgs),
    /// Start the job on AWS (this build has no AWS support: build with `--features aws`).
    #[cfg(not(feature = "aws"))]
    Submit {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
    /// Stop a run on AWS: its execution is stopped, its instance terminated, its row closed.
    #[cfg(feature = "aws")]
    Cancel(submit_cmd::CancelArgs),
    /// Stop a run on AWS (this build has no AWS support: build with `--features aws`).
    #[cfg(not(feature = "aws"))]
    Cancel {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
}

/// What a command that needs the AWS side says in a build without it.
#[cfg(not(feature = "aws"))]
pub(crate) fn no_aws(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} needs AWS support, which this build of spotfit leaves out to build fast; \
         rebuild with `cargo build -p spotfit-cli --features aws` (the release CLI and the agent have it)"
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let store = cli.store.as_deref();
    let stack = cli.stack.as_deref().filter(|s| !s.is_empty());
    let result = match cli.command {
        Command::Run(args) => run_cmd::run(store, args),
        Command::Recommend(args) => recommend_cmd::run(args).map(|()| 0),
        Command::Profile(args) => store_cmd::profile(store, stack, args).map(|()| 0),
        Command::Runs(args) => store_cmd::runs(store, stack, args).map(|()| 0),
        Command::Logs(args) => logs_cmd::run(store, stack, args),
        Command::Report(args) => report_cmd::run(store, stack, args),
        Command::Status(args) => status_cmd::run(store, stack, args),
        Command::Monitor(args) => monitor_cmd::run(*args),
        Command::Simulate(args) => simulate_cmd::run(&args),
        #[cfg(feature = "aws")]
        Command::Submit(args) => submit_cmd::run(stack, args),
        #[cfg(not(feature = "aws"))]
        Command::Submit { .. } => Err(no_aws("`spotfit submit`")),
        #[cfg(feature = "aws")]
        Command::Cancel(args) => submit_cmd::cancel(stack, args),
        #[cfg(not(feature = "aws"))]
        Command::Cancel { .. } => Err(no_aws("`spotfit cancel`")),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("spotfit: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
