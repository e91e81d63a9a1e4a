//! The report's figures on hand-made runs: each figure computed two ways.

use super::*;
use spotfit_core::run::Placed;
use spotfit_core::summary::{CpuStats, RunSummary};

const GIB: u64 = 1 << 30;

fn catalog() -> &'static Catalog {
    Catalog::embedded().expect("the embedded catalog")
}

/// An attempt on `ty` (spot, us-east-1) that ran `secs` using `cpu` cores and `mem_gib`.
fn attempt(
    job: &str,
    run: &str,
    n: u32,
    start_ms: i64,
    ty: &str,
    status: RunStatus,
    (cpu, mem_gib): (f64, f64),
) -> RunRecord {
    let offer = catalog().find("us-east-1", ty).expect("type in the catalog");
    let price = offer.spot_per_hour.expect("spot price");
    RunRecord {
        run_id: run.into(),
        job: job.into(),
        attempt: n,
        status,
        placed: Some(Placed {
            instance_type: ty.into(),
            region: "us-east-1".into(),
            price_per_hour: price,
            ..Default::default()
        }),
        cost_usd: price * 600.0 / 3600.0,
        summary: Some(RunSummary {
            job: job.into(),
            run_id: run.into(),
            started_at_ms: start_ms,
            ended_at_ms: start_ms + 600_000,
            duration_s: 600.0,
            cpu: CpuStats {
                avg: cpu,
                p50: cpu,
                p95: cpu,
                max: cpu,
            },
            mem_max_bytes: (mem_gib * GIB as f64) as u64,
            oom_killed: status == RunStatus::OomKilled,
            status,
            ..Default::default()
        }),
        requested_vcpu: 2,
        requested_memory_bytes: 4 * GIB,
        ..Default::default()
    }
}

fn input(runs: Vec<RunRecord>) -> ReportInput<'static> {
    ReportInput {
        source: "test".into(),
        generated_at_ms: 0,
        since_ms: None,
        job: None,
        runs,
        samples: BTreeMap::new(),
        charted_per_job: 1,
        catalog: catalog(),
        warnings: Vec::new(),
    }
}

const DAY: i64 = 86_400_000;
const T0: i64 = 1_796_256_000_000; // 2026-12-03 00:00 UTC

#[test]
fn the_ledger_costs_oom_and_interrupted_attempts_apart_and_adds_up() {
    // GIVEN a job whose first run was OOM-killed then succeeded, and whose second was interrupted then succeeded
    let runs = vec![
        attempt("etl", "r1", 1, T0, "m7i.large", RunStatus::OomKilled, (1.0, 8.0)),
        attempt("etl", "r1", 2, T0 + 1000, "r7i.large", RunStatus::Succeeded, (1.0, 9.0)),
        attempt(
            "etl",
            "r2",
            1,
            T0 + DAY,
            "r7i.large",
            RunStatus::Interrupted,
            (1.0, 9.0),
        ),
        attempt(
            "etl",
            "r2",
            2,
            T0 + DAY + 1000,
            "r7i.large",
            RunStatus::Succeeded,
            (1.0, 9.0),
        ),
    ];
    let total: f64 = runs.iter().map(|r| r.cost_usd).sum();
    let (oom, int) = (runs[0].cost_usd, runs[2].cost_usd);
    // WHEN the report is built
    let r = build(input(runs));
    // THEN the ledger separates them, and the days add up to the total
    let l = &r.jobs[0].ledger;
    assert_eq!(
        (l.executions, l.attempts, l.oom_attempts, l.interrupted_attempts),
        (2, 4, 1, 1)
    );
    assert!(
        (l.total_usd - total).abs() < 1e-12
            && (l.oom_usd - oom).abs() < 1e-12
            && (l.interrupted_usd - int).abs() < 1e-12
    );
    assert_eq!(r.fleet.per_day.len(), 2);
    let by_day: f64 = r.fleet.per_day.iter().map(|d| d.1).sum();
    assert!((by_day - total).abs() < 1e-12, "{by_day} vs {total}");
    assert_eq!((r.fleet.oom_attempts, r.fleet.interrupted_attempts), (1, 1));
    // AND only the most recent attempt is charted (charted_per_job = 1)
    let charted: Vec<_> = r.jobs[0]
        .attempts
        .iter()
        .filter(|a| a.charted)
        .map(|a| (a.record.run_id.as_str(), a.record.attempt))
        .collect();
    assert_eq!(charted, vec![("r2", 2)]);
}

