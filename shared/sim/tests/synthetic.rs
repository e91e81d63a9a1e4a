//! The replay on tiny synthetic traces and a hand-made catalog, with costs worked out by hand.

#![allow(clippy::unwrap_used, clippy::expect_used)]

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
    assert_eq!(
        (r.per_job[0].attempts, r.oom_retry_rate, r.mean_slowdown),
        (1, 0.0, 1.0)
    );
}

#[test]
fn spotfit_retries_an_oom_kill_bigger_and_charges_it() {
    // GIVEN a job that asks for 1 GiB but peaks at 3 GiB (a small job: a 1-GiB slot on a shared
    // host; half a core, so that the room a never-seen slot gets to grow into — 2 × 0.5 cores —
    // fits the 1-vCPU host)
    let t = trace("a,0,0.5,1,600,0.5,,3,0\n");
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

#[test]
fn gpu_jobs_get_gpu_types_and_cpu_jobs_never_do() {
    // GIVEN the catalog plus g1.xlarge: 4 vCPU, 16 GiB, 1 GPU, 0.36 spot / 0.72 on demand
    let mut offers = catalog().offers;
    let mut g = offer("g1.xlarge", 4, 16, 0.36, 0.72);
    g.gpu = 1;
    g.gpu_memory_bytes = 24 * GIB;
    offers.push(g);
    let cat = Catalog::from_offers(offers);
    let cfg = SimConfig::default();
    // a 1-GPU hour-long job (2 cores, 4 GiB) and a CPU job of the same shape at the same time
    let t = trace("gpu,0,4,8,3600,2,,4,1\ncpu,0,4,8,3600,2,,4,0\n");
    let hour = 3660.0 / 3600.0;
    let b = batch(&t, &cat, &cfg, Market::Spot);
    assert_eq!(b.per_job[0].instance_type, "g1.xlarge");
    assert_eq!(b.per_job[1].instance_type, "m1.large");
    close(b.total_cost_usd, 0.36 * hour + 0.144 * hour);
    let s = spotfit(&t, &cat, &cfg);
    assert_eq!(s.per_job[0].instance_type, "g1.xlarge");
    assert_ne!(s.per_job[1].instance_type, "g1.xlarge");
    let sc = sparecores(&t, &cat, &cfg);
    assert_eq!(sc.per_job[0].instance_type, "g1.xlarge");
    // the floor charges the GPU job a whole GPU: 0.36 for the hour
    let f = floor(&t, &cat, &cfg);
    close(f.per_job[0].cost_usd, 0.36);
}

#[test]
fn shared_slot_memory_is_a_reservation_not_a_limit() {
    // GIVEN a small never-seen job (hints 1 vCPU, 1 GiB: a 1-GiB slot on a shared x1.small with
    // 2 − 0.25 GiB usable) that peaks at 1.5 GiB, alone on its host (half a core: its room to
    // grow into, 2 × 0.5 cores, fits the 1-vCPU host)
    let t = trace("a,0,0.5,1,600,0.5,,1.5,0\n");
    // THEN with soft slots it uses the free 0.5 GiB and is not killed (one attempt) …
    let soft = spotfit(&t, &catalog(), &SimConfig::default());
    assert_eq!((soft.per_job[0].attempts, soft.per_job[0].oom_kills), (1, 0));
    assert_eq!(soft.per_job[0].instance_type, "shared:x1.small");
    // … and with hard slots (memory.max = slot) it is killed and retried
    let hard_cfg = SimConfig {
        soft_shared_memory: false,
        ..SimConfig::default()
    };
    let hard = spotfit(&t, &catalog(), &hard_cfg);
    assert_eq!(hard.per_job[0].oom_kills, 1);
}

#[test]
fn shared_host_kills_the_job_over_its_reservation_when_memory_runs_out() {
    // GIVEN two half-core jobs with 0.75-GiB slots on one x1.small (1.75 GiB usable): the first
    // stays within its slot (0.7), the second peaks at 1.2 GiB but only 1.75 − 0.75 = 1.0 is free
    // (quarter-core jobs: each never-seen slot needs 2 × 0.25 cores really free, so both fit)
    let t = trace("a,0,0.25,0.75,600,0.25,,0.7,0\nb,1,0.25,0.75,600,0.25,,1.2,0\n");
    let r = spotfit(&t, &catalog(), &SimConfig::default());
    // THEN the job within its reservation is never killed, the other is (and retried bigger)
    assert_eq!(r.per_job[0].instance_type, "shared:x1.small");
    assert_eq!(r.per_job[0].oom_kills, 0);
    assert_eq!(r.per_job[1].oom_kills, 1);
    // alone, the second would have fitted in the host's free memory
    let alone = spotfit(
        &trace("b,1,0.25,0.75,600,0.25,,1.2,0\n"),
        &catalog(),
        &SimConfig::default(),
    );
    assert_eq!(alone.per_job[0].oom_kills, 0);
}

#[test]
fn keepalive_is_the_ski_rental_break_even() {
    // start-up plus the minimum-billing loss of a fresh instance, whichever bites
    close(spotfit_sim::engine::keepalive_for(60.0), 60.0);
    close(spotfit_sim::engine::keepalive_for(20.0), 60.0);
    close(spotfit_sim::engine::keepalive_for(90.0), 90.0);
    assert_eq!(SimConfig::default().keepalive_s, 60.0);
}

#[test]
fn warm_dedicated_instance_takes_the_next_run_without_a_start_up() {
    // GIVEN two big dedicated runs (m1.large); the second is submitted 40 s after the first ends
    let t = trace("a,0,4,12,3600,4,,6,0\nb,3700,4,12,3600,4,,6,0\n");
    // THEN by default each buys a new instance (start-up + run) …
    let cold = spotfit(&t, &catalog(), &SimConfig::default());
    close(cold.total_cost_usd, 2.0 * 0.144 * 3660.0 / 3600.0);
    // … and with the warm pool the second takes the first's instance, which idled 40 s
    let cfg = SimConfig {
        warm_dedicated: true,
        ..SimConfig::default()
    };
    let warm = spotfit(&t, &catalog(), &cfg);
    assert_eq!(warm.instances_launched, 1);
    assert_eq!(warm.per_job[1].instance_type, "warm:m1.large");
    // one instance: 0..3660 first run, idle to 3700, second run to 7300, then its 60-s keep-alive
    close(warm.total_cost_usd, 0.144 * 7360.0 / 3600.0);
}

#[test]
fn a_sustained_shared_load_opens_hosts_priced_per_slot() {
    // GIVEN the catalog plus c1.2xlarge (8 vCPU / 16 GiB at 0.16 spot: 0.02 per 1-core slot,
    // against 0.030 for a whole x1.small) and a steady stream of small never-seen jobs
    // (half a core, 1 GiB, 10 min each, one every 20 s: about 30 running at once)
    let mut offers = catalog().offers;
    offers.push(offer("c1.2xlarge", 8, 16, 0.16, 0.32));
    let cat = Catalog::from_offers(offers);
    let rows: String = (0..120)
        .map(|i| format!("j{i},{},0.5,1,600,0.5,,0.8,0\n", i * 20))
        .collect();
    let t = trace(&rows);
    let per_job = spotfit(&t, &cat, &SimConfig::default());
    let job_sized = spotfit(
        &t,
        &cat,
        &SimConfig {
            packed_shared_hosts: false,
            ..SimConfig::default()
        },
    );
    // THEN once the load is measured, new hosts are the 8-slot type: fewer start-ups, lower cost
    assert!(job_sized.per_job.iter().all(|j| j.instance_type == "shared:x1.small"));
    assert!(per_job.per_job.iter().any(|j| j.instance_type == "shared:c1.2xlarge"));
    // (the first minutes, before a load was measured, open x1.small hosts: 17 hosts against 33)
    assert!(per_job.instances_launched * 3 < job_sized.instances_launched * 2);
    assert!(per_job.total_cost_usd < job_sized.total_cost_usd);
}

#[test]
fn a_job_saturating_its_request_grows_until_it_stops_and_is_then_within_max_slowdown() {
    // GIVEN a long job (an hour at 10 cores; 12 GiB: dedicated) that asks for 2 vCPU, run again
    // after each run has finished (each learns from the last)
    let rows: String = (0..8)
        .map(|i| format!("big,{},2,12,3600,10,,10,0\n", i * 20_000))
        .collect();
    let r = spotfit(&trace(&rows), &catalog_with_sizes(), &SimConfig::default());
    let slow: Vec<f64> = r.per_job.iter().map(|j| j.slowdown).collect();
    // THEN the first run (the request as given: 2 vCPU) is slowed 5×, the next ones double their
    // cores (never fewer after a saturated run: 4, 8, 16 vCPU) until the job stops saturating,
    // and from then on every run is within max_slowdown 1.1
    assert!((slow[0] - 5.0).abs() < 1e-9, "{slow:?}");
    assert!(
        (slow[1] - 2.5).abs() < 1e-9 && (slow[2] - 1.25).abs() < 1e-9,
        "{slow:?}"
    );
    assert!(slow.windows(2).all(|w| w[1] <= w[0] + 1e-9), "{slow:?}");
    assert!(slow[3..].iter().all(|s| *s <= 1.1 + 1e-9), "{slow:?}");
    // … and with censoring off (the recorder does not say what a run could use) it never grows
    let blind = spotfit(
        &trace(&rows),
        &catalog_with_sizes(),
        &SimConfig {
            ablate_no_censoring: true,
            ..SimConfig::default()
        },
    );
    assert!(
        blind.per_job.iter().all(|j| j.slowdown >= 5.0 - 1e-9),
        "{:?}",
        blind.per_job
    );
}

/// The catalog plus r1.large (2 vCPU / 16 GiB at 0.10) and 8- and 16-vCPU compute types.
fn catalog_with_sizes() -> Catalog {
    let mut offers = catalog().offers;
    offers.push(offer("r1.large", 2, 16, 0.10, 0.20));
    offers.push(offer("c1.2xlarge", 8, 16, 0.24, 0.48));
    offers.push(offer("c1.4xlarge", 16, 32, 0.48, 0.96));
    Catalog::from_offers(offers)
}

#[test]
fn a_never_seen_shared_job_opens_a_host_with_room_to_grow_into() {
    // GIVEN a small never-seen job asking for 1 vCPU and 1 GiB (shared; its need is not known,
    // so a host admits it only with 2 × 1 cores really free), alone in the trace
    let t = trace("a,0,1,1,600,0.5,,0.5,0\n");
    let r = spotfit(&t, &catalog(), &SimConfig::default());
    // THEN the host it opens is the one ranking picks for a new instance that admits it
    // (Requirement::new_instance: ≥ 2 vCPUs, so m1.large at 0.144, not a 1-vCPU type at
    // 0.030), billed from launch at 0 through its run (60..660) and keep-alive, to 720 s
    assert_eq!(r.per_job[0].instance_type, "shared:m1.large");
    assert_eq!(r.instances_launched, 1);
    close(r.total_cost_usd, 0.144 * 720.0 / 3600.0);
}

/// Twenty never-seen jobs submitted at 0 on `catalog_with_sizes()`, their outcomes worked out
/// by hand: rows 1–17 (`u0`…`u16`) ask for and use 4 cores (12 GiB asked, 6 used): m1.large,
/// no slowdown; row 18 (`slow3`) asks for 2 vCPU and keeps 3 cores busy, row 19 (`slow5`) 5:
/// r1.large (2 vCPU, 16 GiB at 0.10, the cheapest with 12 GiB + reserve), slowed 1.5× and
/// 2.5×; row 20 (`oom`) asks for 2 vCPU / 12 GiB and peaks at 15.9 GiB: r1.large leaves it
/// 15.75, so it is killed after its full hour and retried with the OOM bump (15.75 × 1.5 GiB:
/// and, having kept its 2 cores busy, twice the cores: r1.xlarge, 4 vCPU / 64 GiB at 0.288),
/// two hours of run for one of work.
fn twenty_jobs() -> spotfit_sim::Trace {
    let mut rows: String = (0..17).map(|i| format!("u{i},0,4,12,3600,4,,6,0\n")).collect();
    rows.push_str("slow3,0,2,12,3600,3,,10,0\n");
    rows.push_str("slow5,0,2,12,3600,5,,10,0\n");
    rows.push_str("oom,0,2,12,3600,2,,15.9,0\n");
    trace(&rows)
}

#[test]
fn slowdown_percentile_worst_job_and_oom_cost_are_the_hand_computed_ones() {
    let r = spotfit(&twenty_jobs(), &catalog_with_sizes(), &SimConfig::default());
    let types: Vec<&str> = r.per_job.iter().map(|j| j.instance_type.as_str()).collect();
    assert!(types[..17].iter().all(|t| *t == "m1.large"), "{types:?}");
    assert_eq!(&types[17..], ["r1.large", "r1.large", "r1.xlarge"]);
    // THEN the slowdowns, sorted, are 1 (×17), 1.5, 2 (the OOM job: two full runs), 2.5: the
    // nearest-rank p95 is the 19th of 20, 2.0 (interpolating would give 2.025, the max 2.5) …
    close(r.p95_slowdown, 2.0);
    close(r.mean_slowdown, (17.0 + 1.5 + 2.0 + 2.5) / 20.0);
    // … the job slowed most is row 19 at 2.5 …
    let (row, name, worst) = r.worst_slowdown.clone().unwrap();
    assert_eq!((row, name.as_str()), (19, "slow5"));
    close(worst, 2.5);
    // … and the OOM-killed attempt is charged in full: r1.large for start-up + the hour
    let oom = &r.per_job[19];
    assert_eq!((oom.attempts, oom.oom_kills), (2, 1));
    close(oom.oom_cost_usd, 0.10 * 3660.0 / 3600.0);
    close(r.oom_retry_cost_usd, 0.10 * 3660.0 / 3600.0);
    close(r.oom_retry_rate, 1.0 / 20.0);
    assert!(r.per_job[..19].iter().all(|j| j.oom_cost_usd == 0.0));
    // … in a total of every instance's bill: the retry on r1.xlarge, the slowed runs for their
    // longer hours
    close(
        r.total_cost_usd,
        17.0 * 0.144 * 3660.0 / 3600.0
            + 0.10 * (60.0 + 5400.0) / 3600.0
            + 0.10 * (60.0 + 9000.0) / 3600.0
            + 0.10 * 3660.0 / 3600.0
            + 0.288 * 3660.0 / 3600.0,
    );
}

#[test]
fn explain_tells_each_attempt_of_the_named_job_what_sizing_wanted_and_what_happened() {
    let cfg = SimConfig {
        explain: Some("oom".into()),
        ..SimConfig::default()
    };
    let results = simulate(&twenty_jobs(), &catalog_with_sizes(), &cfg);
    // only spotfit explains, and only the named job: one line per attempt
    for p in &results {
        assert_eq!(p.explain.is_empty(), p.policy != Policy::Spotfit, "{:?}", p.policy);
    }
    let lines = &results.iter().find(|p| p.policy == Policy::Spotfit).unwrap().explain;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    // the cold start: the request as given, on the type ranking bought, killed at its limit
    let first = &lines[0];
    for part in [
        "row 20 t=0s Hints: wants 2.00 cores → 2 vCPU, memory ≥ 12.00 GiB; type r1.large 0.1000 $/h",
        "P(OOM) 0.0000",
        "E[cost] ?",
        "[no history: the spec's hints]",
        "→ r1.large: ran 3600.0 s on 2.00 cores (1.000× its 3600.0 s), peak 15.90 of 15.75 GiB, OOM-KILLED",
    ] {
        assert!(first.contains(part), "{part:?} not in {first:?}");
    }
    // the retry, submitted when the killed run ended (60 s start-up + the hour): sized from
    // that run — it kept its 2 cores busy, so its need is not known and it doubles; the OOM
    // bump takes memory to 15.75 × 1.5 — and it fits
    let second = &lines[1];
    for part in [
        "row 20 t=3660s History { runs: 1 }: wants 4.00 cores (need not known yet) → 4 vCPU, memory ≥ 23.62 GiB",
        "type r1.xlarge 0.2880 $/h",
        "OOM bump: killed at 15.75 GiB, now at least 23.62 GiB (×1.5)",
        "→ r1.xlarge: ran 3600.0 s on 4.00 cores (1.000× its 3600.0 s), peak 15.90 of 63.75 GiB",
    ] {
        assert!(second.contains(part), "{part:?} not in {second:?}");
    }
    assert!(!second.contains("OOM-KILLED"), "{second}");
}
