//! The replay: every policy sees the trace's jobs in submit order and learns per job only from
//! runs that had finished before the job was submitted. Modelling assumptions are listed in
//! `docs/simulator.md`; each is named where it is applied.

use crate::trace::{Trace, TraceJob};
use serde::Serialize;
use spotfit_core::catalog::{Catalog, Offer};
use spotfit_core::cost::billed_cost;
use spotfit_core::profile::JobProfile;
use spotfit_core::ranking::{rank, RankOptions, SpeedModel};
use spotfit_core::sizing::{self, SizeClass, OS_RESERVE_BYTES};
use spotfit_core::spec::{Hints, JobSpec, Market, Placement};
use spotfit_core::summary::{CpuStats, RunStatus, RunSummary};
use spotfit_core::units::{bytes_to_gib, gib_to_bytes};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// Unix ms of the trace's time 0 (any fixed date: sizing only looks at differences).
const EPOCH_MS: i64 = 1_767_225_600_000;
/// Attempts per job before the replay gives up on it (never reached with a ×1.5 OOM bump).
const MAX_ATTEMPTS: u32 = 20;
/// Request assumed for a trace row without one (the sizing cold-start default).
const DEFAULT_REQUEST_VCPU: f64 = sizing::DEFAULT_VCPU as f64;

#[derive(Debug, Clone, Serialize)]
pub struct SimConfig {
    pub region: String,
    /// Billed start-up of every new instance, seconds.
    pub startup_s: f64,
    /// How long an empty shared host waits for the next tiny job before it is terminated.
    /// Equal to the start-up by default: waiting costs at most what a fresh start would
    /// (the ski-rental break-even).
    pub shared_keepalive_s: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            region: "us-east-1".into(),
            startup_s: 60.0,
            shared_keepalive_s: 60.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    BatchOnDemand,
    BatchSpot,
    Spotfit,
    SpareCores,
    Floor,
}

impl Policy {
    pub const ALL: [Policy; 5] = [
        Policy::BatchOnDemand,
        Policy::BatchSpot,
        Policy::Spotfit,
        Policy::SpareCores,
        Policy::Floor,
    ];
    pub fn name(&self) -> &'static str {
        match self {
            Policy::BatchOnDemand => "batch-on-demand",
            Policy::BatchSpot => "batch-spot",
            Policy::Spotfit => "spotfit",
            Policy::SpareCores => "sparecores-rule",
            Policy::Floor => "floor",
        }
    }
}

/// What happened to one trace job under one policy.
#[derive(Debug, Clone, Serialize)]
pub struct JobOutcome {
    pub row: usize,
    pub job_name: String,
    /// Instance type of the last attempt (`shared:<type>` on a shared host).
    pub instance_type: String,
    pub attempts: u32,
    pub oom_kills: u32,
    /// Cost of this job: the instance for a dedicated run; on a packed host, its share of the
    /// host (the larger of its CPU and memory fractions) over its run time.
    pub cost_usd: f64,
    /// Run time on the resources given / true duration.
    pub slowdown: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyResult {
    pub policy: Policy,
    pub total_cost_usd: f64,
    pub jobs: usize,
    pub attempts: usize,
    /// Jobs OOM-killed at least once / jobs.
    pub oom_retry_rate: f64,
    pub mean_slowdown: f64,
    pub instances_launched: usize,
    /// Jobs that found no instance at all (nothing in the catalog fits).
    pub unplaced: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_job: Vec<JobOutcome>,
}

/// One instance type usable by a policy, with the price it pays.
#[derive(Debug, Clone)]
struct Shape {
    name: String,
    vcpu: f64,
    mem_gib: f64,
    price: f64,
}

#[derive(Debug)]
struct Host {
    shape: Shape,
    launched: f64,
    /// (end, cpu, mem) of the jobs on it.
    allocs: Vec<(f64, f64, f64)>,
    last_end: f64,
}

/// Instances that take several jobs: first fit on a running instance, else a new one; an
/// instance is terminated once empty for `keepalive_s` (0 = at once, as the baseline).
#[derive(Debug)]
struct Pool {
    hosts: Vec<Host>,
    keepalive_s: f64,
    startup_s: f64,
    /// Memory not given to jobs on each host (OS reserve), GiB.
    reserve_gib: f64,
    cost: f64,
    launched: usize,
}

impl Pool {
    fn new(keepalive_s: f64, startup_s: f64, reserve_gib: f64) -> Pool {
        Pool {
            hosts: Vec::new(),
            keepalive_s,
            startup_s,
            reserve_gib,
            cost: 0.0,
            launched: 0,
        }
    }

