//! The replay on tiny synthetic traces and a hand-made catalog, with costs worked out by hand.

use spotfit_core::catalog::{Catalog, Offer, ScoreSource, SpotSource};
use spotfit_core::spec::{Arch, Market};
use spotfit_core::units::GIB;
use spotfit_sim::engine::{batch, floor, sparecores, spotfit};
use spotfit_sim::{read_trace, simulate, Policy, Report, SimConfig};

fn offer(name: &str, vcpu: u32, mem_gib: u64, spot: f64, od: f64) -> Offer {
    Offer {
        instance_type: name.into(),
        family: name.split('.').next().unwrap_or("").into(),
        region: "us-east-1".into(),
        vcpu,
        memory_bytes: mem_gib * GIB,
        arch: Arch::X86_64,
        gpu: 0,
        gpu_memory_bytes: 0,
        on_demand_per_hour: Some(od),
        spot_per_hour: Some(spot),
        score_multi: Some(1000.0 * vcpu as f64),
        score_single: Some(1000.0),
        interruption_bucket: Some(0),
        azs: vec![],
        spot_source: SpotSource::AdvisorEstimate,
        score_source: ScoreSource::Measured,
        score_multi_cores: Some(vcpu),
        burstable: false,
        current_generation: true,
        accelerator: false,
    }
}

/// c1.small 1 vCPU/2 GiB at 0.036 spot, 0.072 on demand; m1.large 4 vCPU/16 GiB at 0.144/0.288;
/// r1.xlarge 4 vCPU/64 GiB at 0.288/0.576; x1.small (not m/c/r) 1 vCPU/2 GiB at 0.030/0.060.
fn catalog() -> Catalog {
    Catalog::from_offers(vec![
        offer("c1.small", 1, 2, 0.036, 0.072),
        offer("m1.large", 4, 16, 0.144, 0.288),
        offer("r1.xlarge", 4, 64, 0.288, 0.576),
        offer("x1.small", 1, 2, 0.030, 0.060),
    ])
}

const HEADER: &str = "job_name,submit_time_s,requested_vcpu,requested_mem_gib,duration_s,cpu_avg_cores,cpu_peak_cores,mem_peak_gib,gpu\n";

fn trace(rows: &str) -> spotfit_sim::Trace {
    read_trace("synthetic", format!("{HEADER}{rows}").as_bytes()).unwrap()
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

#[test]
fn batch_packs_first_fit_and_terminates_when_empty() {
    // GIVEN two 2-vCPU/4-GiB requests 10 s apart, an hour each
    let t = trace("a,0,2,4,3600,2,,3,0\na,10,2,4,3600,2,,3,0\n");
    let cfg = SimConfig::default();
    // THEN one m1.large takes both: launched at 0, ready at 60, empty at 3660
    let spot = batch(&t, &catalog(), &cfg, Market::Spot);
    assert_eq!(spot.instances_launched, 1);
    close(spot.total_cost_usd, 0.144 * 3660.0 / 3600.0);
    let od = batch(&t, &catalog(), &cfg, Market::OnDemand);
    close(od.total_cost_usd, 0.288 * 3660.0 / 3600.0);
    // a third job arriving after the host is gone pays a new instance
    let t = trace("a,0,2,4,3600,2,,3,0\na,5000,1,1,100,1,,1,0\n");
    let spot = batch(&t, &catalog(), &cfg, Market::Spot);
    assert_eq!(spot.instances_launched, 2);
    close(spot.total_cost_usd, 0.144 * 3660.0 / 3600.0 + 0.036 * 160.0 / 3600.0);
}

#[test]
fn floor_is_true_usage_at_the_cheapest_unit_price() {
    // 1 core, 1 GiB for an hour: x1.small at 0.030 is the cheapest per core (not an m/c/r family)
    let t = trace("a,0,4,16,3600,1,,1,0\n");
    let f = floor(&t, &catalog(), &SimConfig::default());
    close(f.total_cost_usd, 0.030);
    // 0.5 core and 32 GiB: memory-bound, r1.xlarge gives 32 GiB for half of 0.288
    let t = trace("a,0,4,16,3600,0.5,,32,0\n");
    close(floor(&t, &catalog(), &SimConfig::default()).total_cost_usd, 0.144);
}

#[test]
fn spotfit_buys_one_spot_instance_per_big_job() {
    // GIVEN a 4-core, 6-GiB hour-long job asking for 4 vCPU and 12 GiB (not small: dedicated)
    let t = trace("a,0,4,12,3600,4,,6,0\n");
    let r = spotfit(&t, &catalog(), &SimConfig::default());
    // THEN m1.large on spot for start-up + run
    assert_eq!(r.per_job[0].instance_type, "m1.large");
    close(r.total_cost_usd, 0.144 * 3660.0 / 3600.0);
    assert_eq!((r.per_job[0].attempts, r.oom_retry_rate, r.mean_slowdown), (1, 0.0, 1.0));
}

#[test]
fn spotfit_retries_an_oom_kill_bigger_and_charges_it() {
    // GIVEN a job that asks for 1 GiB but peaks at 3 GiB (a small job: a 1-GiB slot on a shared host)
    let t = trace("a,0,1,1,600,1,,3,0\n");
    let r = spotfit(&t, &catalog(), &SimConfig::default());
    let j = &r.per_job[0];
    // THEN killed in its 1-GiB slot on a shared x1.small (launched at 0, job 60..660, idle to 720);
    // the retry at 660 has history (one run killed at 1 GiB): ~1.96 GiB + reserve → a dedicated
    // m1.large for start-up + run, which fits the 3 GiB
    assert_eq!((j.attempts, j.oom_kills), (2, 1));
    assert_eq!(j.instance_type, "m1.large");
    assert_eq!(r.oom_retry_rate, 1.0);
    close(r.total_cost_usd, 0.030 * 720.0 / 3600.0 + 0.144 * 660.0 / 3600.0);
}

#[test]
fn sparecores_rule_sizes_from_mean_cpu_and_max_memory_on_demand() {
    // first run from the request (1 vCPU, 1 GiB + reserve → c1.small on demand); the second from
    // the first: max(1, round(0.4)) = 1 vCPU, 0.5 × 1.2 GiB → c1.small again (x1 has no OD? it does: 0.060)
    let t = trace("a,0,1,1,3600,0.4,,0.5,0\na,10000,1,1,3600,0.4,,0.5,0\n");
    let r = sparecores(&t, &catalog(), &SimConfig::default());
    assert!(r.per_job.iter().all(|j| j.instance_type == "x1.small"));
    close(r.total_cost_usd, 2.0 * 0.060 * 3660.0 / 3600.0);
}

#[test]
fn report_checks_targets_and_draws_a_plot() {
    let t = trace("a,0,4,32,3600,1,,1,0\na,4000,4,32,3600,1,,1,0\na,8000,4,32,3600,1,,1,0\n");
    let cfg = SimConfig::default();
    let report = Report::new(&t, &cfg, simulate(&t, &catalog(), &cfg));
    assert_eq!(report.policies.len(), Policy::ALL.len());
    let text = report.render_text();
    assert!(text.contains("spotfit") && text.contains("targets:"), "{text}");
    let svg = spotfit_sim::svg::render(&report);
    assert!(svg.starts_with("<svg") && svg.contains("floor"));
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["policies"][2]["per_job"].as_array().is_some_and(|a| a.len() == 3));
}
