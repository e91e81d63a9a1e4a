//! What the report shows, computed from the run records and samples alone: pure functions,
//! no I/O, so the local store and a deployment give the same page for the same runs.

use spotfit_core::catalog::Catalog;
use spotfit_core::ids::day_of;
use spotfit_core::run::RunRecord;
use spotfit_core::sample::Sample;
use spotfit_core::spec::Market;
use spotfit_core::summary::RunStatus;
use spotfit_core::units::bytes_to_gib;
use spotfit_sim::trace::{MissingCounts, Trace, TraceJob};
use spotfit_sim::SimConfig;
use std::collections::BTreeMap;

/// Everything the report is drawn from.
#[derive(Debug)]
pub struct ReportInput<'a> {
    /// Where the runs were read from, as the page names it (a store directory, a stack).
    pub source: String,
    pub generated_at_ms: i64,
    /// Only attempts that started at or after this time (None: all).
    pub since_ms: Option<i64>,
    /// One job's page only.
    pub job: Option<String>,
    /// The attempts (any order; filtered by `since_ms` and `job` here).
    pub runs: Vec<RunRecord>,
    /// Samples of each attempt, keyed by (run id, attempt), in sequence order.
    pub samples: BTreeMap<(String, u32), Vec<Sample>>,
    /// How many attempts of each job get their own charts (the most recent); the ledger lists all.
    pub charted_per_job: usize,
    pub catalog: &'a Catalog,
    /// What could not be read (a bad sample line, a truncated window), shown at the top.
    pub warnings: Vec<String>,
}

/// The whole page.
#[derive(Debug, Clone)]
pub struct Report {
    pub source: String,
    pub generated_at_ms: i64,
    pub since_ms: Option<i64>,
    pub fleet: Fleet,
    /// Dearest job first.
    pub jobs: Vec<JobView>,
    pub warnings: Vec<String>,
}

/// The fleet's figures over the report's window.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    pub executions: usize,
    pub attempts: usize,
    pub total_usd: f64,
    /// Cost per UTC day of the attempts' start, oldest first.
    pub per_day: Vec<(String, f64)>,
    /// The same runs on the managed batch service, on-demand and spot (the simulator's rule);
    /// None when no run has a summary to price.
    pub batch_on_demand_usd: Option<f64>,
    pub batch_spot_usd: Option<f64>,
    /// The same attempts, same types and lifetimes, at the on-demand price.
    pub on_demand_usd: f64,
    pub oom_attempts: usize,
    pub interrupted_attempts: usize,
    /// Jobs by waste, most first (at most [`TOP_WASTE`]).
    pub top_waste: Vec<WasteRow>,
    /// Attempts whose type the catalog does not know: priced as recorded, no on-demand or waste.
    pub unknown_types: usize,
}

/// How many jobs the fleet's waste table lists.
pub const TOP_WASTE: usize = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct WasteRow {
    pub job: String,
    pub waste_usd: f64,
    pub cost_usd: f64,
}

/// One job: its attempts, its ledger, its sizing trajectory.
#[derive(Debug, Clone)]
pub struct JobView {
    pub job: String,
    /// Oldest first.
    pub attempts: Vec<AttemptView>,
    pub ledger: Ledger,
}

/// What a job's attempts cost, by how they ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    pub executions: usize,
    pub attempts: usize,
    pub total_usd: f64,
    pub oom_attempts: usize,
    pub oom_usd: f64,
    pub interrupted_attempts: usize,
    pub interrupted_usd: f64,
    pub waste_usd: f64,
}

/// One attempt, with what it asked for, was given and used.
#[derive(Debug, Clone)]
pub struct AttemptView {
    pub record: RunRecord,
    pub started_at_ms: Option<i64>,
    pub duration_s: Option<f64>,
    pub requested_vcpu: f64,
    pub requested_mem_gib: f64,
    /// The type's vCPUs (or the cores the recorder says the job could use) and memory; None
    /// when the catalog does not know the type.
    pub given_vcpu: Option<f64>,
    pub given_mem_gib: Option<f64>,
    pub used_cpu_avg: Option<f64>,
    pub used_cpu_p95: Option<f64>,
    pub used_mem_gib: Option<f64>,
    /// The same lifetime at the type's on-demand price.
    pub on_demand_usd: Option<f64>,
    pub waste_usd: f64,
    /// Drawn on its own charts (the most recent `charted_per_job` of its job).
    pub charted: bool,
    pub samples: Vec<Sample>,
}