#[test]
fn waste_is_a_killed_attempts_whole_cost_and_a_finished_ones_unused_share() {
    // GIVEN a run that used half the cores and a quarter of the memory of an m7i.large (2 vCPU, 8 GiB), and an OOM kill
    let ok = attempt("a", "r1", 1, T0, "m7i.large", RunStatus::Succeeded, (1.0, 2.0));
    let oom = attempt("a", "r2", 1, T0 + 1, "m7i.large", RunStatus::OomKilled, (1.0, 8.0));
    let (c_ok, c_oom) = (ok.cost_usd, oom.cost_usd);
    let r = build(input(vec![ok, oom]));
    let a = &r.jobs[0].attempts;
    // THEN the finished one wastes 1 - max(1/2, 2/8) = half its cost, the killed one all of it
    assert!((a[0].waste_usd - c_ok * 0.5).abs() < 1e-12, "{}", a[0].waste_usd);
    assert!((a[1].waste_usd - c_oom).abs() < 1e-12);
    assert_eq!(r.fleet.top_waste[0].job, "a");
    assert!((r.fleet.top_waste[0].waste_usd - (c_ok * 0.5 + c_oom)).abs() < 1e-12);
}

#[test]
fn on_demand_is_the_same_lifetime_at_the_on_demand_price() {
    let run = attempt("a", "r1", 1, T0, "c7i.xlarge", RunStatus::Succeeded, (3.0, 2.0));
    let od = catalog()
        .find("us-east-1", "c7i.xlarge")
        .unwrap()
        .on_demand_per_hour
        .unwrap();
    let r = build(input(vec![run]));
    assert!(
        (r.fleet.on_demand_usd - od * 600.0 / 3600.0).abs() < 1e-9,
        "{}",
        r.fleet.on_demand_usd
    );
    assert!(r.fleet.on_demand_usd > r.fleet.total_usd);
}

#[test]
fn the_batch_service_prices_one_job_per_execution_at_its_first_request_and_last_duration() {
    // GIVEN an execution whose first attempt was OOM-killed after 600 s, the second ran 600 s
    let runs = vec![
        attempt("a", "r1", 1, T0, "m7i.large", RunStatus::OomKilled, (1.0, 8.0)),
        attempt(
            "a",
            "r1",
            2,
            T0 + 700_000,
            "r7i.large",
            RunStatus::Succeeded,
            (1.0, 9.0),
        ),
        attempt("b", "r2", 1, T0 + 5_000, "c7i.large", RunStatus::Succeeded, (2.0, 1.0)),
    ];
    let r = build(input(runs));
    let (trace, region) = batch_trace(&r.jobs).expect("a trace");
    assert_eq!(region, "us-east-1");
    assert_eq!(trace.jobs.len(), 2, "one job per execution");
    let a = trace.jobs.iter().find(|j| j.job_name == "a").unwrap();
    assert_eq!(
        (a.requested_vcpu, a.requested_mem_gib, a.duration_s, a.submit_s),
        (Some(2.0), Some(4.0), 600.0, 0.0)
    );
    let b = trace.jobs.iter().find(|j| j.job_name == "b").unwrap();
    assert_eq!(b.submit_s, 5.0);
    // AND the fleet's batch figure is the simulator's batch rule on that trace
    let cfg = SimConfig::default();
    let want = spotfit_sim::engine::batch(&trace, catalog(), &cfg, Market::OnDemand).total_cost_usd;
    assert_eq!(r.fleet.batch_on_demand_usd, Some(want));
    assert!(want > 0.0);
}

#[test]
fn the_window_keeps_the_job_and_the_time_asked_for() {
    let runs = vec![
        attempt(
            "a",
            "old",
            1,
            T0 - 10 * DAY,
            "m7i.large",
            RunStatus::Succeeded,
            (1.0, 1.0),
        ),
        attempt("a", "new", 1, T0, "m7i.large", RunStatus::Succeeded, (1.0, 1.0)),
        attempt("b", "other", 1, T0, "m7i.large", RunStatus::Succeeded, (1.0, 1.0)),
    ];
    let mut i = input(runs);
    i.since_ms = Some(T0 - DAY);
    i.job = Some("a".into());
    let r = build(i);
    assert_eq!(r.jobs.len(), 1);
    let ids: Vec<_> = r.jobs[0].attempts.iter().map(|a| a.record.run_id.as_str()).collect();
    assert_eq!(ids, vec!["new"]);
}

