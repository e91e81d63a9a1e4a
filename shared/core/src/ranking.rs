//! Ranking: the instance types that fit a requirement and a placement, cheapest expected cost
//! of the run first — size and type chosen together. Expected cost = price × predicted
//! duration on that type (the duration scales with the benchmark score that fits the cores the
//! job really uses, so extra cores do not make a single-threaded job faster, and a type with
//! fewer cores than the job keeps busy slows it) × (1 + P(OOM on that type) × (1 + the retry's
//! memory factor)) + the spot interruption risk as an expected re-run cost. P comes from the
//! requirement's predictive distribution of peak memory. A type whose expected slowdown
//! (CPU shortage × (1 + P)) exceeds the spec's `max_slowdown` is ranked after every type that
//! respects it. On-demand rows follow as the fallback for `spot-then-on-demand`.

use crate::catalog::{Catalog, Offer, ScoreSource, SpotSource};
use crate::cost::{advisor_rate_per_h, billed_cost, ebs_per_hour, interruption_penalty_at, learned_rate, RateSource};
use crate::machine_image::{root_volume_gib, MachineImage};
use crate::ports::PoolExposure;
use crate::prices::{PriceOverlay, PriceSource};
use crate::sizing::{Requirement, OS_RESERVE_BYTES, STARTUP_OVERHEAD_S};
use crate::spec::{Arch, Market, Placement};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub instance_type: String,
    pub region: String,
    /// AZ id when the catalog knows the type is offered there.
    pub az: Option<String>,
    pub market: Market,
    pub spot_per_hour: Option<f64>,
    pub on_demand_per_hour: Option<f64>,
    /// The price this candidate would be bought at.
    pub price_per_hour: f64,
    pub vcpu: u32,
    pub memory_bytes: u64,
    pub gpu: u32,
    pub gpu_memory_bytes: u64,
    /// Benchmark score that fits the cores the job uses.
    pub score: f64,
    /// price_per_hour / score (lower is better).
    pub cost_per_perf: f64,
    pub est_duration_s: Option<f64>,
    pub est_cost_usd: Option<f64>,
    pub interruption_bucket: Option<u8>,
    /// Expected cost of an interruption (re-run of the lost work), included in `est_cost_usd`.
    #[serde(default)]
    pub interruption_penalty_usd: Option<f64>,
    /// The ranking key: expected cost of this run, or of a nominal hour when the duration is
    /// unknown. Lower is better.
    #[serde(default)]
    pub rank_cost: f64,
    /// P(the run's peak memory exceeds what this type leaves the job): its OOM risk. (This and
    /// the next two are left out of the JSON at their no-risk, no-slowdown defaults, so states
    /// written before v3 keep their shape.)
    #[serde(default, skip_serializing_if = "is_zero")]
    pub oom_risk: f64,
    /// Expected cost of that risk (the failed attempt and the retry), in `est_cost_usd`.
    #[serde(default, skip_serializing_if = "no_cost")]
    pub oom_cost_usd: Option<f64>,
    /// Expected run time on this type / run time on the cores the job wants (OOM retries
    /// counted at their probability); at most the requirement's `max_slowdown` unless no type
    /// allows that.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub expected_slowdown: f64,
    #[serde(default)]
    pub spot_source: SpotSource,
    #[serde(default)]
    pub score_source: ScoreSource,
    /// The type's architecture (which image variant it boots).
    #[serde(default = "x86_64", skip_serializing_if = "is_x86_64")]
    pub arch: Arch,
    /// The image the run boots on this type, for this job (container or not, GPU or not).
    #[serde(default, skip_serializing_if = "is_default_image")]
    pub machine_image: MachineImage,
    /// The run's root volume on this type, GiB ([`root_volume_gib`]); 0 in states written
    /// before volumes were sized (the launch template's).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub root_volume_gib: u32,
    /// What that volume costs per hour, USD: part of `est_cost_usd`, `rank_cost` and the
    /// attempt's cost, not of `price_per_hour` (the instance's).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub storage_per_hour: f64,
    /// Where `price_per_hour` came from: the snapshot (left out of the JSON), or the live spot
    /// price of this (type, AZ) pool from the price overlay.
    #[serde(default, skip_serializing_if = "PriceSource::is_snapshot")]
    pub price_source: PriceSource,
    /// Whether the interruption risk in `est_cost_usd` is the Advisor's bucket (left out of the
    /// JSON) or this pool's own history ([`crate::cost::learned_rate`]), and then its rate.
    #[serde(default, skip_serializing_if = "RateSource::is_advisor")]
    pub interruption_source: RateSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interruption_rate_per_h: Option<f64>,
}

/// The deployment's own interruption history, as ranking looks it up: per (type, AZ id), and
/// per type over its zones for a row whose zone is open.
#[derive(Debug, Clone, Default)]
pub struct PoolHistory {
    by_pool: HashMap<(String, String), (f64, u32)>,
    by_type: HashMap<String, (f64, u32)>,
}

impl PoolHistory {
    pub fn new(rows: &[PoolExposure]) -> PoolHistory {
        let mut h = PoolHistory::default();
        for r in rows {
            let add = |e: &mut (f64, u32)| {
                e.0 += r.hours.max(0.0);
                e.1 += r.interruptions;
            };
            add(h.by_pool.entry((r.instance_type.clone(), r.az.clone())).or_default());
            add(h.by_type.entry(r.instance_type.clone()).or_default());
        }
        h
    }

    /// (instance-hours, interruptions) of `instance_type` in `az` (all its zones when None).
    pub fn of(&self, instance_type: &str, az: Option<&str>) -> (f64, u32) {
        match az {
            Some(z) => self
                .by_pool
                .get(&(instance_type.to_string(), z.to_string()))
                .copied()
                .unwrap_or_default(),
            None => self.by_type.get(instance_type).copied().unwrap_or_default(),
        }
    }
}

fn x86_64() -> Arch {
    Arch::X86_64
}
fn is_x86_64(a: &Arch) -> bool {
    *a == Arch::X86_64
}
fn is_default_image(i: &MachineImage) -> bool {
    *i == MachineImage::default()
}
fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}
fn no_cost(v: &Option<f64>) -> bool {
    v.is_none_or(|c| c == 0.0)
}
fn one() -> f64 {
    1.0
}
fn is_one(v: &f64) -> bool {
    *v == 1.0
}

/// How run time depends on the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SpeedModel {
    /// Duration scales with the benchmark score that fits the cores used (the default).
    #[default]
    Benchmark,
    /// Every type runs a core at the same speed; only a shortage of vCPUs slows the job
    /// (the simulator's world, whose traces carry no per-machine speed).
    Uniform,
}

/// Region ranked for a placement that names none when the caller has no region of its own
/// (local estimates, [`JobSpec::validate`](crate::spec::JobSpec::validate)): the catalog's most
/// complete one.
pub const DEFAULT_REGION: &str = "us-east-1";

