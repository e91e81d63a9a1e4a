//! Ranking: the instance types that fit a requirement and a placement, cheapest expected cost
//! of the run first. Expected cost = price × predicted duration on that type (the duration
//! scales with the benchmark score that fits the cores the job really uses, so extra cores do
//! not make a single-threaded job faster) + the spot interruption risk as an expected re-run
//! cost. On-demand rows follow as the fallback for `spot-then-on-demand`.

use crate::catalog::{Catalog, Offer, ScoreSource, SpotSource};
use crate::cost::{billed_cost, interruption_penalty};
use crate::sizing::{Requirement, STARTUP_OVERHEAD_S};
use crate::spec::{Market, Placement};
use serde::{Deserialize, Serialize};

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
    #[serde(default)]
    pub spot_source: SpotSource,
    #[serde(default)]
    pub score_source: ScoreSource,
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
}

impl Default for RankOptions {
    fn default() -> Self {
        RankOptions {
            default_region: "us-east-1".into(),
            limit: 0,
            on_demand_fallback_rows: 3,
            include_burstable: false,
            speed: SpeedModel::Benchmark,
            startup_s: STARTUP_OVERHEAD_S,
            reference_single_score: None,
        }
    }
}

/// Duration used for the ranking key when the job's duration is unknown.
const NOMINAL_DURATION_S: f64 = 3600.0;

fn family_matches(pattern: &str, family: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => family.starts_with(prefix),
        None => pattern == family,
    }
}

fn looks_like_az_id(s: &str) -> bool {
    s.contains("-az")
}

/// Whether `o` offers what `req` needs and `placement` allows (not the market or the region).
pub fn fits(o: &Offer, req: &Requirement, placement: &Placement, opts: &RankOptions) -> bool {
    if o.vcpu < req.vcpu || o.memory_bytes < req.memory_bytes {
        return false;
    }
    if req.gpu == 0 {
        // GPU and accelerator hosts cost a premium for hardware a CPU job leaves idle.
        if o.gpu > 0 || o.accelerator {
            return false;
        }
    } else if o.gpu < req.gpu || o.gpu_memory_bytes < req.gpu_memory_bytes {
        return false;
    }
    if o.burstable && !opts.include_burstable {
        return false;
    }
    if !req.architectures.is_empty() && !req.architectures.contains(&o.arch) {
        return false;
    }
    if !placement.architectures.is_empty() && !placement.architectures.contains(&o.arch) {
        return false;
    }
    if !placement.allowed_families.is_empty()
        && !placement.allowed_families.iter().any(|f| family_matches(f, &o.family))
    {
        return false;
    }
    if placement.excluded_families.iter().any(|f| family_matches(f, &o.family)) {
        return false;
    }
    true
}

/// Median single-thread score of a region's offers (the reference machine by default).
pub fn median_single_score(offers: &[Offer]) -> Option<f64> {
    let mut s: Vec<f64> = offers.iter().filter_map(|o| o.score_single).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    Some(s[s.len() / 2])
}