    fn close(&mut self, h: &Host) {
        self.cost += billed_cost(h.shape.price, h.last_end + self.keepalive_s - h.launched);
    }

    /// Frees what has ended by `t` and terminates hosts idle past their keep-alive.
    fn advance(&mut self, t: f64) {
        let mut closed = Vec::new();
        let keep = self.keepalive_s;
        self.hosts.retain_mut(|h| {
            h.allocs.retain(|a| a.0 > t);
            if h.allocs.is_empty() && h.last_end + keep <= t {
                closed.push(Host {
                    shape: h.shape.clone(),
                    launched: h.launched,
                    allocs: vec![],
                    last_end: h.last_end,
                });
                false
            } else {
                true
            }
        });
        for h in closed {
            self.close(&h);
        }
    }

    /// Places a job needing `cpu` cores and `mem` GiB for `dur` s at time `t`; `new_shape`
    /// picks the type of a new host. Returns (host shape, start time).
    fn place(
        &mut self,
        t: f64,
        cpu: f64,
        mem: f64,
        dur: f64,
        new_shape: impl FnOnce() -> Option<Shape>,
    ) -> Option<(Shape, f64)> {
        self.advance(t);
        for h in &mut self.hosts {
            let used_cpu: f64 = h.allocs.iter().map(|a| a.1).sum();
            let used_mem: f64 = h.allocs.iter().map(|a| a.2).sum();
            let ready = h.launched + self.startup_s;
            if used_cpu + cpu <= h.shape.vcpu + 1e-9 && used_mem + mem <= h.shape.mem_gib - self.reserve_gib + 1e-9 {
                let start = t.max(ready);
                h.allocs.push((start + dur, cpu, mem));
                h.last_end = h.last_end.max(start + dur);
                return Some((h.shape.clone(), start));
            }
        }
        let shape = new_shape()?;
        // Scaling out with another shape: an idle host that could not take this job is
        // terminated now instead of idling out its keep-alive next to the new one.
        let mut idle = Vec::new();
        self.hosts.retain(|h| {
            if h.allocs.is_empty() {
                idle.push(Host {
                    shape: h.shape.clone(),
                    launched: h.launched,
                    allocs: vec![],
                    last_end: h.last_end,
                });
                false
            } else {
                true
            }
        });
        for h in idle {
            self.cost += billed_cost(h.shape.price, t.max(h.last_end) - h.launched);
        }
        let start = t + self.startup_s;
        self.launched += 1;
        self.hosts.push(Host {
            shape: shape.clone(),
            launched: t,
            allocs: vec![(start + dur, cpu, mem)],
            last_end: start + dur,
        });
        Some((shape, start))
    }

    /// Hosts with a job on them at `t` (idle ones waiting out their keep-alive do not count).
    fn busy(&self, t: f64) -> usize {
        self.hosts.iter().filter(|h| h.allocs.iter().any(|a| a.0 > t)).count()
    }