#[derive(Debug, Clone)]
pub struct RankOptions {
    /// Default region when the placement names none.
    pub default_region: String,
    /// Most rows to return (0 = all); on-demand fallback rows come on top.
    pub limit: usize,
    /// On-demand rows appended for `spot-then-on-demand`.
    pub on_demand_fallback_rows: usize,
    /// Burstable (t*) types throttle a busy job to their baseline once credits run out.
    pub include_burstable: bool,
    pub speed: SpeedModel,
    /// Billed start-up overhead per instance, seconds.
    pub startup_s: f64,
    /// Single-thread score of the machine the history was measured on; None = the median of
    /// the catalog's region (history from a typical instance).
    pub reference_single_score: Option<f64>,
    /// Live spot prices per (type, AZ) to rank on instead of the snapshot's regional estimate
    /// (the caller has checked the overlay is fresh: [`crate::prices::freshness`]). A type it
    /// quotes is ranked once per quoted AZ at that AZ's price; one it does not keeps the
    /// snapshot's price.
    pub live: Option<std::sync::Arc<PriceOverlay>>,
    /// The AZ ids live prices are ranked in when the placement names no zone: the deployment's
    /// subnets (a pool it cannot launch into is not worth a candidate's place); empty = every
    /// quoted zone.
    pub live_zones: Vec<String>,
    /// The deployment's interruption history per pool: a spot row's interruption risk is the
    /// pool's learned rate ([`crate::cost::learned_rate`]) instead of its Advisor bucket's.
    pub history: Option<std::sync::Arc<PoolHistory>>,
}

impl Default for RankOptions {
    fn default() -> Self {
        RankOptions {
            default_region: DEFAULT_REGION.into(),
            limit: 0,
            on_demand_fallback_rows: 3,
            include_burstable: false,
            speed: SpeedModel::Benchmark,
            startup_s: STARTUP_OVERHEAD_S,
            reference_single_score: None,
            live: None,
            live_zones: Vec::new(),
            history: None,
        }
    }
}

/// Duration used for the ranking key when the job's duration is unknown.
const NOMINAL_DURATION_S: f64 = 3600.0;

pub(crate) fn family_matches(pattern: &str, family: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => family.starts_with(prefix),
        None => pattern == family,
    }
}

pub(crate) fn looks_like_az_id(s: &str) -> bool {
    s.contains("-az")
}

/// The regions [`rank`] searches for `placement`: those it names, else `default_region`.
pub fn ranked_regions<'a>(placement: &'a Placement, default_region: &'a str) -> Vec<&'a str> {
    if placement.regions.is_empty() {
        vec![default_region]
    } else {
        placement.regions.iter().map(String::as_str).collect()
    }
}

/// The regions of `launch_regions` that `placement` may be ranked in: all of them when it names
/// none, else the ones it names. `Err` says why none is left (it names only other regions), as
/// the reason of a `placement.regions` error.
pub fn launch_scope<'a>(placement: &Placement, launch_regions: &[&'a str]) -> Result<Vec<&'a str>, String> {
    if placement.regions.is_empty() {
        return Ok(launch_regions.to_vec());
    }
    let scope: Vec<&str> = launch_regions
        .iter()
        .copied()
        .filter(|r| placement.regions.iter().any(|p| p == r))
        .collect();
    if scope.is_empty() {
        return Err(format!(
            "{:?} names no region this deployment can launch in (it launches in {})",
            placement.regions,
            launch_regions.join(", ")
        ));
    }
    Ok(scope)
}

/// What an offer must have: a sized requirement's floors, or the ones a spec's bounds and hints
/// set when the spec is validated.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Floors<'a> {
    pub vcpu: u32,
    pub memory_bytes: u64,
    pub gpu: u32,
    /// Memory per GPU.
    pub gpu_memory_bytes: u64,
    /// Allowed architectures (empty = any).
    pub architectures: &'a [Arch],
}

impl<'a> From<&'a Requirement> for Floors<'a> {
    fn from(r: &'a Requirement) -> Self {
        Floors {
            vcpu: r.vcpu,
            memory_bytes: r.memory_bytes,
            gpu: r.gpu,
            gpu_memory_bytes: r.gpu_memory_bytes,
            architectures: &r.architectures,
        }
    }
}

/// The first rule of [`fits`] an offer breaks, in the order [`misfit`] checks them. Spec
/// validation blames the field of the furthest rule any offer got to, so the order goes from
/// what the placement names, through what the job needs, to the kinds of type never ranked
/// unasked: a spec whose only fit is burstable or of a previous generation is told so, not
/// that no type has its vCPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Misfit {
    /// Its family is not in `placement.allowed_families`.
    FamilyNotAllowed,
    /// Its family is in `placement.excluded_families`.
    FamilyExcluded,
    /// An architecture the placement or the requirement does not allow.
    Architecture,
    /// GPUs or accelerators, which a job asking for no GPU would leave idle.
    GpuHost,
    Vcpu,
    Memory,
    Gpu,
    GpuMemory,
    /// A burstable (t*) type, and the options leave them out.
    Burstable,
    /// A previous-generation type whose family the placement does not name exactly.
    PreviousGeneration,
    /// AWS publishes no image that runs a job on it (an arm64 GPU type: no GPU-optimized
    /// AL2023 image for arm64, see [`MachineImage::for_job`]).
    NoMachineImage,
}

/// The first rule of [`fits`] that `o` breaks for `need` and `placement` (not the market, the
/// region or the zones); None when it fits.
pub fn misfit(o: &Offer, need: &Floors<'_>, placement: &Placement, opts: &RankOptions) -> Option<Misfit> {
    if !placement.allowed_families.is_empty()
        && !placement.allowed_families.iter().any(|f| family_matches(f, &o.family))
    {
        return Some(Misfit::FamilyNotAllowed);
    }
    if placement.excluded_families.iter().any(|f| family_matches(f, &o.family)) {
        return Some(Misfit::FamilyExcluded);
    }
    let allows = |archs: &[Arch]| archs.is_empty() || archs.contains(&o.arch);
    if !allows(need.architectures) || !allows(&placement.architectures) {
        return Some(Misfit::Architecture);
    }
    // GPU and accelerator hosts cost a premium for hardware a CPU job leaves idle.
    if need.gpu == 0 && (o.gpu > 0 || o.accelerator) {
        return Some(Misfit::GpuHost);
    }
    if o.vcpu < need.vcpu {
        return Some(Misfit::Vcpu);
    }
    if o.memory_bytes < need.memory_bytes {
        return Some(Misfit::Memory);
    }
    if need.gpu > 0 && o.gpu < need.gpu {
        return Some(Misfit::Gpu);
    }
    if need.gpu > 0 && o.gpu_memory_bytes < need.gpu_memory_bytes {
        return Some(Misfit::GpuMemory);
    }
    // Whether the job is a container does not matter here: only a GPU type can lack an image.
    if MachineImage::for_job(true, o.gpu, o.arch).is_none() {
        return Some(Misfit::NoMachineImage);
    }
    // A busy job is throttled to a burstable type's baseline once its credits run out.
    if o.burstable && !opts.include_burstable {
        return Some(Misfit::Burstable);
    }
    // Previous-generation types cost more per unit of work and are being retired; only a spec
    // that names the family itself (not a wildcard) gets one.
    if !o.current_generation && !placement.allowed_families.iter().any(|f| f == &o.family) {
        return Some(Misfit::PreviousGeneration);
    }
    None
}

/// Whether `o` offers what `req` needs and `placement` allows (not the market or the region).
pub fn fits(o: &Offer, req: &Requirement, placement: &Placement, opts: &RankOptions) -> bool {
    misfit(o, &Floors::from(req), placement, opts).is_none()
}

