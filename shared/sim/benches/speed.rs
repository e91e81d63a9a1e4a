//! `cargo bench -p spotfit-sim`: catalog load, sizing + ranking throughput, simulator speed,
//! each printed next to a named peer measured in the same run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use spotfit_core::catalog::{Catalog, SNAPSHOT_JSON};
use spotfit_core::profile::JobProfile;
use spotfit_core::ranking::{rank, RankOptions};
use spotfit_core::sizing;
use spotfit_core::spec::{JobSpec, Market, Placement};
use spotfit_core::summary::{CpuStats, RunStatus, RunSummary};
use spotfit_core::units::gib_to_bytes;
use spotfit_sim::engine::{batch, simulate};
use spotfit_sim::{read_trace, SimConfig};
use std::hint::black_box;
use std::time::Instant;

static LOTARU: &[u8] = include_bytes!("../../../data/traces/lotaru.csv.gz");

/// Runs `f` `n` times and returns the mean seconds per call (after one warm-up call).
fn time<T>(n: usize, mut f: impl FnMut() -> T) -> f64 {
    black_box(f());
    let t = Instant::now();
    for _ in 0..n {
        black_box(f());
    }
    t.elapsed().as_secs_f64() / n as f64
}

fn main() {
    // 1. Catalog load (every Lambda cold start). Peer: untyped serde_json::Value parse of the
    // same bytes, the floor for any JSON reader.
    let typed = time(20, || Catalog::from_json(SNAPSHOT_JSON).map(|c| c.offers.len()));
    let untyped = time(20, || {
        serde_json::from_slice::<serde_json::Value>(SNAPSHOT_JSON).is_ok()
    });
    let c = Catalog::embedded().expect("catalog");
    println!(
        "catalog load: {:.2} ms ({} offers, {} KiB JSON); peer serde_json::Value parse: {:.2} ms",
        typed * 1e3,
        c.offers.len(),
        SNAPSHOT_JSON.len() / 1024,
        untyped * 1e3
    );

    // 2. Sizing + ranking: every lotaru job sized from a 10-run profile and ranked over one
    // region and over the full catalog (all regions). Peer: the Spare Cores rule (mean/max
    // over the runs, then the cheapest on-demand type that fits), a linear scan.
    let trace = read_trace("lotaru", LOTARU).expect("trace");
    let jobs: Vec<(JobSpec, JobProfile)> = trace
        .jobs
        .iter()
        .take(2000)
        .map(|j| {
            let mut p = JobProfile::new(&j.job_name);
            for i in 0..10 {
                p.record(&RunSummary {
                    job: j.job_name.clone(),
                    run_id: format!("r{i}"),
                    duration_s: j.duration_s * (1.0 + i as f64 / 20.0),
                    cpu: CpuStats {
                        avg: j.cpu_avg_cores,
                        p50: j.cpu_avg_cores,
                        p95: j.cpu_p95_cores,
                        max: j.cpu_peak_cores,
                    },
                    mem_max_bytes: gib_to_bytes(j.mem_peak_gib * (1.0 + i as f64 / 30.0)),
                    status: RunStatus::Succeeded,
                    ..Default::default()
                });
            }
            (
                JobSpec {
                    name: j.job_name.clone(),
                    ..JobSpec::default()
                },
                p,
            )
        })
        .collect();
    let opts = RankOptions {
        limit: 5,
        ..RankOptions::default()
    };
    let one_region = Placement::default();
    let all_regions = Placement {
        regions: c.regions().map(str::to_string).collect(),
        ..Placement::default()
    };
    for (label, placement) in [("us-east-1", &one_region), ("all regions", &all_regions)] {
        let per_job = time(1, || {
            jobs.iter()
                .map(|(s, p)| {
                    let r = sizing::size(s, Some(p), 0);
                    rank(c, &r, placement, Market::SpotThenOnDemand, &opts).len()
                })
                .sum::<usize>()
        }) / jobs.len() as f64;
        println!(
            "sizing + ranking ({label}): {:.0} jobs/s on one core ({:.1} µs/job)",
            1.0 / per_job,
            per_job * 1e6
        );
    }
    let offers = c.region("us-east-1");
    let peer = time(1, || {
        jobs.iter()
            .map(|(_, p)| {
                let n = p.recent.len().max(1) as f64;
                let cpu = (p.recent.iter().map(|r| r.cpu.avg).sum::<f64>() / n).round().max(1.0) as u32;
                let mem = p.recent.iter().map(|r| r.mem_max_bytes).max().unwrap_or(0) as f64 * 1.2;
                offers
                    .iter()
                    .filter(|o| o.vcpu >= cpu && o.memory_bytes as f64 >= mem)
                    .filter_map(|o| o.on_demand_per_hour)
                    .fold(f64::INFINITY, f64::min)
            })
            .sum::<f64>()
    }) / jobs.len() as f64;
    println!(
        "peer Spare Cores rule + cheapest scan (us-east-1): {:.0} jobs/s ({:.1} µs/job)",
        1.0 / peer,
        peer * 1e6
    );

    // 3. The simulator on the largest trace. Peer: the batch baseline replay alone.
    let cfg = SimConfig::default();
    let all = time(1, || simulate(&trace, c, &cfg).len());
    let base = time(1, || batch(&trace, c, &cfg, Market::Spot).jobs);
    println!(
        "simulate lotaru ({} jobs, 5 policies): {:.2} s ({:.0} jobs/s per policy); peer batch-spot replay alone: {:.3} s",
        trace.jobs.len(),
        all,
        5.0 * trace.jobs.len() as f64 / all,
        base
    );
}
