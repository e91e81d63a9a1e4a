//! The simulation report: totals per policy, savings against each baseline, the ratio to the
//! floor, OOM-retry rate and slowdown, and the targets checked.

use crate::engine::{Policy, PolicyResult, SimConfig};
use crate::trace::{MissingCounts, Trace};
use serde::Serialize;
use std::fmt::Write;

/// The targets the simulator checks spotfit against.
#[derive(Debug, Clone, Serialize)]
pub struct Targets {
    /// Savings vs the spot batch baseline ≥ 40%.
    pub vs_batch_spot: bool,
    /// Savings vs the on-demand batch baseline ≥ 80%.
    pub vs_batch_on_demand: bool,
    /// Cost ≤ 1.3 × floor.
    pub within_floor: bool,
    /// ≤ 2% of jobs OOM-retried.
    pub oom_retries: bool,
    /// Cheaper than the Spare Cores rule at no more OOM retries.
    pub beats_sparecores: bool,
    /// Sizing v3 (issue 9): cheaper than the spot batch baseline.
    pub below_batch_spot: bool,
    /// Mean slowdown ≤ 1.10.
    pub mean_slowdown: bool,
    /// p95 slowdown ≤ 1.5.
    pub p95_slowdown: bool,
    /// ≤ 1% of jobs OOM-retried.
    pub oom_retries_1pct: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub trace: String,
    pub region: String,
    pub jobs: usize,
    pub startup_s: f64,
    pub missing: MissingCounts,
    pub policies: Vec<PolicyResult>,
    /// spotfit's savings vs the spot and on-demand batch baselines (fractions).
    pub spotfit_savings_vs_batch_spot: f64,
    pub spotfit_savings_vs_batch_on_demand: f64,
    pub spotfit_floor_ratio: f64,
    pub targets: Targets,
}

fn savings(cost: f64, baseline: f64) -> f64 {
    if baseline > 0.0 {
        1.0 - cost / baseline
    } else {
        0.0
    }
}

impl Report {
    pub fn new(trace: &Trace, cfg: &SimConfig, policies: Vec<PolicyResult>) -> Report {
        let get = |p: Policy| policies.iter().find(|r| r.policy == p);
        let cost = |p: Policy| get(p).map_or(f64::NAN, |r| r.total_cost_usd);
        let sf = cost(Policy::Spotfit);
        let vs_spot = savings(sf, cost(Policy::BatchSpot));
        let vs_od = savings(sf, cost(Policy::BatchOnDemand));
        let floor = cost(Policy::Floor);
        let ratio = if floor > 0.0 { sf / floor } else { f64::INFINITY };
        let oom = |p: Policy| get(p).map_or(f64::NAN, |r| r.oom_retry_rate);
        let targets = Targets {
            vs_batch_spot: vs_spot >= 0.40,
            vs_batch_on_demand: vs_od >= 0.80,
            within_floor: ratio <= 1.3,
            oom_retries: oom(Policy::Spotfit) <= 0.02,
            beats_sparecores: sf < cost(Policy::SpareCores) && oom(Policy::Spotfit) <= oom(Policy::SpareCores),
            below_batch_spot: sf < cost(Policy::BatchSpot),
            mean_slowdown: get(Policy::Spotfit).is_some_and(|r| r.mean_slowdown <= 1.10 + 1e-12),
            p95_slowdown: get(Policy::Spotfit).is_some_and(|r| r.p95_slowdown <= 1.5 + 1e-12),
            oom_retries_1pct: oom(Policy::Spotfit) <= 0.01,
        };
        Report {
            trace: trace.name.clone(),
            region: cfg.region.clone(),
            jobs: trace.jobs.len(),
            startup_s: cfg.startup_s,
            missing: trace.missing.clone(),
            policies,
            spotfit_savings_vs_batch_spot: vs_spot,
            spotfit_savings_vs_batch_on_demand: vs_od,
            spotfit_floor_ratio: ratio,
            targets,
        }
    }