/// A placement's availability zones as ranking reads them: AZ ids (`use1-az4`) are checked
/// against the zones each type is offered in; AZ names (`us-east-1a`) are account-specific, so
/// they select their region and pass through to the launcher unchecked.
#[derive(Debug, Clone, Default)]
pub struct Zones<'a> {
    ids: Vec<&'a str>,
    names: Vec<&'a str>,
}

impl<'a> Zones<'a> {
    pub fn new(placement: &'a Placement) -> Zones<'a> {
        let (ids, names) = placement
            .availability_zones
            .iter()
            .map(String::as_str)
            .partition(|a| looks_like_az_id(a));
        Zones { ids, names }
    }

    /// The AZ names given in `region`; None when the region is left out (AZ names are given,
    /// none of them here, and no AZ id).
    pub fn names_in(&self, region: &str) -> Option<Vec<&'a str>> {
        let here: Vec<&str> = self.names.iter().copied().filter(|n| n.starts_with(region)).collect();
        if !self.names.is_empty() && self.ids.is_empty() && here.is_empty() {
            None
        } else {
            Some(here)
        }
    }

    /// Whether `o` can be ranked in some zone, given the AZ names of its region
    /// ([`Zones::names_in`]): no AZ id is given, or a name is, or it is offered in one of the ids.
    pub fn offered(&self, o: &Offer, names_here: &[&str]) -> bool {
        self.ids.is_empty() || !names_here.is_empty() || o.azs.iter().any(|a| self.ids.contains(&a.as_str()))
    }

    /// The zones `o` is ranked in: the given AZ ids it is offered in and the given names;
    /// `[None]` (anywhere) when no zone is given; None when [`Zones::offered`] says none.
    pub fn of(&self, o: &Offer, names_here: &[&str]) -> Option<Vec<Option<String>>> {
        if !self.offered(o, names_here) {
            return None;
        }
        let zones: Vec<Option<String>> = o
            .azs
            .iter()
            .filter(|a| self.ids.contains(&a.as_str()))
            .map(|a| Some(a.clone()))
            .chain(names_here.iter().map(|n| Some(n.to_string())))
            .collect();
        Some(if zones.is_empty() { vec![None] } else { zones })
    }
}

/// The prices `o` is sold at in the markets `wanted` allows (spot, on-demand, or both for
/// `spot-then-on-demand`).
pub fn offered_prices(o: &Offer, wanted: Market) -> impl Iterator<Item = (Market, f64)> {
    let spot = o.spot_per_hour.filter(|_| wanted != Market::OnDemand);
    let on_demand = o.on_demand_per_hour.filter(|_| wanted != Market::Spot);
    spot.map(|p| (Market::Spot, p))
        .into_iter()
        .chain(on_demand.map(|p| (Market::OnDemand, p)))
}

/// Whether `price` is within the spec's `resources.max_price_per_hour` (`cap`).
pub fn within_price_cap(price: f64, cap: Option<f64>) -> bool {
    !cap.is_some_and(|max| price > max)
}

/// The single-thread score durations in `region` are scaled from (see
/// [`RankOptions::reference_single_score`]).
pub fn reference_score(catalog: &Catalog, region: &str, opts: &RankOptions) -> Option<f64> {
    opts.reference_single_score
        .or_else(|| catalog.median_single_score(region))
}

/// Whether ranking can estimate a run on `o`, hence its cost (see `predict`): under the
/// benchmark model a CPU job needs the type's scores and a reference score.
pub fn can_estimate(o: &Offer, gpu: u32, reference: Option<f64>, speed: SpeedModel) -> bool {
    predict(o, 1.0, gpu, NOMINAL_DURATION_S, reference, speed).is_some()
}

/// Predicted run time on `o` of a job that took `duration_s` with `cores` busy on the
/// reference machine, and the score that fits it. None when the type cannot be judged.
fn predict(
    o: &Offer,
    cores_used: f64,
    gpu: u32,
    duration_s: f64,
    reference: Option<f64>,
    speed: SpeedModel,
) -> Option<(f64, f64)> {
    let cores = cores_used.max(0.01);
    let shortage = (cores / o.vcpu as f64).max(1.0);
    match (speed, o.score_for(cores), reference) {
        (SpeedModel::Benchmark, Some(score), Some(reference)) => {
            let reference_throughput = reference * cores.max(1.0);
            Some((duration_s * reference_throughput / score, score))
        }
        // GPU jobs: CPU benchmarks do not tell a GPU's speed and the largest GPU types have none.
        (SpeedModel::Benchmark, None, _) if gpu > 0 => Some((duration_s * shortage, 0.0)),
        (SpeedModel::Benchmark, _, _) => None,
        (SpeedModel::Uniform, score, _) => Some((duration_s * shortage, score.unwrap_or(0.0))),
    }
}

/// Where a deployment can launch: its region (its subnets, launch template and AMI are there)
/// and the architectures its AMIs boot.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub region: String,
    pub architectures: Vec<crate::spec::Arch>,
    /// AZ ids it has subnets in (empty: unknown, any).
    pub zones: Vec<String>,
}

impl Deployment {
    /// The spec's placement narrowed to what this deployment can launch. `Err` says why nothing
    /// can be, naming the field: a spec whose regions are all elsewhere is refused rather than
    /// ranked on another region's prices. `Ok` with no architecture left means no candidate.
    pub fn placement(&self, p: &Placement) -> Result<Placement, String> {
        launch_scope(p, &[self.region.as_str()]).map_err(|why| format!("placement.regions {why}"))?;
        let mut placement = p.clone();
        placement.regions = vec![self.region.clone()];
        placement.architectures = if p.architectures.is_empty() {
            self.architectures.clone()
        } else {
            p.architectures
                .iter()
                .filter(|a| self.architectures.contains(a))
                .copied()
                .collect()
        };
        Ok(placement)
    }
}