impl AttemptView {
    pub fn is_oom(&self) -> bool {
        self.record.status == RunStatus::OomKilled || self.record.summary.as_ref().is_some_and(|s| s.oom_killed)
    }
    pub fn is_interrupted(&self) -> bool {
        self.record.status == RunStatus::Interrupted
    }
}

/// Builds the report's figures.
pub fn build(input: ReportInput<'_>) -> Report {
    let ReportInput {
        source,
        generated_at_ms,
        since_ms,
        job,
        runs,
        mut samples,
        charted_per_job,
        catalog,
        warnings,
    } = input;
    let runs: Vec<RunRecord> = runs
        .into_iter()
        .filter(|r| in_window(r, job.as_deref(), since_ms))
        .collect();
    let charted = crate::charted(&runs, charted_per_job);
    let mut by_job: BTreeMap<String, Vec<AttemptView>> = BTreeMap::new();
    let mut unknown_types = 0;
    for r in runs {
        let key = (r.run_id.clone(), r.attempt);
        let s = samples.remove(&key).unwrap_or_default();
        let mut v = attempt_view(r, s, catalog);
        v.charted = charted.contains(&key);
        if v.record.placed.is_some() && v.given_vcpu.is_none() {
            unknown_types += 1;
        }
        by_job.entry(v.record.job.clone()).or_default().push(v);
    }
    let mut jobs: Vec<JobView> = by_job
        .into_iter()
        .map(|(job, mut attempts)| {
            attempts.sort_by(|a, b| order(&a.record, &b.record));
            let ledger = ledger(&attempts);
            JobView { job, attempts, ledger }
        })
        .collect();
    jobs.sort_by(|a, b| {
        b.ledger
            .total_usd
            .total_cmp(&a.ledger.total_usd)
            .then_with(|| a.job.cmp(&b.job))
    });
    let fleet = fleet(&jobs, catalog, unknown_types);
    Report {
        source,
        generated_at_ms,
        since_ms,
        fleet,
        jobs,
        warnings,
    }
}

/// Attempts in the order they ran: start time, then run id and attempt (an attempt with no
/// time at all first).
pub fn order(a: &RunRecord, b: &RunRecord) -> std::cmp::Ordering {
    a.started_at_ms()
        .cmp(&b.started_at_ms())
        .then_with(|| a.run_id.cmp(&b.run_id))
        .then(a.attempt.cmp(&b.attempt))
}

/// The report's window: the job asked for (if any), and a start at or after `since_ms` (an
/// attempt with no time is kept: it is still starting).
pub fn in_window(r: &RunRecord, job: Option<&str>, since_ms: Option<i64>) -> bool {
    job.is_none_or(|j| j == r.job)
        && match (since_ms, r.started_at_ms()) {
            (Some(since), Some(t)) => t >= since,
            _ => true,
        }
}

