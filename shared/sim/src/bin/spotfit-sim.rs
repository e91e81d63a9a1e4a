//! Stand-alone entry to the simulator, the same as `spotfit simulate`, for scripts and
//! benchmarks that should not build the whole CLI.

use clap::Parser;
use spotfit_sim::cli::{run, SimulateArgs};

#[derive(Debug, Parser)]
#[command(name = "spotfit-sim", about = "Replay a job trace and price it under each policy")]
struct Cli {
    #[command(flatten)]
    args: SimulateArgs,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli.args, &mut std::io::stdout().lock()) {
        eprintln!("spotfit-sim: {e}");
        std::process::exit(2);
    }
}
