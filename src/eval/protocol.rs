//! The evaluation protocol of the authors' `validate()`: which pixels of
//! one image count (the depth range, the dataset's crop), median scaling,
//! clipping, then the metrics.

use super::metrics::{compute_errors, Metrics};
/// Which evaluation crop: `none`, `eigen` or `garg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalCrop {
    None,
    Eigen,
    Garg,
}

impl std::str::FromStr for EvalCrop {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "eigen" => Ok(Self::Eigen),
            "garg" => Ok(Self::Garg),
            other => Err(format!("unknown crop {other:?} (none, eigen or garg)")),
        }
    }
}

impl EvalCrop {
    /// `eval_crop` as the authors' config spells it: `auto` (or empty)
    /// falls back to the older `garg_crop` / `eigen_crop` flags.
    pub fn resolve(eval_crop: &str, garg_crop: bool, eigen_crop: bool) -> Result<Self, String> {
        match eval_crop.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(if garg_crop {
                Self::Garg
            } else if eigen_crop {
                Self::Eigen
            } else {
                Self::None
            }),
            other => other.parse().map_err(|e| format!("eval_crop: {e}")),
        }
    }
}


/// What a non-finite prediction at a valid pixel counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NonFinite {
    /// NaN left out of the metrics, as the authors' `compute_errors`
    /// leaves it out (and ±Inf clipped to the eval range, as their clip
    /// does); counted in the report, so that a model emitting NaN shows.
    #[default]
    Drop,
    /// BTS's evaluation: NaN as min_depth_eval, +Inf as max_depth_eval,
    /// -Inf as min_depth_eval: a prediction the metrics penalise.
    Bts,
}

impl std::str::FromStr for NonFinite {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop" => Ok(Self::Drop),
            "bts" => Ok(Self::Bts),
            other => Err(format!("non-finite predictions are either dropped (drop) or penalised as BTS does (bts), not {other:?}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Protocol {
    /// `nyu`, `kitti` or another dataset name (lower case).
    pub dataset: String,
    pub min_depth: f64,
    pub max_depth: f64,
    pub crop: EvalCrop,
    pub median_scaling: bool,
    pub non_finite: NonFinite,
}

/// The crop rectangle (rows, cols as half-open ranges) of `crop` for an
/// `h` x `w` map, or `None` when the dataset has none for it.
pub fn crop_rect(dataset: &str, crop: EvalCrop, h: usize, w: usize) -> Option<((usize, usize), (usize, usize))> {
    let frac = |f: f64, n: usize| (f * n as f64) as usize;
    match (crop, dataset) {
        (EvalCrop::None, _) => None,
        (EvalCrop::Garg, "kitti") => Some(((frac(0.40810811, h), frac(0.99189189, h)), (frac(0.03594771, w), frac(0.96405229, w)))),
        (EvalCrop::Garg, _) => None,
        (EvalCrop::Eigen, "kitti") => Some(((frac(0.3324324, h), frac(0.91351351, h)), (frac(0.0359477, w), frac(0.96405229, w)))),
        (EvalCrop::Eigen, "nyu") => Some(((45.min(h), 471.min(h)), (41.min(w), 601.min(w)))),
        (EvalCrop::Eigen, _) => None,
    }
}

/// float32 median of the finite values as numpy computes it (mean of the
/// two middle values for an even count, in float32); NaN when there are none.
fn median_f32(v: &[f32]) -> f32 {
    let mut s: Vec<f32> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f32::NAN;
    }
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 }
}

impl Protocol {
    /// The valid ground-truth pixels of an `h` x `w` map: in range (float32
    /// comparisons, as numpy's) and inside the crop.
    pub fn mask(&self, gt: &[f32], h: usize, w: usize) -> Vec<bool> {
        let (lo, hi) = (self.min_depth as f32, self.max_depth as f32);
        let rect = crop_rect(&self.dataset, self.crop, h, w);
        gt.iter()
            .enumerate()
            .map(|(i, &g)| {
                let (y, x) = (i / w, i % w);
                let inside = rect.is_none_or(|((y0, y1), (x0, x1))| y >= y0 && y < y1 && x >= x0 && x < x1);
                g > lo && g < hi && inside
            })
            .collect()
    }

