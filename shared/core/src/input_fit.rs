//! Input-aware sizing (docs/sizing.md): a robust per-job regression of a run's memory peak or
//! duration on its input size, in log–log space (`ln y = a + b · ln x`: resource use that
//! grows as a power of the input, the shape seen across bioinformatics tools), fitted by
//! Theil–Sen (the median of pairwise slopes: a few odd runs cannot tilt it, breakdown point
//! ~29%), and used only when the fit is good; otherwise sizing keeps the plain distribution.

/// Fewest runs with an input size for a fit: with fewer, the pairwise slopes are too few for
/// their median to mean much and the plain distribution (which has a prior) is safer.
pub const MIN_FIT_RUNS: usize = 6;
/// The inputs must span at least this factor (largest / smallest): over a narrower range the
/// slope is fitted to the noise, and the input says nothing the plain spread does not.
pub const MIN_INPUT_SPAN: f64 = 2.0;
/// The fit is used when the input explains at least this share of the robust variance of
/// ln y (robust R² = 1 − (MAD of residuals / MAD of ln y)²): half, so the predictive spread
/// is at most ~0.7 of the plain one — otherwise the fit's own uncertainty eats the gain.
pub const MIN_FIT_R2: f64 = 0.5;
/// Slopes outside [0, MAX_SLOPE] are not taken: use that shrinks as the input grows, or grows
/// faster than its square, says the input size is not what drives it.
pub const MAX_SLOPE: f64 = 2.0;
/// MAD → standard deviation for normal residuals.
const MAD_TO_SD: f64 = 1.4826;

/// A log–log fit `ln y = intercept + slope · ln x`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogFit {
    pub intercept: f64,
    pub slope: f64,
    /// Robust standard deviation of the residuals (1.4826 × MAD), log units.
    pub resid_sd: f64,
    /// Robust R² (see [`MIN_FIT_R2`]).
    pub r2: f64,
    pub n: usize,
    /// Mean of ln x and Σ (ln x − mean)² over the fitted runs: the leverage term of the
    /// prediction interval.
    pub x_mean: f64,
    pub sxx: f64,
    /// Range of ln x fitted.
    pub x_min: f64,
    pub x_max: f64,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn mad(v: &[f64]) -> f64 {
    let mut c = v.to_vec();
    let m = median(&mut c);
    let mut d: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    median(&mut d)
}

