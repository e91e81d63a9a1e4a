//! Cost model: what a run costs on an instance, and what the risk of a spot interruption
//! adds to it in expectation.

/// EC2 bills Linux per second with a 60 s minimum.
pub const MIN_BILLED_S: f64 = 60.0;

/// Cost in USD of `seconds` at `price_per_hour`, with EC2's 60 s minimum.
pub fn billed_cost(price_per_hour: f64, seconds: f64) -> f64 {
    price_per_hour * seconds.max(MIN_BILLED_S) / 3600.0
}

/// gp3 storage, USD per GiB-month (us-east-1 list price; other regions are within about 20 %).
/// The volume is billed per second from the launch to the termination, like the instance; its
/// baseline 3,000 IOPS and 125 MiB/s are included.
pub const GP3_PER_GIB_MONTH: f64 = 0.08;

/// Hours in EBS's billing month.
const EBS_MONTH_H: f64 = 730.0;

/// What a gp3 root volume of `gib` costs per hour.
pub fn ebs_per_hour(gib: u32) -> f64 {
    gib as f64 * GP3_PER_GIB_MONTH / EBS_MONTH_H
}

/// Monthly interruption frequency the Spot Advisor bucket stands for (the middle of its
/// range; `>20%` taken as 25%). An unknown bucket is taken as the worst, so a type the
/// Advisor does not list never wins on an unmeasured risk.
pub fn interruption_monthly_frequency(bucket: Option<u8>) -> f64 {
    match bucket {
        Some(0) => 0.025,
        Some(1) => 0.075,
        Some(2) => 0.125,
        Some(3) => 0.175,
        _ => 0.25,
    }
}

/// Hours in the Advisor's month.
const ADVISOR_WINDOW_H: f64 = 30.0 * 24.0;

/// Probability that a run of `seconds` is interrupted, treating interruptions as a Poisson
/// process whose monthly probability is the Advisor's frequency.
pub fn interruption_probability(bucket: Option<u8>, seconds: f64) -> f64 {
    let f = interruption_monthly_frequency(bucket);
    let rate_per_h = -(1.0 - f).ln() / ADVISOR_WINDOW_H;
    1.0 - (-rate_per_h * seconds.max(0.0) / 3600.0).exp()
}

/// Expected extra cost of interruptions: with probability p the run is cut, on average half
/// way, and that half plus a fresh start-up is bought again.
pub fn interruption_penalty(price_per_hour: f64, seconds: f64, startup_s: f64, bucket: Option<u8>) -> f64 {
    let p = interruption_probability(bucket, seconds);
    p * price_per_hour * (seconds / 2.0 + startup_s) / 3600.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_billing_and_penalty() {
        assert!((billed_cost(3.6, 10.0) - 0.06).abs() < 1e-12);
        assert!((billed_cost(3.6, 3600.0) - 3.6).abs() < 1e-12);
        // a month-long run in the >20% bucket is interrupted with ~25% probability
        assert!((interruption_probability(Some(4), 720.0 * 3600.0) - 0.25).abs() < 1e-9);
        assert!(interruption_penalty(1.0, 3600.0, 60.0, Some(0)) < interruption_penalty(1.0, 3600.0, 60.0, Some(4)));
        assert_eq!(interruption_penalty(1.0, 0.0, 60.0, Some(4)), 0.0);
        // 30 GiB for a month costs $2.40
        assert!((ebs_per_hour(30) * 730.0 - 2.4).abs() < 1e-9);
    }
}
