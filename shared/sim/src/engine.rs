//! The replay: every policy sees the trace's jobs in submit order and learns per job only from
//! runs that had finished before the job was submitted. Modelling assumptions are listed in
//! `docs/simulator.md`; each is named where it is applied.

use crate::trace::{Trace, TraceJob};
use serde::Serialize;
use spotfit_core::catalog::{Catalog, Offer};
use spotfit_core::cost::{billed_cost, MIN_BILLED_S};
use spotfit_core::profile::JobProfile;
use spotfit_core::ranking::{rank, RankOptions, SpeedModel};
use spotfit_core::shared_host::{
    self, admits, grant, packed_host, HostShape as Shape, HostView, Slot, SlotMode, SlotRequest, SlotWindow,
};
use spotfit_core::sizing::{self, MemoryHeadroom, SizeClass, SizeOptions, OS_RESERVE_BYTES};
use spotfit_core::spec::{Hints, JobSpec, Market, Placement};
use spotfit_core::summary::{percentile_sorted, CpuStats, RunStatus, RunSummary};
use spotfit_core::units::{bytes_to_gib, gib_to_bytes};
use std::borrow::Borrow;
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
    /// How long spotfit keeps an empty instance (shared host or a finished dedicated run's
    /// instance) warm for the next job before terminating it. [`keepalive_for`] by default:
    /// the ski-rental break-even.
    pub keepalive_s: f64,
    /// spotfit and the Spare Cores rule keep a finished dedicated run's instance warm for
    /// `keepalive_s` and give it to the next dedicated run it fits when that is no dearer.
    pub warm_dedicated: bool,
    /// spotfit's shared-host slots are memory reservations, not limits.
    pub soft_shared_memory: bool,
    /// A new shared host is the type with the lowest price per slot it will hold, counting only
    /// as many slots as the shared class runs now (else: the type ranking picks for the job
    /// that opens it).
    pub packed_shared_hosts: bool,
    /// spotfit's shared-host slots are CPU reservations (`cpu.weight` shares: a job may use the
    /// cores no co-tenant is using), not hard caps (`cpu.max`).
    pub soft_shared_cpu: bool,
    /// Ablations of sizing v3 (each off by default; docs/simulator.md): the fixed 99% memory
    /// bound instead of the priced risk; no CPU censoring (the recorder does not say what a
    /// run could use); no time price (max_slowdown unbounded); the request forgotten once a
    /// job has history (it no longer marks memory the batch service would run as safe).
    pub ablate_fixed_headroom: bool,
    pub ablate_no_censoring: bool,
    pub ablate_no_max_slowdown: bool,
    pub ablate_forget_request: bool,
    /// Ablation: runs carry no input size (no input-aware sizing).
    pub ablate_no_input: bool,
    /// Job name whose spotfit sizing decisions are logged run by run (`--explain JOB`).
    pub explain: Option<String>,
}

/// The ski-rental break-even keep-alive ([`shared_host::keepalive_s`], the rule the host pool
/// uses).
pub fn keepalive_for(startup_s: f64) -> f64 {
    shared_host::keepalive_s(startup_s)
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            region: "us-east-1".into(),
            startup_s: 60.0,
            keepalive_s: keepalive_for(60.0),
            warm_dedicated: false,
            soft_shared_memory: true,
            packed_shared_hosts: true,
            soft_shared_cpu: true,
            ablate_fixed_headroom: false,
            ablate_no_censoring: false,
            ablate_no_max_slowdown: false,
            ablate_forget_request: false,
            ablate_no_input: false,
            explain: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    BatchOnDemand,
    BatchSpot,
    Spotfit,
    #[serde(rename = "sparecores-rule")]
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
    /// Time the job ran, all its attempts (OOM-killed ones in full), / its true duration.
    pub slowdown: f64,
    /// The largest slowdown of one attempt (run time on the cores given / true duration).
    pub attempt_slowdown_max: f64,
    /// The job's `max_slowdown` (what sizing was asked to respect).
    pub max_slowdown: f64,
    /// Cost of the OOM-killed attempts of this job (the retries' waste).
    pub oom_cost_usd: f64,
    /// Largest over the attempts of run slowdown / what sizing allowed it: `max_slowdown` ×
    /// max(1, cores the job really kept busy / cores sizing expected it to). At most 1 when
    /// sizing honoured `max_slowdown` (a run can only be slower than allowed where it needed
    /// more cores than its history said).
    pub max_slowdown_ratio: f64,
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
    /// 95th percentile of per-job slowdown (nearest rank).
    pub p95_slowdown: f64,
    /// The job slowed most: (trace row, job name, slowdown).
    pub worst_slowdown: Option<(usize, String, f64)>,
    /// Cost of every OOM-killed attempt (charged in full).
    pub oom_retry_cost_usd: f64,
    pub instances_launched: usize,
    /// Jobs that found no instance at all (nothing in the catalog fits).
    pub unplaced: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_job: Vec<JobOutcome>,
    /// `--explain JOB`: one line per sizing decision of that job (spotfit only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub explain: Vec<String>,
}