    /// The human table.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "trace {} — {} jobs, region {}, start-up {} s billed per instance",
            self.trace, self.jobs, self.region, self.startup_s
        );
        let cost_of = |p: Policy| {
            self.policies
                .iter()
                .find(|r| r.policy == p)
                .map_or(f64::NAN, |r| r.total_cost_usd)
        };
        let (od, spot, floor) = (
            cost_of(Policy::BatchOnDemand),
            cost_of(Policy::BatchSpot),
            cost_of(Policy::Floor),
        );
        let _ = writeln!(
            s,
            "{:<16} {:>12} {:>10} {:>10} {:>8} {:>9} {:>10} {:>9} {:>9} {:>10}",
            "policy",
            "cost USD",
            "vs OD",
            "vs spot",
            "×floor",
            "OOM-retry",
            "OOM USD",
            "slow mean",
            "slow p95",
            "instances"
        );
        for r in &self.policies {
            let _ = writeln!(
                s,
                "{:<16} {:>12.4} {:>9.1}% {:>9.1}% {:>8.2} {:>8.2}% {:>10.4} {:>9.3} {:>9.3} {:>10}",
                r.policy.name(),
                r.total_cost_usd,
                100.0 * savings(r.total_cost_usd, od),
                100.0 * savings(r.total_cost_usd, spot),
                if floor > 0.0 {
                    r.total_cost_usd / floor
                } else {
                    f64::NAN
                },
                100.0 * r.oom_retry_rate,
                r.oom_retry_cost_usd,
                r.mean_slowdown,
                r.p95_slowdown,
                r.instances_launched
            );
        }
        for r in &self.policies {
            if let Some((row, job, slow)) = r.worst_slowdown.as_ref().filter(|w| w.2 > 1.0 + 1e-9) {
                let _ = writeln!(
                    s,
                    "{}: worst job slowdown {slow:.3} (row {row}, {job})",
                    r.policy.name()
                );
            }
        }
        for r in self.policies.iter().filter(|r| r.unplaced > 0) {
            let _ = writeln!(
                s,
                "{}: {} job(s) fit no instance type it may use and are left out of its cost",
                r.policy.name(),
                r.unplaced
            );
        }
        let t = &self.targets;
        let mark = |b: bool| if b { "met" } else { "MISSED" };
        let sfr = self.policies.iter().find(|r| r.policy == Policy::Spotfit);
        let _ = writeln!(
            s,
            "targets v3: below batch-spot {} ({:.1}%), mean slowdown ≤1.10 {} ({:.3}), p95 ≤1.5 {} ({:.3}), ≤1% OOM retries {} ({:.2}%)",
            mark(t.below_batch_spot),
            100.0 * self.spotfit_savings_vs_batch_spot,
            mark(t.mean_slowdown),
            sfr.map_or(f64::NAN, |r| r.mean_slowdown),
            mark(t.p95_slowdown),
            sfr.map_or(f64::NAN, |r| r.p95_slowdown),
            mark(t.oom_retries_1pct),
            100.0 * sfr.map_or(f64::NAN, |r| r.oom_retry_rate)
        );
        let _ = writeln!(
            s,
            "targets: ≥40% vs batch-spot {} ({:.1}%), ≥80% vs batch-on-demand {} ({:.1}%), ≤1.3× floor {} ({:.2}×), ≤2% OOM retries {}, beats Spare Cores rule {}",
            mark(t.vs_batch_spot),
            100.0 * self.spotfit_savings_vs_batch_spot,
            mark(t.vs_batch_on_demand),
            100.0 * self.spotfit_savings_vs_batch_on_demand,
            mark(t.within_floor),
            self.spotfit_floor_ratio,
            mark(t.oom_retries),
            mark(t.beats_sparecores)
        );
        let m = &self.missing;
        let _ = writeln!(
            s,
            "missing values: submit serial {} / previous {}, cpu avg←request {}, p95←avg {}, peak←p95 {}, mem peak←request {}, gpu←0 {}, rows dropped {}",
            m.submit_serial,
            m.submit_previous,
            m.cpu_avg_from_request,
            m.cpu_p95_from_avg,
            m.cpu_peak_from_p95,
            m.mem_peak_from_request,
            m.gpu_zero,
            m.dropped
        );
        s
    }
}
