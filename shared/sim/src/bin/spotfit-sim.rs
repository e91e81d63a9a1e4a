//! Stand-alone entry to the simulator (the same as `spotfit simulate`), for scripts and
//! benchmarks that should not build the whole CLI.
//! Usage: spotfit-sim TRACE.csv[.gz] [--json] [--plot FILE.svg] [--region R] [--startup-s S]

use spotfit_core::catalog::Catalog;
use spotfit_sim::{read_trace, simulate, Report, SimConfig};

fn main() {
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("spotfit-sim: {e}");
            std::process::exit(2);
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut trace, mut json, mut plot, mut cfg) = (None, false, None, SimConfig::default());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--plot" => plot = Some(args.next().ok_or("--plot needs a file")?),
            "--region" => cfg.region = args.next().ok_or("--region needs a region")?,
            "--startup-s" => {
                cfg.startup_s = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--startup-s needs seconds")?;
                cfg.shared_keepalive_s = cfg.startup_s;
            }
            _ if trace.is_none() && !a.starts_with('-') => trace = Some(a),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let path = trace.ok_or("usage: spotfit-sim TRACE.csv [--json] [--plot FILE.svg] [--region R]")?;
    let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    let name = std::path::Path::new(&path)
        .file_name()
        .map_or(path.clone(), |n| n.to_string_lossy().into_owned());
    let trace = read_trace(&name, &bytes).map_err(|e| format!("{path}: {e}"))?;
    let catalog = Catalog::embedded().map_err(|e| e.to_string())?;
    if catalog.region(&cfg.region).is_empty() {
        return Err(format!("--region: `{}` is not in the catalog", cfg.region));
    }
    let mut policies = simulate(&trace, catalog, &cfg);
    if !json {
        for p in &mut policies {
            p.per_job.clear();
        }
    }
    let report = Report::new(&trace, &cfg, policies);
    if let Some(plot) = plot {
        std::fs::write(&plot, spotfit_sim::svg::render(&report)).map_err(|e| format!("--plot {plot}: {e}"))?;
    }
    if json {
        println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
    } else {
        print!("{}", report.render_text());
    }
    Ok(())
}
