//! Capacity fallback: the ordered pools to try for one launch, from the ranked candidates, the
//! zones the deployment can launch into and the pools known to be unavailable. Pure: adapters
//! only report which pool failed; this decides what comes next (as Karpenter's
//! `UnavailableOfferings` does). Spot pools come first in rank order; on-demand ones follow
//! only when the job's market allows it.

use crate::ids::Pool;
use crate::ranking::Candidate;
use crate::spec::Market;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// One pool to try, with the price it would be bought at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedLaunch {
    pub pool: Pool,
    /// Expected $/hour in this pool (spot price for spot, list price for on-demand).
    pub price_per_hour: f64,
    /// Index of the candidate in the ranked list it came from.
    pub rank: usize,
}

/// Everything [`plan`] decides on besides the candidates.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// The job's market.
    pub market: Market,
    /// AZ ids the deployment has subnets in, in preference order; empty = let EC2 choose (pool az "").
    pub zones: &'a [String],
    /// The spec's allowed AZs (ids or names); empty = any of `zones`.
    pub allowed_zones: &'a [String],
    /// Pools not to try (recent capacity errors and interruptions, this execution's failures).
    pub unavailable: &'a HashSet<Pool>,
    /// The job's price cap, $/hour.
    pub max_price_per_hour: Option<f64>,
}

impl<'a> PlanInput<'a> {
    /// Any zone, no cap.
    pub fn new(market: Market, unavailable: &'a HashSet<Pool>) -> Self {
        PlanInput {
            market,
            zones: &[],
            allowed_zones: &[],
            unavailable,
            max_price_per_hour: None,
        }
    }
}

/// The pools to try, best first, each at most once. Empty means nothing can be launched.
pub fn plan(candidates: &[Candidate], input: &PlanInput<'_>) -> Vec<PlannedLaunch> {
    let phases: &[Market] = match input.market {
        Market::Spot => &[Market::Spot],
        Market::OnDemand => &[Market::OnDemand],
        Market::SpotThenOnDemand => &[Market::Spot, Market::OnDemand],
    };
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for &phase in phases {
        for (rank, c) in candidates.iter().enumerate() {
            let Some(price) = price_in(c, phase) else { continue };
            if input.max_price_per_hour.is_some_and(|cap| price > cap) {
                continue;
            }
            for az in zones_for(c, input) {
                let pool = Pool {
                    instance_type: c.instance_type.clone(),
                    az,
                    market: phase,
                };
                if input.unavailable.contains(&pool) || !seen.insert(pool.clone()) {
                    continue;
                }
                out.push(PlannedLaunch {
                    pool,
                    price_per_hour: price,
                    rank,
                });
            }
        }
    }
    out
}

/// The price of `c` in market `phase`, if the candidate can be bought there at all.
fn price_in(c: &Candidate, phase: Market) -> Option<f64> {
    let row_is = |m: Market| c.market == m || c.market == Market::SpotThenOnDemand;
    let price = match phase {
        Market::Spot if row_is(Market::Spot) => c.spot_per_hour.or(Some(c.price_per_hour)),
        Market::Spot => c.spot_per_hour,
        Market::OnDemand if c.market == Market::OnDemand => c.on_demand_per_hour.or(Some(c.price_per_hour)),
        Market::OnDemand => c.on_demand_per_hour,
        Market::SpotThenOnDemand => None,
    };
    price.filter(|p| p.is_finite() && *p > 0.0)
}

