//! `spotfit-sim TRACE --explain JOB` as a user runs it: the report, then one line per spotfit
//! attempt of that job; in `--json` the same lines under spotfit's `explain`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use spotfit_sim::cli::{run, SimulateArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: SimulateArgs,
}

/// A trace file removed on drop.
struct TempTrace(std::path::PathBuf);

impl Drop for TempTrace {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run_with(trace: &TempTrace, extra: &[&str]) -> String {
    let mut argv = vec!["spotfit-sim", trace.0.to_str().unwrap()];
    argv.extend_from_slice(extra);
    let cli = Cli::try_parse_from(argv).unwrap();
    let mut out = Vec::new();
    run(&cli.args, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn explain_prints_one_line_per_attempt_of_the_job_after_the_report() {
    // GIVEN a job that asks for 12 GiB and peaks at 15.9 (the cold start's 16-GiB type leaves it
    // 15.75: killed, then retried bigger) next to another job
    let trace = TempTrace(std::env::temp_dir().join(format!("spotfit-sim-explain-{}.csv", std::process::id())));
    std::fs::write(
        &trace.0,
        "job_name,submit_time_s,requested_vcpu,requested_mem_gib,duration_s,cpu_avg_cores,cpu_peak_cores,mem_peak_gib,gpu\n\
         other,0,4,12,3600,4,,6,0\n\
         oom,0,2,12,3600,2,,15.9,0\n",
    )
    .unwrap();
    // WHEN run with --explain oom
    let text = run_with(&trace, &["--explain", "oom"]);
    // THEN after the report a header counts the attempts, and each is one indented line, the
    // cold start (killed) then the retry when it ended, sized from it
    let (report, explained) = text
        .split_once("spotfit's decisions for oom (2 attempts):\n")
        .expect(&text);
    assert!(report.contains("spotfit") && report.contains("targets"), "{report}");
    let lines: Vec<&str> = explained.lines().collect();
    assert_eq!(lines.len(), 2, "{explained}");
    assert!(
        lines[0].starts_with("  row 2 t=0s Hints: wants 2.00 cores → 2 vCPU, memory ≥ 12.00 GiB"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].ends_with("peak 15.90 of 15.75 GiB, OOM-KILLED"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("  row 2 t=3660s History { runs: 1 }"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains("OOM bump") && !lines[1].contains("OOM-KILLED"),
        "{}",
        lines[1]
    );
    // … the JSON carries the same lines under spotfit only, and without --explain there are none
    let json: serde_json::Value = serde_json::from_str(&run_with(&trace, &["--explain", "oom", "--json"])).unwrap();
    let policies = json["policies"].as_array().unwrap();
    let spotfit = policies.iter().find(|p| p["policy"] == "spotfit").unwrap();
    let want: Vec<String> = lines.iter().map(|l| l.trim_start().to_string()).collect();
    assert_eq!(spotfit["explain"], serde_json::json!(want));
    assert!(policies
        .iter()
        .filter(|p| p["policy"] != "spotfit")
        .all(|p| p.get("explain").is_none()));
    assert!(!run_with(&trace, &[]).contains("spotfit's decisions"));
}
