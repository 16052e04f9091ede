//! The standard monocular-depth error metrics as the authors'
//! `compute_errors` computes them (float64, over pixels where both maps
//! are finite and above 1e-6), and their per-image running average.

use serde::Serialize;

/// Metric names in the order they are printed.
pub const NAMES: [&str; 9] = ["a1", "a2", "a3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log_10", "silog"];

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub a1: f64,
    pub a2: f64,
    pub a3: f64,
    pub abs_rel: f64,
    pub sq_rel: f64,
    pub rmse: f64,
    pub rmse_log: f64,
    pub log_10: f64,
    pub silog: f64,
}

impl Metrics {
    pub fn values(&self) -> [f64; 9] {
        [self.a1, self.a2, self.a3, self.abs_rel, self.sq_rel, self.rmse, self.rmse_log, self.log_10, self.silog]
    }

    fn from_values(v: [f64; 9]) -> Self {
        Self { a1: v[0], a2: v[1], a3: v[2], abs_rel: v[3], sq_rel: v[4], rmse: v[5], rmse_log: v[6], log_10: v[7], silog: v[8] }
    }

    pub fn all_finite(&self) -> bool {
        self.values().iter().all(|v| v.is_finite())
    }
}

/// Errors of `pred` against `gt` (same length); NaN everywhere when no
/// pixel qualifies.
pub fn compute_errors(gt: &[f32], pred: &[f32]) -> Metrics {
    let pairs: Vec<(f64, f64)> = gt
        .iter()
        .zip(pred)
        .map(|(&g, &p)| (g as f64, p as f64))
        .filter(|&(g, p)| g.is_finite() && p.is_finite() && g > 1e-6 && p > 1e-6)
        .collect();
    if pairs.is_empty() {
        return Metrics::from_values([f64::NAN; 9]);
    }
    let n = pairs.len() as f64;
    let mean = |f: &dyn Fn(f64, f64) -> f64| pairs.iter().map(|&(g, p)| f(g, p)).sum::<f64>() / n;
    let thresh = |g: f64, p: f64| (g / p).max(p / g);
    let a1 = mean(&|g, p| (thresh(g, p) < 1.25) as u8 as f64);
    let a2 = mean(&|g, p| (thresh(g, p) < 1.25f64.powi(2)) as u8 as f64);
    let a3 = mean(&|g, p| (thresh(g, p) < 1.25f64.powi(3)) as u8 as f64);
    let abs_rel = mean(&|g, p| (g - p).abs() / g);
    let sq_rel = mean(&|g, p| (g - p).powi(2) / g);
    let rmse = mean(&|g, p| (g - p).powi(2)).sqrt();
    let rmse_log = mean(&|g, p| (g.ln() - p.ln()).powi(2)).sqrt();
    let e2 = mean(&|g, p| (p.ln() - g.ln()).powi(2));
    let e1 = mean(&|g, p| p.ln() - g.ln());
    let silog = (e2 - e1 * e1).max(0.0).sqrt() * 100.0;
    let log_10 = mean(&|g, p| (g.log10() - p.log10()).abs());
    Metrics { a1, a2, a3, abs_rel, sq_rel, rmse, rmse_log, log_10, silog }
}

/// The authors' `RunningAverage` per metric: `avg = (x + n avg) / (n + 1)`.
#[derive(Debug, Clone, Default)]
pub struct RunningMetrics {
    avg: [f64; 9],
    pub count: usize,
}

impl RunningMetrics {
    pub fn add(&mut self, m: &Metrics) {
        let n = self.count as f64;
        for (a, v) in self.avg.iter_mut().zip(m.values()) {
            *a = (v + n * *a) / (n + 1.0);
        }
        self.count += 1;
    }

    pub fn value(&self) -> Option<Metrics> {
        (self.count > 0).then(|| Metrics::from_values(self.avg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_prediction_and_known_ratios() {
        let gt = [1.0f32, 2.0, 4.0, 0.0, f32::NAN];
        let m = compute_errors(&gt, &gt);
        assert_eq!((m.a1, m.abs_rel, m.rmse, m.silog), (1.0, 0.0, 0.0, 0.0));
        // Every prediction 1.5 times the truth: thresh 1.5 (between 1.25
        // and 1.25^2), abs_rel 0.5, log10 error log10(1.5).
        let pred: Vec<f32> = gt.iter().map(|g| g * 1.5).collect();
        let m = compute_errors(&gt, &pred);
        assert_eq!((m.a1, m.a2, m.a3), (0.0, 1.0, 1.0));
        assert!((m.abs_rel - 0.5).abs() < 1e-12);
        assert!((m.log_10 - 1.5f64.log10()).abs() < 1e-12);
        assert!(m.silog.abs() < 1e-6, "a constant factor has no scale-invariant error: {}", m.silog);
        assert!(compute_errors(&[0.0], &[1.0]).abs_rel.is_nan());
    }

    #[test]
    fn running_average_is_the_mean() {
        let mut r = RunningMetrics::default();
        for v in [1.0, 2.0, 6.0] {
            r.add(&Metrics { abs_rel: v, ..Default::default() });
        }
        assert!((r.value().unwrap().abs_rel - 3.0).abs() < 1e-12);
    }
}