/// The zones a candidate may be launched in: its own AZ when the catalog names one (if the
/// deployment has a subnet there), else every deployment zone; filtered by the spec's AZs.
fn zones_for(c: &Candidate, input: &PlanInput<'_>) -> Vec<String> {
    let allowed = |z: &str| input.allowed_zones.is_empty() || input.allowed_zones.iter().any(|a| a == z);
    if input.zones.is_empty() {
        return match &c.az {
            Some(az) if allowed(az) => vec![az.clone()],
            Some(_) => vec![],
            None => vec![String::new()],
        };
    }
    match &c.az {
        Some(az) => input.zones.iter().filter(|z| *z == az && allowed(z)).cloned().collect(),
        None => input.zones.iter().filter(|z| allowed(z)).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(t: &str, az: Option<&str>, market: Market, spot: Option<f64>, od: Option<f64>) -> Candidate {
        Candidate {
            instance_type: t.into(),
            region: "us-east-1".into(),
            az: az.map(Into::into),
            market,
            spot_per_hour: spot,
            on_demand_per_hour: od,
            price_per_hour: spot.or(od).unwrap_or(0.0),
            vcpu: 2,
            memory_bytes: 0,
            gpu: 0,
            gpu_memory_bytes: 0,
            score: 1.0,
            cost_per_perf: 1.0,
            est_duration_s: None,
            est_cost_usd: None,
            interruption_bucket: None,
            interruption_penalty_usd: None,
            rank_cost: 0.0,
            oom_risk: 0.0,
            oom_cost_usd: None,
            expected_slowdown: 1.0,
            spot_source: Default::default(),
            score_source: Default::default(),
            arch: crate::spec::Arch::X86_64,
            machine_image: Default::default(),
            root_volume_gib: 0,
            storage_per_hour: 0.0,
            price_source: Default::default(),
            interruption_source: Default::default(),
            interruption_rate_per_h: None,
        }
    }

    fn pools(p: &[PlannedLaunch]) -> Vec<String> {
        p.iter().map(|l| l.pool.to_string()).collect()
    }

    #[test]
    fn spot_then_on_demand_tries_every_spot_pool_first() {
        // GIVEN two ranked types, two zones, one pool marked unavailable
        let c = vec![
            cand("m7i.large", None, Market::Spot, Some(0.03), Some(0.1)),
            cand("c7i.large", None, Market::Spot, Some(0.04), Some(0.09)),
        ];
        let zones = vec!["use1-az1".to_string(), "use1-az2".to_string()];
        let mut gone = HashSet::new();
        gone.insert(Pool {
            instance_type: "m7i.large".into(),
            az: "use1-az1".into(),
            market: Market::Spot,
        });
        let input = PlanInput {
            zones: &zones,
            ..PlanInput::new(Market::SpotThenOnDemand, &gone)
        };
        // WHEN planned
        let p = plan(&c, &input);
        // THEN spot pools in rank order, the marked pool skipped, then on-demand
        assert_eq!(
            pools(&p),
            [
                "m7i.large/use1-az2/spot",
                "c7i.large/use1-az1/spot",
                "c7i.large/use1-az2/spot",
                "m7i.large/use1-az1/on-demand",
                "m7i.large/use1-az2/on-demand",
                "c7i.large/use1-az1/on-demand",
                "c7i.large/use1-az2/on-demand",
            ]
        );
        assert_eq!(p[3].price_per_hour, 0.1);
    }

    #[test]
    fn spot_only_never_falls_back_to_on_demand() {
        let c = vec![cand("m7i.large", None, Market::Spot, Some(0.03), Some(0.1))];
        let none = HashSet::new();
        let input = PlanInput::new(Market::Spot, &none);
        assert_eq!(pools(&plan(&c, &input)), ["m7i.large/*/spot"]);
        let od = PlanInput::new(Market::OnDemand, &none);
        assert_eq!(pools(&plan(&c, &od)), ["m7i.large/*/on-demand"]);
    }

    #[test]
    fn catalog_zone_spec_zone_and_price_cap_filter() {
        let c = vec![
            cand("a.large", Some("use1-az2"), Market::Spot, Some(0.03), None),
            cand("b.large", Some("use1-az9"), Market::Spot, Some(0.03), None),
            cand("c.large", None, Market::Spot, Some(0.5), None),
            cand("d.large", None, Market::OnDemand, None, Some(0.2)),
        ];
        let zones = vec!["use1-az1".to_string(), "use1-az2".to_string()];
        let allowed = vec!["use1-az2".to_string()];
        let none = HashSet::new();
        let input = PlanInput {
            market: Market::Spot,
            zones: &zones,
            allowed_zones: &allowed,
            unavailable: &none,
            max_price_per_hour: Some(0.4),
        };
        // a: its zone has a subnet; b: no subnet in az9; c: over the cap; d: an on-demand row
        assert_eq!(pools(&plan(&c, &input)), ["a.large/use1-az2/spot"]);
    }

    #[test]
    fn nothing_left_is_an_empty_plan() {
        let c = vec![cand("a.large", None, Market::Spot, Some(0.03), None)];
        let mut gone = HashSet::new();
        gone.insert(Pool {
            instance_type: "a.large".into(),
            az: String::new(),
            market: Market::Spot,
        });
        let input = PlanInput::new(Market::Spot, &gone);
        assert!(plan(&c, &input).is_empty());
        assert!(plan(&[], &PlanInput::new(Market::SpotThenOnDemand, &gone)).is_empty());
    }
}
