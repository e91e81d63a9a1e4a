//! `spotfit simulate TRACE.csv [--json] [--plot FILE.svg] [--region R]`: replays a job trace
//! under the batch baselines, spotfit, the Spare Cores rule and the floor (spotfit-sim).

pub use spotfit_sim::cli::SimulateArgs;

/// Runs the simulation; the report goes to stdout. Exit code 0, or an error naming the input.
pub fn run(args: &SimulateArgs) -> anyhow::Result<i32> {
    spotfit_sim::cli::run(args, &mut std::io::stdout().lock())?;
    Ok(0)
}