/// A job running on a host: its slot ([`Slot`]: reservation and real use) until `end`.
#[derive(Debug, Clone, Copy)]
struct Alloc {
    end: f64,
    slot: Slot,
}

impl Borrow<Slot> for Alloc {
    fn borrow(&self) -> &Slot {
        &self.slot
    }
}

#[derive(Debug)]
struct Host {
    shape: Shape,
    launched: f64,
    allocs: Vec<Alloc>,
    last_end: f64,
}

/// Where a job was placed.
struct Placed {
    shape: Shape,
    start: f64,
    /// Memory the job may use before it is OOM-killed, GiB.
    mem_limit: f64,
    /// Cores the job may use: its slot, plus on a shares host the cores idle at its start.
    cores: f64,
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
    /// Slots are reservations (cgroup v2 `memory.low`, `cpu.weight`), not limits: a job may use
    /// memory and cores no one else holds, and is OOM-killed only when the host has none left.
    mode: SlotMode,
    /// Launching a new host terminates the idle hosts that could not take the job.
    retire_idle_on_launch: bool,
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
            mode: SlotMode::default(),
            retire_idle_on_launch: true,
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
            h.allocs.retain(|a| a.end > t);
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

    /// Places a job needing `cpu` cores, `mem` GiB and `gpu` GPUs for `dur` s at time `t`, whose
    /// true memory peak is `peak` GiB; `new_shape` picks the type of a new host. CPU jobs never
    /// go onto GPU hosts (a batch service keeps GPU hosts in their own queue).
    ///
    /// Which host takes it and what it is given are the host pool's rules
    /// ([`shared_host::admits`], [`shared_host::grant`]): on a soft-memory pool a host is chosen
    /// only where the memory really free (host memory less every running job's larger of slot
    /// and use) holds the slot, so a job within its reservation is never killed; a job above its
    /// slot may use what is free at its start (its co-tenants taken at their peaks for their
    /// whole run: conservative), else it is killed. (The host agent kills the job furthest over
    /// its reservation, [`shared_host::sacrifice`]; when that would be an earlier co-tenant the
    /// model still charges the one kill to the newcomer, keeping earlier runs' outcomes fixed.)
    ///
    /// On a soft-CPU pool a job is guaranteed its slot's cores and may use, beyond them, the
    /// cores its co-tenants leave idle at its start (each co-tenant taken at the larger of its
    /// slot and its use, for its whole run); `busy` is what the job would keep busy unhindered.
    /// A host takes the job only where `free_cpu` cores are really free (not only unreserved):
    /// the slot, or for a job whose need is not known yet the room to grow into.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        t: f64,
        cpu: f64,
        mem: f64,
        gpu: u32,
        dur: impl Fn(f64) -> f64,
        peak: f64,
        busy: f64,
        free_cpu: f64,
        new_shape: impl FnOnce() -> Option<Shape>,
    ) -> Option<Placed> {
        self.advance(t);
        let want = SlotRequest {
            cpu,
            mem,
            gpu,
            free_cpu,
        };
        for h in &mut self.hosts {
            let view = HostView {
                shape: &h.shape,
                reserve_gib: self.reserve_gib,
                slots: &h.allocs,
                mode: self.mode,
            };
            if admits(&view, &want) {
                let ready = h.launched + self.startup_s;
                let start = t.max(ready);
                let g = grant(&view, cpu, mem);
                let run_s = dur(g.cores);
                h.allocs.push(Alloc {
                    end: start + run_s,
                    slot: Slot {
                        cpu,
                        mem,
                        gpu,
                        used_mem: peak.min(g.mem_limit),
                        used_cpu: busy.min(g.cores),
                    },
                });
                h.last_end = h.last_end.max(start + run_s);
                return Some(Placed {
                    shape: h.shape.clone(),
                    start,
                    mem_limit: g.mem_limit,
                    cores: g.cores,
                });
            }
        }
        let shape = new_shape()?;
        if self.retire_idle_on_launch {
            // Scaling out with another shape: an idle host that could not take this job is
            // terminated now instead of idling out its keep-alive next to the new one.
            self.retire_idle(t);
        }
        let start = t + self.startup_s;
        // A new host: the slot is given what the rules give it on an empty host.
        let g = grant(
            &HostView::<Slot> {
                shape: &shape,
                reserve_gib: self.reserve_gib,
                slots: &[],
                mode: self.mode,
            },
            cpu,
            mem,
        );
        let run_s = dur(g.cores);
        self.launch(t, shape.clone(), cpu, mem, gpu, run_s, peak.min(g.mem_limit));
        if let Some(a) = self.hosts.last_mut().and_then(|h| h.allocs.last_mut()) {
            a.slot.used_cpu = busy.min(g.cores);
        }
        Some(Placed {
            shape,
            start,
            mem_limit: g.mem_limit,
            cores: g.cores,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn launch(&mut self, t: f64, shape: Shape, cpu: f64, mem: f64, gpu: u32, dur: f64, used_mem: f64) {
        let start = t + self.startup_s;
        self.launched += 1;
        self.hosts.push(Host {
            shape,
            launched: t,
            allocs: vec![Alloc {
                end: start + dur,
                slot: Slot {
                    cpu,
                    mem,
                    gpu,
                    used_mem,
                    used_cpu: cpu,
                },
            }],
            last_end: start + dur,
        });
    }

    /// Terminates every idle host now (billed to `t`).
    fn retire_idle(&mut self, t: f64) {
        let mut cost = 0.0;
        self.hosts.retain(|h| {
            if h.allocs.is_empty() {
                cost += billed_cost(h.shape.price, t.max(h.last_end) - h.launched);
                false
            } else {
                true
            }
        });
        self.cost += cost;
    }

    /// Number of jobs running or waiting for their host at `t`.
    fn running(&self, t: f64) -> usize {
        self.hosts
            .iter()
            .flat_map(|h| h.allocs.iter())
            .filter(|a| a.end > t)
            .count()
    }

    /// The cheapest idle warm host that `accept`s (for a dedicated run), after freeing what
    /// has ended by `t`.
    fn find_warm(&mut self, t: f64, accept: impl Fn(&Shape) -> bool) -> Option<usize> {
        self.advance(t);
        self.hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.allocs.is_empty() && accept(&h.shape))
            .min_by(|a, b| a.1.shape.price.total_cmp(&b.1.shape.price))
            .map(|(i, _)| i)
    }

    /// Gives host `i` whole to a run of `dur` s from `t`; returns its start.
    fn occupy(&mut self, i: usize, t: f64, dur: f64) -> f64 {
        let ready = self.startup_s;
        let h = &mut self.hosts[i];
        let start = t.max(h.launched + ready);
        h.allocs.push(Alloc {
            end: start + dur,
            slot: Slot {
                cpu: h.shape.vcpu,
                mem: h.shape.mem_gib,
                gpu: h.shape.gpu,
                used_mem: 0.0,
                used_cpu: h.shape.vcpu,
            },
        });
        h.last_end = h.last_end.max(start + dur);
        start
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

/// The region's types that `filter` keeps (never burstable or non-GPU accelerator types),
/// priced in `market`, cheapest first.
fn shapes(offers: &[Offer], market: Market, filter: impl Fn(&Offer) -> bool) -> Vec<Shape> {
    let mut v: Vec<Shape> = offers
        .iter()
        .filter(|o| filter(o) && !o.burstable && !o.accelerator)
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
                gpu: o.gpu,
            })
        })
        .collect();
    // Cheapest first: "the smallest type that fits" read in the baseline's favour.
    v.sort_by(|a, b| a.price.total_cmp(&b.price).then_with(|| a.name.cmp(&b.name)));
    v
}

