//! Ranking: the instance types that fit a requirement, cheapest per performance first
//! (placeholder; the catalog/ranking work fills it).

use crate::catalog::Catalog;
use crate::sizing::Requirement;
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
}

#[derive(Debug, Clone, Default)]
pub struct RankOptions {
    /// Default region when the placement names none.
    pub default_region: String,
    /// Most rows to return (0 = all).
    pub limit: usize,
}

pub fn rank(
    _catalog: &Catalog,
    _req: &Requirement,
    _placement: &Placement,
    _market: Market,
    _opts: &RankOptions,
) -> Vec<Candidate> {
    Vec::new()
}