#[test]
fn a_type_the_catalog_does_not_know_is_counted_at_its_cost_and_said() {
    let mut run = attempt("a", "r1", 1, T0, "m7i.large", RunStatus::Succeeded, (1.0, 1.0));
    run.placed.as_mut().unwrap().instance_type = "x99.huge".into();
    let cost = run.cost_usd;
    let r = build(input(vec![run]));
    assert_eq!(r.fleet.unknown_types, 1);
    assert!((r.fleet.on_demand_usd - cost).abs() < 1e-12);
    assert_eq!(r.jobs[0].attempts[0].waste_usd, 0.0);
}

#[test]
fn an_empty_store_gives_an_empty_report_and_warnings_are_shown() {
    let mut i = input(vec![]);
    i.warnings = vec!["samples/x part-00000 line 3: not a sample <b>".into()];
    let r = build(i);
    assert_eq!((r.fleet.attempts, r.jobs.len()), (0, 0));
    assert_eq!(r.fleet.batch_on_demand_usd, None);
    let html = crate::html::render(&r);
    assert!(html.contains("No runs in this window"));
    assert!(
        html.contains("class=\"warning\"") && html.contains("line 3: not a sample &lt;b&gt;"),
        "{html}"
    );
}

fn samples_of(run: &str, n: u64, gpus: bool, oom_at: Option<u64>) -> Vec<Sample> {
    (0..n)
        .map(|i| Sample {
            ts_ms: T0 + (i as i64 + 1) * 1000,
            run_id: run.into(),
            seq: i,
            interval_s: 1.0,
            cpu_cores: 1.0 + (i % 3) as f64,
            mem_bytes: (i + 1) * GIB / 4,
            oom_kills: oom_at.map(|at| u64::from(i >= at)),
            gpus: if gpus {
                vec![spotfit_core::GpuSample {
                    index: 0,
                    util_pct: 50.0,
                    mem_used_bytes: GIB,
                    mem_total_bytes: 16 * GIB,
                    proc_mem_bytes: None,
                }]
            } else {
                vec![]
            },
            ..Default::default()
        })
        .collect()
}

#[test]
fn a_charted_attempt_draws_every_sample_marks_its_oom_kill_and_its_gpus() {
    // GIVEN an OOM-killed attempt whose samples saw the kill at the 8th, and a GPU attempt
    let oom = attempt("a", "r1", 1, T0, "m7i.large", RunStatus::OomKilled, (1.0, 8.0));
    let gpu = attempt("a", "r1", 2, T0 + 1, "g5.xlarge", RunStatus::Succeeded, (1.0, 8.0));
    let mut i = input(vec![oom, gpu]);
    i.charted_per_job = 2;
    i.samples.insert(("r1".into(), 1), samples_of("r1", 12, false, Some(7)));
    i.samples.insert(("r1".into(), 2), samples_of("r1-a2", 30, true, None));
    // WHEN drawn
    let html = crate::html::render(&build(i));
    let article = |n: u32| {
        let start = html
            .find(&format!("data-run=\"r1\" data-attempt=\"{n}\" data-samples"))
            .expect("the attempt is charted");
        let rest = &html[start..];
        rest[..rest.find("</article>").unwrap()].to_string()
    };
    // THEN the OOM attempt's charts have 12 points each and one OOM mark at the 8th sample's time (8 s)
    let a1 = article(1);
    assert!(a1.contains("data-series-0=\"used|#1F77B4|12|12\""), "{a1}");
    assert!(a1.contains("OOM kill at 8.0 s"), "{a1}");
    assert!(!a1.contains("data-kind=\"gpu\""));
    // AND the GPU attempt has a GPU chart with its 30 points and no OOM mark
    let a2 = article(2);
    assert!(
        a2.contains("data-kind=\"gpu\"") && a2.contains("GPU 0 utilisation|#1F77B4|30|30"),
        "{a2}"
    );
    assert!(!a2.contains("OOM kill"));
}