/// The cheapest shape with the cores, memory and GPUs; a CPU job never gets a GPU type.
fn cheapest_fit(shapes: &[Shape], cpu: f64, mem_gib: f64, gpu: u32) -> Option<Shape> {
    shapes
        .iter()
        .find(|s| s.vcpu + 1e-9 >= cpu && s.mem_gib + 1e-9 >= mem_gib && (gpu == 0) == (s.gpu == 0) && s.gpu >= gpu)
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
    let mut slow: Vec<f64> = per_job.iter().map(|j| j.slowdown).collect();
    slow.sort_by(f64::total_cmp);
    // The core's nearest-rank percentile (what run summaries use); no job is no slowdown.
    let p95 = if slow.is_empty() {
        1.0
    } else {
        percentile_sorted(&slow, 95.0)
    };
    let worst = per_job
        .iter()
        .max_by(|a, b| a.slowdown.total_cmp(&b.slowdown).then(b.row.cmp(&a.row)))
        .map(|j| (j.row, j.job_name.clone(), j.slowdown));
    PolicyResult {
        policy,
        total_cost_usd: total,
        jobs: per_job.len(),
        attempts: per_job.iter().map(|j| j.attempts as usize).sum(),
        oom_retry_rate: per_job.iter().filter(|j| j.oom_kills > 0).count() as f64 / n,
        mean_slowdown: per_job.iter().map(|j| j.slowdown).fold(0.0, |a, b| a + b) / n,
        p95_slowdown: p95,
        worst_slowdown: worst,
        oom_retry_cost_usd: per_job.iter().map(|j| j.oom_cost_usd).sum(),
        instances_launched: launched,
        unplaced,
        per_job,
        explain: Vec::new(),
    }
}