/// The instance types that fit, in order of expected cost (cheapest first).
pub fn rank(
    catalog: &Catalog,
    req: &Requirement,
    placement: &Placement,
    market_wanted: Market,
    opts: &RankOptions,
) -> Vec<Candidate> {
    let zones = Zones::new(placement);
    let floors = Floors::from(req);

    // Rows are keyed first and materialised only for the ones returned: most offers fit a
    // small job, and building a Candidate (strings) for each would dominate the ranking time.
    struct Row<'a> {
        offer: &'a Offer,
        market: Market,
        price: f64,
        az: Option<String>,
        pred_d: f64,
        score: f64,
        billed: f64,
        penalty: f64,
        p_oom: f64,
        oom_cost: f64,
        slowdown: f64,
        too_slow: bool,
        image: MachineImage,
        volume_gib: u32,
        storage: f64,
        spot_price: Option<f64>,
        source: PriceSource,
        rate_source: RateSource,
        rate: f64,
    }
    let d = req.expected_duration_s.filter(|d| d.is_finite() && *d >= 0.0);
    // P(OOM) depends on the offer only through its memory. At or above the memory taken as
    // safe it is 0 at once, which is most offers; below it each evaluation is a Student-t tail
    // (an incomplete beta, thousands of operations), and the offers there share a few memory
    // sizes: each size is evaluated once per ranking. (A hash map over every offer cost more
    // than the evaluations it saved, measured on the simulator; this list holds only the
    // sizes below the safe memory.)
    let mut tails: Vec<(u64, f64)> = Vec::new();
    let mut p_oom_for = |memory_bytes: u64| -> f64 {
        let Some(risk) = req.memory_risk.as_ref() else {
            return 0.0;
        };
        let job_bytes = memory_bytes.saturating_sub(OS_RESERVE_BYTES);
        if risk.is_safe(job_bytes) {
            return 0.0;
        }
        if let Some(&(_, p)) = tails.iter().find(|(m, _)| *m == job_bytes) {
            return p;
        }
        let p = risk.p_exceed(job_bytes);
        tails.push((job_bytes, p));
        p
    };
    let mut spot: Vec<Row> = Vec::new();
    let mut on_demand: Vec<Row> = Vec::new();
    for region in ranked_regions(placement, &opts.default_region) {
        let Some(names_here) = zones.names_in(region) else {
            continue; // AZs named, none in this region
        };
        let reference = reference_score(catalog, region, opts);
        for o in catalog.region(region) {
            if misfit(o, &floors, placement, opts).is_some() {
                continue;
            }
            let Some(azs) = zones.of(o, &names_here) else {
                continue;
            };
            let Some((pred_d, score)) = predict(
                o,
                req.cores_used,
                req.gpu,
                d.unwrap_or(NOMINAL_DURATION_S),
                reference,
                opts.speed,
            ) else {
                continue;
            };
            let p_oom = p_oom_for(o.memory_bytes);
            // The slowdown max_slowdown bounds: from a shortage of vCPUs (the job keeps more
            // cores busy than the type has). A type's slower or faster core is in its duration,
            // hence its cost, already.
            let cpu_slowdown = (req.cores_used.max(0.01) / o.vcpu.max(1) as f64).max(1.0);
            // `misfit` left only types with an image.
            let image = MachineImage::for_job(req.container, o.gpu, o.arch).unwrap_or_default();
            let volume_gib = root_volume_gib(req.disk_gib, image);
            let storage = ebs_per_hour(volume_gib);
            // The live quotes of this type in this region, if any: its spot rows are ranked per
            // quoted AZ at that AZ's price.
            let live = opts
                .live
                .as_deref()
                .filter(|l| l.region == o.region)
                .and_then(|l| l.spot_zones(&o.instance_type));
            for (market, snapshot_price) in offered_prices(o, market_wanted) {
                // (zone, price, source) of each row of this market.
                let priced: Vec<(Option<String>, f64, PriceSource)> = match (market, live) {
                    (Market::Spot, Some(live)) => azs
                        .iter()
                        .flat_map(|az| match az {
                            // No zone asked for: every zone the overlay quotes.
                            None => live
                                .iter()
                                .filter(|(z, _)| opts.live_zones.is_empty() || opts.live_zones.contains(z))
                                .map(|(z, p)| (Some(z.clone()), *p, PriceSource::Live))
                                .collect::<Vec<_>>(),
                            // An AZ id: its quote; a type unquoted there has no spot market there.
                            Some(z) if looks_like_az_id(z) => live
                                .get(z)
                                .map(|p| (Some(z.clone()), *p, PriceSource::Live))
                                .into_iter()
                                .collect(),
                            // An AZ name cannot be matched to an id here: the snapshot's price.
                            Some(z) => vec![(Some(z.clone()), snapshot_price, PriceSource::Snapshot)],
                        })
                        .collect(),
                    // On-demand: the overlay's list price while young enough
                    // ([`PriceOverlay::on_demand_at`], its age taken at the overlay's refresh,
                    // which the caller checked is recent).
                    (Market::OnDemand, _) => {
                        let od = opts
                            .live
                            .as_deref()
                            .filter(|l| l.region == o.region)
                            .and_then(|l| l.on_demand_at(&o.instance_type, l.fetched_at_ms));
                        let (p, src) = od.map_or((snapshot_price, PriceSource::Snapshot), |p| (p, PriceSource::Live));
                        azs.iter().map(|az| (az.clone(), p, src)).collect()
                    }
                    _ => azs
                        .iter()
                        .map(|az| (az.clone(), snapshot_price, PriceSource::Snapshot))
                        .collect(),
                };
                for (az, price, source) in priced {
                    if !within_price_cap(price, req.max_price_per_hour) {
                        continue;
                    }
                    // The volume is billed for as long as the instance: the run pays both.
                    let billed = billed_cost(price + storage, opts.startup_s + pred_d);
                    let (rate, rate_source) = match opts.history.as_deref() {
                        Some(h) => {
                            let (hours, interruptions) = h.of(&o.instance_type, az.as_deref());
                            learned_rate(o.interruption_bucket, hours, interruptions)
                        }
                        None => (advisor_rate_per_h(o.interruption_bucket), RateSource::Advisor),
                    };
                    let penalty = if market == Market::Spot {
                        interruption_penalty_at(price, pred_d, opts.startup_s, rate)
                    } else {
                        0.0
                    };
                    // The failed attempt is charged in full (the peak may come at the end) and the
                    // retry gets `oom_retry_factor` × the memory, at about that many times the price.
                    let oom_cost = p_oom * billed * (1.0 + req.oom_retry_factor.max(1.0));
                    let slowdown = cpu_slowdown * (1.0 + p_oom);
                    let row = Row {
                        offer: o,
                        market,
                        price,
                        az,
                        pred_d,
                        score,
                        billed,
                        penalty,
                        p_oom,
                        oom_cost,
                        slowdown,
                        too_slow: slowdown > req.max_slowdown.max(1.0) + 1e-9,
                        image,
                        volume_gib,
                        storage,
                        spot_price: if source == PriceSource::Live {
                            Some(price)
                        } else {
                            o.spot_per_hour
                        },
                        source,
                        rate_source: if market == Market::Spot {
                            rate_source
                        } else {
                            RateSource::Advisor
                        },
                        rate,
                    };
                    if market == Market::Spot {
                        spot.push(row);
                    } else {
                        on_demand.push(row);
                    }
                }
            }
        }
    }
    let order = |a: &Row, b: &Row| {
        a.too_slow
            .cmp(&b.too_slow)
            .then((a.billed + a.oom_cost + a.penalty).total_cmp(&(b.billed + b.oom_cost + b.penalty)))
            .then(a.price.total_cmp(&b.price))
            .then_with(|| a.offer.instance_type.cmp(&b.offer.instance_type))
            .then_with(|| a.offer.region.cmp(&b.offer.region))
            .then_with(|| a.az.cmp(&b.az))
    };
    fn top<'a>(
        mut rows: Vec<Row<'a>>,
        n: usize,
        order: impl Fn(&Row<'a>, &Row<'a>) -> std::cmp::Ordering,
    ) -> Vec<Row<'a>> {
        if n > 0 && rows.len() > n {
            rows.select_nth_unstable_by(n - 1, &order);
            rows.truncate(n);
        }
        rows.sort_by(order);
        rows
    }
    let to_candidate = |r: Row| Candidate {
        instance_type: r.offer.instance_type.clone(),
        region: r.offer.region.clone(),
        az: r.az,
        market: r.market,
        spot_per_hour: r.spot_price,
        on_demand_per_hour: if r.market == Market::OnDemand {
            Some(r.price)
        } else {
            r.offer.on_demand_per_hour
        },
        price_per_hour: r.price,
        vcpu: r.offer.vcpu,
        memory_bytes: r.offer.memory_bytes,
        gpu: r.offer.gpu,
        gpu_memory_bytes: r.offer.gpu_memory_bytes,
        score: r.score,
        cost_per_perf: if r.score > 0.0 {
            r.price / r.score
        } else {
            f64::INFINITY
        },
        est_duration_s: d.map(|_| r.pred_d),
        est_cost_usd: d.map(|_| r.billed + r.oom_cost + r.penalty),
        interruption_bucket: r.offer.interruption_bucket,
        interruption_penalty_usd: d.map(|_| r.penalty),
        rank_cost: r.billed + r.oom_cost + r.penalty,
        oom_risk: r.p_oom,
        oom_cost_usd: d.map(|_| r.oom_cost),
        expected_slowdown: r.slowdown,
        spot_source: r.offer.spot_source,
        score_source: r.offer.score_source,
        arch: r.offer.arch,
        machine_image: r.image,
        root_volume_gib: r.volume_gib,
        storage_per_hour: r.storage,
        price_source: r.source,
        interruption_source: r.rate_source,
        interruption_rate_per_h: (r.rate_source == RateSource::Learned).then_some(r.rate),
    };
    let spot = top(spot, opts.limit, order);
    let on_demand = match market_wanted {
        Market::SpotThenOnDemand => top(on_demand, opts.on_demand_fallback_rows.max(1), order),
        _ => top(on_demand, opts.limit, order),
    };
    spot.into_iter().chain(on_demand).map(to_candidate).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Offer;
    use crate::sizing::{SizeClass, SizingBasis};
    use crate::spec::Arch;
    use crate::units::GIB;

    #[test]
    fn a_deployment_narrows_placement_to_its_region_and_architectures() {
        let d = Deployment {
            region: "us-east-1".into(),
            architectures: vec![Arch::X86_64],
            zones: vec![],
        };
        // nothing named: the deployment's region and architectures
        let p = d.placement(&Placement::default()).unwrap();
        assert_eq!(
            (p.regions, p.architectures),
            (vec!["us-east-1".to_string()], vec![Arch::X86_64])
        );
        // its region among others: only its region; an architecture it cannot boot: none left
        let asked = Placement {
            regions: vec!["eu-west-1".into(), "us-east-1".into()],
            architectures: vec![Arch::Arm64],
            ..Default::default()
        };
        let p = d.placement(&asked).unwrap();
        assert_eq!(p.regions, vec!["us-east-1".to_string()]);
        assert!(p.architectures.is_empty());
        // only other regions: refused, naming the field and both sides
        let elsewhere = Placement {
            regions: vec!["eu-west-1".into()],
            ..Default::default()
        };
        let why = d.placement(&elsewhere).unwrap_err();
        assert!(
            why.starts_with("placement.regions") && why.contains("eu-west-1") && why.contains("us-east-1"),
            "{why}"
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn offer(name: &str, vcpu: u32, mem_gib: u64, arch: Arch, spot: f64, od: f64, single: f64, azs: &[&str]) -> Offer {
        Offer {
            instance_type: name.into(),
            family: name.split('.').next().unwrap_or("").into(),
            region: "us-east-1".into(),
            vcpu,
            memory_bytes: mem_gib * GIB,
            arch,
            gpu: 0,
            gpu_memory_bytes: 0,
            on_demand_per_hour: Some(od),
            spot_per_hour: Some(spot),
            score_multi: Some(single * vcpu as f64),
            score_single: Some(single),
            interruption_bucket: Some(0),
            azs: azs.iter().map(|a| a.to_string()).collect(),
            spot_source: SpotSource::AdvisorEstimate,
            score_source: ScoreSource::Measured,
            score_multi_cores: Some(vcpu),
            burstable: false,
            current_generation: true,
            accelerator: false,
        }
    }

    fn req(vcpu: u32, cores: f64, mem_gib: u64) -> Requirement {
        Requirement {
            vcpu,
            cores_used: cores,
            memory_bytes: mem_gib * GIB,
            gpu: 0,
            gpu_memory_bytes: 0,
            architectures: vec![],
            expected_duration_s: Some(3600.0),
            class: SizeClass::Dedicated,
            basis: SizingBasis::Default,
            notes: vec![],
            job_memory_bytes: mem_gib * GIB,
            max_price_per_hour: None,
            confidence_runs: 0.0,
            max_slowdown: crate::spec::DEFAULT_MAX_SLOWDOWN,
            memory_risk: None,
            oom_retry_factor: 1.5,
            cpu_need_unknown: false,
            shared_slot_cores: 0.0,
            container: false,
            disk_gib: None,
        }
    }

    fn catalog() -> Catalog {
        Catalog::from_offers(vec![
            offer(
                "c7g.large",
                2,
                4,
                Arch::Arm64,
                0.03,
                0.07,
                1500.0,
                &["use1-az1", "use1-az2"],
            ),
            offer("m7g.large", 2, 8, Arch::Arm64, 0.04, 0.08, 1500.0, &["use1-az1"]),
            offer("c7i.large", 2, 4, Arch::X86_64, 0.035, 0.09, 2000.0, &["use1-az2"]),
            offer("r7g.xlarge", 4, 32, Arch::Arm64, 0.09, 0.21, 1500.0, &["use1-az1"]),
            offer("c7g.4xlarge", 16, 32, Arch::Arm64, 0.20, 0.58, 1500.0, &["use1-az1"]),
        ])
    }

    fn names(c: &[Candidate]) -> Vec<&str> {
        c.iter().map(|c| c.instance_type.as_str()).collect()
    }

    #[test]
    fn picks_the_cheapest_that_fits_and_never_one_that_does_not() {
        // GIVEN a 2-vCPU, 6-GiB job WHEN ranked THEN only types with ≥2 vCPU and ≥6 GiB, cheapest first
        let c = rank(
            &catalog(),
            &req(2, 2.0, 6),
            &Placement::default(),
            Market::Spot,
            &RankOptions::default(),
        );
        assert_eq!(names(&c), ["m7g.large", "r7g.xlarge", "c7g.4xlarge"]);
        for cand in &c {
            assert!(cand.vcpu >= 2 && cand.memory_bytes >= 6 * GIB);
            assert_eq!(cand.market, Market::Spot);
        }
        assert!(c.windows(2).all(|w| w[0].rank_cost <= w[1].rank_cost));
        // nothing fits 64 GiB
        assert!(rank(
            &catalog(),
            &req(1, 1.0, 64),
            &Placement::default(),
            Market::Spot,
            &RankOptions::default()
        )
        .is_empty());
    }

    fn live(quotes: &[(&str, &str, f64)]) -> Option<std::sync::Arc<PriceOverlay>> {
        let q = quotes.iter().map(|(t, az, p)| crate::prices::SpotQuote {
            instance_type: t.to_string(),
            az_id: az.to_string(),
            price_per_hour: *p,
            at_ms: 0,
        });
        Some(std::sync::Arc::new(PriceOverlay::from_quotes(
            "us-east-1",
            1,
            q,
            |_| true,
        )))
    }

    #[test]
    fn live_prices_rank_each_quoted_zone_at_its_own_price() {
        // GIVEN m7g.large quoted at $0.05 in az1 and $0.02 in az2 (the snapshot says $0.04)
        let opts = RankOptions {
            live: live(&[("m7g.large", "use1-az1", 0.05), ("m7g.large", "use1-az2", 0.02)]),
            ..Default::default()
        };
        let c = rank(&catalog(), &req(2, 2.0, 6), &Placement::default(), Market::Spot, &opts);
        // THEN each zone is a row at its price, the cheaper zone first; both before the
        // unquoted r7g.xlarge at its snapshot $0.09
        let rows: Vec<(&str, Option<&str>, f64, PriceSource)> = c
            .iter()
            .map(|c| {
                (
                    c.instance_type.as_str(),
                    c.az.as_deref(),
                    c.price_per_hour,
                    c.price_source,
                )
            })
            .collect();
        assert_eq!(
            rows[..3],
            [
                ("m7g.large", Some("use1-az2"), 0.02, PriceSource::Live),
                ("m7g.large", Some("use1-az1"), 0.05, PriceSource::Live),
                ("r7g.xlarge", None, 0.09, PriceSource::Snapshot),
            ]
        );
        // AND only the deployment's zones when it says which
        let only_az1 = RankOptions {
            live_zones: vec!["use1-az1".into()],
            ..opts.clone()
        };
        let c1 = rank(
            &catalog(),
            &req(2, 2.0, 6),
            &Placement::default(),
            Market::Spot,
            &only_az1,
        );
        assert_eq!((c1[0].az.as_deref(), c1[0].price_per_hour), (Some("use1-az1"), 0.05));
        assert!(!c1.iter().any(|c| c.az.as_deref() == Some("use1-az2")));
        // AND the pool's spot price is the live one (the launch falls down pools at these prices)
        assert_eq!(c[0].spot_per_hour, Some(0.02));
        assert!(c[0].rank_cost < c[1].rank_cost);
        // AND without the overlay the same ranking is the snapshot's, one row, any zone
        let snap = rank(
            &catalog(),
            &req(2, 2.0, 6),
            &Placement::default(),
            Market::Spot,
            &RankOptions::default(),
        );
        assert_eq!((snap[0].az.as_deref(), snap[0].price_per_hour), (None, 0.04));
        assert_eq!(snap[0].price_source, PriceSource::Snapshot);
    }

    #[test]
    fn a_live_price_can_reorder_types_and_a_zone_without_a_quote_has_no_spot_row() {
        // GIVEN r7g.xlarge quoted very cheap in az1 only, m7g.large quoted in az2 only
        let opts = RankOptions {
            live: live(&[("r7g.xlarge", "use1-az1", 0.01), ("m7g.large", "use1-az2", 0.03)]),
            ..Default::default()
        };
        let c = rank(&catalog(), &req(2, 2.0, 6), &Placement::default(), Market::Spot, &opts);
        assert_eq!(c[0].instance_type, "r7g.xlarge");
        // AND a job pinned to az1 gets no m7g.large spot row (no spot price there), but its
        // on-demand row stays for spot-then-on-demand
        let az1 = Placement {
            availability_zones: vec!["use1-az1".into()],
            ..Default::default()
        };
        let c = rank(&catalog(), &req(2, 2.0, 6), &az1, Market::SpotThenOnDemand, &opts);
        assert!(
            !c.iter()
                .any(|c| c.instance_type == "m7g.large" && c.market == Market::Spot),
            "{c:?}"
        );
        assert!(c
            .iter()
            .any(|c| c.instance_type == "m7g.large" && c.market == Market::OnDemand));
        // AND on-demand rows keep the snapshot's price when the overlay has no on-demand prices
        assert!(c
            .iter()
            .filter(|c| c.market == Market::OnDemand)
            .all(|c| c.price_source == PriceSource::Snapshot));
        // AND take the overlay's list price when it has one
        let mut with_od = (**opts.live.as_ref().unwrap()).clone();
        with_od.on_demand = [("m7g.large".to_string(), 0.061)].into();
        with_od.on_demand_fetched_at_ms = Some(with_od.fetched_at_ms);
        let od_opts = RankOptions {
            live: Some(std::sync::Arc::new(with_od)),
            ..Default::default()
        };
        let c = rank(&catalog(), &req(2, 2.0, 6), &az1, Market::OnDemand, &od_opts);
        let m7g = c.iter().find(|c| c.instance_type == "m7g.large").unwrap();
        assert_eq!(
            (m7g.price_per_hour, m7g.on_demand_per_hour, m7g.price_source),
            (0.061, Some(0.061), PriceSource::Live)
        );
        // AND an overlay of another region is not applied
        let mut other = (*opts.live.unwrap()).clone();
        other.region = "eu-west-1".into();
        let c = rank(
            &catalog(),
            &req(2, 2.0, 6),
            &Placement::default(),
            Market::Spot,
            &RankOptions {
                live: Some(std::sync::Arc::new(other)),
                ..Default::default()
            },
        );
        assert!(c.iter().all(|c| c.price_source == PriceSource::Snapshot));
    }

    #[test]
    fn a_pool_that_interrupts_often_in_this_deployment_ranks_after_its_quieter_zone() {
        // GIVEN m7g.large live at the same price in two zones, and 2,000 h of history in each:
        // az1 interrupted 60 times, az2 never
        let opts = RankOptions {
            live: live(&[("m7g.large", "use1-az1", 0.04), ("m7g.large", "use1-az2", 0.04)]),
            history: Some(std::sync::Arc::new(PoolHistory::new(&[
                PoolExposure {
                    instance_type: "m7g.large".into(),
                    az: "use1-az1".into(),
                    hours: 2000.0,
                    interruptions: 60,
                },
                PoolExposure {
                    instance_type: "m7g.large".into(),
                    az: "use1-az2".into(),
                    hours: 2000.0,
                    interruptions: 0,
                },
            ]))),
            ..Default::default()
        };
        let c = rank(&catalog(), &req(2, 2.0, 6), &Placement::default(), Market::Spot, &opts);
        // THEN the quiet zone first, both rates learned and said
        let rows: Vec<_> = c
            .iter()
            .take(2)
            .map(|c| (c.az.as_deref(), c.interruption_source))
            .collect();
        assert_eq!(
            rows,
            [
                (Some("use1-az2"), RateSource::Learned),
                (Some("use1-az1"), RateSource::Learned)
            ]
        );
        assert!(c[1].interruption_penalty_usd.unwrap() > 10.0 * c[0].interruption_penalty_usd.unwrap());
        assert!(
            c[1].interruption_rate_per_h.unwrap() > 0.019,
            "{:?}",
            c[1].interruption_rate_per_h
        );
        // AND without the history both are the Advisor's, tied, and the JSON says nothing new
        let plain = RankOptions { history: None, ..opts };
        let c = rank(&catalog(), &req(2, 2.0, 6), &Placement::default(), Market::Spot, &plain);
        assert_eq!(c[0].interruption_penalty_usd, c[1].interruption_penalty_usd);
        let j = serde_json::to_value(&c[0]).unwrap();
        assert!(
            j.get("interruption_source").is_none() && j.get("interruption_rate_per_h").is_none(),
            "{j}"
        );
    }

    #[test]
    fn each_candidate_boots_the_image_its_job_needs_with_its_disk_priced() {
        let opts = RankOptions::default();
        let gpu = |name: &str, arch: Arch| {
            let mut o = offer(name, 4, 16, arch, 0.30, 1.0, 1500.0, &["use1-az1"]);
            o.gpu = 1;
            o.gpu_memory_bytes = 16 * GIB;
            o
        };
        let cat = Catalog::from_offers(vec![
            offer("c7g.large", 2, 4, Arch::Arm64, 0.03, 0.07, 1500.0, &["use1-az1"]),
            offer("c7i.large", 2, 4, Arch::X86_64, 0.035, 0.09, 2000.0, &["use1-az1"]),
            gpu("g5g.xlarge", Arch::Arm64),
            gpu("g5.xlarge", Arch::X86_64),
        ]);
        // GIVEN an argv job THEN plain AL2023 on either architecture, 30 GiB by default
        let c = rank(&cat, &req(2, 1.0, 2), &Placement::default(), Market::Spot, &opts);
        assert_eq!(names(&c), ["c7i.large", "c7g.large"]);
        assert!(c
            .iter()
            .all(|c| c.machine_image == MachineImage::Al2023 && c.root_volume_gib == 30));
        assert_eq!((c[0].arch, c[1].arch), (Arch::X86_64, Arch::Arm64));
        // … and the volume is in the expected cost: an hour of 30 GiB of gp3 on top of the instance
        let billed_alone = billed_cost(c[0].price_per_hour, STARTUP_OVERHEAD_S + c[0].est_duration_s.unwrap());
        let with_disk = billed_cost(
            c[0].price_per_hour + ebs_per_hour(30),
            STARTUP_OVERHEAD_S + c[0].est_duration_s.unwrap(),
        );
        assert!((c[0].storage_per_hour - ebs_per_hour(30)).abs() < 1e-12);
        assert!(c[0].rank_cost > billed_alone && (c[0].rank_cost - with_disk).abs() < 0.01 * with_disk);
        // GIVEN a container job asking for 8 GiB THEN the ECS image, at its 30 GiB floor
        let mut r = req(2, 1.0, 2);
        r.container = true;
        r.disk_gib = Some(8);
        let c = rank(&cat, &r, &Placement::default(), Market::Spot, &opts);
        assert!(c
            .iter()
            .all(|c| c.machine_image == MachineImage::EcsAl2023 && c.root_volume_gib == 30));
        // GIVEN a GPU job with 500 GiB THEN only the x86_64 GPU type (no arm64 GPU image exists)
        let mut r = req(2, 1.0, 2);
        r.gpu = 1;
        r.disk_gib = Some(500);
        let c = rank(&cat, &r, &Placement::default(), Market::Spot, &opts);
        assert_eq!(names(&c), ["g5.xlarge"]);
        assert_eq!(
            (c[0].machine_image, c[0].root_volume_gib),
            (MachineImage::EcsGpuAl2023, 500)
        );
        assert!((c[0].storage_per_hour - ebs_per_hour(500)).abs() < 1e-12);
    }

    #[test]
    fn single_core_job_weighs_single_thread_speed() {
        // GIVEN a 1-core job: c7i.large is 17% dearer but its core is 33% faster
        let opts = RankOptions::default();
        let c = rank(&catalog(), &req(1, 1.0, 2), &Placement::default(), Market::Spot, &opts);
        assert_eq!(c[0].instance_type, "c7i.large");
        // … and a 16-core job gets no faster on a faster 2-vCPU type: c7g.4xlarge wins
        let c = rank(&catalog(), &req(1, 16.0, 2), &Placement::default(), Market::Spot, &opts);
        assert_eq!(c[0].instance_type, "c7g.4xlarge");
        // with uniform speed the cheaper core wins
        let uniform = RankOptions {
            speed: SpeedModel::Uniform,
            ..RankOptions::default()
        };
        let c = rank(
            &catalog(),
            &req(1, 1.0, 2),
            &Placement::default(),
            Market::Spot,
            &uniform,
        );
        assert_eq!(c[0].instance_type, "c7g.large");
        assert!((c[0].est_duration_s.unwrap() - 3600.0).abs() < 1e-9);
    }

    #[test]
    fn placement_filters_hold() {
        let opts = RankOptions::default();
        let cat = catalog();
        let r = req(2, 2.0, 4);
        let only_x86 = Placement {
            architectures: vec![Arch::X86_64],
            ..Placement::default()
        };
        assert_eq!(names(&rank(&cat, &r, &only_x86, Market::Spot, &opts)), ["c7i.large"]);
        let families = Placement {
            allowed_families: vec!["c7*".into()],
            ..Placement::default()
        };
        assert!(rank(&cat, &r, &families, Market::Spot, &opts)
            .iter()
            .all(|c| c.instance_type.starts_with("c7")));
        let excluded = Placement {
            excluded_families: vec!["c7g".into(), "c7i".into()],
            ..Placement::default()
        };
        assert!(rank(&cat, &r, &excluded, Market::Spot, &opts)
            .iter()
            .all(|c| !c.instance_type.starts_with("c7")));
        let az = Placement {
            availability_zones: vec!["use1-az2".into()],
            ..Placement::default()
        };
        let c = rank(&cat, &r, &az, Market::Spot, &opts);
        assert_eq!(names(&c), ["c7i.large", "c7g.large"]);
        assert!(c.iter().all(|c| c.az.as_deref() == Some("use1-az2")));
        let other_region = Placement {
            regions: vec!["eu-west-1".into()],
            ..Placement::default()
        };
        assert!(rank(&cat, &r, &other_region, Market::Spot, &opts).is_empty());
        let mut cheap = r.clone();
        cheap.max_price_per_hour = Some(0.032);
        assert_eq!(
            names(&rank(&cat, &cheap, &Placement::default(), Market::Spot, &opts)),
            ["c7g.large"]
        );
    }

    #[test]
    fn markets_and_on_demand_fallback_rows() {
        let cat = catalog();
        let opts = RankOptions {
            limit: 2,
            on_demand_fallback_rows: 1,
            ..RankOptions::default()
        };
        let c = rank(
            &cat,
            &req(2, 2.0, 4),
            &Placement::default(),
            Market::SpotThenOnDemand,
            &opts,
        );
        let markets: Vec<Market> = c.iter().map(|c| c.market).collect();
        assert_eq!(markets, [Market::Spot, Market::Spot, Market::OnDemand]);
        // the fastest core for the money on demand: c7i.large (0.09 $/h, 33% faster core)
        assert_eq!((c[2].instance_type.as_str(), c[2].price_per_hour), ("c7i.large", 0.09));
        let od = rank(&cat, &req(2, 2.0, 4), &Placement::default(), Market::OnDemand, &opts);
        assert!(od
            .iter()
            .all(|c| c.market == Market::OnDemand && c.interruption_penalty_usd == Some(0.0)));
    }

    #[test]
    fn interruption_risk_can_change_the_order() {
        // GIVEN two equal types, one in the >20% bucket WHEN a long job is ranked THEN the safer one wins
        let mut a = offer("m7g.large", 2, 8, Arch::Arm64, 0.040, 0.08, 1500.0, &[]);
        let mut b = offer("m6g.large", 2, 8, Arch::Arm64, 0.0399, 0.08, 1500.0, &[]);
        a.interruption_bucket = Some(0);
        b.interruption_bucket = Some(4);
        let cat = Catalog::from_offers(vec![a, b]);
        let mut r = req(2, 2.0, 4);
        r.expected_duration_s = Some(24.0 * 3600.0);
        let c = rank(&cat, &r, &Placement::default(), Market::Spot, &RankOptions::default());
        assert_eq!(c[0].instance_type, "m7g.large");
        // … while for a short job the cheaper price wins
        r.expected_duration_s = Some(600.0);
        let c = rank(&cat, &r, &Placement::default(), Market::Spot, &RankOptions::default());
        assert_eq!(c[0].instance_type, "m6g.large");
        assert!(c[0].interruption_penalty_usd.unwrap() > c[1].interruption_penalty_usd.unwrap());
    }

    #[test]
    fn real_catalog_ranks_a_small_job() {
        let cat = Catalog::embedded().unwrap();
        let c = rank(
            cat,
            &req(2, 1.5, 4),
            &Placement::default(),
            Market::SpotThenOnDemand,
            &RankOptions::default(),
        );
        assert!(c.len() > 50);
        assert!(c.iter().all(|c| c.vcpu >= 2 && c.memory_bytes >= 4 * GIB && c.gpu == 0));
        assert_eq!(c.last().map(|c| c.market), Some(Market::OnDemand));
    }

    #[test]
    fn gpu_jobs_get_gpu_types_with_enough_gpu_memory() {
        let cat = Catalog::embedded().unwrap();
        let mut r = req(4, 4.0, 32);
        r.gpu = 1;
        r.gpu_memory_bytes = 40 * GIB;
        let c = rank(
            cat,
            &r,
            &Placement::default(),
            Market::OnDemand,
            &RankOptions::default(),
        );
        assert!(!c.is_empty());
        assert!(
            c.iter().all(|c| c.gpu >= 1 && c.gpu_memory_bytes >= 40 * GIB),
            "{:?}",
            names(&c)
        );
        // and a CPU job never lands on a GPU type
        let c = rank(
            cat,
            &req(8, 8.0, 32),
            &Placement::default(),
            Market::Spot,
            &RankOptions::default(),
        );
        assert!(c.iter().all(|c| c.gpu == 0));
    }

    #[test]
    fn expected_cost_prices_the_oom_risk_hand_computed() {
        use crate::sizing::{MemoryRisk, OS_RESERVE_BYTES};
        // GIVEN a small type leaving the job 3.75 GiB at 0.030 $/h and a larger one (7.75 GiB)
        // at 0.033 $/h, a one-hour job, and a normal (dof → ∞) log-peak distribution put z
        // standard deviations below ln(3.75 GiB)
        let cat = Catalog::from_offers(vec![
            offer("c7g.large", 2, 4, Arch::Arm64, 0.01, 0.030, 1500.0, &[]),
            offer("m7g.large", 2, 8, Arch::Arm64, 0.01, 0.033, 1500.0, &[]),
        ]);
        let small_job_gib = 4.0 - crate::units::bytes_to_gib(OS_RESERVE_BYTES);
        let with_z = |z: f64| {
            let mut r = req(2, 2.0, 1);
            r.memory_risk = Some(MemoryRisk {
                log_mean: small_job_gib.ln() - z * 0.1,
                log_scale: 0.1,
                dof: 1e9,
                safe_bytes: None,
            });
            r
        };
        // billed = (price + the 30 GiB root volume's) × (60 s start-up + 3600 s) / 3600;
        // E = billed × (1 + P × (1 + 1.5))
        let billed = |price: f64| (price + ebs_per_hour(30)) * 3660.0 / 3600.0;
        // z = 2.0: P = 2.28%; E(small) = 0.030 × 1.01667 × 1.0570 = 0.03224 < E(large) = 0.03355
        let r = with_z(2.0);
        let risk = r.memory_risk.clone().unwrap();
        // the 99th-percentile bound is above what the small type leaves: the old rule took the large one
        assert!(risk.quantile_bytes(0.99) > crate::units::gib_to_bytes(small_job_gib));
        let c = rank(
            &cat,
            &r,
            &Placement::default(),
            Market::OnDemand,
            &RankOptions::default(),
        );
        assert_eq!(c[0].instance_type, "c7g.large");
        assert!((c[0].oom_risk - 0.02275).abs() < 1e-4, "{}", c[0].oom_risk);
        assert!((c[0].est_cost_usd.unwrap() - billed(0.030) * (1.0 + 0.02275 * 2.5)).abs() < 1e-5);
        assert!((c[0].est_cost_usd.unwrap() - 0.03224 - ebs_per_hour(30) * 1.01667 * 1.0570).abs() < 1e-4);
        assert!((c[1].est_cost_usd.unwrap() - billed(0.033)).abs() < 1e-4 && c[1].oom_risk < 1e-9);
        // z = 1.5: P = 6.68%; E(small) = 0.030 × 1.01667 × 1.1670 = 0.03559 > E(large) = 0.03355
        let c = rank(
            &cat,
            &with_z(1.5),
            &Placement::default(),
            Market::OnDemand,
            &RankOptions::default(),
        );
        assert_eq!(c[0].instance_type, "m7g.large");
        assert!((c[1].oom_risk - 0.0668).abs() < 1e-3);
        assert!((c[1].est_cost_usd.unwrap() - billed(0.030) * (1.0 + 0.0668 * 2.5)).abs() < 1e-4);
        // both within max_slowdown 1.1 (1 + P): the cost decided, not the time
        assert!(c.iter().all(|c| c.expected_slowdown <= 1.1));
    }

    #[test]
    fn max_slowdown_bounds_the_choice() {
        // GIVEN a 4-core job and a cheap 2-vCPU type (2× slower) next to a dearer 4-vCPU one
        let cat = Catalog::from_offers(vec![
            offer("c7g.large", 2, 8, Arch::Arm64, 0.01, 0.02, 1500.0, &[]),
            offer("c7g.xlarge", 4, 8, Arch::Arm64, 0.01, 0.05, 1500.0, &[]),
        ]);
        let uniform = RankOptions {
            speed: SpeedModel::Uniform,
            ..RankOptions::default()
        };
        let mut r = req(1, 4.0, 2);
        // WHEN the job allows 1.1 THEN the 4-vCPU type, though dearer for the run
        let c = rank(&cat, &r, &Placement::default(), Market::OnDemand, &uniform);
        assert_eq!(c[0].instance_type, "c7g.xlarge");
        assert!(c[0].expected_slowdown <= 1.1 && c[1].expected_slowdown > 1.1);
        // WHEN it allows 2× THEN the cheaper one
        r.max_slowdown = 2.0;
        let c = rank(&cat, &r, &Placement::default(), Market::OnDemand, &uniform);
        assert_eq!(c[0].instance_type, "c7g.large");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn never_returns_a_type_that_does_not_fit(
            vcpu in 1u32..64,
            cores in 0.05f64..64.0,
            mem_gib in 1u64..512,
            gpu in 0u32..3,
            x86 in proptest::bool::ANY,
            market in 0usize..3,
        ) {
            let cat = Catalog::embedded().unwrap();
            let mut r = req(vcpu, cores, mem_gib);
            r.gpu = gpu;
            let placement = Placement {
                architectures: if x86 { vec![Arch::X86_64] } else { vec![] },
                excluded_families: vec!["m5".into()],
                ..Placement::default()
            };
            let m = [Market::Spot, Market::OnDemand, Market::SpotThenOnDemand][market];
            let opts = RankOptions { limit: 20, ..RankOptions::default() };
            for c in rank(cat, &r, &placement, m, &opts) {
                proptest::prop_assert!(c.vcpu >= vcpu && c.memory_bytes >= mem_gib * GIB && c.gpu >= gpu);
                proptest::prop_assert!(!x86 || cat.find(&c.region, &c.instance_type).unwrap().arch == Arch::X86_64);
                proptest::prop_assert!(!c.instance_type.starts_with("m5."));
                proptest::prop_assert!(c.price_per_hour > 0.0 && c.rank_cost.is_finite());
            }
        }
    }
}
