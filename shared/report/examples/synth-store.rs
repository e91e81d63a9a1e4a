//! Writes a local store of synthetic runs for `scripts/bench-report` (the report's size and
//! render time at 1,000 runs): `synth-store DIR RUNS JOBS SAMPLES`. Each job keeps one shape
//! (cores, memory, a slow rise and noise), on the types the real ranking would pick; every
//! 25th attempt is OOM-killed and retried, every 40th interrupted and retried. Written through
//! the store's own ports (SQLite and the objects' key layout), as `spotfit run` writes them.

use flate2::write::GzEncoder;
use spotfit_core::catalog::Catalog;
use spotfit_core::ids::RunKeys;
use spotfit_core::ports::{ObjectStore, RunStore};
use spotfit_core::run::{Placed, RunRecord};
use spotfit_core::sample::{MemoryMetric, Sample};
use spotfit_core::spec::Market;
use spotfit_core::summary::{CpuStats, RunStatus, RunSummary};
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let usage = "usage: synth-store DIR RUNS JOBS SAMPLES";
    let dir = std::path::PathBuf::from(a.get(1).ok_or(usage)?);
    let runs: usize = a.get(2).ok_or(usage)?.parse()?;
    let jobs: usize = a.get(3).ok_or(usage)?.parse()?;
    let n_samples: u64 = a.get(4).ok_or(usage)?.parse()?;
    let store = spotfit_local::LocalStore::open(&dir, spotfit_local::Access::ReadWrite)?;
    let catalog = Catalog::embedded()?;
    let types = [
        "c7g.large",
        "m7g.large",
        "r7g.large",
        "m7i.xlarge",
        "r7i.2xlarge",
        "c7i.4xlarge",
    ];
    let t_end = chrono::Utc::now().timestamp_millis();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut attempt_no = 0usize;
    for i in 0..runs {
        let job = format!("job-{:03}", i % jobs);
        let ty = types[(i % jobs) % types.len()];
        let offer = catalog.find("us-east-1", ty).ok_or("type not in the catalog")?;
        let (cores, mem_gib) = (
            offer.vcpu as f64 * (0.3 + 0.6 * next()),
            offer.memory_bytes as f64 / (1u64 << 30) as f64 * (0.2 + 0.5 * next()),
        );
        // Spread over the last 14 days.
        let start0 = t_end - ((runs - i) as i64 * 14 * 86_400_000 / runs as i64);
        let run_id = format!("synth-{i:05}");
        let mut attempt = 1;
        loop {
            attempt_no += 1;
            let status = if attempt == 1 && attempt_no % 25 == 0 {
                RunStatus::OomKilled
            } else if attempt == 1 && attempt_no % 40 == 0 {
                RunStatus::Interrupted
            } else {
                RunStatus::Succeeded
            };
            let start = start0 + (attempt as i64 - 1) * (n_samples as i64 * 1000 + 60_000);
            let agent_run = spotfit_core::pipeline::attempt_run_id(&run_id, attempt);
            let keys = RunKeys::new(&job, start, &agent_run);
            let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let (mut cpu_sum, mut cpu_max, mut mem_max) = (0.0, 0.0_f64, 0u64);
            for seq in 0..n_samples {
                let rise = seq as f64 / n_samples as f64;
                let c = (cores * (0.8 + 0.4 * next())).max(0.01);
                let m = ((mem_gib * (0.5 + 0.5 * rise) + 0.05 * next()) * (1u64 << 30) as f64) as u64;
                cpu_sum += c;
                cpu_max = cpu_max.max(c);
                mem_max = mem_max.max(m);
                let s = Sample {
                    ts_ms: start + (seq as i64 + 1) * 1000,
                    run_id: agent_run.clone(),
                    seq,
                    interval_s: 1.0,
                    cpu_cores: c,
                    mem_bytes: m,
                    rss_bytes: m,
                    mem_metric: MemoryMetric::Rss,
                    processes: 1,
                    ..Default::default()
                };
                writeln!(gz, "{}", s.to_json_line())?;
            }
            futures_executor::block_on(store.objects.put(&keys.sample_part(0), gz.finish()?))?;
            let price = offer.spot_per_hour.unwrap_or(0.05);
            let duration = n_samples as f64;
            let avg = cpu_sum / n_samples as f64;
            let rec = RunRecord {
                run_id: run_id.clone(),
                job: job.clone(),
                attempt,
                status,
                placed: Some(Placed {
                    instance_type: ty.into(),
                    region: "us-east-1".into(),
                    az: "use1-az4".into(),
                    market: Market::Spot,
                    price_per_hour: price,
                    ..Default::default()
                }),
                cost_usd: spotfit_core::cost::billed_cost(price, duration + 60.0),
                summary: Some(RunSummary {
                    job: job.clone(),
                    run_id: agent_run.clone(),
                    started_at_ms: start,
                    ended_at_ms: start + n_samples as i64 * 1000,
                    duration_s: duration,
                    samples: n_samples,
                    cpu: CpuStats {
                        avg,
                        p50: avg,
                        p95: cpu_max * 0.95,
                        max: cpu_max,
                    },
                    mem_max_bytes: mem_max,
                    oom_killed: status == RunStatus::OomKilled,
                    status,
                    ..Default::default()
                }),
                requested_vcpu: offer.vcpu,
                requested_memory_bytes: offer.memory_bytes / 2,
                ..Default::default()
            };
            futures_executor::block_on(RunStore::put(&store.db, &rec))?;
            if status == RunStatus::Succeeded {
                break;
            }
            attempt += 1;
        }
    }
    println!(
        "{runs} runs ({attempt_no} attempts) of {jobs} jobs, {n_samples} samples each, in {}",
        dir.display()
    );
    Ok(())
}
