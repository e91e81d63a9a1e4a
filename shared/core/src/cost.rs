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

/// Interruptions per instance-hour the Advisor's bucket stands for: a Poisson process whose
/// probability of at least one interruption in the Advisor's month is its frequency.
pub fn advisor_rate_per_h(bucket: Option<u8>) -> f64 {
    -(1.0 - interruption_monthly_frequency(bucket)).ln() / ADVISOR_WINDOW_H
}

/// Probability that a run of `seconds` is interrupted, treating interruptions as a Poisson
/// process whose monthly probability is the Advisor's frequency.
pub fn interruption_probability(bucket: Option<u8>, seconds: f64) -> f64 {
    interruption_probability_at(advisor_rate_per_h(bucket), seconds)
}

/// Probability that a run of `seconds` is interrupted at `rate_per_h` interruptions per hour.
pub fn interruption_probability_at(rate_per_h: f64, seconds: f64) -> f64 {
    1.0 - (-rate_per_h.max(0.0) * seconds.max(0.0) / 3600.0).exp()
}

/// Expected extra cost of interruptions: with probability p the run is cut, on average half
/// way, and that half plus a fresh start-up is bought again.
pub fn interruption_penalty(price_per_hour: f64, seconds: f64, startup_s: f64, bucket: Option<u8>) -> f64 {
    interruption_penalty_at(price_per_hour, seconds, startup_s, advisor_rate_per_h(bucket))
}

/// [`interruption_penalty`] at a given rate (a learned one, [`learned_rate`]).
pub fn interruption_penalty_at(price_per_hour: f64, seconds: f64, startup_s: f64, rate_per_h: f64) -> f64 {
    let p = interruption_probability_at(rate_per_h, seconds);
    p * price_per_hour * (seconds / 2.0 + startup_s) / 3600.0
}

/// How much of its own history a pool needs before its rate counts as learned: the weight, in
/// instance-hours, of the Advisor's figure in [`learned_rate`]. Advisor buckets are about a
/// month of the whole region's instances; a thousand instance-hours of this deployment's own
/// runs in one pool (a few days of a busy pool) is enough to tell a pool that interrupts far
/// more, or far less, than its region-wide bucket says, and few enough to be reached.
pub const PRIOR_INSTANCE_HOURS: f64 = 1000.0;

/// Where an interruption rate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RateSource {
    /// The Spot Advisor's bucket (with less than [`PRIOR_INSTANCE_HOURS`] of own history).
    #[default]
    Advisor,
    /// The deployment's own history of the pool outweighs the Advisor's figure.
    Learned,
}

impl RateSource {
    pub fn is_advisor(&self) -> bool {
        *self == RateSource::Advisor
    }
}

/// A pool's interruption rate from the deployment's own history: `interruptions` in `hours`
/// of its instances, with the Advisor's rate as the prior (Gamma–Poisson: the Advisor's rate
/// counts as [`PRIOR_INSTANCE_HOURS`] of history). The posterior mean
/// `(advisor × W + interruptions) / (W + hours)` moves from the Advisor's figure towards the
/// pool's own rate as its hours grow; it is called learned once `hours ≥ W`.
pub fn learned_rate(bucket: Option<u8>, hours: f64, interruptions: u32) -> (f64, RateSource) {
    let hours = if hours.is_finite() { hours.max(0.0) } else { 0.0 };
    let w = PRIOR_INSTANCE_HOURS;
    let rate = (advisor_rate_per_h(bucket) * w + interruptions as f64) / (w + hours);
    let source = if hours >= w {
        RateSource::Learned
    } else {
        RateSource::Advisor
    };
    (rate, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pools_own_history_replaces_the_advisor_bucket_as_it_grows() {
        let advisor = advisor_rate_per_h(Some(0));
        // no history: the Advisor's rate
        assert_eq!(learned_rate(Some(0), 0.0, 0), (advisor, RateSource::Advisor));
        // a pool of bucket 0 that interrupted 20 times in 2,000 instance-hours: learned, and
        // near its own 1/100 h rather than the bucket's ~1/28,000 h
        let (r, src) = learned_rate(Some(0), 2000.0, 20);
        assert_eq!(src, RateSource::Learned);
        assert!(
            (r - (advisor * 1000.0 + 20.0) / 3000.0).abs() < 1e-15 && r > 0.006,
            "{r}"
        );
        // a bucket-4 pool that never interrupted in 5,000 h is far safer than its bucket says
        let (r, src) = learned_rate(Some(4), 5000.0, 0);
        assert_eq!(src, RateSource::Learned);
        assert!(r < advisor_rate_per_h(Some(4)) / 5.0, "{r}");
        // short of the prior's weight it is blended but not yet called learned
        assert_eq!(learned_rate(Some(0), 999.0, 3).1, RateSource::Advisor);
        // the penalty follows the rate
        assert!(interruption_penalty_at(1.0, 3600.0, 60.0, 0.01) > interruption_penalty_at(1.0, 3600.0, 60.0, advisor));
        assert_eq!(
            interruption_penalty(1.0, 3600.0, 60.0, Some(2)),
            interruption_penalty_at(1.0, 3600.0, 60.0, advisor_rate_per_h(Some(2)))
        );
        // garbage hours are no history
        assert_eq!(learned_rate(Some(1), f64::NAN, 0).1, RateSource::Advisor);
    }

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
