//! Cost model: what a run costs on an instance (placeholder; filled with ranking v2).

/// EC2 bills Linux per second with a 60 s minimum.
pub const MIN_BILLED_S: f64 = 60.0;

/// Cost in USD of `seconds` at `price_per_hour`, with EC2's 60 s minimum.
pub fn billed_cost(price_per_hour: f64, seconds: f64) -> f64 {
    price_per_hour * seconds.max(MIN_BILLED_S) / 3600.0
}