/// The managed batch service: requests as given, first fit, new smallest type, empty → gone.
/// Assumptions: requests are soft CPU shares (no slowdown) and its memory limits were enough
/// (every trace job completed under them), so it has neither OOM kills nor slowdowns.
pub fn batch(trace: &Trace, catalog: &Catalog, cfg: &SimConfig, market: Market) -> PolicyResult {
    let offers = catalog.region(&cfg.region);
    // GPU jobs go to the current GPU families, as a batch service's GPU queue would.
    let types = shapes(offers, market, |o| {
        o.current_generation && (is_batch_family(&o.family) || o.gpu > 0)
    });
    let mut pool = Pool::new(0.0, cfg.startup_s, 0.0);
    let mut per_job = Vec::with_capacity(trace.jobs.len());
    let mut unplaced = 0;
    for job in &trace.jobs {
        let (cpu, mem) = request(job);
        match pool.place(
            job.submit_s,
            cpu,
            mem,
            job.gpu,
            |_| job.duration_s,
            mem,
            cpu,
            cpu,
            || cheapest_fit(&types, cpu, mem, job.gpu),
        ) {
            Some(Placed { shape, .. }) => per_job.push(JobOutcome {
                row: job.row,
                job_name: job.job_name.clone(),
                cost_usd: shared_host::slot_cost(&shape, shared_host::slot_share(&shape, cpu, mem), job.duration_s),
                instance_type: shape.name,
                attempts: 1,
                oom_kills: 0,
                slowdown: 1.0,
                attempt_slowdown_max: 1.0,
                max_slowdown: 1.0,
                oom_cost_usd: 0.0,
                max_slowdown_ratio: 1.0,
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
            // A GPU job's share of a GPU type counts its GPUs too; a CPU job uses CPU types.
            let best = types
                .iter()
                .filter(|s| (job.gpu == 0) == (s.gpu == 0))
                .map(|s| {
                    let gpu_share = if s.gpu > 0 { job.gpu as f64 / s.gpu as f64 } else { 0.0 };
                    (
                        s,
                        s.price
                            * (job.cpu_avg_cores / s.vcpu)
                                .max(job.mem_peak_gib / s.mem_gib)
                                .max(gpu_share),
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
                attempt_slowdown_max: 1.0,
                max_slowdown: 1.0,
                oom_cost_usd: 0.0,
                max_slowdown_ratio: 1.0,
            }
        })
        .collect();
    let total = per_job.iter().map(|j| j.cost_usd).fold(0.0, |a, b| a + b);
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
struct Decision {
    /// The type of a new instance for the run (for a shared slot, of a new host that admits it).
    shape: Shape,
    shared: bool,
    /// Slot on a shared host (cores, GiB), when shared.
    slot: (f64, f64),
    /// What a warm instance must have to take a dedicated run instead (vCPUs, GiB incl. the
    /// reserve, GPUs), the expected run time when known, and the expected bill of the new
    /// instance the policy would buy.
    need: (f64, f64, u32),
    est_run_s: Option<f64>,
    /// The job's max_slowdown.
    max_slowdown: f64,
    /// Cores that must be really free on a shared host for the slot (its reservation, or the
    /// room a job whose need is unknown may grow into).
    probe_cores: f64,
    /// Cores sizing expects the job to keep busy (None: a policy without that notion).
    wanted_cores: Option<f64>,
    /// `--explain`: the decision in words (the outcome is appended by the replay).
    explain: Option<String>,
}

impl Decision {
    /// Whether an idle warm instance of `w` should take this dedicated run instead of a new
    /// `self.shape`: it fits, and its bill for the run is no more than the new one's
    /// (start-up and minimum billing included). Run time unknown: only when it is no dearer.
    fn warm_accepts(&self, w: &Shape, startup_s: f64) -> bool {
        let fits = w.vcpu + 1e-9 >= self.need.0
            && w.mem_gib + 1e-9 >= self.need.1
            && w.gpu >= self.need.2
            && (self.need.2 == 0) == (w.gpu == 0);
        fits && match self.est_run_s {
            Some(d) => w.price * d <= self.shape.price * (startup_s + d).max(MIN_BILLED_S),
            None => w.price <= self.shape.price,
        }
    }
}

/// What the agent would have measured: CPU capped by the cores given; on an OOM kill the
/// memory stops at the limit.
#[allow(clippy::too_many_arguments)]
fn observed(
    job: &TraceJob,
    attempt: u32,
    start: f64,
    run_s: f64,
    cores: f64,
    mem_gib: f64,
    oom: bool,
    report_given: bool,
) -> RunSummary {
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
        // The traces give GPU counts only: seen as busy, GPU memory unknown.
        gpu: (job.gpu > 0).then_some(spotfit_core::summary::GpuStats {
            count: job.gpu,
            util_avg_pct: 100.0,
            util_max_pct: 100.0,
            mem_max_bytes: 0,
        }),
        oom_killed: oom,
        status: if oom {
            RunStatus::OomKilled
        } else {
            RunStatus::Succeeded
        },
        // What the recorder knows: the instance's vCPUs, or the slot plus the idle cores it
        // could take. A cap (cpu.max) would show as throttling; shares never throttle.
        cpu_given_cores: report_given.then_some(cores),
        input_bytes: job.input_bytes,
        ..Default::default()
    }
}

/// Replays the trace under a sizing policy that learns from finished runs.
fn replay(
    trace: &Trace,
    cfg: &SimConfig,
    policy: Policy,
    shared_types: &[Shape],
    mut decide: impl FnMut(&TraceJob, Option<&JobProfile>, f64) -> Option<Decision>,
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
    let reserve = bytes_to_gib(OS_RESERVE_BYTES);
    let mut pool = Pool::new(cfg.keepalive_s, cfg.startup_s, reserve);
    pool.mode = SlotMode {
        soft_memory: cfg.soft_shared_memory,
        soft_cpu: cfg.soft_shared_cpu,
    };
    let mut explain: Vec<String> = Vec::new();
    // Finished dedicated runs' instances, kept warm for the next dedicated run. Without the
    // warm pool, a keep-alive of 0: terminated as soon as the run ends.
    let mut warm = Pool::new(
        if cfg.warm_dedicated { cfg.keepalive_s } else { 0.0 },
        cfg.startup_s,
        reserve,
    );
    warm.retire_idle_on_launch = false;
    let mut slot_history = SlotWindow::default();
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
        let Some(pl) = decide(job, profiles.get(&job.job_name), ev.t) else {
            unplaced += 1;
            continue;
        };
        // A job given fewer cores than it keeps busy is slowed in proportion.
        let run_for = |cores: f64| job.duration_s * (job.cpu_avg_cores / cores.max(1e-9)).max(1.0);
        // An OOM-killed attempt is charged its full run time: the peak may come at the end.
        let (start, cost, name, cores, mem_limit, run_s) = if pl.shared {
            // Capacity is counted only for load that is both present now (the slots running, plus
            // this one) and sustained (the time-average over the recent slots).
            let load = if cfg.packed_shared_hosts && !shared_types.is_empty() {
                let now = pool.running(ev.t) as f64 + 1.0;
                slot_history.load(ev.t).map(|l| l.capped(now))
            } else {
                None
            };
            // Without a load estimate, the type ranking picked for a new instance for this job
            // (`Requirement::new_instance`: with the room the slot's admission needs; ranking
            // weighs the interruption risk too). A packed host must have that room as well
            // (`probe` cores).
            let probe = pl.probe_cores.max(pl.slot.0);
            let new_host = || {
                load.and_then(|load| packed_host(shared_types, reserve, probe, pl.slot.1, load))
                    .cloned()
                    .or(Some(pl.shape.clone()))
            };
            match pool.place(
                ev.t,
                pl.slot.0,
                pl.slot.1,
                0,
                run_for,
                job.mem_peak_gib,
                job.cpu_avg_cores,
                probe,
                new_host,
            ) {
                Some(Placed {
                    shape,
                    start,
                    mem_limit,
                    cores,
                }) => {
                    let run_s = run_for(cores);
                    // The mean slot counts the cores a slot really held (its use when above it).
                    let held = pl.slot.0.max(job.cpu_avg_cores.min(cores));
                    slot_history.push(start, start + run_s, held, pl.slot.1);
                    let share = shared_host::slot_share(&shape, pl.slot.0, pl.slot.1);
                    (
                        start,
                        shared_host::slot_cost(&shape, share, run_s),
                        format!("shared:{}", shape.name),
                        cores,
                        mem_limit,
                        run_s,
                    )
                }
                None => {
                    unplaced += 1;
                    continue;
                }
            }
        } else {
            let hit = if cfg.warm_dedicated {
                warm.find_warm(ev.t, |w| pl.warm_accepts(w, cfg.startup_s))
            } else {
                None
            };
            // A dedicated instance gives the job all its cores and all memory but the reserve.
            let shape = hit.map_or_else(|| pl.shape.clone(), |i| warm.hosts[i].shape.clone());
            let run_s = run_for(shape.vcpu);
            let (start, cost) = match hit {
                Some(i) => (warm.occupy(i, ev.t, run_s), shape.price * run_s / 3600.0),
                None => {
                    warm.launch(ev.t, shape.clone(), shape.vcpu, shape.mem_gib, shape.gpu, run_s, 0.0);
                    (ev.t + cfg.startup_s, billed_cost(shape.price, cfg.startup_s + run_s))
                }
            };
            let name = if hit.is_some() {
                format!("warm:{}", shape.name)
            } else {
                shape.name.clone()
            };
            (start, cost, name, shape.vcpu, shape.mem_gib - reserve, run_s)
        };
        let attempt_slowdown = if job.duration_s > 0.0 {
            run_s / job.duration_s
        } else {
            (job.cpu_avg_cores / cores.max(1e-9)).max(1.0)
        };
        let oom = job.mem_peak_gib > mem_limit + 1e-12;
        let summary = observed(
            job,
            ev.attempt,
            start,
            run_s,
            cores,
            mem_limit,
            oom,
            !cfg.ablate_no_censoring,
        );
        let prev = outcomes[ev.job].take();
        if oom {
            ooms[ev.job] += 1;
        }
        if let Some(line) = pl.explain {
            explain.push(format!(
                "{line} → {name}: ran {run_s:.1} s on {cores:.2} cores ({attempt_slowdown:.3}× its {:.1} s), peak {:.2} of {:.2} GiB{}",
                job.duration_s,
                job.mem_peak_gib,
                mem_limit,
                if oom { ", OOM-KILLED" } else { "" }
            ));
        }
        let (prev_cost, prev_run, prev_max, prev_oom_cost, prev_ratio) =
            prev.as_ref().map_or((0.0, 0.0, 0.0, 0.0, 0.0), |o| {
                (
                    o.cost_usd,
                    o.slowdown * job.duration_s.max(0.0),
                    o.attempt_slowdown_max,
                    o.oom_cost_usd,
                    o.max_slowdown_ratio,
                )
            });
        let allowed = pl.max_slowdown
            * pl.wanted_cores
                .map_or(1.0, |w| (job.cpu_avg_cores / w.max(1e-9)).max(1.0));
        let ratio = if pl.wanted_cores.is_some() {
            attempt_slowdown / allowed
        } else {
            0.0
        };
        let total_slow = if job.duration_s > 0.0 {
            (prev_run + run_s) / job.duration_s
        } else {
            attempt_slowdown.max(prev_max)
        };
        outcomes[ev.job] = Some(JobOutcome {
            row: job.row,
            job_name: job.job_name.clone(),
            instance_type: name,
            attempts: ev.attempt,
            oom_kills: ooms[ev.job],
            cost_usd: prev_cost + cost,
            slowdown: total_slow,
            attempt_slowdown_max: attempt_slowdown.max(prev_max),
            max_slowdown: pl.max_slowdown,
            oom_cost_usd: prev_oom_cost + if oom { cost } else { 0.0 },
            max_slowdown_ratio: ratio.max(prev_ratio),
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
    let (warm_cost, warm_launched) = warm.finish();
    let per_job: Vec<JobOutcome> = outcomes.into_iter().flatten().collect();
    let mut r = finish_result(
        policy,
        warm_cost + pool_cost,
        warm_launched + pool_launched,
        per_job,
        unplaced,
    );
    r.explain = explain;
    r
}

fn spec_for(job: &TraceJob) -> JobSpec {
    JobSpec {
        name: job.job_name.clone(),
        hints: Hints {
            vcpu: job.requested_vcpu,
            memory_gib: job.requested_mem_gib,
            gpu: (job.gpu > 0).then_some(job.gpu),
            input_bytes: job.input_bytes,
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
    // Shared hosts: spot CPU types of the region (the class never has GPUs).
    let shared_types = shapes(catalog.region(&cfg.region), Market::Spot, |o| o.gpu == 0);
    let reserve_bytes = OS_RESERVE_BYTES;
    // The fixed-headroom ablation is the core's own rule switched, not a re-sizing here.
    let size_opts = SizeOptions {
        memory_headroom: if cfg.ablate_fixed_headroom {
            MemoryHeadroom::FixedQuantile
        } else {
            MemoryHeadroom::Priced
        },
    };
    replay(trace, cfg, Policy::Spotfit, &shared_types, |job, profile, t| {
        let mut spec = spec_for(job);
        if cfg.ablate_no_max_slowdown {
            spec.max_slowdown = Some(100.0);
        }
        if cfg.ablate_no_input {
            spec.hints.input_bytes = None;
        }
        if cfg.ablate_forget_request && profile.is_some_and(|p| p.usable_runs().next().is_some()) {
            spec.hints.vcpu = None;
            spec.hints.memory_gib = None;
        }
        let req = sizing::size_with(&spec, profile, EPOCH_MS + (t * 1000.0) as i64, &size_opts);
        let top = rank(
            catalog,
            &req.new_instance(),
            &placement,
            Market::SpotThenOnDemand,
            &opts,
        )
        .into_iter()
        .next()?;
        let shape = Shape {
            name: top.instance_type.clone(),
            vcpu: top.vcpu as f64,
            mem_gib: bytes_to_gib(top.memory_bytes),
            price: top.price_per_hour,
            gpu: top.gpu,
        };
        let job_mem = bytes_to_gib(req.job_memory_bytes);
        let need = (req.vcpu as f64, bytes_to_gib(req.memory_bytes), req.gpu);
        let shared = req.class == SizeClass::Shared;
        let slot = if shared {
            (req.slot_cores(), job_mem)
        } else {
            (0.0, 0.0)
        };
        let explain = (cfg.explain.as_deref() == Some(job.job_name.as_str())).then(|| {
            format!(
                "row {} t={:.0}s {:?}: wants {:.2} cores{} → {} vCPU, memory ≥ {:.2} GiB{}; {} {} {:.4} $/h, P(OOM) {:.4}, E[slowdown] {:.3}, E[cost] {} [{}]",
                job.row,
                t,
                req.basis,
                req.cores_used,
                if req.cpu_need_unknown { " (need not known yet)" } else { "" },
                req.vcpu,
                bytes_to_gib(req.memory_bytes.saturating_sub(reserve_bytes)),
                if shared {
                    format!(", shared slot {:.2} cores / {:.2} GiB", slot.0, slot.1)
                } else {
                    String::new()
                },
                if shared { "host" } else { "type" },
                top.instance_type,
                top.price_per_hour,
                top.oom_risk,
                top.expected_slowdown,
                top.est_cost_usd.map_or("?".to_string(), |c| format!("{c:.5} $")),
                req.notes.join("; ")
            )
        });
        Some(Decision {
            shape,
            shared,
            slot,
            need,
            est_run_s: top.est_duration_s,
            max_slowdown: req.max_slowdown,
            probe_cores: if shared { req.slot_admission_cores() } else { 0.0 },
            wanted_cores: Some(req.cores_used),
            explain,
        })
    })
}

/// The Spare Cores resource-tracker rule: CPU = max(1, round(mean CPU)), memory = max peak ×
/// 1.2 over the job's finished runs (the request before any), on the cheapest on-demand type.
pub fn sparecores(trace: &Trace, catalog: &Catalog, cfg: &SimConfig) -> PolicyResult {
    let types = shapes(catalog.region(&cfg.region), Market::OnDemand, |_| true);
    let reserve = bytes_to_gib(OS_RESERVE_BYTES);
    replay(trace, cfg, Policy::SpareCores, &[], |job, profile, _t| {
        let runs: Vec<&RunSummary> = profile.map(|p| p.recent.iter().collect()).unwrap_or_default();
        let (cpu, mem) = if runs.is_empty() {
            request(job)
        } else {
            let mean = runs.iter().map(|r| r.cpu.avg).sum::<f64>() / runs.len() as f64;
            let peak = runs.iter().map(|r| r.mem_max_bytes).max().unwrap_or(0);
            (mean.round().max(1.0), bytes_to_gib(peak) * 1.2)
        };
        let shape = cheapest_fit(&types, cpu, mem + reserve, job.gpu)?;
        // Expected run time: the mean of its finished runs (what the rule's tracker records).
        let est_run_s = (!runs.is_empty()).then(|| runs.iter().map(|r| r.duration_s).sum::<f64>() / runs.len() as f64);
        Some(Decision {
            shape,
            shared: false,
            slot: (0.0, 0.0),
            need: (cpu, mem + reserve, job.gpu),
            est_run_s,
            max_slowdown: spotfit_core::spec::DEFAULT_MAX_SLOWDOWN,
            probe_cores: 0.0,
            wanted_cores: None,
            explain: None,
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