impl LogFit {
    /// Theil–Sen fit of `(input, value)` pairs (both > 0; others are skipped). None when there
    /// are fewer than [`MIN_FIT_RUNS`] usable pairs or the inputs span less than
    /// [`MIN_INPUT_SPAN`]. The quality gate is [`LogFit::usable`].
    pub fn fit(points: &[(f64, f64)]) -> Option<LogFit> {
        let pts: Vec<(f64, f64)> = points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && *x > 0.0 && *y > 0.0)
            .map(|(x, y)| (x.ln(), y.ln()))
            .collect();
        let n = pts.len();
        if n < MIN_FIT_RUNS {
            return None;
        }
        let x_min = pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let x_max = pts.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
        if x_max - x_min < MIN_INPUT_SPAN.ln() - 1e-12 {
            return None;
        }
        let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
        for i in 0..n {
            for j in i + 1..n {
                let dx = pts[j].0 - pts[i].0;
                if dx.abs() > 1e-9 {
                    slopes.push((pts[j].1 - pts[i].1) / dx);
                }
            }
        }
        if slopes.is_empty() {
            return None;
        }
        let slope = median(&mut slopes);
        let mut icpt: Vec<f64> = pts.iter().map(|(x, y)| y - slope * x).collect();
        let intercept = median(&mut icpt);
        let resid: Vec<f64> = pts.iter().map(|(x, y)| y - intercept - slope * x).collect();
        let ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
        let (mad_r, mad_y) = (mad(&resid), mad(&ys));
        let r2 = if mad_y > 1e-12 {
            1.0 - (mad_r / mad_y).powi(2)
        } else {
            // ln y does not vary: nothing for the input to explain.
            0.0
        };
        let x_mean = pts.iter().map(|p| p.0).sum::<f64>() / n as f64;
        let sxx = pts.iter().map(|p| (p.0 - x_mean).powi(2)).sum::<f64>();
        Some(LogFit {
            intercept,
            slope,
            resid_sd: MAD_TO_SD * mad_r,
            r2,
            n,
            x_mean,
            sxx,
            x_min,
            x_max,
        })
    }

    /// The fit passes the quality gate: the input explains enough of the spread and the slope
    /// is plausible.
    pub fn usable(&self) -> bool {
        self.r2 >= MIN_FIT_R2 && (0.0..=MAX_SLOPE).contains(&self.slope) && self.resid_sd.is_finite()
    }

    /// Predicted `ln y` at input `x`.
    pub fn predict_ln(&self, x: f64) -> f64 {
        self.intercept + self.slope * x.max(1.0).ln()
    }

    /// The prediction-interval widening at input `x`: `sqrt(1 + 1/n + (ln x − mean)² / Sxx)`
    /// (a new run, an estimated line, and the leverage of an input far from those seen).
    pub fn spread_factor(&self, x: f64) -> f64 {
        let d = x.max(1.0).ln() - self.x_mean;
        (1.0 + 1.0 / self.n as f64 + d * d / self.sxx.max(1e-12)).sqrt()
    }

    /// `y` of a run with input `xi` and value `yi`, carried to input `x` along the fitted
    /// power law: `yi · (x / xi)^slope`.
    pub fn carry(&self, yi: f64, xi: f64, x: f64) -> f64 {
        yi * (x.max(1.0) / xi.max(1.0)).powf(self.slope)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Deterministic pseudo-noise in [-1, 1].
    fn noise(i: usize) -> f64 {
        let v = (i as f64 * 12.9898).sin() * 43_758.545_3;
        2.0 * (v - v.floor()) - 1.0
    }

    #[test]
    fn recovers_a_power_law_and_ignores_outliers() {
        // GIVEN peaks = 0.5 GiB × (input / 1 GB)^0.8 × (1 ± 5%), inputs from 0.1 to 20 GB,
        // and two runs whose peak was ten times the law (another tool version, say)
        let mut pts: Vec<(f64, f64)> = (0..20)
            .map(|i| {
                let x = 1e8 * 200f64.powf(i as f64 / 19.0);
                (x, 0.5 * (x / 1e9).powf(0.8) * (1.0 + 0.05 * noise(i)))
            })
            .collect();
        pts[3].1 *= 10.0;
        pts[11].1 *= 10.0;
        // WHEN fitted
        let f = LogFit::fit(&pts).unwrap();
        // THEN the slope and the prediction are the law's, the residual spread is the noise's
        assert!((f.slope - 0.8).abs() < 0.05, "{f:?}");
        let at = (f.predict_ln(5e9).exp() / (0.5 * 5f64.powf(0.8)) - 1.0).abs();
        assert!(at < 0.05, "{f:?}");
        assert!(f.resid_sd < 0.06, "{f:?}");
        assert!(f.usable());
        // … and the interval widens for an input far from those seen
        assert!(f.spread_factor(1e13) > 1.4 * f.spread_factor(1e9));
        assert!((f.carry(1.0, 1e9, 4e9) - 4f64.powf(f.slope)).abs() < 1e-9);
    }

    #[test]
    fn a_poor_fit_is_refused_and_too_little_data_gives_none() {
        // GIVEN peaks that do not follow the input (±60% noise around 2 GiB)
        let pts: Vec<(f64, f64)> = (0..20)
            .map(|i| (1e8 * 100f64.powf(i as f64 / 19.0), 2.0 * (0.6 * noise(i + 7)).exp()))
            .collect();
        // THEN a fit exists but fails the gate
        let f = LogFit::fit(&pts).unwrap();
        assert!(!f.usable(), "{f:?}");
        // GIVEN too few runs, or inputs that barely vary, THEN no fit at all
        assert!(LogFit::fit(&pts[..MIN_FIT_RUNS - 1]).is_none());
        let narrow: Vec<(f64, f64)> = (0..10)
            .map(|i| (1e9 * (1.0 + 0.05 * i as f64), 1.0 + i as f64))
            .collect();
        assert!(LogFit::fit(&narrow).is_none());
        // GIVEN use that falls as the input grows THEN the gate refuses the slope
        let falling: Vec<(f64, f64)> = (0..10).map(|i| (1e8 * 2f64.powi(i), 1.0 / (1.0 + i as f64))).collect();
        assert!(!LogFit::fit(&falling).unwrap().usable());
    }
}