    /// How many valid ground-truth pixels have a non-finite prediction.
    pub fn non_finite_predictions(&self, gt: &[f32], pred: &[f32], h: usize, w: usize) -> usize {
        self.mask(gt, h, w).iter().zip(pred).filter(|(&m, p)| m && !p.is_finite()).count()
    }

    /// Metrics of one image, `None` when no pixel is valid.
    pub fn image_metrics(&self, gt: &[f32], pred: &[f32], h: usize, w: usize) -> Option<Metrics> {
        let mask = self.mask(gt, h, w);
        let (g, mut p): (Vec<f32>, Vec<f32>) = gt.iter().zip(pred).zip(&mask).filter(|(_, &m)| m).map(|((&g, &p), _)| (g, p)).unzip();
        if g.is_empty() {
            return None;
        }
        if self.non_finite == NonFinite::Bts {
            let (lo, hi) = (self.min_depth as f32, self.max_depth as f32);
            for v in p.iter_mut().filter(|v| !v.is_finite()) {
                *v = if *v == f32::INFINITY { hi } else { lo };
            }
        }
        if self.median_scaling {
            let (pm, gm) = (median_f32(&p), median_f32(&g));
            if pm.is_finite() && gm.is_finite() && pm > 1e-6 {
                let ratio = gm / pm;
                p.iter_mut().for_each(|v| *v *= ratio);
            }
        }
        let (lo, hi) = (self.min_depth as f32, self.max_depth as f32);
        p.iter_mut().for_each(|v| *v = v.clamp(lo, hi));
        Some(compute_errors(&g, &p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_predictions_are_counted_and_dropped_or_penalised() {
        let gt = [2.0f32, 2.0, 2.0, 2.0];
        let pred = [2.0f32, f32::NAN, f32::INFINITY, 2.0];
        let mut p = Protocol { dataset: "nyu".into(), min_depth: 1e-3, max_depth: 10.0, crop: EvalCrop::None, median_scaling: false, non_finite: NonFinite::Drop };
        assert_eq!(p.non_finite_predictions(&gt, &pred, 2, 2), 2);
        // NaN left out; +Inf clipped to max_depth_eval (|2 - 10| / 2), over three pixels.
        assert!((p.image_metrics(&gt, &pred, 2, 2).unwrap().abs_rel - 4.0 / 3.0).abs() < 1e-9);
        p.non_finite = NonFinite::Bts;
        // NaN -> 0.001 (|2 - 0.001| / 2), +Inf -> 10 (8 / 2), over four pixels.
        let want = ((2.0 - 0.001f32 as f64) / 2.0 + 4.0) / 4.0;
        assert!((p.image_metrics(&gt, &pred, 2, 2).unwrap().abs_rel - want).abs() < 1e-6);
        // The median of the finite predictions scales them.
        p.median_scaling = true;
        p.non_finite = NonFinite::Drop;
        let scaled = p.image_metrics(&gt, &[1.0, f32::NAN, 1.0, 1.0], 2, 2).unwrap();
        assert!(scaled.abs_rel.abs() < 1e-9, "{scaled:?}");
    }

    #[test]
    fn crops_follow_the_fractions() {
        assert_eq!(crop_rect("kitti", EvalCrop::Eigen, 352, 704), Some(((117, 321), (25, 678))));
        assert_eq!(crop_rect("nyu", EvalCrop::Eigen, 480, 640), Some(((45, 471), (41, 601))));
        assert_eq!(crop_rect("nyu", EvalCrop::Garg, 480, 640), None);
        assert_eq!(crop_rect("robot", EvalCrop::Eigen, 480, 640), None);
    }

    #[test]
    fn median_scaling_removes_a_global_factor() {
        let p = Protocol { dataset: "nyu".into(), min_depth: 1e-3, max_depth: 10.0, crop: EvalCrop::None, median_scaling: true, non_finite: NonFinite::Drop };
        let gt = [1.0f32, 2.0, 3.0, 4.0];
        let pred: Vec<f32> = gt.iter().map(|g| g * 3.0).collect();
        let m = p.image_metrics(&gt, &pred, 2, 2).unwrap();
        assert!(m.abs_rel < 1e-6, "{}", m.abs_rel);
        assert!(p.image_metrics(&[0.0; 4], &pred, 2, 2).is_none());
    }
}