fn attempt_view(record: RunRecord, samples: Vec<Sample>, catalog: &Catalog) -> AttemptView {
    let started_at_ms = record.started_at_ms();
    let offer = record
        .placed
        .as_ref()
        .and_then(|p| catalog.find(&p.region, &p.instance_type));
    let summary = record.summary.as_ref();
    let given_vcpu = summary.and_then(|s| s.cpu_given_cores).or(offer.map(|o| o.vcpu as f64));
    let given_mem_gib = offer.map(|o| bytes_to_gib(o.memory_bytes));
    let used_cpu_avg = summary.map(|s| s.cpu.avg);
    let used_mem_gib = summary.map(|s| bytes_to_gib(s.mem_max_bytes));
    let on_demand_usd = match (&record.placed, offer.and_then(|o| o.on_demand_per_hour)) {
        (Some(p), Some(od)) => Some(at_other_price(
            record.cost_usd,
            p.price_per_hour,
            p.storage_per_hour,
            od,
        )),
        _ => None,
    };
    let waste_usd = waste(&record, given_vcpu, given_mem_gib, used_cpu_avg, used_mem_gib);
    AttemptView {
        started_at_ms,
        duration_s: summary.map(|s| s.duration_s),
        requested_vcpu: record.requested_vcpu as f64,
        requested_mem_gib: bytes_to_gib(record.requested_memory_bytes),
        given_vcpu,
        given_mem_gib,
        used_cpu_avg,
        used_cpu_p95: summary.map(|s| s.cpu.p95),
        used_mem_gib,
        on_demand_usd,
        waste_usd,
        charted: false,
        samples,
        record,
    }
}

/// The cost of the same lifetime at `other` per hour: the record's cost scaled by the price
/// ratio (instance and volume billed together, the volume's price unchanged).
pub fn at_other_price(cost: f64, price: f64, storage: f64, other: f64) -> f64 {
    let was = price + storage;
    if was <= 0.0 {
        return 0.0;
    }
    cost * (other + storage) / was
}

/// What an attempt paid for and did not use. A killed or interrupted attempt's whole cost is
/// waste (its work is redone). A finished one wastes the part of its cost beyond its share of
/// the type (the larger of its mean cores and its peak memory as fractions of the type's): the
/// same share the simulator's floor and shared-host slots are priced at.
pub fn waste(
    r: &RunRecord,
    given_vcpu: Option<f64>,
    given_mem_gib: Option<f64>,
    cpu_avg: Option<f64>,
    mem_gib: Option<f64>,
) -> f64 {
    match r.status {
        RunStatus::OomKilled | RunStatus::Interrupted | RunStatus::Lost | RunStatus::TimedOut => return r.cost_usd,
        RunStatus::Running => return 0.0,
        _ => {}
    }
    match (given_vcpu, given_mem_gib, cpu_avg, mem_gib) {
        (Some(gv), Some(gm), Some(c), Some(m)) if gv > 0.0 && gm > 0.0 => {
            let used = (c / gv).max(m / gm).clamp(0.0, 1.0);
            r.cost_usd * (1.0 - used)
        }
        _ => 0.0,
    }
}

fn ledger(attempts: &[AttemptView]) -> Ledger {
    let mut l = Ledger {
        attempts: attempts.len(),
        ..Default::default()
    };
    let mut executions: Vec<&str> = attempts.iter().map(|a| a.record.run_id.as_str()).collect();
    executions.sort_unstable();
    executions.dedup();
    l.executions = executions.len();
    for a in attempts {
        l.total_usd += a.record.cost_usd;
        l.waste_usd += a.waste_usd;
        if a.is_oom() {
            l.oom_attempts += 1;
            l.oom_usd += a.record.cost_usd;
        } else if a.is_interrupted() {
            l.interrupted_attempts += 1;
            l.interrupted_usd += a.record.cost_usd;
        }
    }
    l
}

