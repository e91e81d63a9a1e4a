//! One run attempt as recorded: where it ran, what it cost, and its summary.

use crate::ids::InstanceId;
use crate::spec::Market;
use crate::summary::{RunStatus, RunSummary};
use serde::{Deserialize, Serialize};

/// Where an attempt ran. For local runs `instance_type` is the *recommended* type and
/// `local` is true: the cost is what the run would have cost there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Placed {
    pub instance_id: Option<InstanceId>,
    pub instance_type: String,
    pub region: String,
    #[serde(default)]
    pub az: String,
    pub market: Market,
    pub price_per_hour: f64,
    #[serde(default)]
    pub local: bool,
    /// The root volume's price per hour, USD, billed beside the instance (a local run: what it
    /// would have cost there; 0: records written before volumes were priced).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub storage_per_hour: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Placed {
    /// What the attempt costs after `seconds` on its instance: instance and volume, billed per
    /// second with EC2's minimum.
    pub fn cost_after(&self, seconds: f64) -> f64 {
        crate::cost::billed_cost(self.price_per_hour + self.storage_per_hour, seconds)
    }
}

impl RunRecord {
    /// When the attempt started: its summary's start, else (still running, or lost before it
    /// had one) the last time the pipeline saw it.
    pub fn started_at_ms(&self) -> Option<i64> {
        self.summary.as_ref().map(|s| s.started_at_ms).or(self.heartbeat_ms)
    }
}

/// One run attempt, the unit of the `runs` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunRecord {
    pub run_id: String,
    pub job: String,
    /// 1-based attempt number within the execution.
    pub attempt: u32,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed: Option<Placed>,
    /// Cost of the attempt, USD: its instance's lifetime (launch to termination, per second,
    /// EC2's 60 s minimum) × the price, plus its volume; see `cost_basis`.
    pub cost_usd: f64,
    /// `billed`: priced from the pool's spot price history over that lifetime, as EC2 bills
    /// it; `estimated`: at the price the ranking chose it at (the snapshot's, or a live price
    /// when no history could be read; on-demand and local runs are always estimates).
    #[serde(default)]
    pub cost_basis: crate::prices::CostBasis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<RunSummary>,
    /// Requested size at launch: vCPU and memory bytes (for waste vs request).
    #[serde(default)]
    pub requested_vcpu: u32,
    #[serde(default)]
    pub requested_memory_bytes: u64,
    /// Last time the pipeline saw this attempt alive (launch, then every poll), Unix ms. The
    /// reaper terminates an instance whose running attempt has not been polled for a while:
    /// its execution was stopped or lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_ms: Option<i64>,
}