/// Predicted run time on `o` of a job that took `duration_s` with `cores` busy on the
/// reference machine, and the score that fits it. None when the type cannot be judged.
fn predict(
    o: &Offer,
    req: &Requirement,
    duration_s: f64,
    reference: Option<f64>,
    speed: SpeedModel,
) -> Option<(f64, f64)> {
    let cores = req.cores_used.max(0.01);
    let shortage = (cores / o.vcpu as f64).max(1.0);
    match (speed, o.score_for(cores), reference) {
        (SpeedModel::Benchmark, Some(score), Some(reference)) => {
            let reference_throughput = reference * cores.max(1.0);
            Some((duration_s * reference_throughput / score, score))
        }
        // GPU jobs: CPU benchmarks do not tell a GPU's speed and the largest GPU types have none.
        (SpeedModel::Benchmark, None, _) if req.gpu > 0 => Some((duration_s * shortage, 0.0)),
        (SpeedModel::Benchmark, _, _) => None,
        (SpeedModel::Uniform, score, _) => Some((duration_s * shortage, score.unwrap_or(0.0))),
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
    let regions: Vec<&str> = if placement.regions.is_empty() {
        vec![opts.default_region.as_str()]
    } else {
        placement.regions.iter().map(String::as_str).collect()
    };
    let az_ids: Vec<&str> = placement
        .availability_zones
        .iter()
        .map(String::as_str)
        .filter(|a| looks_like_az_id(a))
        .collect();
    let az_names: Vec<&str> = placement
        .availability_zones
        .iter()
        .map(String::as_str)
        .filter(|a| !looks_like_az_id(a))
        .collect();

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
    }
    let d = req.expected_duration_s.filter(|d| d.is_finite() && *d >= 0.0);
    let mut spot: Vec<Row> = Vec::new();
    let mut on_demand: Vec<Row> = Vec::new();
    for region in regions {
        let offers = catalog.region(region);
        let reference = opts.reference_single_score.or_else(|| median_single_score(offers));
        let names_here: Vec<&str> = az_names.iter().copied().filter(|n| n.starts_with(region)).collect();
        if !az_names.is_empty() && az_ids.is_empty() && names_here.is_empty() {
            continue; // AZs named, none in this region
        }
        for o in offers.iter().filter(|o| fits(o, req, placement, opts)) {
            // AZ ids are checked against the offerings; AZ names are account-specific, so
            // they pass through to the launcher unchecked.
            let azs: Vec<Option<String>> = if !az_ids.is_empty() {
                let here: Vec<Option<String>> = o
                    .azs
                    .iter()
                    .filter(|a| az_ids.contains(&a.as_str()))
                    .map(|a| Some(a.clone()))
                    .chain(names_here.iter().map(|n| Some(n.to_string())))
                    .collect();
                if here.is_empty() {
                    continue;
                }
                here
            } else if !names_here.is_empty() {
                names_here.iter().map(|n| Some(n.to_string())).collect()
            } else {
                vec![None]
            };
            let Some((pred_d, score)) = predict(o, req, d.unwrap_or(NOMINAL_DURATION_S), reference, opts.speed) else {
                continue;
            };
            let prices = [
                (Market::Spot, o.spot_per_hour),
                (Market::OnDemand, o.on_demand_per_hour),
            ];
            for (market, p) in prices {
                let Some(price) = p else { continue };
                if market == Market::Spot && matches!(market_wanted, Market::OnDemand) {
                    continue;
                }
                if market == Market::OnDemand && matches!(market_wanted, Market::Spot) {
                    continue;
                }
                if req.max_price_per_hour.is_some_and(|max| price > max) {
                    continue;
                }
                let billed = billed_cost(price, opts.startup_s + pred_d);
                let penalty = if market == Market::Spot {
                    interruption_penalty(price, pred_d, opts.startup_s, o.interruption_bucket)
                } else {
                    0.0
                };
                for az in &azs {
                    let row = Row {
                        offer: o,
                        market,
                        price,
                        az: az.clone(),
                        pred_d,
                        score,
                        billed,
                        penalty,
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
        (a.billed + a.penalty)
            .total_cmp(&(b.billed + b.penalty))
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
        spot_per_hour: r.offer.spot_per_hour,
        on_demand_per_hour: r.offer.on_demand_per_hour,
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
        est_cost_usd: d.map(|_| r.billed + r.penalty),
        interruption_bucket: r.offer.interruption_bucket,
        interruption_penalty_usd: d.map(|_| r.penalty),
        rank_cost: r.billed + r.penalty,
        spot_source: r.offer.spot_source,
        score_source: r.offer.score_source,
    };
    let spot = top(spot, opts.limit, order);
    let on_demand = match market_wanted {
        Market::SpotThenOnDemand => top(on_demand, opts.on_demand_fallback_rows.max(1), order),
        _ => top(on_demand, opts.limit, order),
    };
    spot.into_iter().chain(on_demand).map(to_candidate).collect()
}