fn fleet(jobs: &[JobView], catalog: &Catalog, unknown_types: usize) -> Fleet {
    let mut f = Fleet {
        unknown_types,
        ..Default::default()
    };
    let mut per_day: BTreeMap<String, f64> = BTreeMap::new();
    for j in jobs {
        f.executions += j.ledger.executions;
        f.attempts += j.ledger.attempts;
        f.total_usd += j.ledger.total_usd;
        f.oom_attempts += j.ledger.oom_attempts;
        f.interrupted_attempts += j.ledger.interrupted_attempts;
        for a in &j.attempts {
            if let Some(t) = a.started_at_ms {
                *per_day.entry(day_of(t)).or_default() += a.record.cost_usd;
            }
            // A type the catalog cannot price on-demand counts at what it cost.
            f.on_demand_usd += a.on_demand_usd.unwrap_or(a.record.cost_usd);
        }
    }
    f.per_day = per_day.into_iter().collect();
    let mut waste: Vec<WasteRow> = jobs
        .iter()
        .filter(|j| j.ledger.waste_usd > 0.0)
        .map(|j| WasteRow {
            job: j.job.clone(),
            waste_usd: j.ledger.waste_usd,
            cost_usd: j.ledger.total_usd,
        })
        .collect();
    waste.sort_by(|a, b| b.waste_usd.total_cmp(&a.waste_usd).then_with(|| a.job.cmp(&b.job)));
    waste.truncate(TOP_WASTE);
    f.top_waste = waste;
    if let Some((trace, region)) = batch_trace(jobs) {
        let cfg = SimConfig {
            region,
            ..SimConfig::default()
        };
        let od = spotfit_sim::engine::batch(&trace, catalog, &cfg, Market::OnDemand);
        let spot = spotfit_sim::engine::batch(&trace, catalog, &cfg, Market::Spot);
        // A run the batch rule cannot place (no general-purpose type that large) is left out of
        // both sides rather than priced at nothing.
        if od.unplaced == 0 {
            f.batch_on_demand_usd = Some(od.total_cost_usd);
        }
        if spot.unplaced == 0 {
            f.batch_spot_usd = Some(spot.total_cost_usd);
        }
    }
    f
}

/// The runs as the simulator's batch service would have been given them: one job per
/// execution, asking for what spotfit launched its first attempt with, running as long as its
/// last measured attempt (the batch service has neither OOM kills nor interruptions), submitted
/// when that execution started. The region is the most common one of the runs.
pub fn batch_trace(jobs: &[JobView]) -> Option<(Trace, String)> {
    struct Exec<'a> {
        first: &'a AttemptView,
        last_measured: Option<&'a AttemptView>,
    }
    let mut execs: BTreeMap<&str, Exec<'_>> = BTreeMap::new();
    let mut regions: BTreeMap<&str, usize> = BTreeMap::new();
    for j in jobs {
        for a in &j.attempts {
            if let Some(p) = &a.record.placed {
                *regions.entry(p.region.as_str()).or_default() += 1;
            }
            let e = execs.entry(a.record.run_id.as_str()).or_insert(Exec {
                first: a,
                last_measured: None,
            });
            if a.record.attempt < e.first.record.attempt {
                e.first = a;
            }
            if a.record.summary.is_some() && e.last_measured.is_none_or(|m| a.record.attempt > m.record.attempt) {
                e.last_measured = Some(a);
            }
        }
    }
    let region = regions
        .into_iter()
        .max_by_key(|(r, n)| (*n, std::cmp::Reverse(*r)))?
        .0
        .to_string();
    let mut rows: Vec<(i64, &AttemptView, &AttemptView)> = execs
        .values()
        .filter_map(|e| {
            let m = e.last_measured?;
            Some((e.first.started_at_ms.or(m.started_at_ms)?, e.first, m))
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.record.run_id.cmp(&b.1.record.run_id)));
    let t0 = rows.first()?.0;
    let jobs = rows
        .iter()
        .enumerate()
        .filter_map(|(i, (t, first, m))| {
            let s = m.record.summary.as_ref()?;
            Some(TraceJob {
                row: i + 1,
                job_name: m.record.job.clone(),
                submit_s: (t - t0) as f64 / 1000.0,
                requested_vcpu: Some(first.requested_vcpu).filter(|v| *v > 0.0),
                requested_mem_gib: Some(first.requested_mem_gib).filter(|v| *v > 0.0),
                duration_s: s.duration_s,
                cpu_avg_cores: s.cpu.avg,
                cpu_p95_cores: s.cpu.p95,
                cpu_peak_cores: s.cpu.max,
                mem_peak_gib: bytes_to_gib(s.mem_max_bytes),
                gpu: s.gpu.as_ref().map_or(0, |g| g.count),
                input_bytes: s.input_bytes,
            })
        })
        .collect::<Vec<_>>();
    if jobs.is_empty() {
        return None;
    }
    Some((
        Trace {
            name: "recorded runs".into(),
            jobs,
            missing: MissingCounts::default(),
        },
        region,
    ))
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