    fn finish(mut self) -> (f64, usize) {
        for h in std::mem::take(&mut self.hosts) {
            self.close(&h);
        }
        (self.cost, self.launched)
    }
}

fn is_batch_family(family: &str) -> bool {
    let mut chars = family.chars();
    matches!(chars.next(), Some('m' | 'c' | 'r')) && chars.next().is_some_and(|c| c.is_ascii_digit())
}

/// Spot price in the region's catalog, with the on-demand price where a type has none.
fn shapes(offers: &[Offer], market: Market, filter: impl Fn(&Offer) -> bool) -> Vec<Shape> {
    let mut v: Vec<Shape> = offers
        .iter()
        .filter(|o| filter(o) && !o.burstable && o.gpu == 0 && !o.accelerator)
        .filter_map(|o| {
            let price = match market {
                Market::OnDemand => o.on_demand_per_hour,
                _ => o.spot_per_hour,
            }?;
            Some(Shape {
                name: o.instance_type.clone(),
                vcpu: o.vcpu as f64,
                mem_gib: bytes_to_gib(o.memory_bytes),
                price,
            })
        })
        .collect();
    // Cheapest first: "the smallest type that fits" read in the baseline's favour.
    v.sort_by(|a, b| a.price.total_cmp(&b.price).then_with(|| a.name.cmp(&b.name)));
    v
}

fn cheapest_fit(shapes: &[Shape], cpu: f64, mem_gib: f64) -> Option<Shape> {
    shapes
        .iter()
        .find(|s| s.vcpu + 1e-9 >= cpu && s.mem_gib + 1e-9 >= mem_gib)
        .cloned()
}

fn request(job: &TraceJob) -> (f64, f64) {
    (
        job.requested_vcpu.unwrap_or(DEFAULT_REQUEST_VCPU),
        job.requested_mem_gib.unwrap_or(sizing::DEFAULT_MEMORY_GIB),
    )
}

fn finish_result(
    policy: Policy,
    total: f64,
    launched: usize,
    mut per_job: Vec<JobOutcome>,
    unplaced: usize,
) -> PolicyResult {
    per_job.sort_by_key(|j| j.row);
    let n = per_job.len().max(1) as f64;
    PolicyResult {
        policy,
        total_cost_usd: total,
        jobs: per_job.len(),
        attempts: per_job.iter().map(|j| j.attempts as usize).sum(),
        oom_retry_rate: per_job.iter().filter(|j| j.oom_kills > 0).count() as f64 / n,
        mean_slowdown: per_job.iter().map(|j| j.slowdown).sum::<f64>() / n,
        instances_launched: launched,
        unplaced,
        per_job,
    }
}

/// The managed batch service: requests as given, first fit, new smallest type, empty → gone.
/// Assumptions: requests are soft CPU shares (no slowdown) and its memory limits were enough
/// (every trace job completed under them), so it has neither OOM kills nor slowdowns.
pub fn batch(trace: &Trace, catalog: &Catalog, cfg: &SimConfig, market: Market) -> PolicyResult {
    let offers = catalog.region(&cfg.region);
    let types = shapes(offers, market, |o| o.current_generation && is_batch_family(&o.family));
    let mut pool = Pool::new(0.0, cfg.startup_s, 0.0);
    let mut per_job = Vec::with_capacity(trace.jobs.len());
    let mut unplaced = 0;
    for job in &trace.jobs {
        let (cpu, mem) = request(job);
        match pool.place(job.submit_s, cpu, mem, job.duration_s, || {
            cheapest_fit(&types, cpu, mem)
        }) {
            Some((shape, _)) => per_job.push(JobOutcome {
                row: job.row,
                job_name: job.job_name.clone(),
                cost_usd: shape.price * (cpu / shape.vcpu).max(mem / shape.mem_gib) * job.duration_s / 3600.0,
                instance_type: shape.name,
                attempts: 1,
                oom_kills: 0,
                slowdown: 1.0,
            }),
            None => unplaced += 1,
        }
    }
    let (cost, launched) = pool.finish();
    let policy = if market == Market::OnDemand {
        Policy::BatchOnDemand
    } else {
        Policy::BatchSpot
    };
    finish_result(policy, cost, launched, per_job, unplaced)
}

/// The limit: each job's true average cores and peak memory for its true duration, at the
/// cheapest spot price per unit of any type, perfectly packed, with no start-up or minimum.
pub fn floor(trace: &Trace, catalog: &Catalog, cfg: &SimConfig) -> PolicyResult {
    let types = shapes(catalog.region(&cfg.region), Market::Spot, |_| true);
    let per_job: Vec<JobOutcome> = trace
        .jobs
        .iter()
        .map(|job| {
            let best = types
                .iter()
                .map(|s| {
                    (
                        s,
                        s.price * (job.cpu_avg_cores / s.vcpu).max(job.mem_peak_gib / s.mem_gib),
                    )
                })
                .min_by(|a, b| a.1.total_cmp(&b.1));
            let (name, per_h) = best.map_or((String::new(), 0.0), |(s, p)| (s.name.clone(), p));
            JobOutcome {
                row: job.row,
                job_name: job.job_name.clone(),
                instance_type: name,
                attempts: 1,
                oom_kills: 0,
                cost_usd: per_h * job.duration_s / 3600.0,
                slowdown: 1.0,
            }
        })
        .collect();
    let total = per_job.iter().map(|j| j.cost_usd).sum();
    finish_result(Policy::Floor, total, 0, per_job, 0)
}

#[derive(Debug, PartialEq)]
struct Event {
    t: f64,
    seq: usize,
    job: usize,
    attempt: u32,
}
impl Eq for Event {}
impl Ord for Event {
    fn cmp(&self, o: &Self) -> Ordering {
        o.t.total_cmp(&self.t).then(o.seq.cmp(&self.seq))
    }
}
impl PartialOrd for Event {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// A finished attempt waiting to be learnt from at its end time.
#[derive(Debug)]
struct Done {
    t: f64,
    seq: usize,
    summary: RunSummary,
}
impl PartialEq for Done {
    fn eq(&self, o: &Self) -> bool {
        self.t == o.t && self.seq == o.seq
    }
}
impl Eq for Done {}
impl Ord for Done {
    fn cmp(&self, o: &Self) -> Ordering {
        o.t.total_cmp(&self.t).then(o.seq.cmp(&self.seq))
    }
}
impl PartialOrd for Done {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// What a sizing policy decides for one attempt.
struct Placement_ {
    shape: Shape,
    /// Cores and memory (GiB) the job may use.
    cores: f64,
    mem_gib: f64,
    shared: bool,
    /// Slot on a shared host (cores, GiB), when shared.
    slot: (f64, f64),
}

/// What the agent would have measured: CPU capped by the cores given; on an OOM kill the
/// memory stops at the limit.
fn observed(job: &TraceJob, attempt: u32, start: f64, run_s: f64, cores: f64, mem_gib: f64, oom: bool) -> RunSummary {
    let cap = |v: f64| v.min(cores);
    RunSummary {
        job: job.job_name.clone(),
        run_id: format!("row{}-a{attempt}", job.row),
        started_at_ms: EPOCH_MS + (start * 1000.0) as i64,
        ended_at_ms: EPOCH_MS + ((start + run_s) * 1000.0) as i64,
        duration_s: run_s,
        samples: 0,
        cpu: CpuStats {
            avg: cap(job.cpu_avg_cores),
            p50: cap(job.cpu_avg_cores),
            p95: cap(job.cpu_p95_cores),
            max: cap(job.cpu_peak_cores),
        },
        mem_max_bytes: gib_to_bytes(if oom { mem_gib } else { job.mem_peak_gib }),
        oom_killed: oom,
        status: if oom {
            RunStatus::OomKilled
        } else {
            RunStatus::Succeeded
        },
        ..Default::default()
    }
}

/// Replays the trace under a sizing policy that learns from finished runs.
fn replay(
    trace: &Trace,
    cfg: &SimConfig,
    policy: Policy,
    mut decide: impl FnMut(&TraceJob, Option<&JobProfile>, f64, usize) -> Option<Placement_>,
) -> PolicyResult {
    let mut events: BinaryHeap<Event> = trace
        .jobs
        .iter()
        .enumerate()
        .map(|(i, j)| Event {
            t: j.submit_s,
            seq: i,
            job: i,
            attempt: 1,
        })
        .collect();
    let mut done: BinaryHeap<Done> = BinaryHeap::new();
    let mut profiles: HashMap<String, JobProfile> = HashMap::new();
    let mut pool = Pool::new(cfg.shared_keepalive_s, cfg.startup_s, bytes_to_gib(OS_RESERVE_BYTES));
    let mut dedicated_cost = 0.0;
    let mut dedicated_launched = 0;
    let mut outcomes: Vec<Option<JobOutcome>> = vec![None; trace.jobs.len()];
    let mut ooms = vec![0u32; trace.jobs.len()];
    let mut seq = trace.jobs.len();
    let mut unplaced = 0;
    while let Some(ev) = events.pop() {
        while done.peek().is_some_and(|d| d.t <= ev.t) {
            if let Some(d) = done.pop() {
                let name = d.summary.job.clone();
                profiles
                    .entry(name)
                    .or_insert_with_key(|k| JobProfile::new(k))
                    .record(&d.summary);
            }
        }
        let job = &trace.jobs[ev.job];
        let Some(pl) = decide(job, profiles.get(&job.job_name), ev.t, pool.busy(ev.t)) else {
            unplaced += 1;
            continue;
        };
        // A job given fewer cores than it keeps busy is slowed in proportion.
        let slowdown = (job.cpu_avg_cores / pl.cores).max(1.0);
        let run_s = job.duration_s * slowdown;
        let oom = job.mem_peak_gib > pl.mem_gib + 1e-12;
        // An OOM-killed attempt is charged its full run time: the peak may come at the end.
        let (start, cost, name) = if pl.shared {
            match pool.place(ev.t, pl.slot.0, pl.slot.1, run_s, || Some(pl.shape.clone())) {
                Some((shape, start)) => {
                    let share = (pl.slot.0 / shape.vcpu).max(pl.slot.1 / shape.mem_gib);
                    (
                        start,
                        shape.price * share * run_s / 3600.0,
                        format!("shared:{}", shape.name),
                    )
                }
                None => {
                    unplaced += 1;
                    continue;
                }
            }
        } else {
            let c = billed_cost(pl.shape.price, cfg.startup_s + run_s);
            dedicated_cost += c;
            dedicated_launched += 1;
            (ev.t + cfg.startup_s, c, pl.shape.name.clone())
        };
        let summary = observed(job, ev.attempt, start, run_s, pl.cores, pl.mem_gib, oom);
        let prev_cost = outcomes[ev.job].as_ref().map_or(0.0, |o| o.cost_usd);
        if oom {
            ooms[ev.job] += 1;
        }
        outcomes[ev.job] = Some(JobOutcome {
            row: job.row,
            job_name: job.job_name.clone(),
            instance_type: name,
            attempts: ev.attempt,
            oom_kills: ooms[ev.job],
            cost_usd: prev_cost + cost,
            slowdown,
        });
        seq += 1;
        done.push(Done {
            t: start + run_s,
            seq,
            summary,
        });
        if oom && ev.attempt < MAX_ATTEMPTS {
            events.push(Event {
                t: start + run_s,
                seq,
                job: ev.job,
                attempt: ev.attempt + 1,
            });
        }
    }
    let (pool_cost, pool_launched) = pool.finish();
    let per_job: Vec<JobOutcome> = outcomes.into_iter().flatten().collect();
    finish_result(
        policy,
        dedicated_cost + pool_cost,
        dedicated_launched + pool_launched,
        per_job,
        unplaced,
    )
}

fn spec_for(job: &TraceJob) -> JobSpec {
    JobSpec {
        name: job.job_name.clone(),
        hints: Hints {
            vcpu: job.requested_vcpu,
            memory_gib: job.requested_mem_gib,
            ..Hints::default()
        },
        ..JobSpec::default()
    }
}

/// spotfit: the real sizing and ranking code; one spot instance per job, or a slot on a shared
/// host for the tiny/short class. The simulated world has one core speed (the trace's), so
/// ranking runs with the uniform speed model.
pub fn spotfit(trace: &Trace, catalog: &Catalog, cfg: &SimConfig) -> PolicyResult {
    let opts = RankOptions {
        default_region: cfg.region.clone(),
        limit: 1,
        on_demand_fallback_rows: 1,
        speed: SpeedModel::Uniform,
        startup_s: cfg.startup_s,
        ..RankOptions::default()
    };
    let placement = Placement {
        regions: vec![cfg.region.clone()],
        ..Placement::default()
    };
    replay(trace, cfg, Policy::Spotfit, |job, profile, t, shared_hosts| {
        let spec = spec_for(job);
        let mut req = sizing::size(&spec, profile, EPOCH_MS + (t * 1000.0) as i64);
        let job_mem_bytes = req.job_memory_bytes;
        if req.class == SizeClass::Shared {
            // A new shared host holds 2^k such jobs when k shared hosts are already busy:
            // one small host for a serial stream, capacity doubling through a burst (the
            // amortised-doubling rule), capped at 64 slots.
            let slots = 2f64.powi(shared_hosts.min(0) as i32);
            req.vcpu = req.vcpu.max((req.cores_used * slots).ceil() as u32);
            req.memory_bytes = (job_mem_bytes as f64 * slots) as u64 + OS_RESERVE_BYTES;
            req.expected_duration_s = None;
        }
        let top = rank(catalog, &req, &placement, Market::SpotThenOnDemand, &opts)
            .into_iter()
            .next()?;
        let shape = Shape {
            name: top.instance_type.clone(),
            vcpu: top.vcpu as f64,
            mem_gib: bytes_to_gib(top.memory_bytes),
            price: top.price_per_hour,
        };
        let job_mem = bytes_to_gib(req.job_memory_bytes);
        if req.class == SizeClass::Shared {
            let cores = req.cores_used.max(0.05);
            Some(Placement_ {
                shape,
                cores,
                mem_gib: job_mem,
                shared: true,
                slot: (cores, job_mem),
            })
        } else {
            // A dedicated instance gives the job all its cores and all memory but the reserve.
            let mem = bytes_to_gib(top.memory_bytes.saturating_sub(OS_RESERVE_BYTES));
            Some(Placement_ {
                cores: shape.vcpu,
                mem_gib: mem,
                shape,
                shared: false,
                slot: (0.0, 0.0),
            })
        }
    })
}

/// The Spare Cores resource-tracker rule: CPU = max(1, round(mean CPU)), memory = max peak ×
/// 1.2 over the job's finished runs (the request before any), on the cheapest on-demand type.
pub fn sparecores(trace: &Trace, catalog: &Catalog, cfg: &SimConfig) -> PolicyResult {
    let types = shapes(catalog.region(&cfg.region), Market::OnDemand, |_| true);
    let reserve = bytes_to_gib(OS_RESERVE_BYTES);
    replay(trace, cfg, Policy::SpareCores, |job, profile, _t, _| {
        let runs: Vec<&RunSummary> = profile.map(|p| p.recent.iter().collect()).unwrap_or_default();
        let (cpu, mem) = if runs.is_empty() {
            request(job)
        } else {
            let mean = runs.iter().map(|r| r.cpu.avg).sum::<f64>() / runs.len() as f64;
            let peak = runs.iter().map(|r| r.mem_max_bytes).max().unwrap_or(0);
            (mean.round().max(1.0), bytes_to_gib(peak) * 1.2)
        };
        let shape = cheapest_fit(&types, cpu, mem + reserve)?;
        Some(Placement_ {
            cores: shape.vcpu,
            mem_gib: shape.mem_gib - reserve,
            shape,
            shared: false,
            slot: (0.0, 0.0),
        })
    })
}

/// Every policy on one trace.
pub fn simulate(trace: &Trace, catalog: &Catalog, cfg: &SimConfig) -> Vec<PolicyResult> {
    vec![
        batch(trace, catalog, cfg, Market::OnDemand),
        batch(trace, catalog, cfg, Market::Spot),
        spotfit(trace, catalog, cfg),
        sparecores(trace, catalog, cfg),
        floor(trace, catalog, cfg),
    ]
}
